"""ReasoningRuns the API server must refuse, each with the message that names the field: shared by the
API tests and the operator's (which must shrug them off while running)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

GROUP, VERSION = "reasoning.dev", "v1alpha1"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ReasoningRun",
        "metadata": {"name": name},
        "spec": spec,
    }


def sky_t1() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / "sky-t1-32b-preview.yaml").read_text())
    return document


def with_changes(*changes: tuple[str, Any]) -> dict[str, Any]:
    """The full recipe's spec with fields (dotted paths; list items by index) set to values."""
    spec: dict[str, Any] = copy.deepcopy(sky_t1()["spec"])
    for path, value in changes:
        *parents, leaf = path.split(".")
        node: Any = spec
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if isinstance(node, list):
            node[int(leaf)] = value
        else:
            node[leaf] = value
    return spec


def with_change(path: str, value: Any) -> dict[str, Any]:
    return with_changes((path, value))


INVALID = [
    # (id, spec, what the error must say)
    (
        "batch-not-divisible",
        with_change("training.globalBatchSize", 100),
        "training.globalBatchSize must equal",
    ),
    (
        "batch-wrong-accumulation",
        with_change("training.gradientAccumulationSteps", 10),
        "globalBatchSize must equal",
    ),
    ("batch-wrong-nodes", with_change("training.nodes", 2), "globalBatchSize must equal"),
    ("unknown-training-pool", with_change("training.nodePool", "a100"), "training.nodePool must name one of"),
    ("unknown-driver-pool", with_change("driverNodePool", "spot"), "driverNodePool must name one of"),
    (
        "unknown-evaluation-pool",
        with_change("evaluation.server.nodePool", "a100"),
        "evaluation.server.nodePool must name one of",
    ),
    (
        "unknown-teacher-pool",
        with_change("generation.teacher.nodePool", "tpu"),
        "teacher.nodePool must name one of",
    ),
    (
        "tensor-parallel-too-wide",
        with_change("generation.teacher.tensorParallelSize", 16),
        "tensorParallelSize must not exceed",
    ),
    (
        "training-gpus-too-many",
        {
            **with_change("training.gpusPerNode", 16),
            "training": {**sky_t1()["spec"]["training"], "gpusPerNode": 16, "gradientAccumulationSteps": 6},
        },
        "training.gpusPerNode must not exceed",
    ),
    (
        "generation-without-data",
        with_change("data.enabled", False),
        "set generation.inputPath or enable data",
    ),
    (
        "rewrite-without-generation",
        with_change("generation.enabled", False),
        "set rewrite.inputPath or enable generation",
    ),
    (
        "filter-without-rewrite",
        with_change("rewrite.enabled", False),
        "set filter.inputPath or enable rewrite",
    ),
    ("format-without-filter", with_change("filter.enabled", False), "set format.inputPath or enable filter"),
    (
        "training-without-format",
        with_change("format.enabled", False),
        "set training.inputPath or enable format",
    ),
    (
        "source-without-origin",
        with_change("data.sources.0", {"name": "x", "format": "numina"}),
        "exactly one of hubId or path",
    ),
    (
        "source-with-two-origins",
        with_change("data.sources.0", {"name": "x", "format": "numina", "hubId": "a", "path": "b"}),
        "exactly one of hubId or path",
    ),
    (
        "gym-without-task",
        with_change("data.sources.0", {"name": "x", "format": "reasoning-gym"}),
        "reasoning-gym sources need task",
    ),
    (
        "duplicate-source-names",
        with_change("data.sources.1.name", "numina-amc-aime"),
        "spec.data.sources[1]: Duplicate value",
    ),
    ("duplicate-pool-names", with_change("nodePools.1.name", "cpu"), "spec.nodePools[1]: Duplicate value"),
    (
        "unknown-format",
        with_change("data.sources.0.format", "csv"),
        'spec.data.sources[0].format: Unsupported value: "csv"',
    ),
    (
        "temperature-too-high",
        with_change("generation.sampling.temperature", 3),
        "spec.generation.sampling.temperature: Invalid value",
    ),
    (
        "temperature-negative",
        with_change("rewrite.temperature", -1),
        "spec.rewrite.temperature: Invalid value",
    ),
    (
        "zero-max-tokens",
        with_change("generation.sampling.maxTokens", 0),
        "spec.generation.sampling.maxTokens: Invalid value",
    ),
    (
        "teacher-answers-exceed-its-context",
        with_change("generation.teacher.maxModelLen", 16383),
        "generation.sampling.maxTokens must not exceed generation.teacher.maxModelLen",
    ),
    (
        "evaluation-answers-exceed-its-context",
        with_change("evaluation.server.maxModelLen", 32767),
        "evaluation.sampling.maxTokens must not exceed evaluation.server.maxModelLen",
    ),
    (
        "benchmark-answers-exceed-its-context",
        {  # the default sampling fits; AIME's own (32,768 tokens) does not
            **sky_t1()["spec"],
            "evaluation": {
                **sky_t1()["spec"]["evaluation"],
                "server": {**sky_t1()["spec"]["evaluation"]["server"], "maxModelLen": 32767},
                "sampling": {"temperature": 0, "maxTokens": 30000, "seed": 41},
            },
        },
        "evaluation.benchmarks[].sampling.maxTokens must not exceed evaluation.server.maxModelLen",
    ),
    (
        "zero-concurrency",
        with_change("generation.concurrency", 0),
        "spec.generation.concurrency: Invalid value",
    ),
    (
        "zero-learning-rate",
        with_change("training.learningRate", 0),
        "spec.training.learningRate: Invalid value",
    ),
    ("warmup-ratio-one", with_change("training.warmupRatio", 1), "spec.training.warmupRatio: Invalid value"),
    (
        "unknown-zero-stage",
        with_change("training.deepspeed.zeroStage", 4),
        "spec.training.deepspeed.zeroStage: Unsupported value",
    ),
    (
        "unknown-offload",
        with_change("training.deepspeed.offloadOptimizer", "nvme"),
        "offloadOptimizer: Unsupported value",
    ),
    (
        "unknown-precision",
        with_change("training.precision", "fp8"),
        "spec.training.precision: Unsupported value",
    ),
    (
        "unknown-engine",
        with_change("generation.teacher.engine", "tgi"),
        "spec.generation.teacher.engine: Unsupported value",
    ),
    (
        "not-an-nccl-variable",
        with_change("training.ncclEnv", {"NCCL_DEBUG": "INFO", "LD_PRELOAD": "/data/evil.so"}),
        "training.ncclEnv: only NCCL_* variables belong here",
    ),
    ("bad-pool-name", with_change("nodePools.1.name", "H100_pool"), "spec.nodePools[1].name: Invalid value"),
    ("bad-storage-size", with_change("storage.size", "lots"), "spec.storage.size: Invalid value"),
    (
        "relative-mount-path",
        with_change("storage.mountPath", "data"),
        "spec.storage.mountPath: Invalid value",
    ),
    (
        "unknown-access-mode",
        with_change("storage.accessMode", "ReadOnlyMany"),
        "spec.storage.accessMode: Unsupported value",
    ),
    (
        "zero-max-attempts",
        with_change("generation.maxAttempts", 0),
        "spec.generation.maxAttempts: Invalid value",
    ),
    (
        "negative-gpu-price",
        with_change("nodePools.1.gpuHourUsd", -1),
        "spec.nodePools[1].gpuHourUsd: Invalid value",
    ),
    ("wrong-type", with_change("training.epochs", "three"), "spec.training.epochs: Invalid value"),
    (
        "unknown-benchmark",
        with_change("evaluation.benchmarks.0", {"name": "mmlu"}),
        'Unsupported value: "mmlu"',
    ),
    (
        "too-many-gpus-per-node",
        with_change("nodePools.1.gpusPerNode", 65),
        "spec.nodePools[1].gpusPerNode: Invalid value",
    ),
]


