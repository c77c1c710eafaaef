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


def with_change(path: str, value: Any) -> dict[str, Any]:
    """The full recipe's spec with one field (dotted path; list items by index) set to `value`."""
    spec: dict[str, Any] = copy.deepcopy(sky_t1()["spec"])
    *parents, leaf = path.split(".")
    node: Any = spec
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(leaf)] = value
    else:
        node[leaf] = value
    return spec


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
