"""The operator on the real control plane: installed by the chart, authenticated as the chart's
ServiceAccount, in a namespace that enforces the `restricted` Pod Security Standard. kwok plays the
kubelet: a test ends a stage's pod with the stage summary as its termination message, as the stage
program would have written it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from kubernetes import client
from reasoning_pipeline.spec import Stage

from tests.support.hand_played_node import hand_played_node
from tests.support.invalid_runs import INVALID
from tests.support.invalid_runs import run as invalid_run
from tests.support.operator import OperatorProcess
from tests.support.runs import (
    GROUP,
    LABEL_RUN,
    LABEL_STAGE,
    PLURAL,
    STAGE_TIMEOUT,
    VERSION,
    complete_stage,
    create_run,
    example,
    finish,
    from_dataset,
    generating,
    patch_spec,
    running_pod,
    stage_summary,
    status_of,
    storage_for,
    tiny_run,
    wait_for_events,
    wait_for_phase,
)
from tests.support.waiting import wait_for


@pytest.fixture
def volume(core: client.CoreV1Api, restricted: str) -> Iterator[None]:
    with storage_for(core, restricted, "sky-t1-32b-preview"):
        yield


EVALUATION_RESULTS = {
    "student": {"math500": {"score": 86.4, "metric": "pass@1", "problems": 500, "correct": 432}}
}
STAGE_METRICS: dict[Stage, dict[str, Any]] = {
    Stage.GENERATE: {"promptTokens": 1200, "completionTokens": 34000},
    Stage.REWRITE: {"apiPromptTokens": 35000, "apiCompletionTokens": 30000},
    Stage.FILTER: {"acceptance": {"numina-math": {"kept": 8, "rejected": 2, "rate": 0.8}}},
    Stage.EVALUATE: {"results": EVALUATION_RESULTS},
}


def test_the_full_recipe_runs_stage_by_stage_to_succeeded(
    operator: OperatorProcess,
    volume: None,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    batch: client.BatchV1Api,
    custom: client.CustomObjectsApi,
    restricted: str,
) -> None:
    namespace, run = restricted, "sky-t1-32b-preview"
    create_run(custom, namespace, example())

    complete_stage(core, namespace, run, Stage.DATA)
    teacher = wait_for(
        lambda: apps.list_namespaced_deployment(namespace, label_selector=f"{LABEL_STAGE}=generate").items,
        timeout=STAGE_TIMEOUT,
        what="the teacher Deployment",
    )[0]
    container = teacher.spec.template.spec.containers[0]
    arguments = " ".join([*(container.command or []), *(container.args or [])])
    assert "--tensor-parallel-size 8" in arguments
    assert container.resources.limits["nvidia.com/gpu"] == "8"
    assert teacher.spec.template.spec.node_selector == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    by_name = f"metadata.name={run}-generate-server"
    service = wait_for(
        lambda: core.list_namespaced_service(namespace, field_selector=by_name).items,
        timeout=STAGE_TIMEOUT,
        what="the teacher Service",
    )[0]
    assert service.spec.ports[0].port == 8000
    config = core.read_namespaced_config_map(f"{run}-config", namespace).data["run.yaml"]
    sampling = yaml.safe_load(config)["spec"]["generation"]["sampling"]
    assert (sampling["maxTokens"], sampling["temperature"]) == (16384, 0.7)

    complete_stage(core, namespace, run, Stage.GENERATE, metrics=STAGE_METRICS[Stage.GENERATE])
    wait_for(
        lambda: (
            not apps.list_namespaced_deployment(namespace, label_selector=f"{LABEL_STAGE}=generate").items
        ),
        timeout=STAGE_TIMEOUT,
        what="the teacher to be deleted when generation ended",
    )
    for stage in (Stage.REWRITE, Stage.FILTER, Stage.FORMAT):
        complete_stage(core, namespace, run, stage, metrics=STAGE_METRICS.get(stage, {}))

    trainer = wait_for(
        lambda: custom.list_namespaced_custom_object("kubeflow.org", "v1", namespace, "pytorchjobs")["items"],
        timeout=STAGE_TIMEOUT,
        what="the PyTorchJob",
    )[0]
    replicas = trainer["spec"]["pytorchReplicaSpecs"]
    assert set(replicas) == {"Master"}, "one node of 8 GPUs: 1 × 12 × 8 = 96 needs no worker"
    master = replicas["Master"]["template"]["spec"]["containers"][0]
    assert master["resources"]["limits"]["nvidia.com/gpu"] == "8"
    training = yaml.safe_load(config)["spec"]["training"]
    assert (
        training["microBatchSize"],
        training["gradientAccumulationSteps"],
        training["globalBatchSize"],
    ) == (1, 12, 96)
    assert training["deepspeed"] == {"zeroStage": 3, "offloadOptimizer": "cpu", "offloadParameters": "cpu"}
    complete_stage(core, namespace, run, Stage.TRAIN)
    complete_stage(core, namespace, run, Stage.EVALUATE, metrics=STAGE_METRICS[Stage.EVALUATE])

    status = wait_for_phase(custom, namespace, run, "Succeeded")
    assert [s["phase"] for s in status["stages"]] == ["Succeeded"] * 7
    assert all(s["attempts"] == 1 for s in status["stages"])
    assert status["results"] == EVALUATION_RESULTS
    assert status["cost"]["apiTokens"] == 65000
    assert float(status["cost"]["gpuHours"]) > 0, "the teacher and the trainer held GPUs"
    assert status["progress"] == "7/7"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True",
        "Reconciling": "False",
        "Stalled": "False",
    }
    assert status["observedGeneration"] == 1
    # the filter's pods, where untrusted model output runs, get no network
    policy = client.NetworkingV1Api(core.api_client).read_namespaced_network_policy(
        f"{run}-filter-no-network", namespace
    )
    assert policy.spec.policy_types == ["Ingress", "Egress"]
    assert not policy.spec.ingress
    assert not policy.spec.egress
    jobs = batch.list_namespaced_job(namespace, label_selector=f"{LABEL_RUN}={run}").items
    assert sorted(j.metadata.name for j in jobs) == sorted(
        f"{run}-{stage.value}-1" for stage in Stage if stage is not Stage.TRAIN
    )
    wait_for_events(core, namespace, run, {"StageStarted", "StageSucceeded", "RunSucceeded"})
    assert 'reasoning_runs{phase="Succeeded"} 1.0' in operator.metrics()


RESET = "internal error: ConnectionResetError: [Errno 104] Connection reset by peer"


def test_a_transient_stage_failure_is_retried_after_a_backoff_then_fails_the_run_with_its_reason(
    operator: OperatorProcess,
    core: client.CoreV1Api,
    batch: client.BatchV1Api,
    custom: client.CustomObjectsApi,
    restricted: str,
) -> None:
    namespace, run = restricted, "flaky"
    document = tiny_run(run)
    document["spec"]["data"]["maxAttempts"] = 2
    transient = stage_summary(Stage.DATA, "Failed", message=RESET, failure="Transient")
    with storage_for(core, namespace, run):
        create_run(custom, namespace, document)
        first = running_pod(core, namespace, run, Stage.DATA)
        finish(core, first, "Failed", transient)

        def data_stage() -> dict[str, Any]:
            stages = status_of(custom, namespace, run).get("stages") or [{}]
            return dict(stages[0])

        waiting = f"attempt 2 in 10 s after attempt 1 failed: {RESET}"
        wait_for(
            lambda: data_stage().get("message") == waiting,
            timeout=STAGE_TIMEOUT,
            what=f"the data stage to say {waiting!r} (it says {data_stage().get('message')!r})",
        )
        second = running_pod(core, namespace, run, Stage.DATA)
        assert second.metadata.labels["reasoning.dev/attempt"] == "2"
        ended = core.read_namespaced_pod(first.metadata.name, namespace).status.container_statuses[0]
        retried = batch.read_namespaced_job(f"{run}-data-2", namespace).metadata.creation_timestamp
        assert retried >= ended.state.terminated.finished_at + timedelta(seconds=10), "the backoff"
        finish(core, second, "Failed", transient)
        status = wait_for_phase(custom, namespace, run, "Failed")

    expected = f"stage data failed after 2 attempts: {RESET}"
    assert status["message"] == expected
    assert (status["stages"][0]["message"], status["stages"][0]["failure"]) == (RESET, "Transient")
    conditions = {c["type"]: c for c in status["conditions"]}
    assert (conditions["Stalled"]["status"], conditions["Stalled"]["message"]) == ("True", expected)
    assert conditions["Ready"]["message"] == expected
    events = wait_for_events(core, namespace, run, {"StageFailed", "RetryingStage"})
    assert any(e.reason == "StageFailed" and e.message == expected for e in events)


NO_STEP = (
    "9 SFT samples make 1 micro-batches per process (8 processes × microBatchSize 1), fewer than "
    "gradientAccumulationSteps (12): not one optimizer step; it takes at least 96 samples"
)


def test_a_permanent_stage_failure_is_attempted_once_and_its_reason_is_everywhere(
    operator: OperatorProcess,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    restricted: str,
) -> None:
    """On the trainer: the PyTorchJob's failed master keeps the termination message that says why (a
    backoffLimit made the training operator delete it, and the run said "…reached the specified backoff
    limit")."""
    namespace, run = restricted, "hopeless"
    document = from_dataset(run, {"inputPath": "datasets/tiny/sft.jsonl", "maxAttempts": 3})
    with storage_for(core, namespace, run):
        create_run(custom, namespace, document)
        master = running_pod(core, namespace, run, Stage.TRAIN)
        permanent = stage_summary(Stage.TRAIN, "Failed", message=NO_STEP, failure="Permanent")
        finish(core, master, "Failed", permanent)
        status = wait_for_phase(custom, namespace, run, "Failed")

    train = next(s for s in status["stages"] if s["name"] == "train")
    assert (train["phase"], train["attempts"], train["failure"], train["message"]) == (
        "Failed",
        1,
        "Permanent",
        NO_STEP,
    )
    expected = f"stage train failed at attempt 1, not retried (a permanent failure): {NO_STEP}"
    assert status["message"] == expected
    conditions = {c["type"]: c for c in status["conditions"]}
    assert (conditions["Stalled"]["status"], conditions["Stalled"]["message"]) == ("True", expected)
    assert (conditions["Ready"]["status"], conditions["Ready"]["message"]) == ("False", expected)
    trainers = custom.list_namespaced_custom_object(
        "kubeflow.org", "v1", namespace, "pytorchjobs", label_selector=f"{LABEL_RUN}={run}"
    )["items"]
    assert [t["metadata"]["name"] for t in trainers] == [f"{run}-train-1"], "attempted once"
    assert core.read_namespaced_pod(master.metadata.name, namespace).status.phase == "Failed"
    events = wait_for_events(core, namespace, run, {"StageFailed", "RunFailed"})
    assert any(e.reason == "StageFailed" and e.message == expected for e in events)
    assert not any(e.reason == "RetryingStage" for e in events)


