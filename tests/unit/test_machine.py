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
from reasoning_operator.machine import Plan, advance
from reasoning_operator.naming import LABEL_ATTEMPT, LABEL_STAGE
from reasoning_operator.observe import observe, parse_summary
from reasoning_operator.run import RunRef
from reasoning_pipeline.spec import Stage

from tests.support.runs import stage_summary as summary

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOW = "2026-12-02T10:00:00Z"


def run_of(example: str = "sky-t1-32b-preview.yaml", **spec_changes: Any) -> RunRef:
    document = yaml.safe_load((EXAMPLES / example).read_text())
    document["spec"].update(spec_changes)
    document["metadata"].update(namespace="team", uid="uid-1", generation=1)
    return RunRef.from_body(document)


class Cluster:
    """What the API server would hold after each plan: created objects appear, deleted ones go."""

    def __init__(self, run: RunRef) -> None:
        self.run = run
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.status: dict[str, Any] = {}

    def step(self) -> Plan:
        observed = observe(
            self.objects.values(),
            gpu_resources=gpu_resources(self.run.spec),
            now=datetime.fromisoformat(NOW.replace("Z", "+00:00")),
        )
        plan = advance(self.run, observed, self.status, now=NOW)
        for manifest in plan.create:
            body = copy.deepcopy(manifest)
            body["metadata"]["creationTimestamp"] = "2026-12-02T09:00:00Z"
            self.objects[(body["kind"], body["metadata"]["name"])] = body
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

    def finish(self, stage: Stage, attempt: int, *, ok: bool = True, message: str | None = None) -> None:
        """The attempt's pod ends with a termination message, its workload with the matching condition."""
        workload = self.workload(stage, attempt)
        template = (
            workload["spec"].get("template") or workload["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
        )
        labels = dict(template["metadata"]["labels"])
        if workload["kind"] == "PyTorchJob":
            labels["training.kubeflow.org/replica-type"] = "master"
        pod_name = f"{workload['metadata']['name']}-pod"
        self.objects[("Pod", pod_name)] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod_name, "labels": labels},
            "spec": template["spec"],
            "status": {
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
                                "finishedAt": "2026-12-02T09:30:00Z",
                            }
                        }
                    }
                ]
            },
        }
        condition = ("Complete" if workload["kind"] == "Job" else "Succeeded") if ok else "Failed"
        workload["status"] = {
            "conditions": [
                {"type": condition, "status": "True", "lastTransitionTime": "2026-12-02T09:30:00Z"}
            ]
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
        ("Deployment", "sky-t1-32b-preview-generate-server"),
        ("Service", "sky-t1-32b-preview-generate-server"),
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
        ("Deployment", "sky-t1-32b-preview-generate-server"),
        ("Service", "sky-t1-32b-preview-generate-server"),
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
    assert float(cost["estimatedUSD"]) == pytest.approx(4.0 * 2.96, abs=0.01)
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
