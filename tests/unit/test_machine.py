"""The stage machine, table by table: what a run and its children make it create, delete and report."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from reasoning_operator.cost import gpu_resources
from reasoning_operator.machine import Plan, advance, fail_patch, retry_backoff_seconds
from reasoning_operator.naming import LABEL_ATTEMPT, LABEL_STAGE
from reasoning_operator.observe import ChildRef, Observed, observe, parse_summary
from reasoning_operator.run import RunRef
from reasoning_pipeline.estimate import merge_estimates
from reasoning_pipeline.spec import Stage

from tests.support.runs import stage_summary as summary

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOW = "2026-12-02T10:00:00Z"
FINISHED = "2026-12-02T09:30:00Z"  # when the tests' pods end, by default: long before NOW


def run_of(example: str = "sky-t1-32b-preview.yaml", *, edit: int = 1, **spec_changes: Any) -> RunRef:
    """The example with `spec_changes`, as the API server holds it after `edit` writes of its spec."""
    document = yaml.safe_load((EXAMPLES / example).read_text())
    document["spec"].update(spec_changes)
    document["metadata"].update(namespace="team", uid="uid-1", generation=edit)
    return RunRef.from_body(document)


class Cluster:
    """What the API server would hold after each plan: created objects appear, deleted ones go."""

    def __init__(self, run: RunRef) -> None:
        self.run = run
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.status: dict[str, Any] = {}

    def observed(self, now: str = NOW) -> Observed:
        return observe(
            self.objects.values(),
            gpu_resources=gpu_resources(self.run.spec),
            now=datetime.fromisoformat(now.replace("Z", "+00:00")),
        )

    def step(self, now: str = NOW) -> Plan:
        plan = advance(self.run, self.observed(now), self.status, now=now)
        for manifest in plan.create:
            body = copy.deepcopy(manifest)
            body["metadata"]["creationTimestamp"] = "2026-12-02T09:00:00Z"
            body["metadata"]["uid"] = f"uid-of-{body['metadata']['name']}"
            self.objects[(body["kind"], body["metadata"]["name"])] = body
        for manifest in plan.update:
            self.objects[(manifest["kind"], manifest["metadata"]["name"])] = copy.deepcopy(manifest)
        for child, suspend in plan.suspend:
            spec = self.objects[(child.kind, child.name)]["spec"]
            (spec.setdefault("runPolicy", {}) if child.kind == "PyTorchJob" else spec)["suspend"] = suspend
        for child in plan.delete:
            self.objects.pop((child.kind, child.name))
        self.status = json.loads(json.dumps(plan.status))
        return plan

    def workload(self, stage: Stage, attempt: int) -> dict[str, Any]:
        for body in self.objects.values():
            labels = body["metadata"]["labels"]
            if (
                body["kind"] in ("Job", "PyTorchJob")
                and labels[LABEL_STAGE] == stage.value
                and labels[LABEL_ATTEMPT] == str(attempt)
            ):
                return body
        raise AssertionError(f"no workload for {stage.value} attempt {attempt}: {sorted(self.objects)}")

    def finish(self, stage: Stage, attempt: int, *, ok: bool = True, **pod: Any) -> None:
        """The attempt's pod ends with a termination message (`end_pod`), its workload with the matching
        condition at the same time."""
        self.end_pod(stage, attempt, ok=ok, **pod)
        self.end_workload(stage, attempt, ok=ok, at=pod.get("finished_at", FINISHED))

    def end_pod(
        self,
        stage: Stage,
        attempt: int,
        *,
        ok: bool = True,
        message: str | None = None,
        finished_at: str = FINISHED,
        replica: str = "master",
    ) -> None:
        workload = self.workload(stage, attempt)
        specs = workload["spec"].get("pytorchReplicaSpecs") or {}
        template = workload["spec"].get("template") or specs[replica.capitalize()]["template"]
        labels = dict(template["metadata"]["labels"])
        pod_name = f"{workload['metadata']['name']}-pod"
        if workload["kind"] == "PyTorchJob":
            labels["training.kubeflow.org/replica-type"] = replica
            pod_name = f"{workload['metadata']['name']}-{replica}"
        self.objects[("Pod", pod_name)] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod_name, "labels": labels},
            "spec": template["spec"],
            "status": {
                "phase": "Succeeded" if ok else "Failed",
                "containerStatuses": [
                    {
                        "state": {
                            "terminated": {
                                "exitCode": 0 if ok else 1,
                                "reason": "Completed" if ok else "Error",
                                "message": message
                                if message is not None
                                else summary(stage, "Succeeded" if ok else "Failed"),
                                "startedAt": "2026-12-02T09:00:00Z",
                                "finishedAt": finished_at,
                            }
                        }
                    }
                ],
            },
        }

    def end_workload(self, stage: Stage, attempt: int, *, ok: bool, at: str = FINISHED, **more: str) -> None:
        workload = self.workload(stage, attempt)
        condition = ("Complete" if workload["kind"] == "Job" else "Succeeded") if ok else "Failed"
        workload["status"] = {
            "conditions": [{"type": condition, "status": "True", "lastTransitionTime": at, **more}]
        }

    def kinds(self, plan_objects: Any) -> list[tuple[str, str]]:
        return [(m["kind"], m["metadata"]["name"]) for m in plan_objects]


def stage_phases(status: Mapping[str, Any]) -> dict[str, str]:
    return {s["name"]: s["phase"] for s in status["stages"]}


def test_a_new_run_starts_with_its_config_storage_and_the_data_job() -> None:
    cluster = Cluster(run_of())
    plan = cluster.step()
    assert cluster.kinds(plan.create) == [
        ("ConfigMap", "sky-t1-32b-preview-config"),
        ("PersistentVolumeClaim", "sky-t1-32b-preview-storage"),
        ("Job", "sky-t1-32b-preview-data-1"),
    ]
    assert plan.status["phase"] == "Running"
    assert plan.status["currentStage"] == "data"
    assert plan.status["progress"] == "0/7"
    assert [e.reason for e in plan.events] == ["StageStarted"]
    conditions = {c["type"]: c["status"] for c in plan.status["conditions"]}
    assert conditions == {"Ready": "False", "Reconciling": "True", "Stalled": "False"}
    # applying the same state again creates nothing and says nothing
    again = cluster.step()
    assert again.create == ()
    assert again.events == ()


def test_stages_follow_in_order_and_the_teacher_goes_when_generation_ends() -> None:
    cluster = Cluster(run_of())
    cluster.step()
    cluster.finish(Stage.DATA, 1)
    plan = cluster.step()
    assert cluster.kinds(plan.create) == [
        ("Service", "sky-t1-32b-preview-generate-server"),
        ("Deployment", "sky-t1-32b-preview-generate-server"),
        ("Job", "sky-t1-32b-preview-generate-1"),
    ]
    assert stage_phases(plan.status)["data"] == "Succeeded"
    assert plan.status["stages"][0]["message"] == "data finished"
    cluster.finish(Stage.GENERATE, 1)
    plan = cluster.step()
    assert sorted((c.kind, c.name) for c in plan.delete) == [
        ("Deployment", "sky-t1-32b-preview-generate-server"),
        ("Service", "sky-t1-32b-preview-generate-server"),
    ]
    assert ("Job", "sky-t1-32b-preview-rewrite-1") in cluster.kinds(plan.create)
    assert ("Job", "sky-t1-32b-preview-generate-1") in cluster.objects, "the finished Job keeps its summary"


def test_a_failed_attempt_is_retried_then_the_run_fails_with_the_reason() -> None:
    cluster = Cluster(run_of())
    cluster.step()
    for attempt in (1, 2):
        cluster.finish(
            Stage.DATA, attempt, ok=False, message=summary(Stage.DATA, "Failed", message="no such source")
        )
        plan = cluster.step()
        assert cluster.kinds(plan.create) == [("Job", f"sky-t1-32b-preview-data-{attempt + 1}")]
        assert [e.reason for e in plan.events] == ["RetryingStage"]
        assert "no such source" in plan.events[0].message
    cluster.finish(Stage.DATA, 3, ok=False, message=summary(Stage.DATA, "Failed", message="no such source"))
    plan = cluster.step()
    assert plan.create == ()
    assert plan.status["phase"] == "Failed"
    assert stage_phases(plan.status)["data"] == "Failed"
    stalled = next(c for c in plan.status["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True"
    assert stalled["reason"] == "StageFailed"
    assert "failed after 3 attempts: no such source" in stalled["message"]
    assert [e.reason for e in plan.events] == ["StageFailed", "RunFailed"]
    assert cluster.step().create == (), "a failed run starts nothing more"


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            "Traceback (most recent call last): boom",
            "Error, exit code 1: Traceback (most recent call last): boom",
        ),
        ("", "Error, exit code 1"),
    ],
)
def test_a_crash_without_a_summary_is_reported_from_the_pod(message: str, reason: str) -> None:
    cluster = Cluster(run_of(data={"maxAttempts": 1}))
    cluster.step()
    cluster.finish(Stage.DATA, 1, ok=False, message=message)
    plan = cluster.step()
    assert plan.status["stages"][0]["message"] == reason


def test_an_exit_without_a_summary_does_not_count_as_success() -> None:
    cluster = Cluster(run_of(data={"maxAttempts": 1}))
    cluster.step()
    cluster.finish(Stage.DATA, 1, ok=True, message="")
    plan = cluster.step()
    assert plan.status["phase"] == "Failed"
    assert "left no summary" in plan.status["stages"][0]["message"]


def test_a_recorded_success_survives_children_the_cache_has_not_seen_yet() -> None:
    cluster = Cluster(run_of())
    cluster.step()
    cluster.finish(Stage.DATA, 1)
    cluster.step()
    recorded = cluster.status
    fresh = Cluster(cluster.run)  # an operator restarted with nothing seen yet
    fresh.status = recorded
    plan = fresh.step()
    assert stage_phases(plan.status)["data"] == "Succeeded"
    assert ("Job", "sky-t1-32b-preview-data-1") not in fresh.kinds(plan.create)
    assert ("Job", "sky-t1-32b-preview-generate-1") in fresh.kinds(plan.create)
    assert plan.status["stages"][0]["message"] == "data finished"


def test_a_run_from_an_existing_dataset_starts_at_training() -> None:
    off = {"enabled": False}
    run = run_of(
        data=off,
        generation=off,
        rewrite=off,
        filter=off,
        format=off,
        training={"inputPath": "datasets/sft.jsonl"},
    )
    cluster = Cluster(run)
    plan = cluster.step()
    assert cluster.kinds(plan.create)[-1] == ("PyTorchJob", "sky-t1-32b-preview-train-1")
    assert stage_phases(plan.status) == {
        "data": "Skipped",
        "generate": "Skipped",
        "rewrite": "Skipped",
        "filter": "Skipped",
        "format": "Skipped",
        "train": "Running",
        "evaluate": "Pending",
    }
    assert plan.status["progress"] == "0/2"


def test_suspend_stops_the_driver_and_the_teacher_and_resume_brings_them_back() -> None:
    cluster = Cluster(run_of())
    cluster.step()
    cluster.finish(Stage.DATA, 1)
    cluster.step()
    cluster.run = run_of(suspend=True)
    plan = cluster.step()
    assert [(c.name, flag) for c, flag in plan.suspend] == [("sky-t1-32b-preview-generate-1", True)]
    assert {c.kind for c in plan.delete} == {"Deployment", "Service"}
    assert plan.status["phase"] == "Suspended"
    assert cluster.step().suspend == ()
    cluster.run = run_of()
    plan = cluster.step()
    assert [(c.name, flag) for c, flag in plan.suspend] == [("sky-t1-32b-preview-generate-1", False)]
    assert cluster.kinds(plan.create) == [
        ("Service", "sky-t1-32b-preview-generate-server"),
        ("Deployment", "sky-t1-32b-preview-generate-server"),
    ]
    assert plan.status["phase"] == "Running"


def test_a_whole_run_succeeds_with_results_cost_and_ready() -> None:
    cluster = Cluster(run_of())
    cluster.step()
    results = {"student": {"math500": {"score": 86.4, "metric": "pass@1", "problems": 500, "correct": 432}}}
    metrics: dict[Stage, dict[str, Any]] = {
        Stage.REWRITE: {"apiPromptTokens": 1000, "apiCompletionTokens": 500},
        Stage.EVALUATE: {"results": results},
    }
    for stage in Stage:
        message = summary(stage, metrics=metrics.get(stage, {}))
        cluster.finish(stage, 1, message=message)
        plan = cluster.step()
    assert plan.status["phase"] == "Succeeded"
    assert plan.status["progress"] == "7/7"
    assert plan.status["results"] == results
    assert {c["type"]: c["status"] for c in plan.status["conditions"]}["Ready"] == "True"
    cost = plan.status["cost"]
    assert cost["apiTokens"] == 1500
    # the trainer's pod: 8 GPUs for 30 minutes on the h100 pool at $2.96
    assert float(cost["gpuHours"]) == pytest.approx(4.0)
    assert float(cost["spentUSD"]) == pytest.approx(4.0 * 2.96, abs=0.01)
    assert not any(kind in ("Deployment", "Service") for kind, _ in cluster.objects)


def test_summaries_are_read_only_from_json_with_a_phase() -> None:
    assert parse_summary(summary(Stage.DATA)) is not None
    assert parse_summary("{not json") is None
    assert parse_summary('{"phase": "Maybe"}') is None
    assert parse_summary(None) is None


def test_a_finished_workload_waits_for_its_pods_final_status() -> None:
    """Two watches: a Job's Complete condition may be seen before its pod's termination message."""
    cluster = Cluster(run_of())
    cluster.step()
    cluster.finish(Stage.DATA, 1)
    pod = cluster.objects.pop(("Pod", "sky-t1-32b-preview-data-1-pod"))
    plan = cluster.step()
    assert plan.create == ()
    assert stage_phases(plan.status)["data"] == "Running"
    cluster.objects[("Pod", "sky-t1-32b-preview-data-1-pod")] = pod
    assert stage_phases(cluster.step().status)["data"] == "Succeeded"


# --------------------------------------------------------------------------- failures and retries
NO_SUCH_FILE = "data source 'numina': /data/numina.jsonl: no such file or folder"


def conditions_of(status: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def test_a_permanent_failure_is_attempted_once_and_its_reason_is_everywhere() -> None:
    cluster = Cluster(run_of())  # maxAttempts 3 by default
    cluster.step()
    failed = summary(Stage.DATA, "Failed", message=NO_SUCH_FILE, failure="Permanent")
    cluster.finish(Stage.DATA, 1, ok=False, message=failed)
    plan = cluster.step()
    assert plan.create == ()
    assert plan.wake_at is None
    status = plan.status
    assert status["phase"] == "Failed"
    data = status["stages"][0]
    assert (data["phase"], data["attempts"], data["failure"]) == ("Failed", 1, "Permanent")
    assert data["message"] == NO_SUCH_FILE
    expected = f"stage data failed at attempt 1, not retried (a permanent failure): {NO_SUCH_FILE}"
    assert status["message"] == expected
    conditions = conditions_of(status)
    assert (conditions["Stalled"]["status"], conditions["Stalled"]["message"]) == ("True", expected)
    assert (conditions["Ready"]["status"], conditions["Ready"]["message"]) == ("False", expected)
    events = [(e.reason, e.message) for e in plan.events]
    assert events == [("StageFailed", expected), ("RunFailed", expected)]
    assert cluster.step(now="2026-12-02T11:00:00Z").create == (), "not later either"


@pytest.mark.parametrize(
    ("failed_attempt", "seconds"), [(1, 10), (2, 20), (3, 40), (5, 160), (6, 300), (40, 300)]
)
def test_the_backoff_doubles_from_ten_seconds_up_to_five_minutes(failed_attempt: int, seconds: int) -> None:
    assert retry_backoff_seconds(failed_attempt) == seconds


def test_a_transient_failure_is_retried_no_sooner_than_the_backoff_after_it_ended() -> None:
    cluster = Cluster(run_of())
    cluster.step()
    reason = "teacher endpoint unreachable after 600 s (ClientConnectorError)"
    failed = summary(Stage.DATA, "Failed", message=reason, failure="Transient")
    cluster.finish(Stage.DATA, 1, ok=False, message=failed, finished_at="2026-12-02T09:30:00Z")

    waiting = cluster.step(now="2026-12-02T09:30:04Z")
    assert waiting.create == ()
    assert waiting.wake_at == "2026-12-02T09:30:10Z"
    data = waiting.status["stages"][0]
    assert data["message"] == f"attempt 2 in 10 s after attempt 1 failed: {reason}"
    assert (data["phase"], data["attempts"], data["retryAt"]) == ("Running", 2, "2026-12-02T09:30:10Z")
    assert "failure" not in data
    assert waiting.status["phase"] == "Running"
    assert waiting.status["message"] == f"stage data: {data['message']}"
    assert conditions_of(waiting.status)["Reconciling"]["reason"] == "RetryingStage"
    assert [(e.reason, e.message) for e in waiting.events] == [
        ("RetryingStage", f"stage data: {data['message']}")
    ]
    assert cluster.step(now="2026-12-02T09:30:09Z").create == ()

    retried = cluster.step(now="2026-12-02T09:30:10Z")
    assert cluster.kinds(retried.create) == [("Job", "sky-t1-32b-preview-data-2")]
    assert retried.wake_at is None
    data = retried.status["stages"][0]
    assert data["message"] == f"attempt 2 starting after attempt 1 failed: {reason}"
    assert "retryAt" not in data
    assert retried.events == (), "the retry was announced when it was decided"

    # the second failure waits twice as long
    cluster.finish(Stage.DATA, 2, ok=False, message=failed, finished_at="2026-12-02T09:31:00Z")
    assert cluster.step(now="2026-12-02T09:31:01Z").wake_at == "2026-12-02T09:31:20Z"


@pytest.mark.parametrize(
    ("pod_message", "failure"),
    [
        ("", "Transient"),  # killed: no summary, no log
        ("Traceback (most recent call last): MemoryError", "Transient"),  # its log tail
        (summary(Stage.DATA, "Failed", message="internal error: ConnectionResetError"), "Transient"),
        (summary(Stage.DATA, "Failed", message=NO_SUCH_FILE, failure="Permanent"), "Permanent"),
    ],
)
def test_only_a_summary_that_says_permanent_stops_the_retries(pod_message: str, failure: str) -> None:
    cluster = Cluster(run_of())
    cluster.step()
    cluster.finish(Stage.DATA, 1, ok=False, message=pod_message)
    plan = cluster.step()
    assert plan.status["stages"][0]["phase"] == ("Failed" if failure == "Permanent" else "Running")
    assert bool(plan.create) == (failure == "Transient")


def test_an_exit_without_a_summary_is_not_retried() -> None:
    """Not a stage program (a wrong image or command): the same container would do the same again."""
    cluster = Cluster(run_of())
    cluster.step()
    cluster.finish(Stage.DATA, 1, ok=True, message="")
    plan = cluster.step()
    assert plan.status["phase"] == "Failed"
    assert plan.status["stages"][0]["failure"] == "Permanent"


def training_run(**training: Any) -> RunRef:
    off = {"enabled": False}
    return run_of(
        data=off,
        generation=off,
        rewrite=off,
        filter=off,
        format=off,
        training={"inputPath": "datasets/sft.jsonl", **training},
    )


def test_the_first_trainer_pod_to_fail_says_why_not_the_master_that_lost_it() -> None:
    cluster = Cluster(training_run(nodes=2, globalBatchSize=192, maxAttempts=1))
    cluster.step()
    cause = summary(Stage.TRAIN, "Failed", message="internal error: OutOfMemoryError: CUDA out of memory")
    echo = summary(Stage.TRAIN, "Failed", message="internal error: DistBackendError: NCCL peer gone")
    cluster.end_pod(Stage.TRAIN, 1, ok=False, message=cause, replica="worker", finished_at=FINISHED)
    cluster.end_pod(Stage.TRAIN, 1, ok=False, message=echo, finished_at="2026-12-02T09:31:00Z")
    cluster.end_workload(Stage.TRAIN, 1, ok=False, message="PyTorchJob x is failed because 1 Worker failed.")
    plan = cluster.step()
    train = next(s for s in plan.status["stages"] if s["name"] == "train")
    assert train["message"] == "internal error: OutOfMemoryError: CUDA out of memory"
    assert "OutOfMemoryError" in plan.status["message"]


def test_a_failed_workload_whose_pods_are_gone_never_reads_as_the_controllers_text() -> None:
    cluster = Cluster(training_run(maxAttempts=1))
    cluster.step()
    generic = "Job sky-t1-32b-preview-train-1 has failed because it has reached the specified backoff limit"
    cluster.end_workload(Stage.TRAIN, 1, ok=False, reason="PyTorchJobFailed", message=generic)
    plan = cluster.step()
    train = next(s for s in plan.status["stages"] if s["name"] == "train")
    assert train["message"] == (
        "PyTorchJob sky-t1-32b-preview-train-1 failed (PyTorchJobFailed) and its pods are gone: "
        "the stage's own reason went with them"
    )
    assert "backoff limit" not in json.dumps(plan.status)
    assert train["failure"] == "Transient"


GONE_NODE = {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC"}


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (
            {"phase": "Failed", "reason": "Evicted", "message": "The node was low on memory."},
            "Evicted: The node was low on memory.",
        ),
        (
            # the pod garbage collector fails the pods of a deleted node and says why only in a condition
            {"phase": "Failed", "conditions": [{**GONE_NODE, "message": "PodGC: node no longer exists"}]},
            "DeletionByPodGC: PodGC: node no longer exists",
        ),
    ],
    ids=["evicted", "node-deleted"],
)
def test_a_pod_failed_without_a_container_exit_says_why(status: dict[str, Any], says: str) -> None:
    cluster = Cluster(run_of(data={"maxAttempts": 1}))
    cluster.step()
    cluster.end_workload(Stage.DATA, 1, ok=False, message="Job has reached the specified backoff limit")
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "sky-t1-32b-preview-data-1-x",
            "labels": cluster.workload(Stage.DATA, 1)["spec"]["template"]["metadata"]["labels"],
        },
        "status": status,
    }
    cluster.objects[("Pod", pod["metadata"]["name"])] = pod
    plan = cluster.step()
    assert plan.status["stages"][0]["message"] == says


def test_an_attempt_whose_pods_went_with_their_node_says_what_last_held_it_back() -> None:
    """The pod garbage collector removes a deleted node's pods at once: the failure's own words are gone,
    and what the stage was last seen waiting on (its node, lost) is the reason the retry gives."""
    cluster = Cluster(run_of())
    cluster.step()
    silent = {"type": "Ready", "status": "False", "lastTransitionTime": "2026-12-08T01:00:00Z"}
    name = pending_pod(cluster, Stage.DATA, on_a_silent_node(silent), node="cpu-7")
    assert cluster.step().status["stages"][0]["waiting"]["reason"] == "NodeLost"
    del cluster.objects[("Pod", name)]
    cluster.end_workload(Stage.DATA, 1, ok=False, message="Job has reached the specified backoff limit")
    data = cluster.step().status["stages"][0]
    assert (
        "after attempt 1 failed: Job sky-t1-32b-preview-data-1 failed (Failed) and its pods"
        in data["message"]
    )
    assert "; it was last seen held back (NodeLost): pod data-pod is on node cpu-7" in data["message"]


@pytest.mark.parametrize(
    ("conditions", "gates"),
    [
        # a server still loading its model: the kubelet says neither its containers nor the pod is ready
        ([{"type": "ContainersReady", "status": "False"}, {"type": "Ready", "status": "False"}], []),
        # a readiness gate not yet met: the one way a kubelet itself reports this pair
        ([{"type": "ContainersReady", "status": "True"}, {"type": "Ready", "status": "False"}], ["x/ready"]),
    ],
    ids=["probe", "readiness-gate"],
)
def test_a_pod_not_ready_on_a_live_node_is_not_called_lost(
    conditions: list[dict[str, Any]], gates: list[str]
) -> None:
    cluster = Cluster(run_of())
    cluster.step()
    name = pending_pod(cluster, Stage.DATA, {"phase": "Running", "conditions": conditions}, node="cpu-7")
    cluster.objects[("Pod", name)]["spec"]["readinessGates"] = [{"conditionType": g} for g in gates]
    plan = cluster.step()
    assert "waiting" not in plan.status["stages"][0]


# what the kubelet says of a container whose Localhost profile is not on the node
NO_PROFILE = (
    'failed to generate security options for container "sandbox": failed to generate seccomp security '
    "options for container: cannot load seccomp profile "
    '"/var/lib/kubelet/seccomp/reasoning-operator/sandbox.json": open /var/lib/kubelet/seccomp/'
    "reasoning-operator/sandbox.json: no such file or directory"
)


def waiting_pod(cluster: Cluster, stage: Stage, reason: str, message: str, *, sidecar: bool = True) -> None:
    """The attempt's pod as the kubelet leaves it when it cannot create a container: Pending for ever."""
    workload = cluster.workload(stage, 1)
    template = workload["spec"]["template"]
    waiting = {"state": {"waiting": {"reason": reason, "message": message}}}
    status: dict[str, Any] = {"phase": "Pending"}
    if sidecar:
        status["initContainerStatuses"] = [{"name": "sandbox", **waiting}]
        status["containerStatuses"] = [{"name": "stage", "state": {"waiting": {"reason": "PodInitializing"}}}]
    else:
        status["containerStatuses"] = [{"name": "stage", **waiting}]
    cluster.objects[("Pod", f"{stage.value}-pod")] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{stage.value}-pod", "labels": dict(template["metadata"]["labels"])},
        "spec": template["spec"],
        "status": status,
    }


