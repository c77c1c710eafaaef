"""`make demo`: the tiny recipe as a ReasoningRun on the local cluster's real node, followed stage by stage.

hack/demo.sh builds the images, starts the cluster and installs the chart; this module does the rest:
  python -m reasoning_operator.demo [--namespace reasoning-demo] [--no-follow]
It prepares a namespace that enforces the `restricted` Pod Security Standard, a volume holding the tiny
world (the run's storage), a Secret with an API key and, in place of GPT-4o-mini, the project's rule-based
OpenAI stand-in checking that key; applies examples/tiny.yaml with its rewrite pointed there; then follows
the run and prints what it made. Pointing `rewrite` at a real endpoint with a real key in a Secret is the
production switch (README). Every step is idempotent: a second `make demo` reuses what the first made,
and a finished run is reported, not repeated (delete it to run again).
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from reasoning_pipeline.spec import API_GROUP, API_VERSION

from reasoning_operator.crd import PLURAL
from reasoning_operator.status import ended_because

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "examples" / "tiny.yaml"
NAMESPACE = "reasoning-demo"
SECRET = "openai-api-key"
SECRET_KEY = "api-key"
STAND_IN = "openai-stand-in"
STAND_IN_PORT = 8000
STAND_IN_KEY_VARIABLE = "REASONING_STAND_IN_API_KEY"  # reasoning_pipeline.rewrite_stand_in reads it
RUN_UID = 1000  # the stage containers' user: the volume must be theirs
TERMINAL = ("Succeeded", "Failed")


def example_run(namespace: str) -> dict[str, Any]:
    """examples/tiny.yaml with its rewrite pointed at the stand-in Service, the key from the Secret."""
    run: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    run["metadata"]["namespace"] = namespace
    rewrite = run["spec"]["rewrite"]
    rewrite.pop("standIn", None)
    rewrite["baseUrl"] = f"http://{STAND_IN}.{namespace}.svc:{STAND_IN_PORT}/v1"
    rewrite["apiKeySecret"] = {"name": SECRET, "key": SECRET_KEY}
    return run


def pool_placement(run: Mapping[str, Any]) -> dict[str, Any]:
    """The node selector and tolerations of the run's first node pool (the local node's)."""
    pool = run["spec"]["nodePools"][0]
    return {"nodeSelector": pool.get("nodeSelector", {}), "tolerations": pool.get("tolerations", [])}


def storage_volume(namespace: str, run: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """A volume on the node, bound in advance to the claim the operator makes (`<run>-storage`); kept
    when the claim is deleted, so the data outlives the run."""
    name = run["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"{namespace}-{name}-storage", "labels": {"reasoning.dev/demo": "true"}},
        "spec": {
            "capacity": {"storage": run["spec"]["storage"]["size"]},
            "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": str(path), "type": "Directory"},
            "claimRef": {"namespace": namespace, "name": f"{name}-storage"},
        },
    }


def stand_in(namespace: str, image: str, placement: Mapping[str, Any]) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": STAND_IN, "app.kubernetes.io/part-of": "reasoning-operator-demo"}
    container = {
        "name": "stand-in",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": [
            "reasoning-pipeline",
            "rewrite-stand-in",
            "--host",
            "0.0.0.0",
            "--port",
            str(STAND_IN_PORT),
        ],
        "env": [
            {
                "name": STAND_IN_KEY_VARIABLE,
                "valueFrom": {"secretKeyRef": {"name": SECRET, "key": SECRET_KEY}},
            }
        ],
        "ports": [{"name": "http", "containerPort": STAND_IN_PORT}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 2},
        "resources": {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    pod = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "automountServiceAccountToken": False,
        "containers": [container],
        **placement,
    }
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": STAND_IN, "namespace": namespace, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": pod},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": STAND_IN, "namespace": namespace, "labels": labels},
            "spec": {
                "selector": labels,
                "ports": [{"name": "http", "port": STAND_IN_PORT, "targetPort": "http"}],
            },
        },
    ]


# --------------------------------------------------------------------------------------------- apply
def _create_or_keep(create: Callable[[], Any]) -> bool:
    """Creates; an object that already exists is kept as it is (the demo never overwrites)."""
    try:
        create()
    except ApiException as error:
        if error.status != 409:
            raise
        return False
    return True


def prepare(
    api: client.ApiClient, namespace: str, storage: Path, tiny_world: Path, out: TextIO
) -> dict[str, Any]:
    """Everything the run needs; returns the run as it will be applied."""
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    run = example_run(namespace)
    enforce = {"pod-security.kubernetes.io/enforce": "restricted"}
    _create_or_keep(lambda: core.create_namespace({"metadata": {"name": namespace, "labels": enforce}}))

    place_tiny_world(storage, tiny_world)
    if _create_or_keep(lambda: core.create_persistent_volume(storage_volume(namespace, run, storage))):
        print(f"storage: {storage} (a hostPath volume on the node, kept after the run)", file=out)

    key = f"sk-demo-{secrets.token_hex(16)}"
    secret = {"metadata": {"name": SECRET}, "stringData": {SECRET_KEY: key}}
    _create_or_keep(lambda: core.create_namespaced_secret(namespace, secret))
    image = run["spec"].get("images", {}).get("pipeline") or "ghcr.io/reasoning-operator/pipeline:0.1.0"
    deployment, service = stand_in(namespace, image, pool_placement(run))
    _create_or_keep(lambda: apps.create_namespaced_deployment(namespace, deployment))
    _create_or_keep(lambda: core.create_namespaced_service(namespace, service))
    print(
        "rewrite: the local OpenAI stand-in (rule-based, not GPT-4o-mini) at "
        f"{run['spec']['rewrite']['baseUrl']}, key from Secret {namespace}/{SECRET}",
        file=out,
    )
    return run


def place_tiny_world(storage: Path, tiny_world: Path) -> None:
    """The tiny world copied onto the run's volume (a link would point outside the container)."""
    target = storage / "tiny-world"
    storage.mkdir(parents=True, exist_ok=True)
    if not (target / "manifest.json").exists():
        partial = storage / "tiny-world.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(tiny_world, partial, symlinks=False)
        partial.rename(target)
    _own(storage)


