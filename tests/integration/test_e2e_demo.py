"""End to end on real containers: the chart's operator in-cluster, the project's images on the local
cluster's real node, examples/tiny.yaml as `make demo` applies it. Its generate and train containers are
killed (SIGKILL, through the node's containerd) part-way, and the run must still finish with the same
counts it reports, resumed from what the killed attempts left on the shared volume.

Needs the real node (`make cluster-up` starts it; REASONING_LOCAL_NODE=0 leaves it out) and the images
(built and loaded here by hack/images.sh: minutes cold, seconds warm).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from reasoning_operator import demo

from tests.support.cluster import REPO_ROOT, ClusterTarget
from tests.support.operator import helm
from tests.support.runs import GROUP, LABEL_RUN, LABEL_STAGE, PLURAL, VERSION, run_ended, wait_for_phase
from tests.support.waiting import wait_for

HACK = REPO_ROOT / "hack"
RUN = "tiny"
VLLM_VERSION = "0.32.0"  # images/vllm/requirements.txt
RUN_TIMEOUT = 45 * 60  # cold containers on 2 cores: the whole recipe takes minutes, not this long
pytestmark = pytest.mark.timeout(RUN_TIMEOUT + 15 * 60)


def hack(script: str, *arguments: str, timeout: float = 1800) -> str:
    done = subprocess.run(
        ["bash", str(HACK / script), *arguments], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"hack/{script} {' '.join(arguments)} failed:\n{done.stderr[-3000:]}"
    return done.stdout


def kill_container(pod: client.V1Pod, embedded: bool) -> None:
    """SIGKILL the pod's container as the kernel's OOM killer or a node failure would: no goodbye. On the
    embedded cluster through its containerd; on kind inside the node's container (named as the node)."""
    container_id = pod.status.container_statuses[0].container_id.removeprefix("containerd://")
    if embedded:
        hack("engine.sh", "kill", container_id)
        return
    kill = ["ctr", "--namespace", "k8s.io", "tasks", "kill", "--signal", "SIGKILL", container_id]
    subprocess.run(["docker", "exec", pod.spec.node_name, *kill], check=True, timeout=60)


@pytest.fixture(scope="module")
def real_node(cluster: ClusterTarget, core: client.CoreV1Api) -> str:
    nodes = core.list_node(label_selector="reasoning.dev/real-node=true").items
    if not nodes:
        pytest.skip(
            "the cluster has no real node (REASONING_LOCAL_NODE=0, or an outside cluster without one)"
        )
    hack("images.sh", "all", timeout=3600)
    name: str = nodes[0].metadata.name
    return name


@pytest.fixture(scope="module")
def demo_namespace(
    real_node: str,
    cluster: ClusterTarget,
    api: client.ApiClient,
    core: client.CoreV1Api,
) -> Iterator[tuple[str, Path]]:
    """The chart (operator in-cluster, watching only this namespace) and what `make demo` prepares."""
    from reasoning_pipeline.tiny_world import build_tiny_world

    namespace = f"e2e-{uuid.uuid4().hex[:6]}"
    release = f"e2e-{namespace}"
    # where kind mounts it too (hack/kind.yaml): the volume is a folder on the node
    storage = (
        Path(os.environ.get("REASONING_CACHE_DIR", Path.home() / ".cache/reasoning-operator"))
        / "demo"
        / namespace
    )
    with open(os.devnull, "w") as quiet:
        run = demo.prepare(api, namespace, storage, build_tiny_world().root, quiet)
    helm(
        cluster,
        "install",
        release,
        str(REPO_ROOT / "charts" / "reasoning-operator"),
        "--namespace",
        namespace,
        "--values",
        str(HACK / "demo-values.yaml"),
        f"--set=watchNamespaces[0]={namespace}",
        "--wait",
        "--timeout",
        "5m",
    )
    # vLLM answers the demo's 160 prompts within seconds at its concurrency; one request at a time keeps
    # the generate driver running long enough for the kill below to land part-way through the stage
    run["spec"]["generation"]["concurrency"] = 1
    try:
        demo.apply_run(api, run)
        yield namespace, storage
    finally:
        helm(cluster, "uninstall", release, "--namespace", namespace, "--wait")
        core.delete_namespace(namespace)
        core.delete_persistent_volume(demo.storage_volume(namespace, run, storage)["metadata"]["name"])
        shutil.rmtree(storage, ignore_errors=True)