def children_named(
    batch: client.BatchV1Api, custom: client.CustomObjectsApi, namespace: str, run: str
) -> list[str]:
    jobs = [
        j.metadata.name
        for j in batch.list_namespaced_job(namespace, label_selector=f"{LABEL_RUN}={run}").items
    ]
    trainers = custom.list_namespaced_custom_object(
        "kubeflow.org", "v1", namespace, "pytorchjobs", label_selector=f"{LABEL_RUN}={run}"
    )["items"]
    return sorted([*jobs, *(t["metadata"]["name"] for t in trainers)])


def test_an_operator_killed_at_any_point_finishes_the_run_without_duplicates(
    operator: OperatorProcess,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    batch: client.BatchV1Api,
    custom: client.CustomObjectsApi,
    restricted: str,
) -> None:
    namespace, run = restricted, "restarts"
    with storage_for(core, namespace, run):
        pod = generating(core, apps, custom, namespace, run)  # the teacher is up and the driver runs
        operator.kill()
        finish(core, pod, "Succeeded", stage_summary(Stage.GENERATE))  # it ends while nobody watches
        operator.start()
        complete_stage(core, namespace, run, Stage.REWRITE)
        # between two stages: the filter ends and the operator dies before it can start the format
        pod = running_pod(core, namespace, run, Stage.FILTER)
        operator.kill()
        finish(core, pod, "Succeeded", stage_summary(Stage.FILTER))
        operator.start()
        complete_stage(core, namespace, run, Stage.FORMAT)
        # during training
        pod = running_pod(core, namespace, run, Stage.TRAIN)
        operator.restart()
        finish(core, pod, "Succeeded", stage_summary(Stage.TRAIN))
        complete_stage(core, namespace, run, Stage.EVALUATE, metrics=STAGE_METRICS[Stage.EVALUATE])
        status = wait_for_phase(custom, namespace, run, "Succeeded")

        assert [(s["name"], s["phase"], s["attempts"]) for s in status["stages"]] == [
            (stage.value, "Succeeded", 1) for stage in Stage
        ]
        assert all(s["message"] == f"{s['name']} finished" for s in status["stages"])
        assert status["results"] == EVALUATION_RESULTS
        assert children_named(batch, custom, namespace, run) == sorted(
            f"{run}-{stage.value}-1" for stage in Stage
        )
        assert not apps.list_namespaced_deployment(namespace, label_selector=f"{LABEL_RUN}={run}").items

        # deleting the run takes every child with it, and leaves the data
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, run)
        wait_for(
            lambda: (
                not children_named(batch, custom, namespace, run)
                and not core.list_namespaced_config_map(namespace, label_selector=f"{LABEL_RUN}={run}").items
            ),
            timeout=STAGE_TIMEOUT,
            what="the garbage collector to delete the run's children",
        )
        assert (
            core.read_namespaced_persistent_volume_claim(f"{run}-storage", namespace).status.phase == "Bound"
        )


