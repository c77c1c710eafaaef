"""The operator's children: what each stage of a run creates, as pure functions of the run.

The recipe's numbers must land where the cluster reads them (GPU limits, node pools, torchrun's process
count, the config map the stage programs parse); every pod must pass the `restricted` Pod Security
Standard; names must be deterministic DNS-1035 labels, also for the longest run name.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from reasoning_operator import stages
from reasoning_operator.naming import (
    LABEL_ATTEMPT,
    LABEL_MANAGED_BY,
    LABEL_ROLE,
    LABEL_RUN,
    LABEL_STAGE,
    QUEUE_LABEL,
    child_name,
    config_map_name,
)
from reasoning_operator.run import InvalidRun, RunRef
from reasoning_operator.stages import evaluate as evaluate_children
from reasoning_operator.stages import generate as generate_children
from reasoning_operator.stages import rewrite as rewrite_children
from reasoning_operator.workloads import (
    CONFIG_PATH,
    PYTORCH_JOB_NAME_LENGTH,
    SANDBOX_CHANNEL_DIR,
    SANDBOX_CHANNEL_VARIABLE,
    SANDBOX_CONTAINER,
    run_config_map,
    served_model_names,
    storage_claim,
)
from reasoning_pipeline.filter import sandbox_channel
from reasoning_pipeline.spec import STAGE_ORDER, ReasoningRun, Stage

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SKY_T1 = "sky-t1-32b-preview"
TINY = "tiny"
NAMESPACE = "recipes"
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
Manifest = dict[str, Any]


# ------------------------------------------------------------------------------------------ helpers
def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def make_run(example: str, name: str | None = None, **spec_changes: Any) -> RunRef:
    """An example run as kopf hands it over, with the spec changed where a test says."""
    document = yaml.safe_load((EXAMPLES / f"{example}.yaml").read_text())
    body = {
        "apiVersion": document["apiVersion"],
        "kind": document["kind"],
        "metadata": {
            "name": name or document["metadata"]["name"],
            "namespace": NAMESPACE,
            "uid": f"uid-of-{example}",
            "generation": 3,
        },
        "spec": _merge(document["spec"], spec_changes),
    }
    return RunRef.from_body(body)


def enabled_stages(run: RunRef) -> list[Stage]:
    return [stage for stage in STAGE_ORDER if run.spec.section(stage).enabled]


def all_children(run: RunRef, attempt: int = 1) -> list[Manifest]:
    return [child for stage in enabled_stages(run) for child in stages.children(run, stage, attempt)]


def pod_templates(manifest: Manifest) -> list[Manifest]:
    if manifest["kind"] == "PyTorchJob":
        return [r["template"] for r in manifest["spec"]["pytorchReplicaSpecs"].values()]
    if manifest["kind"] in {"Job", "Deployment"}:
        return [manifest["spec"]["template"]]
    return []


def containers(manifest: Manifest) -> Iterator[Manifest]:
    for template in pod_templates(manifest):
        yield from template["spec"]["containers"]


def only(manifests: list[Manifest], kind: str, role: str | None = None) -> Manifest:
    found = [
        m
        for m in manifests
        if m["kind"] == kind and (role is None or m["metadata"]["labels"][LABEL_ROLE] == role)
    ]
    assert len(found) == 1, f"expected one {kind} {role or ''}, got {[m['metadata']['name'] for m in found]}"
    return found[0]


def env_of(manifest: Manifest) -> dict[str, Manifest]:
    (container,) = containers(manifest)
    return {variable["name"]: variable for variable in container["env"]}


def run_yaml(run: RunRef) -> ReasoningRun:
    """The run as a stage program parses it from the config map."""
    return ReasoningRun.model_validate(yaml.safe_load(run_config_map(run)["data"]["run.yaml"]))


def arguments(container: Manifest) -> list[str]:
    return [*container["command"], *container.get("args", [])]


def flag(container: Manifest, name: str) -> str:
    words = arguments(container)
    return words[words.index(name) + 1]


EXAMPLE_STAGES = [
    pytest.param(example, stage, id=f"{example}-{stage.value}")
    for example in (SKY_T1, TINY)
    for stage in STAGE_ORDER
]


# --------------------------------------------------------------------------------- identity, names
@pytest.mark.parametrize(("example", "stage"), EXAMPLE_STAGES)
def test_every_child_is_owned_by_the_run_and_labelled_with_it(example: str, stage: Stage) -> None:
    run = make_run(example)
    for child in stages.children(run, stage, attempt=2):
        metadata = child["metadata"]
        assert metadata["namespace"] == NAMESPACE
        (owner,) = metadata["ownerReferences"]
        assert owner == {
            "apiVersion": "reasoning.dev/v1alpha1",
            "kind": "ReasoningRun",
            "name": run.name,
            "uid": run.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
        for labels in [metadata["labels"], *(t["metadata"]["labels"] for t in pod_templates(child))]:
            assert labels[LABEL_RUN] == run.name
            assert labels[LABEL_STAGE] == stage.value
            assert labels[LABEL_MANAGED_BY] == "reasoning-operator"
            assert labels[LABEL_ROLE] in {
                "driver",
                "server",
                "server-base",
                "rewrite-stand-in",
                "trainer",
                "isolation",
            }


@pytest.mark.parametrize(("example", "stage"), EXAMPLE_STAGES)
def test_children_are_the_same_every_time(example: str, stage: Stage) -> None:
    first = json.dumps(stages.children(make_run(example), stage, 1), sort_keys=True)
    again = json.dumps(stages.children(make_run(example), stage, 1), sort_keys=True)
    assert first == again


@pytest.mark.parametrize(
    ("run_name", "stage", "attempt", "role", "expected"),
    [
        ("tiny", Stage.DATA, 1, None, "tiny-data-1"),
        ("tiny", Stage.GENERATE, None, "server", "tiny-generate-server"),
        ("tiny", Stage.EVALUATE, None, "server-base", "tiny-evaluate-server-base"),
        ("tiny", Stage.TRAIN, 12, None, "tiny-train-12"),
        ("tiny", Stage.REWRITE, 3, "driver", "tiny-rewrite-driver-3"),
        # a Service name (DNS-1035) starts with a letter, a run name may not
        ("7b-run", Stage.DATA, 1, None, "r-7b-run-data-1"),
    ],
)
def test_child_names_read_run_stage_role_attempt(
    run_name: str, stage: Stage, attempt: int | None, role: str | None, expected: str
) -> None:
    assert child_name(run_name, stage, attempt=attempt, role=role) == expected


LONG_NAME = "a" + "b" * 61 + "c"  # 63 characters: the longest run name there is


@pytest.mark.parametrize("run_name", [LONG_NAME, "9" * 63, SKY_T1], ids=["63-letters", "63-digits", SKY_T1])
def test_every_name_is_a_dns_1035_label_that_fits(run_name: str) -> None:
    run = make_run(SKY_T1, name=run_name, evaluation={"compareWithBase": True})
    names = [child["metadata"]["name"] for child in all_children(run, attempt=20)]
    names.append(run_config_map(run)["metadata"]["name"])
    claim = storage_claim(run)
    assert claim is not None
    names.append(claim["metadata"]["name"])
    for name in names:
        assert DNS_1035_LABEL.match(name), name
        assert len(name) <= 63, name
    trainer = only(all_children(run, attempt=20), "PyTorchJob")
    # the training operator names pods and Services `<job>-worker-<i>`, which must fit in 63 too
    assert len(trainer["metadata"]["name"] + "-worker-254") <= 63


def test_long_run_names_that_share_a_start_get_different_children() -> None:
    one, other = LONG_NAME, LONG_NAME[:-1] + "d"
    for stage, role in [(Stage.DATA, None), (Stage.REWRITE, "rewrite-stand-in")]:
        assert child_name(one, stage, attempt=1, role=role) != child_name(other, stage, attempt=1, role=role)
    assert config_map_name(one) != config_map_name(other)
    assert child_name(one, Stage.TRAIN, attempt=1, max_length=PYTORCH_JOB_NAME_LENGTH) != child_name(
        other, Stage.TRAIN, attempt=1, max_length=PYTORCH_JOB_NAME_LENGTH
    )


def test_a_cut_run_name_keeps_the_stage_role_and_attempt_readable() -> None:
    name = child_name(LONG_NAME, Stage.EVALUATE, role="server-base", attempt=7)
    assert name.startswith("abbb")
    assert name.endswith("-evaluate-server-base-7")
    assert len(name) == 63


def test_servers_outlive_driver_attempts_and_drivers_do_not_share_names() -> None:
    run = make_run(SKY_T1)
    first, second = (stages.children(run, Stage.GENERATE, attempt) for attempt in (1, 2))
    first_servers, second_servers = (
        [c for c in children if c["kind"] != "Job"] for children in (first, second)
    )
    assert first_servers == second_servers
    assert [c["kind"] for c in first_servers] == ["Service", "Deployment"]
    assert only(first, "Job")["metadata"]["name"] == "sky-t1-32b-preview-generate-1"
    assert only(second, "Job")["metadata"]["name"] == "sky-t1-32b-preview-generate-2"
    assert only(second, "Job")["metadata"]["labels"][LABEL_ATTEMPT] == "2"
    assert all(LABEL_ATTEMPT not in c["metadata"]["labels"] for c in first_servers)


def test_server_and_driver_children_split_a_stage() -> None:
    run = make_run(SKY_T1)
    servers = stages.server_children(run, Stage.GENERATE)
    drivers = stages.driver_children(run, Stage.GENERATE, 1)
    assert [c["kind"] for c in servers] == ["Service", "Deployment"], "it resolves before its pods start"
    assert [c["kind"] for c in drivers] == ["Job"]
    assert stages.children(run, Stage.GENERATE, 1) == servers + drivers


# ------------------------------------------------------------------------------------------- pods
RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


@pytest.mark.parametrize(("example", "stage"), EXAMPLE_STAGES)
def test_every_pod_passes_the_restricted_pod_security_standard(example: str, stage: Stage) -> None:
    for child in stages.children(make_run(example), stage, 1):
        for template in pod_templates(child):
            pod = template["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["runAsUser"] == 1000
            assert pod["securityContext"]["runAsGroup"] == 1000
            assert pod["securityContext"]["fsGroup"] == 1000
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            assert pod["automountServiceAccountToken"] is False
            assert not {"hostNetwork", "hostPID", "hostIPC"} & pod.keys()
            for volume in pod["volumes"]:
                assert set(volume) - {"name"} <= RESTRICTED_VOLUME_TYPES, volume
            for container in [*pod["containers"], *pod.get("initContainers", [])]:
                security = container["securityContext"]
                assert security["allowPrivilegeEscalation"] is False
                assert security["capabilities"] == {"drop": ["ALL"]}
                assert not security.get("privileged")
                assert security.get("runAsUser", 1000) != 0
                # restricted admits the runtime's profile or one of the node's, never Unconfined
                profile = security.get("seccompProfile", {"type": "RuntimeDefault"})
                assert profile["type"] in {"RuntimeDefault", "Localhost"}
                assert "hostPort" not in json.dumps(container.get("ports", []))


@pytest.mark.parametrize(("example", "stage"), EXAMPLE_STAGES)
def test_every_stage_container_has_the_storage_the_config_and_shared_memory(
    example: str, stage: Stage
) -> None:
    run = make_run(example)
    mount = run.spec.storage.mount_path
    for child in stages.children(run, stage, 1):
        for template in pod_templates(child):
            volumes = {v["name"]: v for v in template["spec"]["volumes"]}
            (container,) = template["spec"]["containers"]
            mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
            assert mounts[mount]["persistentVolumeClaim"] == {"claimName": f"{run.name}-storage"}
            assert mounts["/etc/reasoning"]["configMap"] == {"name": f"{run.name}-config"}
            assert mounts["/dev/shm"]["emptyDir"] == {"medium": "Memory"}
            config_mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/etc/reasoning")
            assert config_mount["readOnly"] is True
            env = {v["name"]: v.get("value") for v in container["env"]}
            assert env["REASONING_STORAGE_ROOT"] == mount
            assert env["HF_HOME"] == f"{mount}/cache/huggingface"
            assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
            assert container["imagePullPolicy"] == "IfNotPresent"


@pytest.mark.parametrize("stage", [Stage.DATA, Stage.FILTER, Stage.FORMAT])
def test_a_plain_stage_is_one_job_running_its_program(stage: Stage) -> None:
    run = make_run(SKY_T1)
    (job,) = [c for c in stages.children(run, stage, 4) if c["kind"] == "Job"]
    assert job["apiVersion"] == "batch/v1"
    assert job["kind"] == "Job"
    assert job["metadata"]["name"] == f"{SKY_T1}-{stage.value}-4"
    assert job["metadata"]["labels"][LABEL_ROLE] == "driver"
    assert job["spec"]["backoffLimit"] == 0  # the operator counts attempts, one Job each
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert "nodeSelector" not in pod  # CPU programs stay off the tainted GPU nodes
    (container,) = pod["containers"]
    assert container["image"] == run.spec.images.pipeline
    assert container["command"] == [
        "reasoning-pipeline",
        stage.value,
        "--config",
        CONFIG_PATH,
        "--root",
        "/data",
    ]
    resources = run.spec.section(stage).resources
    expected = {"cpu": resources.cpu, "memory": resources.memory}
    assert container["resources"] == {"requests": expected, "limits": expected}


def test_stage_resources_reach_the_container() -> None:
    run = make_run(TINY, filter={"resources": {"cpu": "3", "memory": "5Gi"}})
    (container,) = containers(only(stages.children(run, Stage.FILTER, 1), "Job"))
    assert container["resources"]["limits"] == {"cpu": "3", "memory": "5Gi"}


# ----------------------------------------------------------------------------------- run-wide
def test_config_map_carries_the_whole_run_for_the_stage_programs() -> None:
    run = make_run(SKY_T1)
    config_map = run_config_map(run)
    assert config_map["metadata"]["name"] == f"{SKY_T1}-config"
    assert config_map["metadata"]["ownerReferences"][0]["uid"] == run.uid
    parsed = run_yaml(run)
    assert parsed.metadata.name == SKY_T1
    assert parsed.metadata.namespace == NAMESPACE
    assert parsed.spec == run.spec
    assert "null" not in config_map["data"]["run.yaml"]


def test_storage_claim_follows_the_spec_and_outlives_the_run() -> None:
    claim = storage_claim(make_run(SKY_T1, storage={"storageClassName": "nfs"}))
    assert claim is not None
    assert claim["metadata"]["name"] == f"{SKY_T1}-storage"
    assert "ownerReferences" not in claim["metadata"]
    assert claim["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": "2Ti"}},
        "storageClassName": "nfs",
    }
    tiny_claim = storage_claim(make_run(TINY))
    assert tiny_claim is not None
    assert tiny_claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "storageClassName" not in tiny_claim["spec"]


def test_an_existing_claim_is_used_and_none_is_made() -> None:
    run = make_run(TINY, storage={"claimName": "shared-data", "mountPath": "/mnt/work"})
    assert storage_claim(run) is None
    for child in all_children(run):
        for template in pod_templates(child):
            claims = [v for v in template["spec"]["volumes"] if "persistentVolumeClaim" in v]
            assert claims == [{"name": "storage", "persistentVolumeClaim": {"claimName": "shared-data"}}]
    (container,) = containers(only(stages.children(run, Stage.DATA, 1), "Job"))
    assert flag(container, "--root") == "/mnt/work"


@pytest.mark.parametrize("queue", ["team-a", None])
def test_kueue_admits_jobs_and_trainers_as_a_whole_and_server_pods_one_by_one(queue: str | None) -> None:
    """The queue label is on every child; on pod templates only where Kueue admits the pods themselves
    (a Deployment's): a Job's or PyTorchJob's pods are the parent's workload. Under Kueue a Job or
    PyTorchJob is made suspended, for Kueue to start once admitted."""
    run = make_run(SKY_T1, queueName=queue, evaluation={"compareWithBase": True})
    run_children = all_children(run)
    assert {c["kind"] for c in run_children} == {
        "Job",
        "Deployment",
        "Service",
        "PyTorchJob",
        "NetworkPolicy",
    }
    for child in run_children:
        name = child["metadata"]["name"]
        assert child["metadata"]["labels"].get(QUEUE_LABEL) == queue, name
        for template in pod_templates(child):
            on_pods = queue if child["kind"] == "Deployment" else None
            assert template["metadata"]["labels"].get(QUEUE_LABEL) == on_pods, name
        if child["kind"] == "Job":
            assert child["spec"].get("suspend", False) is (queue is not None), name
        if child["kind"] == "PyTorchJob":
            assert child["spec"]["runPolicy"].get("suspend", False) is (queue is not None), name


# ---------------------------------------------------------------------------------------- generate
def test_sky_t1_teacher_spans_one_h100_node_with_vllm() -> None:
    run = make_run(SKY_T1)
    server_children = stages.server_children(run, Stage.GENERATE)
    deployment = only(server_children, "Deployment", "server")
    assert deployment["metadata"]["name"] == f"{SKY_T1}-generate-server"
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    (container,) = pod["containers"]
    assert container["image"] == "vllm/vllm-openai:v0.11.0"
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    assert flag(container, "--tensor-parallel-size") == "8"
    assert flag(container, "--model") == "Qwen/QwQ-32B-Preview"
    assert flag(container, "--served-model-name") == "Qwen/QwQ-32B-Preview"
    assert flag(container, "--dtype") == "bfloat16"
    assert flag(container, "--gpu-memory-utilization") == "0.9"
    assert flag(container, "--port") == "8000"
    assert "--max-model-len" not in arguments(container)
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]


def test_vllm_options_that_are_set_reach_the_server() -> None:
    run = make_run(
        SKY_T1,
        generation={
            "teacher": {"maxModelLen": 20480, "revision": "abc123", "replicas": 3, "tensorParallelSize": 4}
        },
    )
    deployment = only(stages.server_children(run, Stage.GENERATE), "Deployment")
    (container,) = containers(deployment)
    assert flag(container, "--max-model-len") == "20480"
    assert flag(container, "--revision") == "abc123"
    assert deployment["spec"]["replicas"] == 3
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "4"}


def test_the_driver_reaches_the_teacher_through_its_service() -> None:
    run = make_run(SKY_T1)
    children = stages.children(run, Stage.GENERATE, 1)
    service, deployment = only(children, "Service"), only(children, "Deployment")
    assert service["metadata"]["name"] == deployment["metadata"]["name"]
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
    ]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    env = env_of(only(children, "Job"))
    expected = f"http://{SKY_T1}-generate-server.{NAMESPACE}.svc:8000/v1"
    assert env["REASONING_TEACHER_ENDPOINT"] == {"name": "REASONING_TEACHER_ENDPOINT", "value": expected}


def test_the_sampling_parameters_reach_the_driver_through_the_config_map() -> None:
    run = make_run(SKY_T1)
    job = only(stages.children(run, Stage.GENERATE, 1), "Job")
    (container,) = containers(job)
    assert flag(container, "--config") == "/etc/reasoning/run.yaml"
    sampling = run_yaml(run).spec.generation.sampling
    assert (sampling.max_tokens, sampling.temperature) == (16384, 0.7)


def test_a_given_teacher_endpoint_means_no_server() -> None:
    run = make_run(SKY_T1, generation={"teacher": {"endpoint": "http://teacher.example:8000/v1"}})
    (job,) = stages.children(run, Stage.GENERATE, 1)
    assert job["kind"] == "Job"
    assert "REASONING_TEACHER_ENDPOINT" not in env_of(job)  # the program reads the spec's endpoint
    assert stages.server_children(run, Stage.GENERATE) == []


def test_tiny_teacher_is_served_by_vllm_on_the_nodes_cpu() -> None:
    """The same builder as on GPUs; only the image, the device (no GPU resource, vLLM's CPU settings),
    the dtype and the resources differ."""
    run = make_run(TINY)
    deployment = only(stages.server_children(run, Stage.GENERATE), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    # on the local cluster's real node, which is tainted for it; no GPU toleration
    assert pod["nodeSelector"] == {"reasoning.dev/pool": "local"}
    assert [t["key"] for t in pod["tolerations"]] == ["reasoning.dev/pool"]
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/reasoning-operator/vllm:0.1.0"
    assert container["command"] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    assert flag(container, "--model") == "tiny-world/teacher"
    assert flag(container, "--dtype") == "float32"
    assert flag(container, "--max-model-len") == "2048"
    assert "--enforce-eager" in arguments(container)
    assert "--gpu-memory-utilization" not in arguments(container)
    # the relative model folder resolves against the storage root, as it does for the stage programs
    assert container["workingDir"] == "/data"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    # the server's own resources, not the driver's, and no GPU
    assert container["resources"] == {
        "requests": {"cpu": "1200m", "memory": "3Gi"},
        "limits": {"cpu": "1200m", "memory": "3Gi"},
    }
    env = {e["name"]: e for e in container["env"]}
    assert env["VLLM_CPU_KVCACHE_SPACE"]["value"] == "1"
    assert env["VLLM_CPU_OMP_THREADS_BIND"]["value"] == "nobind"
    # as many threads as the container's CPU limit, rounded up by the Downward API
    assert env["OMP_NUM_THREADS"]["valueFrom"] == {
        "resourceFieldRef": {"containerName": "server", "resource": "limits.cpu", "divisor": "1"}
    }
    (driver,) = containers(only(stages.children(run, Stage.GENERATE, 1), "Job"))
    assert driver["resources"]["limits"] == {"cpu": "400m", "memory": "1Gi"}


def test_transformers_serve_stays_the_documented_cpu_fallback() -> None:
    run = make_run(TINY, generation={"teacher": {"engine": "transformers"}})
    (container,) = containers(only(stages.server_children(run, Stage.GENERATE), "Deployment"))
    assert container["image"] == run.spec.images.pipeline
    assert " ".join(arguments(container)) == (
        "transformers serve --device cpu --host 0.0.0.0 --port 8000 --dtype float32"
    )
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/models"
    assert not any("gpu" in name for name in container["resources"]["limits"])


def test_vllm_on_gpus_gets_no_cpu_settings() -> None:
    (container,) = containers(only(stages.server_children(make_run(SKY_T1), Stage.GENERATE), "Deployment"))
    names = {e["name"] for e in container["env"]}
    assert not names & {"VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND", "OMP_NUM_THREADS"}
    assert "--enforce-eager" not in arguments(container)


@pytest.mark.parametrize(
    ("model", "folder"),
    [
        ("tiny-world/teacher", "tiny-world/teacher"),  # a folder relative to the storage root
        ("{root}/models/teacher", "models/teacher"),  # an absolute folder
        ("Qwen/QwQ-32B-Preview", None),  # a hub id
    ],
)
def test_the_teacher_answers_to_the_name_the_driver_sends(
    model: str, folder: str | None, tmp_path: Path
) -> None:
    from reasoning_pipeline.generate import served_model_name
    from reasoning_pipeline.storage import RunPaths

    if folder:
        (tmp_path / folder).mkdir(parents=True)
    model = model.format(root=tmp_path)
    run = make_run(SKY_T1, storage={"mountPath": str(tmp_path)}, generation={"teacher": {"model": model}})
    sent = served_model_name(run.spec.generation, RunPaths(tmp_path, run.name))
    (container,) = containers(only(stages.server_children(run, Stage.GENERATE), "Deployment"))
    # vLLM starts in the storage root (a relative folder resolves as for the programs) and answers to
    # every name after --served-model-name
    assert container["workingDir"] == str(tmp_path)
    words = arguments(container)
    names = words[words.index("--served-model-name") + 1 :]
    names = names[: next(i for i, word in enumerate(names) if word.startswith("--"))]
    assert sent in names
    assert names == served_model_names(model, str(tmp_path))


# ----------------------------------------------------------------------------------------- rewrite
def test_the_api_key_is_only_ever_a_secret_reference() -> None:
    run = make_run(SKY_T1)
    children = stages.children(run, Stage.REWRITE, 1)
    (job,) = children
    env = env_of(job)
    assert env["OPENAI_API_KEY"] == {
        "name": "OPENAI_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "openai-api-key", "key": "api-key"}},
    }
    assert env["REASONING_REWRITE_BASE_URL"]["value"] == "https://api.openai.com/v1"
    assert [v["name"] for v in env.values() if "valueFrom" in v] == ["OPENAI_API_KEY"]


def test_the_rewrite_stand_in_is_deployed_and_the_driver_pointed_at_it() -> None:
    run = make_run(TINY)
    children = stages.children(run, Stage.REWRITE, 1)
    deployment = only(children, "Deployment", "rewrite-stand-in")
    service = only(children, "Service", "rewrite-stand-in")
    (container,) = containers(deployment)
    assert container["image"] == run.spec.images.pipeline
    assert " ".join(arguments(container)) == "reasoning-pipeline rewrite-stand-in --host 0.0.0.0 --port 8000"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    env = env_of(only(children, "Job"))
    service_name = service["metadata"]["name"]
    assert env["REASONING_REWRITE_BASE_URL"]["value"] == f"http://{service_name}.{NAMESPACE}.svc:8000/v1"
    assert env["OPENAI_API_KEY"] == {"name": "OPENAI_API_KEY", "value": rewrite_children.STAND_IN_KEY}
    assert "secretKeyRef" not in json.dumps(children)


# ------------------------------------------------------------------------------------------ train
def test_sky_t1_trains_on_one_master_with_eight_gpus_and_no_worker() -> None:
    run = make_run(SKY_T1)
    (job,) = stages.children(run, Stage.TRAIN, 1)
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    assert job["metadata"]["name"] == f"{SKY_T1}-train-1"
    assert job["metadata"]["labels"][LABEL_ROLE] == "trainer"
    # no backoffLimit: training operator v1.8.1 would delete the failed pod, and the reason with it
    assert job["spec"]["runPolicy"] == {"cleanPodPolicy": "Running", "activeDeadlineSeconds": 96 * 3600}
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert set(replicas) == {"Master"}
    master = replicas["Master"]
    assert (master["replicas"], master["restartPolicy"]) == (1, "Never")
    pod = master["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    (container,) = pod["containers"]
    assert container["name"] == "pytorch"  # the training operator looks for this name
    assert container["image"] == run.spec.images.trainer
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    assert {"name": "pytorchjob-port", "containerPort": 23456, "protocol": "TCP"} in container["ports"]
    command = container["command"]
    assert command[:6] == [
        "torchrun",
        "--nnodes=1",
        "--node_rank=$(RANK)",
        "--master_addr=$(MASTER_ADDR)",
        "--master_port=$(MASTER_PORT)",
        "--nproc_per_node=8",
    ]
    assert command[6:] == ["-m", "reasoning_pipeline", "train", "--config", CONFIG_PATH, "--root", "/data"]
    # the global batch the program checks: micro batch × accumulation × (nodes × processes per node)
    training = run_yaml(run).spec.training
    assert training.micro_batch_size * training.gradient_accumulation_steps * 1 * 8 == 96
    assert training.global_batch_size == 96


def test_zero_3_with_cpu_offload_reaches_the_train_program() -> None:
    deepspeed = run_yaml(make_run(SKY_T1)).spec.training.deepspeed
    assert (deepspeed.zero_stage, deepspeed.offload_optimizer, deepspeed.offload_parameters) == (
        3,
        "cpu",
        "cpu",
    )
    (job,) = stages.children(make_run(SKY_T1), Stage.TRAIN, 1)
    volumes = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["volumes"]
    assert {"name": "config", "configMap": {"name": f"{SKY_T1}-config"}} in volumes


def test_every_attempt_carries_its_stages_deadline() -> None:
    run = make_run(SKY_T1)
    for stage in enabled_stages(run):
        for child in stages.driver_children(run, stage, 1):
            if child["kind"] == "Job":
                assert child["spec"]["activeDeadlineSeconds"] == run.spec.section(stage).deadline_seconds
            elif child["kind"] == "PyTorchJob":
                deadline = child["spec"]["runPolicy"]["activeDeadlineSeconds"]
                assert deadline == run.spec.training.deadline_seconds == 96 * 3600


def test_several_nodes_train_as_one_master_and_workers() -> None:
    run = make_run(SKY_T1, training={"nodes": 4, "gradientAccumulationSteps": 3})
    (job,) = stages.children(run, Stage.TRAIN, 1)
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, 3)
    for replica in replicas.values():
        (container,) = replica["template"]["spec"]["containers"]
        assert "--nnodes=4" in container["command"]
        assert container["resources"]["limits"] == {"nvidia.com/gpu": "8"}


def test_the_pytorch_job_declares_its_processes_per_node_and_passes_nccl_settings() -> None:
    run = make_run(SKY_T1, training={"ncclEnv": {"NCCL_SOCKET_IFNAME": "eth0", "NCCL_IB_HCA": "mlx5"}})
    (job,) = stages.children(run, Stage.TRAIN, 1)
    assert job["spec"]["nprocPerNode"] == "8"
    (container,) = containers(job)
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (env["NCCL_IB_HCA"], env["NCCL_SOCKET_IFNAME"]) == ("mlx5", "eth0")
    (tiny,) = stages.children(make_run(TINY), Stage.TRAIN, 1)
    assert tiny["spec"]["nprocPerNode"] == "2"
    assert not any(e["name"].startswith("NCCL_") for c in containers(tiny) for e in c["env"])


def test_tiny_trains_two_processes_on_cpu() -> None:
    (job,) = stages.children(make_run(TINY), Stage.TRAIN, 1)
    pod = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "--nproc_per_node=2" in container["command"]
    assert container["resources"]["limits"] == container["resources"]["requests"]
    assert pod["nodeSelector"] == {"reasoning.dev/pool": "local"}  # the local cluster's real node


# --------------------------------------------------------------------------------------- evaluate
def test_sky_t1_scores_the_trained_model_on_its_own_server() -> None:
    run = make_run(SKY_T1)
    children = stages.children(run, Stage.EVALUATE, 1)
    (container,) = containers(only(children, "Deployment", "server"))
    trained = f"/data/runs/{SKY_T1}/{run.uid}/train/model"  # this run's, not a namesake's
    assert flag(container, "--model") == trained
    assert flag(container, "--served-model-name") == trained
    assert flag(container, "--dtype") == "float32"  # Sky-T1's scores moved by points with dtype
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    assert [c["kind"] for c in children].count("Deployment") == 1
    env = env_of(only(children, "Job"))
    assert (
        env["REASONING_EVAL_ENDPOINT"]["value"] == f"http://{SKY_T1}-evaluate-server.{NAMESPACE}.svc:8000/v1"
    )
    assert "REASONING_EVAL_ENDPOINT_BASE" not in env


def test_comparing_with_the_base_model_on_vllm_adds_a_second_server() -> None:
    run = make_run(SKY_T1, evaluation={"compareWithBase": True})
    children = stages.children(run, Stage.EVALUATE, 1)
    (base,) = containers(only(children, "Deployment", "server-base"))
    assert flag(base, "--model") == "Qwen/Qwen2.5-32B-Instruct"
    service = only(children, "Service", "server-base")
    env = env_of(only(children, "Job"))
    expected = f"http://{service['metadata']['name']}.{NAMESPACE}.svc:8000/v1"
    assert env["REASONING_EVAL_ENDPOINT_BASE"]["value"] == expected


def test_tiny_compares_with_the_base_model_on_a_vllm_server_of_its_own() -> None:
    run = make_run(TINY)
    assert run.spec.evaluation.compare_with_base
    children = stages.children(run, Stage.EVALUATE, 1)
    assert [c["kind"] for c in children].count("Deployment") == 2
    (student,) = containers(only(children, "Deployment", "server"))
    (base,) = containers(only(children, "Deployment", "server-base"))
    assert flag(student, "--model") == f"/data/runs/tiny/{run.uid}/train/model"
    assert flag(base, "--model") == "tiny-world/student"
    for server in (student, base):
        assert server["resources"]["limits"] == {"cpu": "600m", "memory": "3Gi"}


def test_one_transformers_server_answers_for_the_student_and_its_base() -> None:
    run = make_run(TINY, evaluation={"server": {"engine": "transformers"}})
    children = stages.children(run, Stage.EVALUATE, 1)
    assert [c["kind"] for c in children] == ["Service", "Deployment", "NetworkPolicy", "Job"]
    (container,) = containers(only(children, "Deployment"))
    assert container["command"] == ["transformers", "serve"]
    # unpinned: the one server answers for the trained model and its base, each named by its folder
    assert "--model" not in arguments(container)


def test_a_given_evaluation_endpoint_means_no_server() -> None:
    run = make_run(
        SKY_T1, evaluation={"compareWithBase": True, "server": {"endpoint": "http://judge:8000/v1"}}
    )
    assert [c["kind"] for c in stages.children(run, Stage.EVALUATE, 1)] == ["NetworkPolicy", "Job"]


def test_an_evaluation_server_pool_that_does_not_exist_is_named() -> None:
    with pytest.raises(InvalidRun, match=r"evaluation\.server\.nodePool: no node pool named 'a100'"):
        make_run(TINY, evaluation={"server": {"nodePool": "a100"}})


# ------------------------------------------------------------------------------------- the contract
def test_a_disabled_stage_has_no_children() -> None:
    run = make_run(
        SKY_T1, generation={"enabled": False, "inputPath": "raw.jsonl"}, rewrite={"inputPath": "x"}
    )
    with pytest.raises(ValueError, match="disabled"):
        stages.children(run, Stage.GENERATE, 1)


@pytest.mark.parametrize(
    ("spec_changes", "field"),
    [
        ({"generation": {"teacher": {"tensorParallelSize": 0}}}, "generation.teacher.tensorParallelSize"),
        ({"training": {"globalBatchSize": 95}}, "globalBatchSize"),
        ({"rewrite": {"apiKeySecret": {"name": "Not_A_Name", "key": "k"}}}, "rewrite.apiKeySecret.name"),
        ({"trainnig": {}}, "trainnig"),
    ],
)
def test_an_invalid_spec_is_refused_naming_the_field(spec_changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRun, match=re.escape(field)):
        make_run(SKY_T1, **spec_changes)


def test_the_variables_the_operator_sets_are_the_ones_the_programs_read() -> None:
    from reasoning_pipeline import evaluate, generate, rewrite

    assert generate_children.TEACHER_ENDPOINT_VARIABLE == generate.ENDPOINT_VARIABLE
    assert evaluate_children.EVAL_ENDPOINT_VARIABLE == evaluate.ENDPOINT_VARIABLE
    assert evaluate_children.EVAL_BASE_ENDPOINT_VARIABLE == evaluate.BASE_ENDPOINT_VARIABLE
    assert rewrite_children.API_KEY_VARIABLE == rewrite.API_KEY_VARIABLE
    assert rewrite_children.BASE_URL_VARIABLE == rewrite.BASE_URL_VARIABLE


def test_the_filter_pods_where_untrusted_code_runs_get_no_network() -> None:
    run = make_run(SKY_T1)
    (policy,) = [c for c in stages.children(run, Stage.FILTER, 1) if c["kind"] == "NetworkPolicy"]
    assert policy["metadata"]["name"] == f"{SKY_T1}-filter-no-network"
    # no ingress or egress rules at all: nothing in, nothing out
    assert policy["spec"] == {
        "podSelector": {
            "matchLabels": {LABEL_RUN: SKY_T1, "reasoning.dev/run-uid": run.uid, LABEL_STAGE: "filter"}
        },
        "policyTypes": ["Ingress", "Egress"],
    }
    (job,) = [c for c in stages.children(run, Stage.FILTER, 1) if c["kind"] == "Job"]
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert all(
        pod_labels[key] == value for key, value in policy["spec"]["podSelector"]["matchLabels"].items()
    )
    for stage in (Stage.DATA, Stage.GENERATE, Stage.FORMAT):
        assert "NetworkPolicy" not in {c["kind"] for c in stages.children(run, stage, 1)}


def sandbox_pod(run: RunRef, stage: Stage) -> Manifest:
    pod: Manifest = only(stages.driver_children(run, stage, 1), "Job")["spec"]["template"]["spec"]
    return pod


@pytest.mark.parametrize(
    ("example", "stage"),
    [(SKY_T1, Stage.FILTER), (TINY, Stage.FILTER), (SKY_T1, Stage.EVALUATE), (TINY, Stage.EVALUATE)],
    ids=["sky-t1-filter", "tiny-filter", "sky-t1-evaluate-livecodebench", "tiny-evaluate-livecodebench"],
)
def test_model_written_code_runs_in_a_container_without_the_runs_storage(example: str, stage: Stage) -> None:
    run = make_run(example)
    pod = sandbox_pod(run, stage)
    volumes = {v["name"]: v for v in pod["volumes"]}
    (sandbox,) = pod["initContainers"]
    (stage_container,) = pod["containers"]
    assert sandbox["name"] == SANDBOX_CONTAINER
    assert sandbox["restartPolicy"] == "Always"  # a native sidecar: up before the checker, down after it
    # nothing of the run's: no claim, no config, no token, no storage root, no run uid
    mounted = {m["name"]: volumes[m["name"]] for m in sandbox["volumeMounts"]}
    assert all(set(volume) == {"name", "emptyDir"} for volume in mounted.values()), mounted
    assert {m["mountPath"]: m.get("readOnly", False) for m in sandbox["volumeMounts"]} == {
        SANDBOX_CHANNEL_DIR: True,
        "/tmp": False,
    }
    assert [v["name"] for v in sandbox["env"]] == ["HOME"]
    security = sandbox["securityContext"]
    assert security["runAsUser"] not in {0, pod["securityContext"]["runAsUser"]}
    assert security["readOnlyRootFilesystem"] is True
    assert security["seccompProfile"] == {
        "type": "Localhost",
        "localhostProfile": "reasoning-operator/sandbox.json",
    }
    resources = run.spec.sandbox.resources
    assert sandbox["resources"]["limits"] == {"cpu": resources.cpu, "memory": resources.memory}
    # the memory-backed folders are bounded, and counted against the sandbox container's own limit
    assert all(volume["emptyDir"].get("sizeLimit") for volume in mounted.values())
    # the stage's container finds the channel, writable on its side
    stage_env = {v["name"]: v.get("value") for v in stage_container["env"]}
    assert stage_env[SANDBOX_CHANNEL_VARIABLE] == f"{SANDBOX_CHANNEL_DIR}/checker.sock"
    channel = next(m for m in stage_container["volumeMounts"] if m["name"] == "sandbox-channel")
    assert channel["mountPath"] == SANDBOX_CHANNEL_DIR
    assert not channel.get("readOnly")
    assert "runtimeClassName" not in pod


def test_pods_that_run_no_model_written_code_have_no_sandbox() -> None:
    # the tiny run evaluated on held-out math only: nothing to run
    math_only = [{"name": "held-out", "path": "tiny-world/data/math500-tiny.jsonl", "limit": 64}]
    tiny = make_run(TINY, evaluation={"benchmarks": math_only})
    for stage in enabled_stages(tiny):
        if stage is Stage.FILTER:
            continue
        for child in stages.children(tiny, stage, 1):
            for template in pod_templates(child):
                assert "initContainers" not in template["spec"], (stage, child["metadata"]["name"])
                for container in template["spec"]["containers"]:
                    assert SANDBOX_CHANNEL_VARIABLE not in {v["name"] for v in container["env"]}


def _cpu_millis(quantity: str) -> int:
    return int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)


# the local node's 2 cores, less what the demo's operator (100m) and its API stand-in (50m) hold
TINY_STAGE_CPU_MILLIS = 2000 - 150


@pytest.mark.parametrize("stage", STAGE_ORDER, ids=lambda s: s.value)
def test_each_stage_of_the_tiny_run_fits_the_local_nodes_cores(stage: Stage) -> None:
    """The tiny run's pods are Guaranteed (requests are limits): every pod of a stage at once, servers and
    sandbox containers included, must fit beside the operator, or the stage waits as Unschedulable."""
    run = make_run(TINY)
    asked = 0
    for child in stages.children(run, stage, 1):
        if child["kind"] == "PyTorchJob":
            copies = [r["replicas"] for r in child["spec"]["pytorchReplicaSpecs"].values()]
        else:
            copies = [child["spec"].get("replicas", 1)] if pod_templates(child) else []
        for template, replicas in zip(pod_templates(child), copies, strict=True):
            spec = template["spec"]
            for container in [*spec["containers"], *spec.get("initContainers", [])]:
                requests = container["resources"]["requests"]
                assert container["resources"]["limits"]["cpu"] == requests["cpu"]
                asked += replicas * _cpu_millis(requests["cpu"])
    assert 0 < asked <= TINY_STAGE_CPU_MILLIS, f"{stage.value} asks for {asked}m"


def test_a_runtime_class_and_the_runtimes_own_profile_reach_the_sandboxed_pod() -> None:
    run = make_run(
        SKY_T1,
        sandbox={"seccompProfile": {"type": "RuntimeDefault"}, "runtimeClassName": "gvisor"},
    )
    pod = sandbox_pod(run, Stage.FILTER)
    assert pod["runtimeClassName"] == "gvisor"
    assert pod["initContainers"][0]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "runtimeClassName" not in sandbox_pod(run, Stage.DATA)


def test_an_apparmor_profile_reaches_the_sandbox_container_only() -> None:
    run = make_run(SKY_T1, sandbox={"appArmorProfile": {"type": "Localhost", "localhostProfile": "sandbox"}})
    for stage in (Stage.FILTER, Stage.EVALUATE):
        pod = sandbox_pod(run, stage)
        (sandbox,) = pod["initContainers"]
        assert sandbox["securityContext"]["appArmorProfile"] == {
            "type": "Localhost",
            "localhostProfile": "sandbox",
        }
        assert "appArmorProfile" not in pod["containers"][0]["securityContext"]
        assert "appArmorProfile" not in pod["securityContext"]
    (default,) = sandbox_pod(make_run(SKY_T1), Stage.FILTER)["initContainers"]
    assert "appArmorProfile" not in default["securityContext"]


def test_the_sandbox_host_is_the_module_the_checker_speaks_to() -> None:
    (sandbox,) = sandbox_pod(make_run(TINY), Stage.FILTER)["initContainers"]
    assert sandbox["command"][:3] == ["python", "-m", sandbox_channel.__name__]
    assert SANDBOX_CHANNEL_VARIABLE == sandbox_channel.CHANNEL_VARIABLE


def test_the_cpu_programs_run_on_the_driver_pool_when_one_is_named() -> None:
    tiny = make_run(TINY)  # driverNodePool: cpu, the local node's pool
    for stage in (Stage.DATA, Stage.REWRITE, Stage.FILTER, Stage.FORMAT):
        pod = only(stages.driver_children(tiny, stage, 1), "Job")["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {"reasoning.dev/pool": "local"}, stage
    sky = make_run(SKY_T1)  # none named: the scheduler picks any node that takes the pod
    data = only(stages.driver_children(sky, Stage.DATA, 1), "Job")["spec"]["template"]["spec"]
    assert "nodeSelector" not in data


# ------------------------------------------------------------------------------------------- the hub
def test_the_hub_token_reaches_only_the_stages_that_read_the_hub() -> None:
    """Sky-T1's example names a token Secret (GPQA-Diamond is gated). Filter runs model-written code and
    rewrite talks only to its API: neither gets it."""
    run = make_run(SKY_T1)
    given = {}
    for stage in enabled_stages(run):
        for child in stages.children(run, stage, 1):
            for container in containers(child):
                env = {e["name"]: e for e in container.get("env", [])}
                given[(stage, child["kind"], container["name"])] = env.get("HF_TOKEN")
    with_token = {key for key, token in given.items() if token is not None}
    assert {stage for stage, _, _ in with_token} == {
        Stage.DATA,
        Stage.GENERATE,
        Stage.FORMAT,
        Stage.TRAIN,
        Stage.EVALUATE,
    }
    assert (Stage.GENERATE, "Deployment", "server") in with_token  # the servers load gated models too
    assert all(
        token == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}
        for token in given.values()
        if token is not None
    )
    assert not any(token for (stage, _, _), token in given.items() if stage in (Stage.FILTER, Stage.REWRITE))


def test_an_offline_run_tells_every_container_so() -> None:
    run = make_run(TINY, hub={"offline": True})
    for stage in enabled_stages(run):
        for child in stages.children(run, stage, 1):
            for container in containers(child):
                assert {"name": "HF_HUB_OFFLINE", "value": "1"} in container["env"], (
                    stage,
                    container["name"],
                )
    assert not any(
        e["name"] == "HF_HUB_OFFLINE"
        for child in stages.children(make_run(TINY), Stage.DATA, 1)
        for container in containers(child)
        for e in container["env"]
    )


def test_the_evaluate_driver_reaches_its_servers_and_public_addresses_only() -> None:
    """LiveCodeBench's model-written programs run in the evaluate driver's sandbox: no ingress, and no
    egress to the cluster's private ranges or cloud metadata — only to its own servers, DNS and the hub."""
    run = make_run(TINY)
    children = stages.children(run, Stage.EVALUATE, 1)
    (policy,) = [c for c in children if c["kind"] == "NetworkPolicy"]
    selected = policy["spec"]["podSelector"]["matchLabels"]

    def selects(pod_labels: dict[str, str], selector: dict[str, str]) -> bool:
        return all(pod_labels.get(key) == value for key, value in selector.items())

    (job,) = [c for c in children if c["kind"] == "Job"]
    assert selects(job["spec"]["template"]["metadata"]["labels"], selected)
    deployments = [c for c in children if c["kind"] == "Deployment"]
    assert len(deployments) == 2  # the student's server and the base model's
    assert not any(selects(d["spec"]["template"]["metadata"]["labels"], selected) for d in deployments)
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in policy["spec"]
    public, dns, *to_servers = policy["spec"]["egress"]
    assert public["to"][0]["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert {"169.254.0.0/16", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"} <= set(
        public["to"][0]["ipBlock"]["except"]
    )
    assert {p["port"] for p in dns["ports"]} == {53}
    assert len(to_servers) == 2
    for rule in to_servers:  # each rule admits exactly one of the two servers
        pod_selector = rule["to"][0]["podSelector"]["matchLabels"]
        matched = [
            d for d in deployments if selects(d["spec"]["template"]["metadata"]["labels"], pod_selector)
        ]
        assert len(matched) == 1
        assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]


def test_an_evaluation_endpoint_outside_the_run_keeps_private_ranges_open_but_not_metadata() -> None:
    run = make_run(TINY, evaluation={"server": {"endpoint": "http://vllm.models.svc:8000/v1"}})
    (policy,) = [c for c in stages.children(run, Stage.EVALUATE, 1) if c["kind"] == "NetworkPolicy"]
    public, _dns = policy["spec"]["egress"]
    assert public["to"][0]["ipBlock"]["except"] == ["169.254.0.0/16"]