# Mistakes as users make them, each of which used to pass admission and fail later (or do nothing):
# refused by the API server and by the spec models alike (tests/unit/test_spec.py checks the models).
REFUSED_BEFORE_RUN_TIME = [
    # numbers with an obvious bound
    ("learning-rate-above-one", with_change("training.learningRate", 5), "spec.training.learningRate"),
    ("endless-epochs", with_change("training.epochs", 100000), "spec.training.epochs: Invalid value"),
    ("huge-cutoff", with_change("training.cutoffLen", 10**9), "spec.training.cutoffLen: Invalid value"),
    (
        "huge-max-tokens",
        with_change("generation.sampling.maxTokens", 10**8),
        "spec.generation.sampling.maxTokens: Invalid value",
    ),
    (
        "huge-sandbox-memory",
        with_change("filter.code.memoryMb", 10**9),
        "spec.filter.code.memoryMb: Invalid value",
    ),
    (
        "day-long-test",
        with_change("filter.code.testTimeoutSeconds", 10**7),
        "spec.filter.code.testTimeoutSeconds: Invalid value",
    ),
    (
        "endless-request",
        with_change("rewrite.requestTimeoutSeconds", 10**7),
        "spec.rewrite.requestTimeoutSeconds: Invalid value",
    ),
    # empty where a value is needed
    ("empty-base-model", with_change("training.baseModel", ""), "spec.training.baseModel: Invalid value"),
    (
        "empty-teacher",
        with_change("generation.teacher.model", ""),
        "spec.generation.teacher.model: Invalid value",
    ),
    ("empty-rewrite-model", with_change("rewrite.model", ""), "spec.rewrite.model: Invalid value"),
    ("empty-split", with_change("data.sources.3.split", ""), "spec.data.sources[3].split: Invalid value"),
    ("empty-hub-id", with_change("data.sources.0.hubId", ""), "spec.data.sources[0].hubId: Invalid value"),
    ("no-sources", with_change("data.sources", []), "data.sources is empty"),
    ("no-benchmarks", with_change("evaluation.benchmarks", []), "evaluation.benchmarks is empty"),
    (
        "nothing-to-evaluate",
        with_changes(("training.enabled", False), ("evaluation.server.model", "")),
        "evaluation.server.model is empty (the train stage's model) but training is disabled",
    ),
    # paths out of the storage, a home directory, backslashes
    (
        "path-out-of-the-storage",
        with_change("data.sources.0", {"name": "mine", "format": "numina", "path": "../../etc/passwd"}),
        "spec.data.sources[0].path: Invalid value",
    ),
    (
        "path-climbing-inside",
        with_change("evaluation.benchmarks.0", {"name": "math500", "path": "bench/../../../x.jsonl"}),
        "spec.evaluation.benchmarks[0].path: Invalid value",
    ),
    ("path-in-home", with_change("generation.inputPath", "~/prompts.jsonl"), "spec.generation.inputPath"),
    (
        "path-with-backslashes",
        with_change("training.inputPath", "format\\sft.jsonl"),
        "spec.training.inputPath: Invalid value",
    ),
    # URLs without a scheme
    (
        "endpoint-without-scheme",
        with_change("generation.teacher.endpoint", "teacher:8000/v1"),
        "spec.generation.teacher.endpoint: Invalid value",
    ),
    (
        "base-url-without-scheme",
        with_change("rewrite.baseUrl", "api.openai.com/v1"),
        "spec.rewrite.baseUrl: Invalid value",
    ),
    # contradictions between fields
    (
        "two-nodes-on-a-one-node-volume",
        with_changes(
            ("storage.accessMode", "ReadWriteOnce"),
            ("training.nodes", 2),
            ("training.gradientAccumulationSteps", 6),
        ),
        "storage.accessMode must be ReadWriteMany when training.nodes > 1",
    ),
    (
        "teacher-tensor-parallel-of-three",
        with_change("generation.teacher.tensorParallelSize", 3),
        "generation.teacher.tensorParallelSize must divide the gpusPerNode of its node pool",
    ),
    (
        "evaluation-tensor-parallel-of-five",
        with_change("evaluation.server.tensorParallelSize", 5),
        "evaluation.server.tensorParallelSize must divide the gpusPerNode of its node pool",
    ),
    (
        "toleration-exists-with-a-value",
        with_change(
            "nodePools.1.tolerations", [{"key": "nvidia.com/gpu", "operator": "Exists", "value": "1"}]
        ),
        "tolerations[].value must be empty with operator Exists",
    ),
    (
        "toleration-equal-without-a-key",
        with_change("nodePools.1.tolerations", [{"operator": "Equal", "value": "gpu"}]),
        "tolerations[].key is needed with operator Equal",
    ),
    (
        "difficulties-of-numina",
        with_change("data.sources.0.difficulties", ["MEDIUM"]),
        "difficulties apply to apps and taco sources only",
    ),
    (
        "subsets-of-apps",
        with_change("data.sources.3.subsets", ["interview"]),
        "subsets apply to numina and still2 sources only",
    ),
    (
        "taco-difficulty-in-lower-case",
        with_change("data.sources.4.difficulties", ["medium"]),
        "difficulties of a taco source are among: EASY, MEDIUM",
    ),
    (
        "numina-subset-misspelled",
        with_change("data.sources.0.subsets", ["amc-aime"]),
        "subsets of a numina source are among: amc_aime",
    ),
    # deadlines that end an attempt before it starts, or never
    ("deadline-of-a-second", with_change("training.deadlineSeconds", 1), "spec.training.deadlineSeconds"),
    (
        "deadline-of-a-year",
        with_change("generation.deadlineSeconds", 365 * 86400),
        "spec.generation.deadlineSeconds",
    ),
    # a restart that cannot be: from a stage the run does not run, under an id that is not a name
    (
        "restart-from-a-disabled-stage",
        with_changes(
            ("restartFrom", {"stage": "rewrite", "id": "1"}),
            ("rewrite.enabled", False),
            ("filter.inputPath", "runs/x/rewritten.jsonl"),
        ),
        "restartFrom.stage names a disabled stage",
    ),
    (
        "restart-from-a-stage-not-in-the-recipe",
        with_change("restartFrom", {"stage": "distill", "id": "1"}),
        "spec.restartFrom.stage: Unsupported value",
    ),
    (
        "restart-id-with-spaces",
        with_change("restartFrom", {"stage": "train", "id": "fix it"}),
        "spec.restartFrom.id",
    ),
    # money that cannot be
    ("budget-below-zero", with_change("budgetUsd", -5), "spec.budgetUsd"),
    (
        "price-per-token-not-per-million",
        with_change("rewrite.price", {"promptUsdPerMillion": 150000}),
        "spec.rewrite.price.promptUsdPerMillion",
    ),
    # a sandbox that cannot be had: a profile outside the kubelet's folder, a level the profile refuses
    (
        "seccomp-profile-climbing-out",
        with_change("sandbox.seccompProfile", {"type": "Localhost", "localhostProfile": "../../etc/x.json"}),
        "spec.sandbox.seccompProfile.localhostProfile: Invalid value",
    ),
    (
        "seccomp-profile-as-a-host-path",
        with_change("sandbox.seccompProfile.localhostProfile", "/var/lib/kubelet/seccomp/sandbox.json"),
        "spec.sandbox.seccompProfile.localhostProfile: Invalid value",
    ),
    (
        "seccomp-profile-unconfined",
        with_change("sandbox.seccompProfile.type", "Unconfined"),
        "spec.sandbox.seccompProfile.type: Unsupported value",
    ),
    (
        "runtime-default-with-user-namespaces",
        with_change("sandbox.seccompProfile", {"type": "RuntimeDefault"}),
        "sandbox.minimumIsolation: under seccompProfile RuntimeDefault the sandbox reaches only the rlimits",
    ),
    (
        "isolation-misspelled",
        with_change("sandbox.minimumIsolation", "userns"),
        "spec.sandbox.minimumIsolation: Unsupported value",
    ),
    (
        "apparmor-localhost-without-its-name",
        with_change("sandbox.appArmorProfile", {"type": "Localhost"}),
        "sandbox.appArmorProfile.localhostProfile: give it with type Localhost, and only then",
    ),
    (
        "apparmor-name-with-the-runtime-default",
        with_change("sandbox.appArmorProfile", {"type": "RuntimeDefault", "localhostProfile": "sandbox"}),
        "sandbox.appArmorProfile.localhostProfile: give it with type Localhost, and only then",
    ),
    (
        "apparmor-unconfined",
        with_change("sandbox.appArmorProfile", {"type": "Unconfined"}),
        "spec.sandbox.appArmorProfile.type: Unsupported value",
    ),
    (
        "apparmor-profile-as-a-path",
        with_change(
            "sandbox.appArmorProfile", {"type": "Localhost", "localhostProfile": "/etc/apparmor.d/x"}
        ),
        "spec.sandbox.appArmorProfile.localhostProfile: Invalid value",
    ),
    (
        "runtime-class-with-capitals",
        with_change("sandbox.runtimeClassName", "gVisor"),
        "spec.sandbox.runtimeClassName: Invalid value",
    ),
]
INVALID += REFUSED_BEFORE_RUN_TIME
# Run names the API server takes as object names but that cannot name a Service or label a child.
INVALID_NAMES = [("dotted", "sky.t1"), ("longer-than-a-label", "sky-t1-" + "x" * 60)]