def test_a_run_from_an_existing_dataset_trains_and_evaluates_only(
    operator: OperatorProcess,
    core: client.CoreV1Api,
    batch: client.BatchV1Api,
    custom: client.CustomObjectsApi,
    restricted: str,
) -> None:
    namespace, run = restricted, "from-dataset"
    document = from_dataset(run)
    with storage_for(core, namespace, run):
        create_run(custom, namespace, document)
        complete_stage(core, namespace, run, Stage.TRAIN)
        complete_stage(core, namespace, run, Stage.EVALUATE, metrics=STAGE_METRICS[Stage.EVALUATE])
        status = wait_for_phase(custom, namespace, run, "Succeeded")
    assert [s["phase"] for s in status["stages"]] == ["Skipped"] * 5 + ["Succeeded"] * 2
    assert status["progress"] == "2/2"
    assert children_named(batch, custom, namespace, run) == [f"{run}-evaluate-1", f"{run}-train-1"]


def test_the_operator_shrugs_off_refused_runs_and_strange_children(
    operator: OperatorProcess,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    restricted: str,
) -> None:
    namespace, name = restricted, "sturdy"
    for case, spec, _ in INVALID:
        with pytest.raises(client.ApiException, match="422") as refused:
            create_run(custom, namespace, invalid_run(f"invalid-{case}"[:63].rstrip("-"), spec))
        assert refused.value.status == 422, case
    # objects that claim to belong to the run but are no child the operator made
    strays = [
        {"metadata": {"name": "stray-1", "labels": {LABEL_RUN: name, LABEL_STAGE: "nonsense"}}, "data": {}},
        {
            "metadata": {
                "name": "stray-2",
                "labels": {LABEL_RUN: name, LABEL_STAGE: "data", "reasoning.dev/attempt": "not-a-number"},
            },
            "data": {},
        },
    ]
    for stray in strays:
        core.create_namespaced_config_map(namespace, stray)
    with storage_for(core, namespace, name):
        create_run(custom, namespace, tiny_run(name))
        complete_stage(core, namespace, name, Stage.DATA)
        running_pod(core, namespace, name, Stage.GENERATE)
    assert operator.healthy()
    assert "reasoning_reconcile_errors_total 0.0" in operator.metrics()