def from_the_filter() -> RunRef:
    disabled = {"enabled": False}
    return run_of(data=disabled, generation=disabled, rewrite=disabled, filter={"inputPath": "traces.jsonl"})


def test_a_node_without_the_sandbox_profile_fails_the_stage_for_good_naming_the_field() -> None:
    """The kubelet retries such a pod for ever and it never ends: the operator says why, does not try
    again (the same nodes refuse the same spec), and deletes the Job so that its pod frees the node."""
    cluster = Cluster(from_the_filter())
    cluster.step()
    waiting_pod(cluster, Stage.FILTER, "ContainerCreating", "")
    assert cluster.step().status["phase"] == "Running", "an ordinary start is waited for"
    waiting_pod(cluster, Stage.FILTER, "CreateContainerError", NO_PROFILE)
    job = cluster.workload(Stage.FILTER, 1)["metadata"]["name"]
    plan = cluster.step()
    assert plan.status["phase"] == "Failed"
    (filter_stage,) = [s for s in plan.status["stages"] if s["name"] == "filter"]
    assert (filter_stage["attempts"], filter_stage["failure"]) == (1, "Permanent")
    assert filter_stage["message"].startswith("sandbox.seccompProfile: the node cannot load")
    assert "no such file or directory" in filter_stage["message"]
    assert "sandbox.seccompProfile" in plan.status["message"]
    assert [(ref.kind, ref.name) for ref in plan.delete] == [("Job", job)]
    assert plan.create == ()