def _own(path: Path) -> None:
    for item in (path, *path.rglob("*")):
        try:
            if item.stat().st_uid != RUN_UID:
                shutil.chown(item, RUN_UID, RUN_UID)
        except PermissionError as error:
            raise SystemExit(
                f"cannot give {item} to uid {RUN_UID} (the stage containers' user): {error}"
            ) from error


def apply_run(api: client.ApiClient, run: dict[str, Any]) -> None:
    custom = client.CustomObjectsApi(api)
    namespace = run["metadata"]["namespace"]
    _create_or_keep(
        lambda: custom.create_namespaced_custom_object(API_GROUP, API_VERSION, namespace, PLURAL, run)
    )


# -------------------------------------------------------------------------------------------- follow
def stage_line(stage: Mapping[str, Any]) -> str:
    name, phase = stage.get("name", "?"), stage.get("phase", "Pending")
    attempts = int(stage.get("attempts") or 0)
    retried = f" (attempt {attempts})" if attempts > 1 and phase != "Running" else ""
    return f"{name:<9} {phase:<10} {stage.get('message', '')}{retried}".rstrip()


def follow(
    api: client.ApiClient,
    namespace: str,
    name: str,
    out: TextIO,
    *,
    poll_seconds: float = 3.0,
    timeout: float = 3600,
) -> dict[str, Any]:
    """Prints every change of a stage's phase or message, with the run's progress and cost, until the run
    is Succeeded or Failed; returns its final status at once (a failed run's reason is in it: `report`)."""
    custom = client.CustomObjectsApi(api)
    started, seen = time.monotonic(), {}  # type: ignore[var-annotated]
    while True:
        body = custom.get_namespaced_custom_object(API_GROUP, API_VERSION, namespace, PLURAL, name)
        status: dict[str, Any] = body.get("status") or {}
        elapsed = int(time.monotonic() - started)
        for stage in status.get("stages") or []:
            line = stage_line(stage)
            if seen.get(stage.get("name")) != line and stage.get("phase") not in (None, "Pending", "Skipped"):
                seen[stage.get("name")] = line
                cost = (status.get("cost") or {}).get("spentUSD", "0")
                print(
                    f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {status.get('progress', '')} {line}"
                    f"  (cost ${cost})",
                    file=out,
                )
                out.flush()
        if status.get("phase") in TERMINAL:
            return status
        if time.monotonic() - started > timeout:
            raise SystemExit(
                f"run {namespace}/{name} not finished after {timeout:.0f} s: {status.get('message')}"
            )
        time.sleep(poll_seconds)