def test_a_run_created_again_under_its_name_is_a_new_run_with_children_of_its_own(
    operator: OperatorProcess,
    core: client.CoreV1Api,
    batch: client.BatchV1Api,
    custom: client.CustomObjectsApi,
    restricted: str,
) -> None:
    """Deleted and created again at once (GitOps re-syncing, a user re-applying): the earlier run's
    children are still there for a moment under the same names. The new run must not take them for its
    own — not the earlier data Job's success, not its ConfigMap — and writes under its own uid."""
    namespace, run = restricted, "again"
    with storage_for(core, namespace, run):
        create_run(custom, namespace, tiny_run(run))
        complete_stage(core, namespace, run, Stage.DATA)
        wait_for(
            lambda: status_of(custom, namespace, run).get("currentStage") == "generate",
            timeout=STAGE_TIMEOUT,
            what="the first run past data",
        )
        first = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, run)
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, run)
        wait_for(
            lambda: (
                not custom.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, field_selector=f"metadata.name={run}"
                )["items"]
            ),
            timeout=STAGE_TIMEOUT,
            what="the first run to be gone",
        )
        second_document = tiny_run(run)
        second_document["spec"]["data"]["seed"] = 8
        create_run(custom, namespace, second_document)
        second = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, run)
        uid = second["metadata"]["uid"]
        assert uid != first["metadata"]["uid"]

        def data_pod_of_the_second_run() -> client.V1Pod | None:
            selector = f"{LABEL_RUN}={run},{LABEL_STAGE}=data,reasoning.dev/run-uid={uid}"
            pods = core.list_namespaced_pod(namespace, label_selector=selector).items
            return next((p for p in pods if p.status.phase == "Running"), None)

        pod = wait_for(data_pod_of_the_second_run, timeout=STAGE_TIMEOUT, what="the second run's data pod")
        status = status_of(custom, namespace, run)
        data = next(s for s in status["stages"] if s["name"] == "data")
        assert data["phase"] == "Running", "the earlier run's data Job is not this run's"
        config = yaml.safe_load(core.read_namespaced_config_map(f"{run}-config", namespace).data["run.yaml"])
        assert config["metadata"]["uid"] == uid
        assert config["spec"]["data"]["seed"] == 8
        environment = {e.name: e.value for e in pod.spec.containers[0].env or []}
        assert environment["REASONING_RUN_UID"] == uid
        selector = f"{LABEL_RUN}={run},{LABEL_STAGE}=data"
        jobs = batch.list_namespaced_job(namespace, label_selector=selector).items
        assert [j.metadata.labels["reasoning.dev/run-uid"] for j in jobs] == [uid]
        finish(core, pod, "Succeeded", stage_summary(Stage.DATA))
        wait_for(
            lambda: status_of(custom, namespace, run).get("currentStage") == "generate",
            timeout=STAGE_TIMEOUT,
            what="the second run past data",
        )