@pytest.mark.parametrize(
    ("kubelet_says", "field"),
    [
        ('secret "openai-api-key" not found', "rewrite.apiKeySecret"),
        ("couldn't find key api-key in Secret team/openai-api-key", "rewrite.apiKeySecret"),
        ('secret "hf-token" not found', "hub.tokenSecret"),
    ],
)
def test_a_missing_secret_or_key_fails_the_stage_naming_the_field(kubelet_says: str, field: str) -> None:
    if field == "hub.tokenSecret":  # the rewrite gets no hub token: the data stage reads the hub
        cluster, stage = Cluster(run_of()), Stage.DATA
    else:
        rewrite = {**yaml.safe_load((EXAMPLES / "sky-t1-32b-preview.yaml").read_text())["spec"]["rewrite"]}
        disabled = {"enabled": False}
        run = run_of(data=disabled, generation=disabled, rewrite={**rewrite, "inputPath": "raw.jsonl"})
        cluster, stage = Cluster(run), Stage.REWRITE
    cluster.step()
    waiting_pod(cluster, stage, "CreateContainerConfigError", kubelet_says, sidecar=False)
    plan = cluster.step()
    (entry,) = [s for s in plan.status["stages"] if s["name"] == stage.value]
    assert (entry["phase"], entry["failure"]) == ("Failed", "Permanent")
    assert entry["message"] == (
        f"{field}: the Secret or its key is missing (container stage: CreateContainerConfigError: "
        f"{kubelet_says})"
    )
    assert plan.status["phase"] == "Failed"


