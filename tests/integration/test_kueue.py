"""The operator under Kueue, built from its module into the local cluster (`make cluster-up`): children
made the way Kueue expects, admitted by Kueue's own webhooks and scheduler, never started behind its back.
kwok plays the kubelet on the simulated H100 pool, as in test_operator.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from reasoning_pipeline.spec import Stage

from tests.support.operator import OperatorProcess
from tests.support.runs import (
    LABEL_RUN,
    LABEL_STAGE,
    STAGE_TIMEOUT,
    complete_stage,
    create_run,
    from_dataset,
    patch_spec,
    running_pod,
    status_of,
    storage_for,
    tiny_run,
    wait_for_phase,
)
from tests.support.waiting import wait_for

KUEUE = "kueue.x-k8s.io"
QUEUE_LABEL = f"{KUEUE}/queue-name"
QUEUE = "team-a"
# what one kwok H100 node holds (hack/cluster.sh: 192 CPUs, 2 TiB, 8 GPUs)
ONE_H100_NODE = {"cpu": "192", "memory": "2Ti", "nvidia.com/gpu": "8"}


@pytest.fixture
def kueue(api: client.ApiClient, operator: OperatorProcess) -> None:
    extensions = client.ApiextensionsV1Api(api)
    try:
        extensions.read_custom_resource_definition(f"workloads.{KUEUE}")
    except ApiException as error:
        if error.status != 404:
            raise
        pytest.skip("Kueue runs with the real node (REASONING_LOCAL_NODE=0 leaves both out)")


@pytest.fixture
def one_node_quota(kueue: None, custom: client.CustomObjectsApi, restricted: str) -> Iterator[str]:
    """A ClusterQueue for this test's namespace only, with one H100 node's GPUs (and the CPU pool's
    flavor for the stages without GPUs), and the LocalQueue runs name in `queueName`."""
    name = f"one-h100-node-{restricted}"[:63]

    def flavor(flavor_name: str, quota: dict[str, str]) -> dict[str, Any]:
        return {"name": flavor_name, "resources": [{"name": k, "nominalQuota": v} for k, v in quota.items()]}

    cluster_queue = {
        "apiVersion": f"{KUEUE}/v1beta2",
        "kind": "ClusterQueue",
        "metadata": {"name": name},
        "spec": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": restricted}},
            "resourceGroups": [
                {
                    "coveredResources": ["cpu", "memory", "nvidia.com/gpu"],
                    "flavors": [
                        flavor("cpu", {"cpu": "64", "memory": "256Gi", "nvidia.com/gpu": "0"}),
                        flavor("h100", ONE_H100_NODE),
                    ],
                }
            ],
        },
    }
    local_queue = {
        "apiVersion": f"{KUEUE}/v1beta2",
        "kind": "LocalQueue",
        "metadata": {"name": QUEUE, "namespace": restricted},
        "spec": {"clusterQueue": name},
    }
    custom.create_cluster_custom_object(KUEUE, "v1beta2", "clusterqueues", cluster_queue)
    custom.create_namespaced_custom_object(KUEUE, "v1beta2", restricted, "localqueues", local_queue)
    try:
        yield QUEUE
    finally:
        custom.delete_cluster_custom_object(KUEUE, "v1beta2", "clusterqueues", name)


def trainer(custom: client.CustomObjectsApi, namespace: str, run: str) -> dict[str, Any] | None:
    found = custom.list_namespaced_custom_object(
        "kubeflow.org", "v1", namespace, "pytorchjobs", label_selector=f"{LABEL_RUN}={run}"
    )["items"]
    return found[0] if found else None


def trains_only(name: str) -> dict[str, Any]:
    """The Sky-T1 example from an existing dataset, training alone: one PyTorchJob of a whole H100 node."""
    return from_dataset(name, evaluation={"enabled": False}, queueName=QUEUE)


def test_two_runs_that_each_need_a_whole_h100_node_take_turns_on_a_quota_of_one_node(
    operator: OperatorProcess,
    one_node_quota: str,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    restricted: str,
) -> None:
    namespace, first, second = restricted, "first-in-line", "second-in-line"
    with storage_for(core, namespace, first), storage_for(core, namespace, second):
        create_run(custom, namespace, trains_only(first))
        running_pod(core, namespace, first, Stage.TRAIN)  # admitted: Kueue un-suspended it, kwok runs it
        create_run(custom, namespace, trains_only(second))

        def queued() -> dict[str, Any] | None:
            train = status_of(custom, namespace, second).get("stages", [{}] * 6)[5]
            return train if (train.get("waiting") or {}).get("message", "").count("quota") else None

        train = wait_for(queued, timeout=STAGE_TIMEOUT, what=f"{second} to say it waits in its queue")
        assert train["waiting"]["reason"] == "Queued"
        message = train["waiting"]["message"]
        assert message.startswith(f"in queue {QUEUE} (Workload pytorchjob-{second}-train-1-"), message
        assert "insufficient unused quota for nvidia.com/gpu in flavor h100, 8 more needed" in message
        ready = next(c for c in status_of(custom, namespace, second)["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "Queued"
        held = trainer(custom, namespace, second)
        assert held is not None
        assert held["spec"]["runPolicy"]["suspend"] is True, "held by Kueue, not started by the operator"
        assert not core.list_namespaced_pod(namespace, label_selector=f"{LABEL_RUN}={second}").items

        complete_stage(core, namespace, first, Stage.TRAIN)
        wait_for_phase(custom, namespace, first, "Succeeded")
        # the first's GPUs are back in the quota: Kueue admits the second, which then runs
        complete_stage(core, namespace, second, Stage.TRAIN)
        status = wait_for_phase(custom, namespace, second, "Succeeded")
    assert status["stages"][5]["attempts"] == 1, "waiting in the queue is not a failed attempt"


def test_a_run_suspended_under_kueue_stays_suspended_and_resumes_with_the_queue_label_everywhere(
    operator: OperatorProcess,
    one_node_quota: str,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    batch: client.BatchV1Api,
    custom: client.CustomObjectsApi,
    restricted: str,
) -> None:
    """Kueue starts again an admitted Job someone suspended: the operator suspends the run through the
    Workload (`spec.active`), Kueue evicts it and keeps it suspended, and resumes it when told."""
    namespace, run = restricted, "pausable"

    def teacher_exists() -> bool:
        return bool(
            apps.list_namespaced_deployment(namespace, label_selector=f"{LABEL_STAGE}=generate").items
        )

    def driver_suspended() -> bool:
        return bool(batch.read_namespaced_job(f"{run}-generate-1", namespace).spec.suspend)

    with storage_for(core, namespace, run):
        create_run(custom, namespace, tiny_run(run, queueName=QUEUE))
        complete_stage(core, namespace, run, Stage.DATA)
        running_pod(core, namespace, run, Stage.GENERATE)
        patch_spec(custom, namespace, run, suspend=True)
        wait_for_phase(custom, namespace, run, "Suspended")
        wait_for(lambda: not teacher_exists(), timeout=STAGE_TIMEOUT, what="the teacher to be scaled away")
        wait_for(driver_suspended, timeout=STAGE_TIMEOUT, what="Kueue to evict and suspend the driver")
        driver = batch.read_namespaced_job(f"{run}-generate-1", namespace)
        (workload,) = custom.list_namespaced_custom_object(
            KUEUE, "v1beta2", namespace, "workloads", label_selector=f"{KUEUE}/job-uid={driver.metadata.uid}"
        )["items"]
        assert workload["spec"]["active"] is False
        time.sleep(5)  # a few of Kueue's passes: what it evicted stays suspended
        assert driver_suspended()
        assert status_of(custom, namespace, run)["phase"] == "Suspended"

        patch_spec(custom, namespace, run, suspend=False)
        wait_for(teacher_exists, timeout=STAGE_TIMEOUT, what="the teacher to come back")
        complete_stage(core, namespace, run, Stage.GENERATE)
        running_pod(core, namespace, run, Stage.REWRITE)
        status = status_of(custom, namespace, run)
        assert status["phase"] == "Running"
        assert status["stages"][1]["attempts"] == 1, "a suspension is not a failed attempt"
        queued = [
            *batch.list_namespaced_job(namespace, label_selector=f"{LABEL_RUN}={run}").items,
            *core.list_namespaced_service(namespace, label_selector=f"{LABEL_RUN}={run}").items,
            *apps.list_namespaced_deployment(namespace, label_selector=f"{LABEL_RUN}={run}").items,
        ]
        assert queued
        assert all((o.metadata.labels or {}).get(QUEUE_LABEL) == QUEUE for o in queued)