def running_pod(core: client.CoreV1Api, namespace: str, stage: str, **labels: str) -> client.V1Pod:
    selector = ",".join(
        [f"{LABEL_RUN}={RUN}", f"{LABEL_STAGE}={stage}", *(f"{k}={v}" for k, v in labels.items())]
    )

    def probe() -> client.V1Pod | None:
        for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
            statuses = pod.status.container_statuses or []
            if pod.status.phase == "Running" and statuses and statuses[0].state.running:
                return pod
        return None

    found: client.V1Pod = wait_for(
        probe,
        timeout=RUN_TIMEOUT,
        what=f"a running {stage} container",
        interval=1,
        unless=run_ended(client.CustomObjectsApi(core.api_client), namespace, RUN),
    )
    return found


def pod_to_its_end(
    core: client.CoreV1Api, namespace: str, pod: dict[str, Any], container: str
) -> tuple[str, str]:
    """A one-off pod created and waited out: its final phase and its container's log."""
    name = pod["metadata"]["name"]
    core.create_namespaced_pod(namespace, pod)

    def ended() -> str | None:
        phase: str | None = core.read_namespaced_pod(name, namespace).status.phase
        return phase if phase in ("Succeeded", "Failed") else None

    phase: str = wait_for(ended, timeout=600, what=f"pod {name} to end", interval=2)
    return phase, core.read_namespaced_pod_log(name, namespace, container=container)


def restricted_pod(name: str, image: str, command: list[str]) -> dict[str, Any]:
    """A one-off pod on the real node, as restricted as a stage's, with one container `check`."""
    from reasoning_operator.workloads import CONTAINER_SECURITY_CONTEXT, POD_SECURITY_CONTEXT

    limits = {"cpu": "500m", "memory": "1Gi"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": POD_SECURITY_CONTEXT,
            "nodeSelector": {"reasoning.dev/pool": "local"},
            "tolerations": [
                {"key": "reasoning.dev/pool", "operator": "Equal", "value": "local", "effect": "NoSchedule"}
            ],
            "containers": [
                {
                    "name": "check",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": command,
                    "securityContext": CONTAINER_SECURITY_CONTEXT,
                    "resources": {"requests": limits, "limits": limits},
                }
            ],
        },
    }


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture(scope="module")
def finished(
    demo_namespace: tuple[str, Path],
    cluster: ClusterTarget,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
) -> dict[str, Any]:
    """The run, with its generate driver killed after 20 traces and its trainer after a checkpoint."""
    namespace, storage = demo_namespace
    uid = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, RUN)["metadata"]["uid"]
    stage_dir = storage / "runs" / RUN / uid  # a run's outputs are under its uid: its own, not a namesake's
    ended = run_ended(custom, namespace, RUN)
    generator = running_pod(core, namespace, "generate", **{"reasoning.dev/role": "driver"})
    wait_for(
        lambda: lines(stage_dir / "generate" / "raw.journal.jsonl") >= 20,
        timeout=RUN_TIMEOUT,
        what="20 traces",
        interval=1,
        unless=ended,
    )
    kill_container(generator, cluster.embedded)
    trainer = running_pod(core, namespace, "train")
    wait_for(
        lambda: (stage_dir / "train" / "checkpoints" / "sealed").is_file(),
        timeout=RUN_TIMEOUT,
        what="a checkpoint",
        interval=1,
        unless=ended,
    )
    kill_container(trainer, cluster.embedded)
    return wait_for_phase(custom, namespace, RUN, "Succeeded", timeout=RUN_TIMEOUT, interval=5)


def stage(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in status["stages"] if s["name"] == name)


def test_the_tiny_recipe_succeeds_on_real_containers(finished: dict[str, Any]) -> None:
    assert finished["phase"] == "Succeeded", json.dumps(finished, indent=1)[-3000:]
    assert all(s["phase"] == "Succeeded" for s in finished["stages"])
    scores = finished["results"]
    assert set(scores) == {"base", "student"}
    assert {"held-out", "livecodebench"} == set(scores["student"]) == set(scores["base"])
    # the tiny models answer the code problems in arithmetic: every one was judged (no code, no pass)
    for label in ("base", "student"):
        assert scores[label]["livecodebench"]["problems"] == 8