def test_a_stage_whose_pod_cannot_be_scheduled_says_so_with_the_schedulers_words(
    operator: OperatorProcess, core: client.CoreV1Api, custom: client.CustomObjectsApi, restricted: str
) -> None:
    """The real scheduler leaves the pod Pending (no node has the pool's label): the stage is held back,
    and the run says why at once — not 'running'."""
    namespace, run = restricted, "nowhere"
    pools = [{"name": "cpu", "nodeSelector": {"reasoning.dev/pool": "nowhere"}}]
    with storage_for(core, namespace, run):
        create_run(custom, namespace, tiny_run(run, nodePools=pools))

        def held() -> dict[str, Any] | None:
            status = status_of(custom, namespace, run)
            data = (status.get("stages") or [{}])[0]
            return status if (data.get("waiting") or {}).get("reason") == "Unschedulable" else None

        status = wait_for(held, timeout=STAGE_TIMEOUT, what="the data stage to be held back")
        data = status["stages"][0]
        assert status["phase"] == "Running"
        assert "cannot be scheduled: 0/" in data["waiting"]["message"]
        assert "node affinity/selector" in data["waiting"]["message"]
        assert data["message"].startswith("attempt 1 waiting: pod nowhere-data-1-")
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "Unschedulable"
        (event,) = [
            e for e in wait_for_events(core, namespace, run, {"Unschedulable"}) if e.reason == "Unschedulable"
        ]
        assert event.type == "Warning"


