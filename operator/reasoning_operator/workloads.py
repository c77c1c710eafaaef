"""Shared builders of the Kubernetes objects a run's stages are made of, as the plain JSON the API server
takes: the run's ConfigMap and storage claim, the pod every stage container runs in, the stage Job, a
model server (Deployment + Service) and the training PyTorchJob.

Everything here is a pure function of the run: the same run gives the same objects, byte for byte, so
applying them again after an operator restart changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import yaml
from reasoning_pipeline.lineage import RUN_GENERATION_VARIABLE, RUN_UID_VARIABLE
from reasoning_pipeline.spec import API_GROUP, API_VERSION, KIND, NodePool, Resources, ServedModel, Stage

from reasoning_operator.naming import (
    GENERATION_ANNOTATION,
    LABEL_ATTEMPT,
    LABEL_MANAGED_BY,
    LABEL_ROLE,
    LABEL_RUN,
    LABEL_RUN_UID,
    LABEL_STAGE,
    MANAGED_BY,
    QUEUE_LABEL,
    Role,
    child_name,
    config_map_name,
    storage_claim_name,
)
from reasoning_operator.run import InvalidRun, RunRef

Manifest = dict[str, Any]
EnvVar = dict[str, Any]

CONFIG_DIR = "/etc/reasoning"
CONFIG_FILE = "run.yaml"
CONFIG_PATH = f"{CONFIG_DIR}/{CONFIG_FILE}"
PIPELINE_PROGRAM = "reasoning-pipeline"
# The container of a stage Job and of a server; the operator reads a stage's summary from its
# termination message.
STAGE_CONTAINER = "stage"
SERVER_CONTAINER = "server"
SERVER_PORT = 8000
SERVER_PORT_NAME = "http"
# Stage images run as this unprivileged user; fsGroup gives it the shared storage.
RUN_AS_USER = 1000
# Images run under an arbitrary uid may have no writable home; caches that tools keep under $HOME go here.
SCRATCH_DIR = "/tmp"

# The sandbox container of the filter and evaluate pods, where model-written programs run: a uid of its
# own (nothing the stage's container owns is its to touch), no volume of the run's, and one folder shared
# with the stage's container, read-only on its side, holding the checker's socket.
SANDBOX_CONTAINER = "sandbox"
SANDBOX_USER = RUN_AS_USER + 1
SANDBOX_CHANNEL_DIR = "/run/reasoning-sandbox"
SANDBOX_CHANNEL = f"{SANDBOX_CHANNEL_DIR}/checker.sock"
SANDBOX_CHANNEL_VARIABLE = "REASONING_SANDBOX_CHANNEL"
SANDBOX_MODULE = "reasoning_pipeline.filter.sandbox_channel"

# The Kubeflow training operator's fixed names: it finds the container to inject the rendezvous variables
# into by this name, and the master's port by this port name.
PYTORCH_CONTAINER = "pytorch"
PYTORCH_PORT_NAME = "pytorchjob-port"
PYTORCH_PORT = 23456
# Its pods and their headless Services are named `<job>-worker-<i>`, a DNS-1035 label: with up to 256
# nodes (workers 0…254) that leaves 63 - len("-worker-254") characters for the job's own name.
PYTORCH_JOB_NAME_LENGTH = 63 - len("-worker-254")

VLLM_SERVER = ("python3", "-m", "vllm.entrypoints.openai.api_server")


# -------------------------------------------------------------------------------------- identity
def owner_reference(run: RunRef) -> Manifest:
    """Makes the run the children's controller: deleting the run deletes them (garbage collection)."""
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "name": run.name,
        "uid": run.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def run_labels(run: RunRef) -> dict[str, str]:
    return {LABEL_RUN: run.name, LABEL_RUN_UID: run.uid, LABEL_MANAGED_BY: MANAGED_BY}


def child_labels(run: RunRef, stage: Stage, *, role: str, attempt: int | None = None) -> dict[str, str]:
    labels = {**run_labels(run), LABEL_STAGE: stage.value, LABEL_ROLE: str(role)}
    if attempt is not None:
        labels[LABEL_ATTEMPT] = str(attempt)
    if run.spec.queue_name:
        # Kueue admits Jobs and PyTorchJobs by the label on the object, Deployments by their pods'
        labels[QUEUE_LABEL] = run.spec.queue_name
    return labels