# ------------------------------------------------------------------ what holds a running stage back
def pending_pod(
    cluster: Cluster, stage: Stage, status: dict[str, Any], *, server: bool = False, node: str | None = None
) -> str:
    """A pod of the stage's running attempt (or of its server) as the scheduler or kubelet leaves it, bound
    to the node if one is named."""
    if server:
        deployment = next(b for b in cluster.objects.values() if b["kind"] == "Deployment")
        template = deployment["spec"]["template"]
        name = f"{deployment['metadata']['name']}-abc12"
    else:
        template = cluster.workload(stage, 1)["spec"]["template"]
        name = f"{stage.value}-pod"
    cluster.objects[("Pod", name)] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict(template["metadata"]["labels"])},
        "spec": {**template["spec"], **({"nodeName": node} if node else {})},
        "status": status,
    }
    return name


def unscheduled(message: str) -> dict[str, Any]:
    condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
    return {"phase": "Pending", "conditions": [condition]}


def waiting_container(reason: str, message: str = "", **more: Any) -> dict[str, Any]:
    waiting = {"reason": reason, "message": message}
    state = {"name": "stage", "image": "ghcr.io/x/pipeline:0.1.0", "state": {"waiting": waiting}}
    return {"phase": "Pending", "containerStatuses": [{**state, **more}]}