def test_a_claim_no_storage_class_can_bind_holds_the_stage_and_says_which_fields_to_check(
    operator: OperatorProcess, core: client.CoreV1Api, custom: client.CustomObjectsApi, restricted: str
) -> None:
    """No volume and no provisioner for the class the run names: the claim stays Pending, the scheduler
    says so of the data pod, and the stage names storage.storageClassName and storage.accessMode."""
    namespace, run = restricted, "unbound"
    create_run(custom, namespace, tiny_run(run, storage={"storageClassName": "no-such-class", "size": "1Gi"}))

    def held() -> dict[str, Any] | None:
        status = status_of(custom, namespace, run)
        data = (status.get("stages") or [{}])[0]
        return data if (data.get("waiting") or {}).get("reason") == "Unschedulable" else None

    data = wait_for(held, timeout=STAGE_TIMEOUT, what="the data stage to be held back by its claim")
    assert "unbound immediate PersistentVolumeClaims" in data["waiting"]["message"]
    assert "check storage.storageClassName and storage.accessMode" in data["waiting"]["message"]
    claim = core.read_namespaced_persistent_volume_claim(f"{run}-storage", namespace)
    assert claim.status.phase == "Pending"


def test_an_evicted_stage_pod_fails_its_attempt_with_the_kubelets_words_and_the_next_runs(
    operator: OperatorProcess, core: client.CoreV1Api, custom: client.CustomObjectsApi, restricted: str
) -> None:
    """The kubelet evicts the data pod (its status as a kubelet under memory pressure leaves it): the
    attempt failed transiently, with the eviction's words, and attempt 2 runs."""
    namespace, run = restricted, "evicted"
    with storage_for(core, namespace, run):
        create_run(custom, namespace, tiny_run(run))
        pod = running_pod(core, namespace, run, Stage.DATA)
        said = "The node was low on resource: memory. Threshold quantity: 100Mi, available: 12Mi."
        core.patch_namespaced_pod_status(
            pod.metadata.name,
            namespace,
            {"status": {"phase": "Failed", "reason": "Evicted", "message": said}},
        )

        def retried() -> dict[str, Any] | None:
            data = status_of(custom, namespace, run)["stages"][0]
            return data if data.get("attempts", 0) >= 2 else None

        data = wait_for(retried, timeout=STAGE_TIMEOUT, what="attempt 2 after the eviction")
        assert f"after attempt 1 failed: Evicted: {said}" in data["message"]


def test_a_stage_pod_on_a_node_that_falls_silent_says_so_and_the_next_attempt_runs_once_it_is_removed(
    operator: OperatorProcess,
    api: client.ApiClient,
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    restricted: str,
) -> None:
    """The data pod runs on a node whose kubelet then stops (the test plays it). The node lifecycle
    controller marks the node and the pod: the stage says NodeLost, naming the node and what to do. The
    administrator deletes the Node; the pod garbage collector fails the pod; attempt 2 starts."""
    namespace, run = restricted, "silent"
    with storage_for(core, namespace, run), hand_played_node(api, f"silent-{uuid.uuid4().hex[:6]}") as node:
        create_run(custom, namespace, tiny_run(run, nodePools=[node.pool]))
        pod = node.bound_pod(namespace, f"{LABEL_RUN}={run},{LABEL_STAGE}={Stage.DATA.value}")
        node.start(pod)
        wait_for(
            lambda: status_of(custom, namespace, run)["stages"][0].get("message") == "attempt 1 running",
            timeout=STAGE_TIMEOUT,
            what="the data stage running on the hand-played node",
        )
        node.fall_silent()

        def lost() -> dict[str, Any] | None:
            status = status_of(custom, namespace, run)
            return status if (status["stages"][0].get("waiting") or {}).get("reason") == "NodeLost" else None

        # the controller's grace for a silent node (50 s), then one monitor period and one resync
        status = wait_for(lost, timeout=150, what="the data stage to say its node is lost")
        said = status["stages"][0]["waiting"]["message"]
        assert f"pod {pod.metadata.name} is on node {node.name}, which stopped reporting" in said
        assert "delete the Node" in said
        assert status["phase"] == "Running"
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "NodeLost"
        (event,) = [e for e in wait_for_events(core, namespace, run, {"NodeLost"}) if e.reason == "NodeLost"]
        assert event.type == "Warning"

        node.remove()

        def retried() -> dict[str, Any] | None:
            data = status_of(custom, namespace, run)["stages"][0]
            return data if data.get("attempts", 0) >= 2 else None

        # the pod garbage collector waits 40 s to be sure the node is gone, and looks every 20 s
        data = wait_for(retried, timeout=180, what="attempt 2 after the node was removed")
        # the collector fails the pod and removes it at once: read before it went, the pod says why; read
        # after, what the stage last said of it is the reason given
        held_back = f"it was last seen held back (NodeLost): pod {pod.metadata.name} is on node {node.name}"
        assert "after attempt 1 failed: " in data["message"]
        assert (
            held_back in data["message"] or "DeletionByPodGC: PodGC: node no longer exists" in data["message"]
        )