def _metadata(run: RunRef, name: str, labels: dict[str, str], *, owned: bool = True) -> Manifest:
    metadata: Manifest = {"name": name, "namespace": run.namespace, "labels": labels}
    if owned:
        metadata["ownerReferences"] = [owner_reference(run)]
    return metadata


def node_pool(run: RunRef, name: str, field: str) -> NodePool:
    """The pool a stage names; a clear error naming the field when there is none."""
    try:
        return run.spec.pool(name)
    except KeyError:
        pools = ", ".join(sorted(p.name for p in run.spec.node_pools))
        raise InvalidRun(f"{field}: no node pool named {name!r} (have: {pools})") from None


def driver_pool(run: RunRef) -> NodePool | None:
    """Where the CPU programs run (`driverNodePool`); None lets the scheduler choose."""
    name = run.spec.driver_node_pool
    return None if name is None else node_pool(run, name, "driverNodePool")


# -------------------------------------------------------------------------------- run-wide objects
def run_manifest(run: RunRef) -> Manifest:
    """The run as the stage programs read it (`--config`): the spec with the API server's defaults."""
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {
            "name": run.name,
            "namespace": run.namespace,
            "uid": run.uid,
            "generation": run.generation,
        },
        "spec": run.spec.model_dump(by_alias=True, mode="json", exclude_none=True),
    }


def run_config_map(run: RunRef) -> Manifest:
    """The run file the stage programs read; rendered again whenever the spec changes (its generation
    is in an annotation), so that a program never runs under a spec the operator no longer acts on."""
    metadata = _metadata(run, config_map_name(run.name), run_labels(run))
    metadata["annotations"] = {GENERATION_ANNOTATION: str(run.generation)}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {CONFIG_FILE: yaml.safe_dump(run_manifest(run), sort_keys=False, allow_unicode=True)},
    }


def storage_claim(run: RunRef) -> Manifest | None:
    """The claim the operator makes for the run, None when the run names an existing one. It has no
    ownerReference: deleting a run must not delete the data its stages wrote."""
    storage = run.spec.storage
    if storage.claim_name:
        return None
    spec: Manifest = {
        "accessModes": [storage.access_mode],
        "resources": {"requests": {"storage": storage.size}},
    }
    if storage.storage_class_name:
        spec["storageClassName"] = storage.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _metadata(run, storage_claim_name(run.name, run.spec), run_labels(run), owned=False),
        "spec": spec,
    }


# ----------------------------------------------------------------------------------------- pods
@dataclass(frozen=True)
class Container:
    """What one stage container runs; `pod_spec` adds what every stage container shares."""

    name: str
    image: str
    command: Sequence[str]
    args: Sequence[str] = ()
    env: Sequence[EnvVar] = ()
    gpus: int = 0
    ports: Sequence[Manifest] = ()
    readiness_path: str | None = None
    working_dir: str | None = None
    resources: Resources | None = None
    """The container's own CPU and memory; the stage's when None."""


POD_SECURITY_CONTEXT: Manifest = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS_USER,
    "runAsGroup": RUN_AS_USER,
    "fsGroup": RUN_AS_USER,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT: Manifest = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def _resources(
    run: RunRef, stage: Stage, gpus: int, pool: NodePool | None, own: Resources | None = None
) -> Manifest:
    asked = own or run.spec.section(stage).resources
    requests = {"cpu": asked.cpu, "memory": asked.memory}
    if not gpus:
        return {"requests": requests, "limits": dict(requests)}
    if pool is None:
        raise InvalidRun(f"{stage.value}: {gpus} GPUs asked for without a node pool")
    # A GPU pod gets its node's GPUs and no CPU or memory limit: its host memory need grows with the
    # model (vLLM stages weights through it, ZeRO-3 offload keeps optimizer state and parameters there)
    # and the spec's stage resources, sized for the CPU programs, would have it OOM-killed.
    return {"requests": requests, "limits": {pool.gpu_resource_name: str(gpus)}}


def _volumes(run: RunRef) -> list[Manifest]:
    return [
        {"name": "storage", "persistentVolumeClaim": {"claimName": storage_claim_name(run.name, run.spec)}},
        {"name": "config", "configMap": {"name": config_map_name(run.name)}},
        # NCCL and torch's data loaders share memory through /dev/shm, which a container gets 64 MiB of
        {"name": "shm", "emptyDir": {"medium": "Memory"}},
        {"name": "scratch", "emptyDir": {}},
    ]