def test_the_teacher_and_the_evaluated_models_were_served_by_vllm(finished: dict[str, Any]) -> None:
    """What the servers said about themselves (/v1/models, /version), as the status records it."""
    assert stage(finished, "generate")["metrics"]["server"] == {
        "engine": "vllm",
        "version": VLLM_VERSION,
        "maxModelLen": 2048,
    }
    for label in ("base", "student"):
        assert finished["results"][label]["held-out"]["provenance"]["engine"] == f"vllm {VLLM_VERSION}"


# What the trainer needs of DeepSpeed at run time, with no compiler: ZeRO-Offload's optimizer takes a step
HOST_OPS_CHECK = """
set -e
for compiler in cc gcc c++ g++ clang++; do
  if command -v "$compiler"; then echo "a compiler in the trainer image: $compiler"; exit 3; fi
done
python -m reasoning_pipeline.deepspeed_ops --require-compiled
python -c '
import torch
from deepspeed.ops.adam import DeepSpeedCPUAdam
weights = torch.nn.Parameter(torch.ones(4096))
optimizer = DeepSpeedCPUAdam([weights], lr=0.1)
weights.grad = torch.ones(4096)
optimizer.step()
assert bool((weights < 1).all()), weights[:4]
print("DeepSpeedCPUAdam stepped", float(weights[0]))
'
"""


def test_the_trainer_image_runs_deepspeeds_host_ops_without_a_compiler(
    finished: dict[str, Any], demo_namespace: tuple[str, Path], core: client.CoreV1Api
) -> None:
    """cpu_adam and shm_comm are compiled into the image: a restricted pod on the node loads both and
    steps DeepSpeedCPUAdam, in an image without a C++ compiler."""
    from reasoning_pipeline.spec import ImagesSpec

    namespace, _ = demo_namespace
    pod = restricted_pod("trainer-host-ops", ImagesSpec().trainer, ["bash", "-c", HOST_OPS_CHECK])
    phase, log = pod_to_its_end(core, namespace, pod, "check")
    assert phase == "Succeeded", log
    assert '"compiled": {"cpu_adam": true, "deepspeed_shm_comm": true}' in log, log
    assert "DeepSpeedCPUAdam stepped" in log, log


# a stage's bar as the stage programs draw it: 25 records at one per second, 100 in all
PROGRESS_CHECK = """
import time
from reasoning_pipeline.progress import bar
with bar(100, "generate") as progress:
    for _ in range(25):
        time.sleep(1)
        progress.update(1)
"""


def test_a_stage_pods_progress_is_read_back_from_its_log_with_a_rate_and_what_is_left(
    finished: dict[str, Any], demo_namespace: tuple[str, Path], api: client.ApiClient, core: client.CoreV1Api
) -> None:
    """The pipeline image's bar in a container (no terminal: a line every 10 s), its log through the API
    server and the kubelet, read by the operator's own reader and turned into the stage's progress."""
    from reasoning_operator.cost import live_progress
    from reasoning_operator.kube import Kube
    from reasoning_pipeline.spec import ImagesSpec, ReasoningRunSpec, Stage

    namespace, _ = demo_namespace
    pod = restricted_pod("stage-progress", ImagesSpec().pipeline, ["python", "-c", PROGRESS_CHECK])
    phase, _ = pod_to_its_end(core, namespace, pod, "check")
    assert phase == "Succeeded"
    log = Kube(api).pod_log(namespace, "stage-progress", "check", lines=40, limit_bytes=16384)
    assert "\r" not in log
    assert log.splitlines()[0] == "generate: 0/100 done, ?rec/s, 00:00 elapsed, ? left", log
    progress = live_progress(ReasoningRunSpec(), Stage.GENERATE, log, "now")
    assert progress is not None, log
    assert (progress["done"], progress["total"], progress["percent"]) == (25, 100, 25.0), log
    assert 0.5 < progress["ratePerSecond"] < 1.5, log
    assert 50 < progress["remainingSeconds"] < 150, log
    # the default teacher: 8 H100s at $2.96 per GPU-hour
    hours = progress["remainingSeconds"] / 3600
    assert float(progress["remainingUSD"]) == pytest.approx(hours * 8 * 2.96, abs=0.01)
    core.delete_namespaced_pod("stage-progress", namespace)


