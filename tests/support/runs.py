"""Driving ReasoningRuns on the embedded cluster as the stage programs would: make their storage, create
them, end each stage's pod (kwok plays the kubelet) with the stage summary as its termination message, and
read their status. Shared by the operator's integration tests and benches."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from reasoning_operator.status import ended_because
from reasoning_pipeline.spec import Stage

from tests.support.kwok import finish_on_cue
from tests.support.waiting import wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LABEL_RUN, LABEL_STAGE, LABEL_ROLE = "reasoning.dev/run", "reasoning.dev/stage", "reasoning.dev/role"
GROUP, VERSION, PLURAL = "reasoning.dev", "v1alpha1", "reasoningruns"
STAGE_TIMEOUT = 90
TERMINAL = ("Succeeded", "Failed")


@contextlib.contextmanager
def storage_for(core: client.CoreV1Api, namespace: str, run: str) -> Iterator[None]:
    """A volume bound in advance to the claim the operator will make (no provisioner on this cluster)."""
    name = f"pv-{uuid.uuid4().hex[:8]}"
    core.create_persistent_volume(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": "2Ti"},
                "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": f"/tmp/{name}"},
                "claimRef": {"namespace": namespace, "name": f"{run}-storage"},
            },
        }
    )
    try:
        yield
    finally:
        core.delete_persistent_volume(name)


def example(name: str = "sky-t1-32b-preview.yaml") -> dict[str, Any]:
    """An example as kwok runs it: the tiny one's pool is the real node's, here the simulated CPU pool."""
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    if name == "tiny.yaml":
        document["spec"]["nodePools"] = [{"name": "cpu", "nodeSelector": {"reasoning.dev/pool": "cpu"}}]
    return document


def create_run(custom: client.CustomObjectsApi, namespace: str, document: dict[str, Any]) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, document)


def status_of(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    run = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    status: dict[str, Any] = run.get("status") or {}
    return status


def stage_summary(stage: Stage, phase: str = "Succeeded", **extra: Any) -> str:
    return json.dumps(
        {
            "stage": stage.value,
            "phase": phase,
            "message": extra.pop("message", f"{stage.value} finished"),
            "started_at": "2026-12-02T09:00:00Z",
            "finished_at": "2026-12-02T09:10:00Z",
            "progress": {"done": 10, "total": 10},
            **extra,
        },
        separators=(",", ":"),
    )


def run_ended(
    custom: client.CustomObjectsApi, namespace: str, name: str, *, expecting: str | None = None
) -> Callable[[], str | None]:
    """For `wait_for(unless=…)`: the reason waiting on run `name` is pointless once it is Succeeded or
    Failed (other than `expecting`), with its message and the failed stage's name and message."""

    def ended() -> str | None:
        status = status_of(custom, namespace, name)
        if status.get("phase") in TERMINAL and status.get("phase") != expecting:
            return f"run {name} is {ended_because(status)}"
        return None

    return ended


def running_pod(core: client.CoreV1Api, namespace: str, run: str, stage: Stage) -> client.V1Pod:
    """The stage's driver pod (the trainer's master) once it runs and has not been told to finish."""

    def probe() -> client.V1Pod | None:
        pods = core.list_namespaced_pod(
            namespace, label_selector=f"{LABEL_RUN}={run},{LABEL_STAGE}={stage.value}"
        )
        for pod in pods.items:
            labels = pod.metadata.labels or {}
            if labels.get(LABEL_ROLE) not in ("driver", "trainer"):
                continue
            if labels.get("training.kubeflow.org/replica-type", "master").lower() != "master":
                continue
            if pod.status.phase == "Running" and "kwok.reasoning.dev/outcome" not in (
                pod.metadata.annotations or {}
            ):
                return pod
        return None

    found: client.V1Pod = wait_for(
        probe,
        timeout=STAGE_TIMEOUT,
        what=f"a running {stage.value} pod of {run}",
        unless=run_ended(client.CustomObjectsApi(core.api_client), namespace, run),
    )
    return found


def finish(core: client.CoreV1Api, pod: client.V1Pod, outcome: str, message: str) -> None:
    annotations = finish_on_cue(
        outcome, termination_message=message, exit_code=0 if outcome == "Succeeded" else 1
    )
    core.patch_namespaced_pod(
        pod.metadata.name, pod.metadata.namespace, {"metadata": {"annotations": annotations}}
    )


def complete_stage(core: client.CoreV1Api, namespace: str, run: str, stage: Stage, **summary: Any) -> None:
    finish(core, running_pod(core, namespace, run, stage), "Succeeded", stage_summary(stage, **summary))


def wait_for_phase(
    custom: client.CustomObjectsApi,
    namespace: str,
    name: str,
    phase: str,
    *,
    timeout: float = STAGE_TIMEOUT,
    interval: float = 0.25,
) -> dict[str, Any]:
    """The run's status once it is in `phase`; fails at once if it ends in another."""

    def reached() -> dict[str, Any] | None:
        status = status_of(custom, namespace, name)
        return status if status.get("phase") == phase else None

    return wait_for(
        reached,
        timeout=timeout,
        what=f"run {name} to be {phase}",
        interval=interval,
        unless=run_ended(custom, namespace, name, expecting=phase),
    )


def wait_for_events(
    core: client.CoreV1Api, namespace: str, run: str, reasons: set[str]
) -> list[client.CoreV1Event]:
    """The run's events once every reason in `reasons` is among them: the operator posts events after
    the status write they describe, so a status the test has seen may not have its events yet."""

    def posted() -> list[client.CoreV1Event] | None:
        events = [e for e in core.list_namespaced_event(namespace).items if e.involved_object.name == run]
        return events if reasons <= {e.reason for e in events} else None

    return wait_for(posted, timeout=STAGE_TIMEOUT, what=f"events {sorted(reasons)} on run {run}")


def from_dataset(name: str, training: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    """The Sky-T1 example started from an existing SFT dataset: it trains and evaluates only."""
    off = {"enabled": False}
    document = example()
    document["metadata"]["name"] = name
    document["spec"].update(data=off, generation=off, rewrite=off, filter=off, format=off, **spec)
    document["spec"]["training"] = training or {"inputPath": "datasets/sky-t1-17k/sft.jsonl"}
    return document


def patch_spec(custom: client.CustomObjectsApi, namespace: str, name: str, **spec: Any) -> None:
    custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, {"spec": spec})


def tiny_run(name: str, **spec: Any) -> dict[str, Any]:
    document = example("tiny.yaml")
    document["metadata"]["name"] = name
    document["spec"].update(spec)
    return document


def generating(
    core: client.CoreV1Api, apps: client.AppsV1Api, custom: client.CustomObjectsApi, namespace: str, run: str
) -> client.V1Pod:
    """A tiny run created and taken to the middle of generation: its teacher up, its driver's pod running."""
    create_run(custom, namespace, tiny_run(run))
    complete_stage(core, namespace, run, Stage.DATA)
    wait_for(
        lambda: apps.list_namespaced_deployment(namespace, label_selector=f"{LABEL_STAGE}=generate").items,
        timeout=STAGE_TIMEOUT,
        what="the teacher",
    )
    return running_pod(core, namespace, run, Stage.GENERATE)