def _volume_mounts(run: RunRef) -> list[Manifest]:
    return [
        {"name": "storage", "mountPath": run.spec.storage.mount_path},
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "shm", "mountPath": "/dev/shm"},
        {"name": "scratch", "mountPath": SCRATCH_DIR},
    ]


def _common_env(run: RunRef) -> list[EnvVar]:
    mount = run.spec.storage.mount_path
    return [
        {"name": "REASONING_STORAGE_ROOT", "value": mount},
        # the run this pod was made for: a program whose run file is another run's refuses to start
        {"name": RUN_UID_VARIABLE, "value": run.uid},
        # …and the spec's generation it was made under: an older run file is a stale copy of the ConfigMap
        {"name": RUN_GENERATION_VARIABLE, "value": str(run.generation)},
        # one model cache on the shared storage: a model is downloaded once per run, not once per pod
        {"name": "HF_HOME", "value": str(PurePosixPath(mount) / "cache" / "huggingface")},
        {"name": "HOME", "value": SCRATCH_DIR},
    ]


# The stages that may read models, tokenizers or datasets from the hub; filter runs model-written code and
# rewrite talks only to its API, so neither gets the token.
HUB_STAGES = frozenset({Stage.DATA, Stage.GENERATE, Stage.FORMAT, Stage.TRAIN, Stage.EVALUATE})
HUB_TOKEN_VARIABLE = "HF_TOKEN"


def hub_env(run: RunRef, stage: Stage) -> list[EnvVar]:
    hub = run.spec.hub
    env: list[EnvVar] = []
    if hub.offline:
        env.append({"name": "HF_HUB_OFFLINE", "value": "1"})
    if hub.token_secret is not None and stage in HUB_STAGES:
        secret = {"name": hub.token_secret.name, "key": hub.token_secret.key}
        env.append({"name": HUB_TOKEN_VARIABLE, "valueFrom": {"secretKeyRef": secret}})
    return env


def _container(run: RunRef, stage: Stage, container: Container, pool: NodePool | None) -> Manifest:
    built: Manifest = {
        "name": container.name,
        "image": container.image,
        "imagePullPolicy": run.spec.images.pull_policy,
        "command": list(container.command),
    }
    if container.args:
        built["args"] = list(container.args)
    if container.working_dir:
        built["workingDir"] = container.working_dir
    built["env"] = [*_common_env(run), *hub_env(run, stage), *container.env]
    if container.ports:
        built["ports"] = list(container.ports)
    if container.readiness_path:
        built["readinessProbe"] = {
            "httpGet": {"path": container.readiness_path, "port": SERVER_PORT_NAME},
            "periodSeconds": 10,
        }
    built["resources"] = _resources(run, stage, container.gpus, pool, container.resources)
    built["volumeMounts"] = _volume_mounts(run)
    built["securityContext"] = CONTAINER_SECURITY_CONTEXT
    # the stage program writes its summary there; a crash before it did still leaves the log's tail
    built["terminationMessagePolicy"] = "FallbackToLogsOnError"
    return built


def sandbox_container(run: RunRef) -> Manifest:
    """The container model-written code runs in: a native sidecar (started before the stage's container,
    stopped after it) whose host the stage's checker starts its workers through. Its environment holds
    nothing of the run's (no storage root, no run uid, no token), its root file system is read-only, its
    /tmp is memory counted against its own limit, and its seccomp profile is the spec's — the project's
    admits the user namespaces the sandbox isolates each program in; its AppArmor profile, where the spec
    names one, is the spec's too."""
    sandbox = run.spec.sandbox
    profile: Manifest = {"type": sandbox.seccomp_profile.type}
    if sandbox.seccomp_profile.type == "Localhost":
        profile["localhostProfile"] = sandbox.seccomp_profile.localhost_profile
    requests = {"cpu": sandbox.resources.cpu, "memory": sandbox.resources.memory}
    return {
        "name": SANDBOX_CONTAINER,
        "image": run.spec.images.pipeline,
        "imagePullPolicy": run.spec.images.pull_policy,
        "restartPolicy": "Always",
        "command": ["python", "-m", SANDBOX_MODULE, SANDBOX_CHANNEL],
        "env": [{"name": "HOME", "value": SCRATCH_DIR}],
        "resources": {"requests": requests, "limits": dict(requests)},
        "volumeMounts": [
            {"name": "sandbox-channel", "mountPath": SANDBOX_CHANNEL_DIR, "readOnly": True},
            {"name": "sandbox-tmp", "mountPath": SCRATCH_DIR},
        ],
        "securityContext": {
            **CONTAINER_SECURITY_CONTEXT,
            "runAsUser": SANDBOX_USER,
            "runAsGroup": SANDBOX_USER,
            "readOnlyRootFilesystem": True,
            "seccompProfile": profile,
            **(
                {"appArmorProfile": sandbox.app_armor_profile.model_dump(by_alias=True, exclude_none=True)}
                if sandbox.app_armor_profile is not None
                else {}
            ),
        },
    }