def test_a_teacher_not_ready_within_its_time_fails_the_attempt_and_the_next_starts_it_afresh(
    operator: OperatorProcess,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    batch: client.BatchV1Api,
    custom: client.CustomObjectsApi,
    restricted: str,
) -> None:
    """The teacher's container runs and never becomes ready (its status set as a kubelet would, as a
    server that cannot load its model leaves it): past generation.serverReadyTimeoutSeconds the operator
    ends the driver's Job through the Job controller, says why, and the next attempt gets new servers."""
    namespace, run = restricted, "unready"
    with storage_for(core, namespace, run):
        document = tiny_run(run)
        document["spec"]["generation"]["serverReadyTimeoutSeconds"] = 5
        create_run(custom, namespace, document)
        complete_stage(core, namespace, run, Stage.DATA)
        selector = f"{LABEL_RUN}={run},{LABEL_STAGE}=generate,reasoning.dev/role=server"
        teacher = wait_for(
            lambda: [
                p
                for p in core.list_namespaced_pod(namespace, label_selector=selector).items
                if p.status.phase == "Running"
            ],
            timeout=STAGE_TIMEOUT,
            what="the teacher's pod running",
        )[0]
        started = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
        container = teacher.spec.containers[0]
        core.patch_namespaced_pod_status(
            teacher.metadata.name,
            namespace,
            {
                "status": {
                    "conditions": [
                        {"type": "Ready", "status": "False"},
                        {"type": "ContainersReady", "status": "False"},
                    ],
                    "containerStatuses": [
                        {
                            "name": container.name,
                            "image": container.image,
                            "imageID": "",
                            "ready": False,
                            "restartCount": 0,
                            "started": True,
                            "state": {"running": {"startedAt": started}},
                        }
                    ],
                }
            },
        )

        def failed_over() -> dict[str, Any] | None:
            status = status_of(custom, namespace, run)
            generate = status["stages"][1]
            return status if generate.get("attempts", 0) >= 2 else None

        status = wait_for(
            failed_over, timeout=STAGE_TIMEOUT, what="attempt 2 after the teacher was not ready"
        )
        message = status["stages"][1]["message"]
        assert (
            f"after attempt 1 failed: server pod {teacher.metadata.name} did not become ready within 5 s"
            in message
        )
        assert "(generation.serverReadyTimeoutSeconds)" in message
        job = batch.read_namespaced_job(f"{run}-generate-1", namespace)
        assert [c.reason for c in job.status.conditions if c.type == "Failed"] == ["DeadlineExceeded"]
        wait_for(
            lambda: (
                teacher.metadata.name
                not in {
                    p.metadata.name
                    for p in core.list_namespaced_pod(namespace, label_selector=selector).items
                }
            ),
            timeout=STAGE_TIMEOUT,
            what="the unready teacher to be replaced",
        )
        wait_for_events(core, namespace, run, {"ServerNotReady"})