def _metrics(status: Mapping[str, Any], stage: str) -> dict[str, Any]:
    for entry in status.get("stages") or []:
        if entry.get("name") == stage:
            return dict(entry.get("metrics") or {})
    return {}


def report(status: Mapping[str, Any]) -> list[str]:
    """The lines a user wants at the end: what was kept, what was trained, and what it was worth."""
    lines = [f"phase: {ended_because(status)}"]
    kept = _metrics(status, "filter")
    if kept:
        lines.append(
            f"filter:   kept {kept.get('kept')} traces, rejected {kept.get('rejected')} "
            f"(model-written code sandboxed at the {kept.get('sandboxIsolation')} level)"
        )
    tokens = _metrics(status, "format").get("tokens") or {}
    if tokens:
        lines.append(
            f"format:   SFT dataset of {tokens.get('count')} conversations, "
            f"{tokens.get('mean')} tokens on average"
        )
    trained = _metrics(status, "train")
    if trained:
        lines.append(
            f"train:    loss {trained.get('firstLoss')} -> {trained.get('lastLoss')} "
            f"in {trained.get('optimizerSteps')} optimizer steps"
        )
    results: Mapping[str, Mapping[str, Any]] = status.get("results") or {}
    for benchmark in sorted({b for scores in results.values() for b in scores}):
        before = (results.get("base") or {}).get(benchmark, {}).get("score")
        after = (results.get("student") or {}).get(benchmark, {}).get("score")
        lines.append(f"evaluate: {benchmark}: the student scores {before} before fine-tuning, {after} after")
    judged = _metrics(status, "evaluate").get("sandboxIsolation")
    if judged:
        lines.append(f"evaluate: model-written code sandboxed at the {judged} level")
    cost = status.get("cost") or {}
    if cost:
        lines.append(
            f"cost:     ${cost.get('spentUSD', '0')} ({cost.get('gpuHours', '0')} GPU-hours, "
            f"${cost.get('apiUSD', '0')} of API calls)"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reasoning_operator.demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--namespace", default=NAMESPACE)
    parser.add_argument("--storage", type=Path, required=True, help="folder on the node for the run's volume")
    parser.add_argument("--tiny-world", type=Path, required=True, help="the built tiny world to copy there")
    parser.add_argument("--no-follow", action="store_true", help="apply and return")
    arguments = parser.parse_args(argv)
    config.load_kube_config()
    api = client.ApiClient()
    run = prepare(api, arguments.namespace, arguments.storage, arguments.tiny_world, sys.stdout)
    apply_run(api, run)
    name = run["metadata"]["name"]
    print(
        f"applied ReasoningRun {arguments.namespace}/{name} (examples/tiny.yaml); "
        f"kubectl get rr -n {arguments.namespace}"
    )
    if arguments.no_follow:
        return 0
    status = follow(api, arguments.namespace, name, sys.stdout)
    print("\n".join(report(status)))
    return 0 if status.get("phase") == "Succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