def _with_sandbox(spec: Manifest) -> Manifest:
    """The pod with its sandbox container beside the stage's, and the stage's container told where the
    channel is."""
    stage_container = spec["containers"][0]
    stage_container["env"] = [
        *stage_container["env"],
        {"name": SANDBOX_CHANNEL_VARIABLE, "value": SANDBOX_CHANNEL},
    ]
    stage_container["volumeMounts"] = [
        *stage_container["volumeMounts"],
        {"name": "sandbox-channel", "mountPath": SANDBOX_CHANNEL_DIR},
    ]
    spec["volumes"] = [
        *spec["volumes"],
        {"name": "sandbox-channel", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        {"name": "sandbox-tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}},
    ]
    return spec


def pod_spec(
    run: RunRef,
    stage: Stage,
    container: Container,
    *,
    pool: NodePool | None,
    restart_policy: str = "Never",
    sandboxed: bool = False,
) -> Manifest:
    """A pod that passes the `restricted` Pod Security Standard and has no API access: stage programs
    report through their termination message, never through the API. A sandboxed pod runs model-written
    code in a sandbox container of its own (`sandbox_container`)."""
    spec: Manifest = {
        "restartPolicy": restart_policy,
        "automountServiceAccountToken": False,
        # Service links put `<SERVICE>_PORT=tcp://…` into the environment; vLLM reads VLLM_PORT, and a
        # Service named `vllm` in the namespace would break it
        "enableServiceLinks": False,
        "securityContext": POD_SECURITY_CONTEXT,
        "containers": [_container(run, stage, container, pool)],
        "volumes": _volumes(run),
    }
    if pool is not None and pool.node_selector:
        spec["nodeSelector"] = dict(pool.node_selector)
    if pool is not None and pool.tolerations:
        spec["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in pool.tolerations]
    if sandboxed:
        spec["initContainers"] = [sandbox_container(run)]
        if run.spec.sandbox.runtime_class_name:
            spec["runtimeClassName"] = run.spec.sandbox.runtime_class_name
        _with_sandbox(spec)
    return spec


def _pod_template(
    labels: dict[str, str], run: RunRef, stage: Stage, container: Container, **pod: Any
) -> Manifest:
    return {"metadata": {"labels": labels}, "spec": pod_spec(run, stage, container, **pod)}


def _queued_by_parent(labels: dict[str, str]) -> dict[str, str]:
    """A Job's or PyTorchJob's pods without the queue label: Kueue admits the parent as one workload,
    and labelled pods are its to admit one by one."""
    return {key: value for key, value in labels.items() if key != QUEUE_LABEL}


# ----------------------------------------------------------------------------------- stage Jobs
def stage_command(run: RunRef, stage: Stage) -> list[str]:
    return [PIPELINE_PROGRAM, stage.value, "--config", CONFIG_PATH, "--root", run.spec.storage.mount_path]


def stage_job(
    run: RunRef, stage: Stage, attempt: int, *, env: Sequence[EnvVar] = (), sandboxed: bool = False
) -> Manifest:
    """One attempt of a stage program. backoffLimit 0: the operator counts attempts itself (a new Job,
    `<run>-<stage>-<attempt>`), so each attempt's pod and termination message stay readable."""
    labels = child_labels(run, stage, role=Role.DRIVER, attempt=attempt)
    container = Container(
        name=STAGE_CONTAINER, image=run.spec.images.pipeline, command=stage_command(run, stage), env=env
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(run, child_name(run.name, stage, attempt=attempt), labels),
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": run.spec.section(stage).deadline_seconds,
            # under Kueue a workload starts suspended and Kueue un-suspends it once admitted
            **({"suspend": True} if run.spec.queue_name else {}),
            "template": _pod_template(
                _queued_by_parent(labels),
                run,
                stage,
                container,
                pool=driver_pool(run),
                restart_policy="Never",
                sandboxed=sandboxed,
            ),
        },
    }


# --------------------------------------------------------------------------------------- servers
@dataclass(frozen=True)
class Server:
    """A long-running HTTP server a stage's driver talks to, and the variable that tells the driver where."""

    role: Role
    container: Container
    pool: NodePool | None
    replicas: int
    endpoint_variable: str


def http_container(
    image: str, command: Sequence[str], args: Sequence[str] = (), *, readiness_path: str, **more: Any
) -> Container:
    return Container(
        name=SERVER_CONTAINER,
        image=image,
        command=command,
        args=args,
        ports=({"name": SERVER_PORT_NAME, "containerPort": SERVER_PORT, "protocol": "TCP"},),
        readiness_path=readiness_path,
        **more,
    )


def served_model_names(model: str, mount_path: str) -> list[str]:
    """The names a model is served under: what the drivers send as `model`. They send a model folder on
    the storage by its absolute path and a hub id as it is; the operator cannot look at the storage to
    tell a relative folder from a hub id (both read `org/name`), so a relative name is served as both."""
    if PurePosixPath(model).is_absolute():
        return [model]
    return [model, str(PurePosixPath(mount_path) / model)]


def vllm_cpu_env(served: ServedModel) -> list[EnvVar]:
    """vLLM on a CPU pool: its KV cache in GiB, no thread pinning (a pod under a CPU quota shares its
    cores), and as many threads as the container's CPU limit (the Downward API rounds it up), not the
    node's core count."""
    threads = {
        "resourceFieldRef": {"containerName": SERVER_CONTAINER, "resource": "limits.cpu", "divisor": "1"}
    }
    return [
        {"name": "VLLM_CPU_KVCACHE_SPACE", "value": str(served.cpu_kv_cache_gib)},
        {"name": "VLLM_CPU_OMP_THREADS_BIND", "value": "nobind"},
        {"name": "OMP_NUM_THREADS", "valueFrom": threads},
    ]


def model_server_container(
    run: RunRef, served: ServedModel, pool: NodePool, *, model: str, revision: str | None
) -> Container:
    """vLLM (on the pool's GPUs, or on its CPUs when it has none), or `transformers serve` on CPU. Both
    start in the storage root, so that a relative model path resolves there as it does for the stage
    programs, and a hub id is downloaded."""
    mount = run.spec.storage.mount_path
    if served.engine == "transformers":
        # No model argument: given one, `transformers serve` refuses requests naming it any other way,
        # and the drivers name a folder on the storage by its absolute path (the operator cannot tell a
        # relative folder from a hub id). Unpinned, it loads whatever model a request names, once.
        arguments = ["--device", "cpu", "--host", "0.0.0.0", "--port", str(SERVER_PORT)]
        arguments += ["--dtype", served.dtype]
        return http_container(
            run.spec.images.pipeline,
            ["transformers", "serve"],
            arguments,
            readiness_path="/v1/models",
            working_dir=mount,
            resources=served.resources,
        )
    on_gpus = pool.gpus_per_node > 0
    arguments = ["--model", model, "--served-model-name", *served_model_names(model, mount)]
    arguments += ["--tensor-parallel-size", str(served.tensor_parallel_size), "--dtype", served.dtype]
    if on_gpus:
        arguments += ["--gpu-memory-utilization", str(served.gpu_memory_utilization)]
    if served.max_model_len is not None:
        arguments += ["--max-model-len", str(served.max_model_len)]
    if served.enforce_eager:
        arguments.append("--enforce-eager")
    if revision:
        arguments += ["--revision", revision]
    arguments += ["--port", str(SERVER_PORT)]
    return http_container(
        run.spec.images.vllm,
        VLLM_SERVER,
        arguments,
        readiness_path="/health",
        working_dir=mount,
        gpus=served.tensor_parallel_size if on_gpus else 0,
        env=() if on_gpus else vllm_cpu_env(served),
        resources=served.resources,
    )


def model_server(
    run: RunRef,
    role: Role,
    served: ServedModel,
    *,
    pool_field: str,
    model: str,
    revision: str | None,
    endpoint_variable: str,
) -> Server:
    pool = node_pool(run, served.node_pool, pool_field)
    return Server(
        role=role,
        container=model_server_container(run, served, pool, model=model, revision=revision),
        pool=pool,
        replicas=served.replicas,
        endpoint_variable=endpoint_variable,
    )


def _server_selector(run: RunRef, stage: Stage, role: str) -> dict[str, str]:
    return {LABEL_RUN: run.name, LABEL_RUN_UID: run.uid, LABEL_STAGE: stage.value, LABEL_ROLE: str(role)}


def server_deployment(run: RunRef, stage: Stage, server: Server) -> Manifest:
    """No attempt in the name: the server outlives the driver's retries."""
    labels = child_labels(run, stage, role=server.role)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(run, child_name(run.name, stage, role=server.role), labels),
        "spec": {
            "replicas": server.replicas,
            "selector": {"matchLabels": _server_selector(run, stage, server.role)},
            # a rolling update's new pod would wait for GPUs the old one holds until it is gone
            "strategy": {"type": "Recreate"},
            "template": _pod_template(
                labels, run, stage, server.container, pool=server.pool, restart_policy="Always"
            ),
        },
    }


def server_service(run: RunRef, stage: Stage, server: Server) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(
            run, child_name(run.name, stage, role=server.role), child_labels(run, stage, role=server.role)
        ),
        "spec": {
            "type": "ClusterIP",
            "selector": _server_selector(run, stage, server.role),
            "ports": [
                {
                    "name": SERVER_PORT_NAME,
                    "port": SERVER_PORT,
                    "targetPort": SERVER_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


def server_url(run: RunRef, stage: Stage, role: str) -> str:
    """The OpenAI-compatible base URL of a server's Service, as the driver in the same namespace uses it."""
    return f"http://{child_name(run.name, stage, role=role)}.{run.namespace}.svc:{SERVER_PORT}/v1"


# -------------------------------------------------------------------------------------- training
def torchrun_command(run: RunRef) -> list[str]:
    """The train program under torchrun, one launcher per node.

    The training operator (v1.8.1) puts MASTER_ADDR, MASTER_PORT, RANK (the pod's index: master 0,
    worker i is i+1) and WORLD_SIZE into the `pytorch` container's env of the pod it creates, so the
    kubelet expands `$(VAR)` here without a shell. WORLD_SIZE is not used for --nnodes: it is pods ×
    the job's nprocPerNode (declared, see pytorch_job); the node count comes straight from the spec.
    """
    training = run.spec.training
    return [
        "torchrun",
        f"--nnodes={training.nodes}",
        "--node_rank=$(RANK)",
        "--master_addr=$(MASTER_ADDR)",
        "--master_port=$(MASTER_PORT)",
        f"--nproc_per_node={training.processes_on_each_node}",
        "-m",
        "reasoning_pipeline",
        *stage_command(run, Stage.TRAIN)[1:],
    ]


def pytorch_job(run: RunRef, attempt: int) -> Manifest:
    """The train stage: a Kubeflow PyTorchJob, one Master and `nodes - 1` Workers, each a whole node's
    GPUs. The DeepSpeed config is not here: the train program derives it from run.yaml."""
    training = run.spec.training
    pool = node_pool(run, training.node_pool, "training.nodePool")
    labels = child_labels(run, Stage.TRAIN, role=Role.TRAINER, attempt=attempt)
    container = Container(
        name=PYTORCH_CONTAINER,
        image=run.spec.images.trainer,
        command=torchrun_command(run),
        gpus=training.gpus_per_node,
        ports=({"name": PYTORCH_PORT_NAME, "containerPort": PYTORCH_PORT, "protocol": "TCP"},),
        env=[{"name": name, "value": value} for name, value in sorted(training.nccl_env.items())],
    )

    def replicas(count: int) -> Manifest:
        template = _pod_template(
            _queued_by_parent(labels), run, Stage.TRAIN, container, pool=pool, restart_policy="Never"
        )
        return {"replicas": count, "restartPolicy": "Never", "template": template}

    replica_specs = {"Master": replicas(1)}
    if training.nodes > 1:
        replica_specs["Worker"] = replicas(training.nodes - 1)
    name = child_name(run.name, Stage.TRAIN, attempt=attempt, max_length=PYTORCH_JOB_NAME_LENGTH)
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": _metadata(run, name, labels),
        "spec": {
            # Attempts are the operator's (a new PyTorchJob each; restartPolicy Never, so the training
            # operator restarts nothing). No backoffLimit: with one set, training operator v1.8.1 fails the
            # job on the first failed pod by deleting every pod before it records Failed, so the pod whose
            # termination message says why is gone (cleanPodPolicy only applies once Failed is recorded);
            # the run then read "…has reached the specified backoff limit". cleanPodPolicy Running: once
            # the job ends, pods still running (a master waiting on a dead worker) go and free their GPUs,
            # finished pods stay for their termination messages and go with the job.
            "runPolicy": {
                "cleanPodPolicy": "Running",
                "activeDeadlineSeconds": run.spec.training.deadline_seconds,
                **({"suspend": True} if run.spec.queue_name else {}),
            },
            # declared, so that the controller's WORLD_SIZE counts processes and PET_NPROC_PER_NODE agrees
            # with the --nproc_per_node torchrun is given
            "nprocPerNode": str(training.processes_on_each_node),
            "pytorchReplicaSpecs": replica_specs,
        },
    }


# ------------------------------------------------------------------------------------- isolation
def no_network_policy(run: RunRef, stage: Stage) -> Manifest:
    """A NetworkPolicy that admits no traffic to or from the stage's pods. The filter runs untrusted model
    output; in a `restricted` pod (no root, no capabilities) its sandbox cannot make a network namespace of
    its own, so the cluster keeps the network away instead (where the CNI enforces NetworkPolicies)."""
    return _network_policy(run, stage, "no-network", _stage_pods(run, stage), egress=None)


def _stage_pods(run: RunRef, stage: Stage) -> dict[str, str]:
    return {LABEL_RUN: run.name, LABEL_RUN_UID: run.uid, LABEL_STAGE: stage.value}


def _network_policy(
    run: RunRef, stage: Stage, name: str, pods: dict[str, str], *, egress: list[Manifest] | None
) -> Manifest:
    """No ingress to `pods`; egress by `egress` (None: none at all)."""
    spec: Manifest = {"podSelector": {"matchLabels": pods}, "policyTypes": ["Ingress", "Egress"]}
    if egress is not None:
        spec["egress"] = egress
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(
            run, child_name(run.name, stage, role=name), child_labels(run, stage, role=Role.ISOLATION)
        ),
        "spec": spec,
    }


# Where a cluster's own services, its nodes and the clouds' metadata endpoints live: none of them is what
# model-written code has any business reaching.
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
LINK_LOCAL = "169.254.0.0/16"  # 169.254.169.254: the instance metadata of AWS, GCP and Azure


def evaluate_driver_policy(run: RunRef, servers: Sequence[Server]) -> Manifest:
    """The evaluate driver runs LiveCodeBench's model-written programs in its sandbox, and needs the
    network for two things only: its model servers and (for a benchmark named by hub id) the hub. So: no
    ingress; egress to this run's evaluate servers on their port, to DNS, and to public addresses — not to
    the cluster's private ranges nor to link-local metadata. With an endpoint outside the run
    (`evaluation.server.endpoint`, perhaps a Service of another namespace), private ranges stay open and
    only link-local is closed."""
    stage = Stage.EVALUATE
    closed = [LINK_LOCAL, *(PRIVATE_RANGES if servers else ())]
    egress: list[Manifest] = [
        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": closed}}]},
        {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
    ]
    egress += [
        {
            "to": [{"podSelector": {"matchLabels": _server_selector(run, stage, server.role)}}],
            "ports": [{"protocol": "TCP", "port": SERVER_PORT}],
        }
        for server in servers
    ]
    driver = {**_stage_pods(run, stage), LABEL_ROLE: str(Role.DRIVER)}
    return _network_policy(run, stage, "driver-network", driver, egress=egress)