def test_every_output_is_on_the_volume_with_the_count_its_status_reports(
    finished: dict[str, Any], demo_namespace: tuple[str, Path]
) -> None:
    _, storage = demo_namespace
    checked = 0
    for entry in finished["stages"]:
        for output in (entry.get("outputs") or {}).values():
            path = storage / output["path"]
            assert path.exists(), f"{entry['name']}: {output['path']} missing"
            if output.get("records") is not None and path.suffix == ".jsonl":
                assert lines(path) == output["records"], f"{entry['name']}: {output['path']}"
                checked += 1
    assert checked >= 5
    assert (
        stage(finished, "filter")["metrics"]["kept"]
        == stage(finished, "filter")["outputs"]["kept"]["records"]
    )


def test_killed_containers_were_retried_and_resumed_from_their_partial_output(
    finished: dict[str, Any],
) -> None:
    generate, train = stage(finished, "generate"), stage(finished, "train")
    assert generate["attempts"] == 2
    assert generate["metrics"]["resumed"] >= 20  # the killed attempt's traces, not generated again
    assert train["attempts"] == 2
    assert train["metrics"]["resumedFrom"]  # a checkpoint tag, not a fresh start


def test_the_rewrite_stage_got_its_key_only_through_the_secret(
    finished: dict[str, Any],
    demo_namespace: tuple[str, Path],
    core: client.CoreV1Api,
    batch: client.BatchV1Api,
) -> None:
    namespace, _ = demo_namespace
    jobs = batch.list_namespaced_job(
        namespace, label_selector=f"{LABEL_RUN}={RUN},{LABEL_STAGE}=rewrite"
    ).items
    assert jobs
    for job in jobs:
        env = {e.name: e for e in job.spec.template.spec.containers[0].env}
        key = env["OPENAI_API_KEY"]
        assert key.value is None
        assert key.value_from.secret_key_ref.name == demo.SECRET
    secret = core.read_namespaced_secret(demo.SECRET, namespace)
    assert secret.data[demo.SECRET_KEY] not in json.dumps(finished)
    # the stand-in's own count, through the API server's Service proxy
    response = core.connect_get_namespaced_service_proxy_with_path(
        f"{demo.STAND_IN}:{demo.STAND_IN_PORT}", namespace, "stats", _preload_content=False
    )
    counts = json.loads(response.data)
    rewritten = stage(finished, "rewrite")["outputs"]
    assert counts["key_required"] == 1
    assert counts["refused"] == 0
    assert counts["authorized"] >= next(iter(rewritten.values()))["records"]


# ---------------------------------------------------------------------- model-written code in the pod
# Run in the stage container of a pod built as the filter's is (the operator's own builder): the checker
# there starts its workers through the pod's sandbox container, as the filter stage does.
HOSTILE_CHECK = """
import json, sys
from reasoning_pipeline.filter.code import CodeChecker, CodeTests
from reasoning_pipeline.spec import CodeCheck
programs = json.loads(sys.argv[1])
items = [(code, CodeTests(inputs=[""], outputs=[expected]), None) for code, expected in programs.values()]
with CodeChecker(CodeCheck(), workers=2) as checker:
    verdicts = list(checker.check_many(items))
    level = str(checker.isolation)
print(json.dumps({"level": level, "verdicts": {n: [v.passed, v.reason] for n, v in zip(programs, verdicts)}}))
"""
ESCAPED = "escaped"