def on_a_silent_node(*conditions: dict[str, Any]) -> dict[str, Any]:
    """A running pod as the node lifecycle controller leaves it once its node stops reporting: Ready False,
    and the rest as the kubelet last said it."""
    kept = [{"type": "ContainersReady", "status": "True"}, {"type": "PodScheduled", "status": "True"}]
    running = {"name": "stage", "ready": True, "state": {"running": {"startedAt": "2026-12-08T00:50:00Z"}}}
    return {"phase": "Running", "conditions": [*kept, *conditions], "containerStatuses": [running]}


NO_ROOM = "0/4 nodes are available: 2 Insufficient cpu, 2 node(s) had untolerated taint {nvidia.com/gpu: }."
UNBOUND = "0/4 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: ..."


@pytest.mark.parametrize(
    ("status", "reason", "says"),
    [
        (unscheduled(NO_ROOM), "Unschedulable", f"cannot be scheduled: {NO_ROOM} (no node of its pool"),
        (unscheduled(UNBOUND), "Unschedulable", "the storage claim is not bound: check storage."),
        (
            waiting_container("ImagePullBackOff", 'Back-off pulling image "ghcr.io/x/pipeline:0.1.0"'),
            "ImagePullBackOff",
            "cannot get its image ghcr.io/x/pipeline:0.1.0 (ImagePullBackOff: Back-off pulling",
        ),
        (
            waiting_container(
                "CrashLoopBackOff",
                "back-off 5m0s restarting failed container",
                restartCount=6,
                lastState={"terminated": {"exitCode": 1, "reason": "Error", "message": "x\nImportError: y"}},
            ),
            "CrashLoopBackOff",
            "keeps crashing (6 restarts; last: Error, exit code 1: ImportError: y)",
        ),
        ({"phase": "Unknown", "reason": "NodeLost", "message": "Node n1 is unreachable"}, "NodeLost", "n1"),
        (
            on_a_silent_node(
                {"type": "Ready", "status": "False", "lastTransitionTime": "2026-12-08T01:00:00Z"}
            ),
            "NodeLost",
            "is on node cpu-7, which stopped reporting (the node controller marked the pod not ready at "
            "2026-12-08T01:00:00Z)",
        ),
        (
            on_a_silent_node(
                {"type": "Ready", "status": "False"},
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "DeletionByTaintManager",
                    "message": "Taint manager: deleting due to NoExecute taint",
                },
            ),
            "NodeLost",
            "(the taint manager is deleting the pod: Taint manager: deleting due to NoExecute taint)",
        ),
    ],
    ids=[
        "no-room",
        "unbound-claim",
        "image",
        "crash-loop",
        "node-lost-legacy",
        "node-silent",
        "node-evicting",
    ],
)
def test_what_holds_a_running_stage_back_is_its_message_its_condition_reason_and_one_event(
    status: dict[str, Any], reason: str, says: str
) -> None:
    cluster = Cluster(run_of())
    cluster.step()
    pending_pod(cluster, Stage.DATA, status, node="cpu-7" if status["phase"] == "Running" else None)
    plan = cluster.step()
    data = plan.status["stages"][0]
    assert data["phase"] == "Running"
    assert data["waiting"]["reason"] == reason
    assert says in data["waiting"]["message"]
    assert data["message"].startswith("attempt 1 waiting: pod data-pod")
    assert plan.status["phase"] == "Running"
    assert says in plan.status["message"]
    assert conditions_of(plan.status)["Ready"]["reason"] == reason
    assert conditions_of(plan.status)["Reconciling"]["reason"] == reason
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", reason)]
    assert says in plan.events[0].message
    assert cluster.step().events == (), "said once, not on every pass"
    # the kubelet gets it going: the stage reads as running again
    pending_pod(cluster, Stage.DATA, {"phase": "Running", "containerStatuses": [{"state": {"running": {}}}]})
    plan = cluster.step()
    assert "waiting" not in plan.status["stages"][0]
    assert plan.status["stages"][0]["message"] == "attempt 1 running"
    assert conditions_of(plan.status)["Ready"]["reason"] == "StageRunning"


def test_a_teacher_that_keeps_crashing_is_seen_while_the_driver_waits_for_it() -> None:
    cluster = Cluster(run_of())
    cluster.step()
    cluster.finish(Stage.DATA, 1)
    cluster.step()  # generate: the teacher's Deployment and Service, and the driver
    crash = waiting_container(
        "CrashLoopBackOff",
        lastState={"terminated": {"exitCode": 1, "reason": "Error", "message": "ValueError: bad model"}},
        restartCount=3,
    )
    name = pending_pod(cluster, Stage.GENERATE, crash, server=True)
    plan = cluster.step()
    generate = plan.status["stages"][1]
    assert generate["waiting"]["reason"] == "CrashLoopBackOff"
    assert f"pod {name}: container stage keeps crashing" in generate["waiting"]["message"]
    assert "ValueError: bad model" in plan.status["message"]


def test_a_suspended_attempt_is_not_reported_as_held_back() -> None:
    """A suspended Job's pods are gone or going: what the scheduler said of them no longer matters."""
    cluster = Cluster(run_of())
    cluster.step()
    cluster.run = run_of(suspend=True)
    cluster.step()  # the Job is suspended
    assert cluster.workload(Stage.DATA, 1)["spec"]["suspend"] is True
    pending_pod(cluster, Stage.DATA, unscheduled(NO_ROOM))
    plan = cluster.step()
    assert "waiting" not in plan.status["stages"][0]
    assert plan.events == ()