def test_an_attempt_past_its_deadline_fails_naming_the_field_and_the_next_one_starts(
    operator: OperatorProcess, core: client.CoreV1Api, custom: client.CustomObjectsApi, restricted: str
) -> None:
    """The Job controller ends the attempt at activeDeadlineSeconds (kwok's pod never finishes on its own)."""
    namespace, run = restricted, "slow"
    data = {**tiny_run(run)["spec"]["data"], "deadlineSeconds": 60}
    with storage_for(core, namespace, run):
        create_run(custom, namespace, tiny_run(run, data=data))
        running_pod(core, namespace, run, Stage.DATA)

        def retried() -> dict[str, Any] | None:
            status = status_of(custom, namespace, run)
            entry = status["stages"][0]
            return status if entry.get("attempts") == 2 else None

        status = wait_for(retried, timeout=60 + 60, what="attempt 2 after the deadline")
        message = status["stages"][0]["message"]
        assert (
            "after attempt 1 failed: the attempt ran past its deadline of 60 s (data.deadlineSeconds)"
            in message
        )


def test_an_edit_reaches_the_run_file_and_restart_from_reruns_a_stage_keeping_the_ones_before(
    operator: OperatorProcess,
    core: client.CoreV1Api,
    batch: client.BatchV1Api,
    custom: client.CustomObjectsApi,
    restricted: str,
) -> None:
    """A finished run is asked to evaluate again (`restartFrom`); while that runs, its sampling is edited:
    the run file follows the spec, the attempt that ran under the earlier one is stopped (its pods gone
    first) and the next runs under the new one. Training, before it, is never touched."""
    namespace, run = restricted, "rerun"
    document = from_dataset(run)

    def run_file() -> dict[str, Any]:
        config = core.read_namespaced_config_map(f"{run}-config", namespace)
        rendered: dict[str, Any] = yaml.safe_load(config.data["run.yaml"])
        assert config.metadata.annotations["reasoning.dev/generation"] == str(
            rendered["metadata"]["generation"]
        )
        return rendered

    with storage_for(core, namespace, run):
        create_run(custom, namespace, document)
        complete_stage(core, namespace, run, Stage.TRAIN)
        complete_stage(core, namespace, run, Stage.EVALUATE, metrics=STAGE_METRICS[Stage.EVALUATE])
        wait_for_phase(custom, namespace, run, "Succeeded")

        patch_spec(custom, namespace, run, restartFrom={"stage": "evaluate", "id": "again-1"})
        wait_for(
            lambda: status_of(custom, namespace, run).get("restarts"),
            timeout=STAGE_TIMEOUT,
            what="the operator to take the restart in",
        )
        evaluator = running_pod(core, namespace, run, Stage.EVALUATE)
        assert evaluator.metadata.labels["reasoning.dev/attempt"] == "2"
        assert run_file()["spec"]["restartFrom"] == {"stage": "evaluate", "id": "again-1"}
        status = status_of(custom, namespace, run)
        assert [r["id"] for r in status["restarts"]] == ["again-1"]
        assert [s["phase"] for s in status["stages"]][5:] == ["Succeeded", "Running"]

        patch_spec(custom, namespace, run, evaluation={"sampling": {"temperature": 0.6}})
        wait_for(
            lambda: (
                not batch.list_namespaced_job(
                    namespace, field_selector=f"metadata.name={run}-evaluate-2"
                ).items
            ),
            timeout=STAGE_TIMEOUT,
            what="the attempt made under the earlier spec to be gone, its pods first",
        )
        evaluator = running_pod(core, namespace, run, Stage.EVALUATE)
        assert evaluator.metadata.labels["reasoning.dev/attempt"] == "3"
        assert run_file()["spec"]["evaluation"]["sampling"]["temperature"] == 0.6
        env = {e.name: e.value for e in evaluator.spec.containers[0].env}
        assert env["REASONING_RUN_GENERATION"] == str(run_file()["metadata"]["generation"])
        complete_stage(core, namespace, run, Stage.EVALUATE, metrics=STAGE_METRICS[Stage.EVALUATE])
        status = wait_for_phase(custom, namespace, run, "Succeeded")
    assert status["stages"][5]["attempts"] == 1, "training ran once"
    assert status["stages"][6]["attempts"] == 3
    assert children_named(batch, custom, namespace, run) == [
        f"{run}-evaluate-1",
        f"{run}-evaluate-3",
        f"{run}-train-1",
    ]