def hostile_programs(mount: str, api_host: str, node_ip: str) -> dict[str, tuple[str, str]]:
    """name → (program, the output that would mean it got out). Each prints ESCAPED only if its attack
    worked, so a passing verdict is an escape; the last two must pass."""
    return {
        "storage": (
            f"import os\nhits = []\nfor root in [{mount!r}, '/proc/1/root' + {mount!r}, '/etc/reasoning']:\n"
            "    try:\n        os.listdir(root); hits.append(root)\n    except OSError: pass\n"
            "    try:\n        open(os.path.join(root, 'pwned'), 'w').write('x'); hits.append(root)\n"
            "    except OSError: pass\n"
            f"print({ESCAPED!r} if hits else 'contained')",
            ESCAPED,
        ),
        "ancestors-environment": (
            "import os\nfound = False\nfor pid in os.listdir('/proc'):\n"
            "    try:\n        found |= b'REASONING' in open(f'/proc/{pid}/environ', 'rb').read()\n"
            "    except OSError: pass\n"
            f"print({ESCAPED!r} if found else 'contained')",
            ESCAPED,
        ),
        "network": (
            "import socket\nreached = []\n"
            f"for address in [({api_host!r}, 443), ({node_ip!r}, 10250), ({node_ip!r}, 53)]:\n"
            "    try:\n        socket.create_connection(address, timeout=2).close()\n"
            "        reached.append(address)\n"
            "    except OSError: pass\n"
            f"print({ESCAPED!r} if reached else 'contained')",
            ESCAPED,
        ),
        "stop-and-kill-everyone": (
            "import os, signal\nfor number in (signal.SIGSTOP, signal.SIGKILL):\n"
            "    try:\n        os.kill(-1, number)\n    except OSError: pass\nprint('sent')",
            ESCAPED,
        ),
        "memfd-flood": (
            "import os\nheld = []\nchunk = b'x' * (1 << 20)\ntry:\n    while True:\n"
            "        fd = os.memfd_create('flood')\n        held.append(fd)\n"
            "        for _ in range(16):\n            os.write(fd, chunk)\nexcept OSError: pass\n"
            "print(len(held))",
            ESCAPED,
        ),
        "fork-flood": (
            "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError: pass",
            ESCAPED,
        ),
        "big-integer": ("print(10 ** 5000)", "1" + "0" * 5000),
        "after-all-that": ("print(6 * 7)", "42"),
    }


@pytest.mark.parametrize("stage_name", ["filter", "evaluate"])
def test_model_written_code_in_a_stage_pod_reaches_neither_storage_nor_network_nor_its_checker(
    stage_name: str,
    finished: dict[str, Any],
    real_node: str,
    demo_namespace: tuple[str, Path],
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
) -> None:
    """The filter and evaluate pods had their sandbox containers, which reached user namespaces for each
    program; the same pod layout (the operator's own builder, the stage's network policy) then meets
    hostile programs: storage writes, ancestors' environments through /proc, the API server, the kubelet
    and DNS, SIGSTOP/SIGKILL to every process in reach, a memfd flood past the container's memory limit,
    a fork flood. None gets out, the sandbox host is never restarted, and the checker goes on judging."""
    from reasoning_operator import stages
    from reasoning_operator.run import RunRef
    from reasoning_operator.workloads import SANDBOX_CONTAINER
    from reasoning_pipeline.spec import Stage

    namespace, storage = demo_namespace
    assert stage(finished, stage_name)["metrics"]["sandboxIsolation"] == "user-namespace"
    run = RunRef.from_body(custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, RUN))
    children = stages.driver_children(run, Stage(stage_name), 1)
    job = next(c for c in children if c["kind"] == "Job")
    policy = next(c for c in children if c["kind"] == "NetworkPolicy")
    template = job["spec"]["template"]
    spec = template["spec"]
    (sandbox,) = spec["initContainers"]
    claims = {v["name"] for v in spec["volumes"] if "persistentVolumeClaim" in v}
    assert claims
    assert not claims & {m["name"] for m in sandbox["volumeMounts"]}
    labels = {
        k: v
        for k, v in template["metadata"]["labels"].items()
        if k in policy["spec"]["podSelector"]["matchLabels"]
    }
    assert labels == policy["spec"]["podSelector"]["matchLabels"]  # the stage's network policy holds
    mount = run.spec.storage.mount_path
    marker = storage / "hostile-marker"
    marker.write_text("untouched")
    api_host = core.read_namespaced_service("kubernetes", "default").spec.cluster_ip
    node_ip = core.read_node(real_node).status.addresses[0].address
    programs = hostile_programs(mount, api_host, node_ip)
    spec["containers"][0]["command"] = [
        "python",
        "-c",
        HOSTILE_CHECK,
        json.dumps({name: list(pair) for name, pair in programs.items()}),
    ]
    name = f"hostile-programs-{stage_name}"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": spec}
    phase, log = pod_to_its_end(core, namespace, pod, spec["containers"][0]["name"])
    assert phase == "Succeeded", log
    report = json.loads(log.strip().splitlines()[-1])
    assert report["level"] == "user-namespace", report
    verdicts = report["verdicts"]
    escaped = [
        n for n, (passed, _) in verdicts.items() if passed and n not in ("big-integer", "after-all-that")
    ]
    assert escaped == [], verdicts
    assert verdicts["big-integer"][0], verdicts
    assert verdicts["after-all-that"][0], verdicts
    pod = core.read_namespaced_pod(name, namespace)
    (host,) = [s for s in pod.status.init_container_statuses if s.name == SANDBOX_CONTAINER]
    assert host.restart_count == 0, "the sandbox host was taken down"
    assert marker.read_text() == "untouched"
    assert not list(storage.rglob("pwned"))
    core.delete_namespaced_pod(name, namespace)