def test_attempts_deleted_by_a_cleanup_do_not_reset_the_count() -> None:
    """Attempt 2 runs; a TTL controller or a person deletes every Job of the stage. The count is in the
    status: the operator makes attempt 2 again under its name, not attempt 1, and gives up at maxAttempts."""
    cluster = Cluster(run_of(data={"maxAttempts": 2}))
    cluster.step()
    cluster.finish(Stage.DATA, 1, ok=False)
    cluster.step(now="2026-12-02T11:00:00Z")  # after the backoff: attempt 2
    second = cluster.workload(Stage.DATA, 2)["metadata"]["name"]
    for key in [k for k in cluster.objects if k[0] in ("Job", "Pod")]:
        del cluster.objects[key]
    plan = cluster.step(now="2026-12-02T11:01:00Z")
    assert [m["metadata"]["name"] for m in plan.create if m["kind"] == "Job"] == [second]
    assert plan.status["stages"][0]["attempts"] == 2
    cluster.finish(Stage.DATA, 2, ok=False)
    plan = cluster.step(now="2026-12-02T12:00:00Z")
    assert plan.status["phase"] == "Failed"
    assert plan.status["stages"][0]["attempts"] == 2


def test_an_attempt_past_its_deadline_says_which_field_and_the_next_one_resumes() -> None:
    cluster = Cluster(run_of())
    cluster.step()
    job = cluster.workload(Stage.DATA, 1)
    assert job["spec"]["activeDeadlineSeconds"] == 2 * 3600  # data's default
    cluster.end_pod(Stage.DATA, 1, ok=False, message="")
    cluster.end_workload(
        Stage.DATA,
        1,
        ok=False,
        reason="DeadlineExceeded",
        message="Job was active longer than specified deadline",
    )
    plan = cluster.step()  # the pod ended long before now: no backoff left to wait
    data = plan.status["stages"][0]
    assert data["message"] == (
        "attempt 2 starting after attempt 1 failed: the attempt ran past its deadline of 7200 s "
        "(data.deadlineSeconds); the next one resumes from what it kept"
    )
    assert [m["metadata"]["name"] for m in plan.create if m["kind"] == "Job"] == [
        cluster.workload(Stage.DATA, 2)["metadata"]["name"]
    ]


def test_api_spend_is_priced_and_a_run_over_its_budget_is_held_until_the_budget_is_raised() -> None:
    """GPT-4o-mini's list price by default: 2 M prompt tokens at $0.15 and 1 M completion tokens at $0.60
    per million are $0.90. The trainer's 8 GPUs for 30 minutes at $2.96 then pass a $10 budget."""
    cluster = Cluster(run_of(budgetUsd=10))
    cluster.step()
    metrics = {Stage.REWRITE: {"apiPromptTokens": 2_000_000, "apiCompletionTokens": 1_000_000}}
    for stage in (Stage.DATA, Stage.GENERATE, Stage.REWRITE, Stage.FILTER, Stage.FORMAT):
        cluster.finish(stage, 1, message=summary(stage, metrics=metrics.get(stage, {})))
        plan = cluster.step()
    assert plan.status["cost"]["apiUSD"] == "0.90"
    assert plan.status["cost"]["spentUSD"] == "0.90"
    assert plan.status["phase"] == "Running"
    trainer = cluster.workload(Stage.TRAIN, 1)
    cluster.end_pod(Stage.TRAIN, 1, ok=True, finished_at="2026-12-02T09:30:00Z")
    pod = next(b for b in cluster.objects.values() if b["kind"] == "Pod" and "train" in b["metadata"]["name"])
    pod["status"] = {
        "phase": "Running",
        "containerStatuses": [{"state": {"running": {"startedAt": "2026-12-02T09:30:00Z"}}}],
    }
    cluster.step()  # 30 minutes of 8 GPUs: $11.84 of GPU time
    plan = cluster.step()
    assert float(plan.status["cost"]["spentUSD"]) == pytest.approx(0.90 + 4 * 2.96, abs=0.01)
    assert plan.status["phase"] == "Suspended"
    ready = conditions_of(plan.status)["Ready"]
    assert ready["reason"] == "BudgetExceeded"
    assert ready["message"].startswith("spent $12.74 of its $10.00 budget (spec.budgetUsd)")
    assert trainer["spec"]["runPolicy"]["suspend"] is True
    cluster.run = run_of(budgetUsd=100)
    plan = cluster.step()
    assert plan.status["phase"] == "Running"
    assert trainer["spec"]["runPolicy"]["suspend"] is False


# -------------------------------------------------------------------------------------------- Kueue
def kueue_workload(cluster: Cluster, stage: Stage, *, admitted: bool, message: str = "") -> dict[str, Any]:
    """The Workload Kueue makes for the attempt's Job, as Kueue leaves it: admitted (and the Job
    un-suspended), or pending with its reason."""
    job = cluster.workload(stage, 1)
    name = f"job-{job['metadata']['name']}-1a2b3"
    conditions = [
        {"type": "QuotaReserved", "status": "True" if admitted else "False", "message": message},
        {"type": "Admitted", "status": "True" if admitted else "False", "message": message},
    ]
    body = {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "Workload",
        "metadata": {"name": name, "labels": {"kueue.x-k8s.io/job-uid": job["metadata"]["uid"]}},
        "spec": {"queueName": "team-a", "active": True},
        "status": {"conditions": conditions},
    }
    cluster.objects[("Workload", name)] = body
    job["spec"]["suspend"] = not admitted
    return body


NO_QUOTA = (
    "couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu in flavor h100"
)


def test_under_kueue_a_stage_waits_in_its_queue_and_the_operator_never_starts_it_itself() -> None:
    cluster = Cluster(run_of(queueName="team-a"))
    cluster.step()
    assert cluster.workload(Stage.DATA, 1)["spec"]["suspend"] is True, "made suspended, for Kueue to start"
    plan = cluster.step()
    data = plan.status["stages"][0]
    assert data["waiting"]["reason"] == "Queued"
    assert data["message"].startswith("attempt 1 waiting: in queue team-a (Kueue has not taken it in yet")
    assert [(e.type, e.reason) for e in plan.events] == [("Normal", "Queued")], "not a warning: it is normal"
    assert plan.suspend == ()
    assert plan.activate == ()
    kueue_workload(cluster, Stage.DATA, admitted=False, message=NO_QUOTA)
    plan = cluster.step()
    data = plan.status["stages"][0]
    assert data["waiting"] == {
        "reason": "Queued",
        "message": f"in queue team-a (Workload job-sky-t1-32b-preview-data-1-1a2b3: {NO_QUOTA})",
    }
    assert conditions_of(plan.status)["Ready"]["reason"] == "Queued"
    assert plan.suspend == (), "what Kueue holds, the operator leaves held"
    assert plan.activate == ()
    kueue_workload(cluster, Stage.DATA, admitted=True)
    plan = cluster.step()
    assert plan.status["stages"][0]["message"] == "attempt 1 running"
    assert "waiting" not in plan.status["stages"][0]
    assert plan.suspend == ()
    assert plan.activate == ()


def test_under_kueue_a_suspended_run_deactivates_its_workload_and_resume_activates_it() -> None:
    """A Job Kueue admitted and someone suspended is un-suspended by Kueue again: the run is held
    through the Workload's `spec.active`, which makes Kueue evict it and suspend the Job."""
    cluster = Cluster(run_of(queueName="team-a"))
    cluster.step()
    workload = kueue_workload(cluster, Stage.DATA, admitted=True)
    cluster.step()
    cluster.run = run_of(queueName="team-a", suspend=True)
    plan = cluster.step()
    assert plan.activate == ((workload["metadata"]["name"], False),)
    assert plan.suspend == ()
    assert plan.status["phase"] == "Suspended"
    # Kueue evicts it and suspends the Job
    kueue_workload(cluster, Stage.DATA, admitted=False, message="The workload is deactivated")
    workload = cluster.objects[("Workload", workload["metadata"]["name"])]
    workload["spec"]["active"] = False
    plan = cluster.step()
    assert plan.activate == ()
    assert plan.suspend == ()
    assert plan.status["phase"] == "Suspended"
    assert "waiting" not in plan.status["stages"][0]
    cluster.run = run_of(queueName="team-a")
    plan = cluster.step()
    assert plan.activate == ((workload["metadata"]["name"], True),)
    assert plan.status["stages"][0]["waiting"]["reason"] == "Queued"