# ------------------------------------------------------------- failures a real node produces, seen at once
def held_back(
    custom: client.CustomObjectsApi, namespace: str, run: str, stage_name: str, reason: str
) -> dict[str, Any]:
    """The run's status once its stage says it is held back for `reason`."""

    def probe() -> dict[str, Any] | None:
        status = (
            custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, run).get("status") or {}
        )
        entry: dict[str, Any] = next((s for s in status.get("stages") or [] if s["name"] == stage_name), {})
        return status if (entry.get("waiting") or {}).get("reason") == reason else None

    found: dict[str, Any] = wait_for(
        probe, timeout=300, what=f"{run}: {stage_name} held back ({reason})", interval=2
    )
    return found


def side_run(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    """The demo's run under another name, on the demo run's own volume."""
    run = demo.example_run(namespace)
    run["metadata"]["name"] = name
    run["spec"]["storage"] = {"claimName": f"{RUN}-storage"}
    run["spec"].update(spec)
    return run


def test_an_image_the_node_cannot_have_and_a_crashing_teacher_are_seen_at_once(
    finished: dict[str, Any],
    demo_namespace: tuple[str, Path],
    api: client.ApiClient,
    custom: client.CustomObjectsApi,
) -> None:
    """On the real node: a pipeline image that is not there (pullPolicy Never: ErrImageNeverPull), and a
    teacher whose image has no vLLM (its server crashes, the kubelet backs off). Each becomes the stage's
    waiting reason and the run's Ready reason, with the kubelet's words, while the attempt still runs."""
    namespace, _ = demo_namespace
    images = {"pipeline": "ghcr.io/reasoning-operator/pipeline:not-built", "pullPolicy": "Never"}
    demo.apply_run(api, side_run(namespace, "no-image", images=images))
    status = held_back(custom, namespace, "no-image", "data", "ImagePullBackOff")
    waiting = stage(status, "data")["waiting"]
    assert (
        "cannot get its image ghcr.io/reasoning-operator/pipeline:not-built (ErrImageNeverPull"
        in waiting["message"]
    )
    assert next(c for c in status["conditions"] if c["type"] == "Ready")["reason"] == "ImagePullBackOff"
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "no-image")

    from reasoning_pipeline.spec import ImagesSpec

    # its own data stage first, then a teacher image with python and no vllm module
    images = {"vllm": ImagesSpec().pipeline, "pullPolicy": "Never"}
    demo.apply_run(api, side_run(namespace, "no-vllm", images=images))
    status = held_back(custom, namespace, "no-vllm", "generate", "CrashLoopBackOff")
    waiting = stage(status, "generate")["waiting"]
    assert "container server keeps crashing" in waiting["message"], waiting
    assert "No module named vllm" in waiting["message"] or "exit code 1" in waiting["message"], waiting
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "no-vllm")


def test_deleting_the_run_removes_its_children_and_keeps_its_data(
    finished: dict[str, Any],
    demo_namespace: tuple[str, Path],
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
) -> None:
    namespace, storage = demo_namespace
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, RUN)
    selector = f"{LABEL_RUN}={RUN}"

    def children_gone() -> bool:
        pods = core.list_namespaced_pod(namespace, label_selector=selector).items
        config_maps = core.list_namespaced_config_map(namespace, label_selector=selector).items
        services = core.list_namespaced_service(namespace, label_selector=selector).items
        return not pods and not config_maps and not services

    wait_for(children_gone, timeout=180, what="the run's children to be deleted", interval=1)
    claim = core.read_namespaced_persistent_volume_claim(f"{RUN}-storage", namespace)
    assert claim.status.phase == "Bound"
    assert stage(finished, "format")["outputs"]
    for output in stage(finished, "format")["outputs"].values():
        assert (storage / output["path"]).exists()