def test_a_server_pod_kueue_has_not_admitted_waits_in_its_queue() -> None:
    cluster = Cluster(run_of(queueName="team-a"))
    cluster.step()
    kueue_workload(cluster, Stage.DATA, admitted=True)
    cluster.finish(Stage.DATA, 1)
    cluster.step()  # generate: the teacher and the driver
    kueue_workload(cluster, Stage.GENERATE, admitted=True)
    gate = {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}
    name = pending_pod(cluster, Stage.GENERATE, {"phase": "Pending", "conditions": [gate]}, server=True)
    cluster.objects[("Pod", name)]["spec"] = {"schedulingGates": [{"name": "kueue.x-k8s.io/admission"}]}
    plan = cluster.step()
    generate = plan.status["stages"][1]
    assert generate["waiting"]["reason"] == "Queued"
    assert generate["waiting"]["message"] == f"in queue team-a (pod {name} is not admitted by Kueue yet)"


# ----------------------------------------------------------------------------------------- estimate
def estimated(made_by: Stage, **stages: dict[str, Any]) -> dict[str, Any]:
    """An estimate as a stage program's summary carries it (reasoning_pipeline.estimate)."""
    figures = {name: {**values, "madeBy": made_by.value} for name, values in stages.items()}
    return merge_estimates({}, {"basis": {}, "stages": figures})


def test_the_data_and_format_stages_estimates_are_in_status_before_the_gpus_with_one_event_each() -> None:
    cluster = Cluster(run_of(budgetUsd=400))
    cluster.step()
    early = estimated(
        Stage.DATA, generate={"usd": "60.00"}, rewrite={"apiUSD": "50.00"}, train={"usd": "250.00"}
    )
    cluster.finish(Stage.DATA, 1, message=summary(Stage.DATA, estimate=early))
    plan = cluster.step()
    assert plan.status["estimate"]["totalUSD"] == "360.00"
    assert stage_phases(plan.status)["generate"] == "Running"  # the teacher is asked for with it in status
    (said,) = [e for e in plan.events if "Estimate" in e.reason]
    assert (said.type, said.reason) == ("Normal", "Estimated")
    assert said.message.startswith("estimated $360.00 (generate $60.00, rewrite $50.00, train $250.00;")
    assert cluster.step().events == (), "said once"
    for stage in (Stage.GENERATE, Stage.REWRITE, Stage.FILTER):
        cluster.finish(stage, 1)
        cluster.step()
    late = estimated(Stage.FORMAT, train={"usd": "450.00"})
    cluster.finish(Stage.FORMAT, 1, message=summary(Stage.FORMAT, estimate=late))
    plan = cluster.step()
    assert plan.status["estimate"]["stages"]["train"]["usd"] == "450.00", "what format measured wins"
    assert plan.status["estimate"]["stages"]["generate"]["usd"] == "60.00"
    assert plan.status["estimate"]["totalUSD"] == "560.00"
    (warning,) = [e for e in plan.events if "Estimate" in e.reason]
    assert (warning.type, warning.reason) == ("Warning", "EstimateOverBudget")
    assert "over spec.budgetUsd $400.00" in warning.message
    # the children go (a TTL, a person): the recorded estimate stays as it was
    cluster.objects = {k: v for k, v in cluster.objects.items() if k[0] not in ("Job", "Pod")}
    assert cluster.step().status["estimate"] == plan.status["estimate"]


# ------------------------------------------------------------------------------------------ progress
def test_a_running_stage_shows_its_pods_progress_rate_and_what_is_left_in_time_and_dollars() -> None:
    """The teacher spans 8 H100s at $2.96 per GPU-hour: 3,000 traces left at 2.5 per second are 20
    minutes, $7.89. The stage's final summary then replaces the live figures."""
    cluster = Cluster(run_of())
    cluster.step()
    cluster.finish(Stage.DATA, 1)
    cluster.step()
    log = "INFO waiting for the teacher\ngenerate: 1000/4000 done,  2.50rec/s, 06:40 elapsed, 20:00 left\n"
    plan = advance(
        cluster.run, cluster.observed(), cluster.status, now=NOW, logs={Stage.GENERATE: (NOW, log)}
    )
    generate = plan.status["stages"][1]
    assert generate["progress"] == {
        "done": 1000,
        "total": 4000,
        "percent": 25.0,
        "unit": "rec",
        "ratePerSecond": 2.5,
        "remainingSeconds": 1200,
        "remainingUSD": "7.89",
        "updatedAt": NOW,
    }
    cluster.status = json.loads(json.dumps(plan.status))
    plan = advance(cluster.run, cluster.observed(), cluster.status, now=NOW, logs={Stage.GENERATE: (NOW, "")})
    assert plan.status["stages"][1]["progress"]["done"] == 1000, "a log without a new line keeps the last"
    cluster.finish(Stage.GENERATE, 1)
    plan = cluster.step()
    assert plan.status["stages"][1]["progress"] == {"done": 10, "total": 10}


# ---------------------------------------------------------------------------- edits and restarts
def config_generation(cluster: Cluster) -> str:
    return str(
        cluster.objects[("ConfigMap", "sky-t1-32b-preview-config")]["metadata"]["annotations"][
            "reasoning.dev/generation"
        ]
    )


def run_through(cluster: Cluster, *stages: Stage) -> Plan:
    plan = cluster.step()
    for stage in stages:
        cluster.finish(stage, 1)
        plan = cluster.step()
    return plan


def test_an_edit_renders_the_run_file_again_and_only_stops_the_attempts_whose_spec_it_changes() -> None:
    cluster = Cluster(run_of())
    run_through(cluster, Stage.DATA)  # generate runs: the teacher and the driver, attempt 1
    assert config_generation(cluster) == "1"
    # a field that only says where or how fast: the run file follows, the attempt goes on
    cluster.run = run_of(edit=2, generation={"concurrency": 8})
    plan = cluster.step()
    assert [m["kind"] for m in plan.update] == ["ConfigMap"]
    assert config_generation(cluster) == "2"
    assert plan.delete == ()
    assert plan.status["stages"][1]["message"] == "attempt 1 running"
    # the teacher's sampling: what generate makes changes, so attempt 1 stops, servers and all
    cluster.run = run_of(edit=3, generation={"concurrency": 8, "sampling": {"temperature": 0.6}})
    plan = cluster.step()
    assert config_generation(cluster) == "3"
    assert {c.name for c in plan.delete} == {
        "sky-t1-32b-preview-generate-1",
        "sky-t1-32b-preview-generate-server",
    }
    generate = plan.status["stages"][1]
    assert generate["message"] == "attempt 1 stopping: the stage runs again"
    assert conditions_of(plan.status)["Reconciling"]["reason"] == "StageRestarting"
    # once it is gone, attempt 2 runs under the new spec, with its servers made again
    plan = cluster.step()
    assert ("Job", "sky-t1-32b-preview-generate-2") in cluster.kinds(plan.create)
    assert ("Deployment", "sky-t1-32b-preview-generate-server") in cluster.kinds(plan.create)
    assert plan.status["stages"][1]["attempts"] == 2
    cluster.finish(Stage.GENERATE, 2)
    assert stage_phases(cluster.step().status)["generate"] == "Succeeded"


def test_an_edit_to_a_stage_that_has_run_holds_the_run_until_it_is_restarted_from_there() -> None:
    cluster = Cluster(run_of())
    run_through(cluster, Stage.DATA, Stage.GENERATE)  # rewrite runs
    cluster.run = run_of(edit=2, generation={"sampling": {"temperature": 0.6}})
    plan = cluster.step()
    assert plan.status["phase"] == "Running"
    stalled = conditions_of(plan.status)["Stalled"]
    assert (stalled["status"], stalled["reason"]) == ("True", "SpecChanged")
    assert "stage generate ran under an earlier spec" in stalled["message"]
    assert "spec.restartFrom: {stage: generate, id: <a new id>}" in stalled["message"]
    assert plan.create == (), "rewrite would refuse what generate made under the earlier spec"
    # undone, the run goes on where it was
    cluster.run = run_of(edit=3)
    assert conditions_of(cluster.step().status)["Stalled"]["status"] == "False"


def test_restart_from_a_stage_reruns_it_and_the_ones_after_keeping_the_ones_before() -> None:
    cluster = Cluster(run_of())
    plan = run_through(cluster, *Stage)
    assert plan.status["phase"] == "Succeeded"
    cluster.run = run_of(edit=2, restartFrom={"stage": "train", "id": "fix-1"})
    plan = cluster.step()
    assert [(e.type, e.reason) for e in plan.events if e.reason == "Restarted"] == [("Normal", "Restarted")]
    assert plan.status["restarts"] == [{"id": "fix-1", "stage": "train", "at": NOW}]
    assert "finishedAt" not in plan.status
    assert plan.status["phase"] == "Running"
    phases = stage_phases(plan.status)
    assert [phases[s.value] for s in Stage] == ["Succeeded"] * 5 + ["Running", "Pending"]
    assert ("PyTorchJob", "sky-t1-32b-preview-train-2") in cluster.kinds(plan.create)
    train = plan.status["stages"][5]
    assert (train["attempts"], train["restartedAfter"]) == (2, 1)
    # the same id again is the same restart: nothing more happens
    cluster.finish(Stage.TRAIN, 2)
    cluster.step()
    cluster.finish(Stage.EVALUATE, 2)
    plan = cluster.step()
    assert plan.status["phase"] == "Succeeded"
    assert len(plan.status["restarts"]) == 1
    assert cluster.step().create == ()
    # a new id while the train stage runs again: its attempt stops, then attempt 4 (after 3) starts
    cluster.run = run_of(edit=3, restartFrom={"stage": "train", "id": "fix-2"})
    plan = cluster.step()
    plan = cluster.step()
    running = cluster.workload(Stage.TRAIN, 3)
    cluster.run = run_of(edit=4, restartFrom={"stage": "train", "id": "fix-3"})
    plan = cluster.step()
    assert ChildRef("kubeflow.org/v1", "PyTorchJob", running["metadata"]["name"]) in plan.delete
    plan = cluster.step()
    assert ("PyTorchJob", "sky-t1-32b-preview-train-4") in cluster.kinds(plan.create)


def test_attempts_after_a_restart_count_against_max_attempts_afresh() -> None:
    cluster = Cluster(run_of(training={"maxAttempts": 2}))
    run_through(cluster, Stage.DATA, Stage.GENERATE, Stage.REWRITE, Stage.FILTER, Stage.FORMAT)
    cluster.finish(Stage.TRAIN, 1, ok=False)
    cluster.step(now="2026-12-02T11:00:00Z")
    cluster.finish(Stage.TRAIN, 2, ok=False)
    plan = cluster.step(now="2026-12-02T12:00:00Z")
    assert plan.status["phase"] == "Failed"
    cluster.run = run_of(edit=2, training={"maxAttempts": 2}, restartFrom={"stage": "train", "id": "again"})
    plan = cluster.step(now="2026-12-02T12:01:00Z")
    assert plan.status["phase"] == "Running"
    assert ("PyTorchJob", "sky-t1-32b-preview-train-3") in cluster.kinds(plan.create)
    cluster.finish(Stage.TRAIN, 3, ok=False)
    plan = cluster.step(now="2026-12-02T13:00:00Z")
    assert plan.status["phase"] == "Running", "attempt 1 of 2 since the restart"


def test_a_server_not_ready_within_its_time_fails_the_attempt_with_its_last_log_line() -> None:
    """The teacher's pod runs but never answers its readiness probe: past
    generation.serverReadyTimeoutSeconds (30 minutes by default) the operator ends the driver's attempt
    through its Job (deadline cut short, the reason annotated), deletes the servers, and the next
    attempt starts them afresh."""
    cluster = Cluster(run_of())
    run_through(cluster, Stage.DATA)  # generate: the teacher and the driver
    loading = {
        "phase": "Running",
        "containerStatuses": [
            {"name": "server", "ready": False, "state": {"running": {"startedAt": "2026-12-02T09:20:00Z"}}}
        ],
    }
    name = pending_pod(cluster, Stage.GENERATE, loading, server=True)
    assert cluster.step(now="2026-12-02T09:45:00Z").fail == (), "25 minutes: still its time"
    log = "INFO loading weights\nERROR torch.OutOfMemoryError: CUDA out of memory\n"
    plan = advance(
        cluster.run, cluster.observed(), cluster.status, now="2026-12-02T09:51:00Z", server_logs={name: log}
    )
    ((workload, why),) = plan.fail
    assert workload.name == "sky-t1-32b-preview-generate-1"
    assert why == (
        f"server pod {name} did not become ready within 1800 s (generation.serverReadyTimeoutSeconds); "
        "its last log line: ERROR torch.OutOfMemoryError: CUDA out of memory"
    )
    assert {c.kind for c in plan.delete} == {"Deployment", "Service"}
    generate = plan.status["stages"][1]
    assert generate["waiting"]["reason"] == "ServerNotReady"
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "ServerNotReady")]
    patch = fail_patch(workload, why)
    assert patch["spec"] == {"activeDeadlineSeconds": 1}
    # the Job controller ends it past its new deadline: the attempt failed, in the operator's words
    job = cluster.workload(Stage.GENERATE, 1)
    job["metadata"]["annotations"] = patch["metadata"]["annotations"]
    cluster.end_workload(Stage.GENERATE, 1, ok=False, reason="DeadlineExceeded")
    for gone in [("Pod", name), *((c.kind, c.name) for c in plan.delete)]:
        cluster.objects.pop(gone)
    cluster.status = json.loads(json.dumps(plan.status))
    plan = cluster.step(now="2026-12-02T09:51:30Z")
    generate = plan.status["stages"][1]
    assert f"after attempt 1 failed: server pod {name} did not become ready" in generate["message"]
    assert ("Deployment", "sky-t1-32b-preview-generate-server") in cluster.kinds(plan.create)
