"""What exists of a run on the cluster: its children, as the API server returns them, read into attempts.

Every child carries the run's labels (`reasoning.dev/stage`, `reasoning.dev/attempt`, `reasoning.dev/role`),
and so do the pods of Jobs, PyTorchJobs and Deployments (the pod templates carry them too). A stage attempt
is one Job (or one PyTorchJob for training); its outcome is the stage summary its pod left in the
termination message: stage pods have no API access, so that is the only channel back. A failure is
Permanent only when the summary says so; a pod that died without one (killed, out of memory, a crash
whose log tail is its message) failed transiently. The controllers' own condition messages ("has reached
the specified backoff limit") never stand for the stage's reason: the pod's words do.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from reasoning_pipeline.spec import Stage, wire_section
from reasoning_pipeline.summary import Failure

from reasoning_operator.naming import (
    FAILURE_ANNOTATION,
    GENERATION_ANNOTATION,
    LABEL_ATTEMPT,
    LABEL_ROLE,
    LABEL_RUN_UID,
    LABEL_STAGE,
    QUEUE_LABEL,
    Role,
)
from reasoning_operator.stages.rewrite import API_KEY_VARIABLE
from reasoning_operator.workloads import HUB_TOKEN_VARIABLE

AttemptPhase = Literal["Running", "Succeeded", "Failed"]
WORKLOAD_KINDS = ("Job", "PyTorchJob")
SERVER_ROLES = frozenset({Role.SERVER, Role.SERVER_BASE, Role.REWRITE_STAND_IN})
# the training operator marks each pod of a PyTorchJob with its replica type; rank 0 is the master's
REPLICA_TYPE_LABEL = "training.kubeflow.org/replica-type"
# Kueue's Workload for a Job or PyTorchJob carries the job's uid; a pod Kueue has not admitted yet is held
# back by its scheduling gate
KUEUE_WORKLOAD_API = "kueue.x-k8s.io/v1beta2"
KUEUE_JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"
KUEUE_ADMISSION_GATE = "kueue.x-k8s.io/admission"


@dataclass(frozen=True)
class ChildRef:
    api_version: str
    kind: str
    name: str


@dataclass(frozen=True)
class Queued:
    """Where Kueue has an attempt's workload: its Workload (None until Kueue has made one), whether it
    was admitted (Kueue then un-suspends the workload) and whether it is active (the operator deactivates
    it to suspend the run: a workload Kueue admitted would otherwise be started again)."""

    queue: str
    workload: str | None = None
    admitted: bool = False
    active: bool = True
    message: str = ""


@dataclass(frozen=True)
class Attempt:
    stage: Stage
    number: int
    phase: AttemptPhase
    message: str
    workload: ChildRef
    suspended: bool = False
    summary: Mapping[str, Any] | None = None
    started_at: str | None = None
    finished_at: str | None = None
    failure: Failure | None = None  # of a failed attempt: whether another one may pass
    abandoned: bool = False  # failed while its workload still exists unfinished: delete it
    queued: Queued | None = None  # its workload is Kueue's to admit (the run has a queueName)
    speaker: tuple[str, str] | None = None  # (pod, container) whose log tells a running attempt's progress
    reason_lost: bool = False  # failed, and its pods went before anyone read why


@dataclass(frozen=True)
class Trouble:
    """Why a running stage makes no progress, as a condition reason a user can search for and what to do."""

    reason: str
    message: str


@dataclass(frozen=True)
class UnreadyServer:
    """A server pod whose container runs but does not answer its readiness probe (yet)."""

    pod: str
    container: str
    started_at: str


@dataclass(frozen=True)
class Observed:
    attempts: Mapping[Stage, tuple[Attempt, ...]] = field(default_factory=dict)  # oldest first
    # of the stages whose latest attempt runs: what holds its pods or its servers' pods back
    trouble: Mapping[Stage, Trouble] = field(default_factory=dict)
    servers: Mapping[Stage, tuple[ChildRef, ...]] = field(default_factory=dict)
    config_generation: int | None = None  # the spec generation the run's ConfigMap was rendered from
    unready_servers: Mapping[Stage, tuple[UnreadyServer, ...]] = field(default_factory=dict)
    # seconds each pod has held GPUs so far, by pod name, with its stage (finished pods: their whole run)
    pod_gpu_seconds: Mapping[str, tuple[Stage, float]] = field(default_factory=dict)
    names: frozenset[tuple[str, str]] = frozenset()  # (kind, name) of every child seen

    def latest(self, stage: Stage) -> Attempt | None:
        attempts = self.attempts.get(stage, ())
        return attempts[-1] if attempts else None


def ref_of(body: Mapping[str, Any]) -> ChildRef:
    return ChildRef(body.get("apiVersion", ""), body.get("kind", ""), body["metadata"]["name"])


def _labels(body: Mapping[str, Any]) -> Mapping[str, str]:
    labels: Mapping[str, str] = (body.get("metadata") or {}).get("labels") or {}
    return labels


def _stage_of(body: Mapping[str, Any]) -> Stage | None:
    try:
        return Stage(_labels(body).get(LABEL_STAGE, ""))
    except ValueError:
        return None


def _attempt_of(body: Mapping[str, Any]) -> int | None:
    value = _labels(body).get(LABEL_ATTEMPT, "")
    return int(value) if value.isdigit() else None


def parse_time(value: str) -> datetime:
    """A time as the API server writes it (RFC 3339, `Z`)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def timestamp(moment: datetime) -> str:
    """A time as the API server writes it: UTC, whole seconds."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: str | None) -> datetime | None:
    return parse_time(value) if value else None


def _terminated(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated")
        if terminated:
            found: Mapping[str, Any] = terminated
            return found
    return None


def parse_summary(message: str | None) -> Mapping[str, Any] | None:
    """The stage summary a container left as its termination message, or None when it left none (or
    something that is not a summary: a crash's log tail, under FallbackToLogsOnError)."""
    if not message:
        return None
    try:
        document = json.loads(message)
    except ValueError:
        return None
    if isinstance(document, dict) and document.get("phase") in ("Succeeded", "Failed"):
        return document
    return None


def _pod_failure(pod: Mapping[str, Any] | None) -> str:
    """Why a pod that left no summary ended: its container's exit (with the log tail the kubelet kept
    under FallbackToLogsOnError), else the pod's own reason (an eviction has no container exit)."""
    terminated = _terminated(pod) if pod else None
    if not terminated:
        status = (pod or {}).get("status") or {}
        reason, message = status.get("reason") or "", (status.get("message") or "").strip()
        if not reason and not message:
            # a pod failed by the control plane (its node was deleted: the pod garbage collector) says
            # why only in its DisruptionTarget condition
            disrupted: Mapping[str, Any] = next(
                (c for c in status.get("conditions") or [] if c.get("type") == "DisruptionTarget"), {}
            )
            reason, message = disrupted.get("reason") or "", (disrupted.get("message") or "").strip()
        return f"{reason}: {message}" if reason and message else reason or message
    reason = terminated.get("reason") or "Error"
    text = f"{reason}, exit code {terminated.get('exitCode')}"
    message = (terminated.get("message") or "").strip()
    return f"{text}: {message[-300:]}" if message else text


def _lost_pods(workload: Mapping[str, Any], failed: Mapping[str, Any] | None) -> str:
    """A failed workload with no pod left: its condition's reason is all there is, and its message is the
    controller's generic text, not the stage's."""
    reason = (failed or {}).get("reason") or "Failed"
    return (
        f"{workload.get('kind', 'workload')} {workload['metadata']['name']} failed ({reason}) and its pods "
        "are gone: the stage's own reason went with them"
    )


def _condition(body: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in (body.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            found: Mapping[str, Any] = condition
            return found
    return None


def _finished_at(pod: Mapping[str, Any]) -> str:
    return str((_terminated(pod) or {}).get("finishedAt") or "")


def _pod_phase(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def _ended(pod: Mapping[str, Any]) -> bool:
    """Its container exited, or the pod failed without one that did (evicted, refused by the kubelet)."""
    return _terminated(pod) is not None or _pod_phase(pod) in ("Succeeded", "Failed")


def _failed(pod: Mapping[str, Any]) -> bool:
    return _pod_phase(pod) == "Failed" or (_terminated(pod) or {}).get("exitCode") not in (None, 0)


def _reporting_pod(pods: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The pod whose summary speaks for the attempt. The first to fail, if one did: in a PyTorchJob the
    other pods fail after it (their peer is gone) with messages about the lost peer, not about the cause.
    Else the PyTorchJob's master (rank 0 speaks for a success), else the last pod to finish (a Job has
    one, unless the kubelet replaced it)."""
    failed = [p for p in pods if _failed(p)]
    if failed:
        return min(failed, key=_finished_at)
    masters = [p for p in pods if _labels(p).get(REPLICA_TYPE_LABEL, "").lower() == "master"]
    candidates = masters or pods
    finished = [p for p in candidates if _ended(p)]
    if finished:
        return max(finished, key=_finished_at)
    return candidates[-1] if candidates else None


def _speaker(pod: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """The running pod (and its stage container, the first) whose log carries the attempt's progress."""
    if pod is None or _pod_phase(pod) != "Running":
        return None
    containers = (pod.get("spec") or {}).get("containers") or []
    return (pod["metadata"]["name"], containers[0]["name"]) if containers else None


def _container_statuses(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every container's status, sidecars (init containers) first."""
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


# What the kubelet says when it cannot create a container for its configuration: it retries for ever, and
# the pod (with the node's share it holds) never ends by itself.
_UNCREATABLE = ("CreateContainerConfigError", "CreateContainerError")
# the spec fields behind the Secrets a stage container reads, by the variable that holds them
SECRET_FIELDS = {API_KEY_VARIABLE: "rewrite.apiKeySecret", HUB_TOKEN_VARIABLE: "hub.tokenSecret"}


def _secret_fields(pod: Mapping[str, Any], message: str) -> list[str]:
    """The spec fields naming a Secret the kubelet's message is about (it quotes the Secret's name)."""
    fields = []
    for container in (pod.get("spec") or {}).get("containers") or []:
        for variable in container.get("env") or []:
            secret = ((variable.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name")
            field_name = SECRET_FIELDS.get(variable.get("name", ""))
            if secret and field_name and (f'"{secret}"' in message or f"/{secret}" in message):
                fields.append(field_name)
    return sorted(set(fields))


def _refusal(pods: list[Mapping[str, Any]]) -> str | None:
    """Why the kubelet cannot create a container of these pods, naming the spec field to change, for the
    refusals that only the user can lift: a node without the sandbox's seccomp profile, a Secret or key
    that does not exist. None while nothing says so (an image still loading, a volume still attaching)."""
    for pod in pods:
        status = pod.get("status") or {}
        statuses = _container_statuses(status)
        for container in statuses:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") not in _UNCREATABLE:
                continue
            message = str(waiting.get("message") or "")
            said = f"container {container.get('name')}: {waiting['reason']}: {message[-400:]}"
            if "seccomp" in message.lower():
                return (
                    "sandbox.seccompProfile: the node cannot load the sandbox container's seccomp profile "
                    f"({said}). Install hack/seccomp/sandbox.json on every node that runs filter or "
                    "evaluate pods, below the kubelet's seccomp folder at "
                    "sandbox.seccompProfile.localhostProfile (see the README), or name another profile or "
                    "runtimeClassName"
                )
            fields = _secret_fields(pod, message)
            if fields and "secret" in message.lower():
                return f"{' and '.join(fields)}: the Secret or its key is missing ({said})"
    return None


_IMAGE_TROUBLE = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")


def _last_exit(container: Mapping[str, Any]) -> str:
    terminated = (container.get("lastState") or {}).get("terminated") or {}
    if not terminated:
        return "no exit recorded yet"
    text = f"{terminated.get('reason') or 'Error'}, exit code {terminated.get('exitCode')}"
    message = (terminated.get("message") or "").strip().splitlines()
    return f"{text}: {message[-1][-300:]}" if message else text


def _node_lost(pod: Mapping[str, Any]) -> str:
    """What the control plane said of a pod whose node went silent, or "" when it said nothing of that.
    Its node lifecycle controller turns the pod's Ready condition False and leaves ContainersReady as the
    kubelet last reported it (True): a kubelet reports that pair only for a readiness gate, which stage pods
    have none of. Later its taint manager deletes the pod. Older clusters set the pod's phase Unknown,
    reason NodeLost instead."""
    status = pod.get("status") or {}
    if status.get("reason") == "NodeLost" or status.get("phase") == "Unknown":
        return f"{status.get('reason') or 'phase Unknown'}: {status.get('message') or 'no message'}"
    conditions = {str(c.get("type")): c for c in status.get("conditions") or []}
    evicted = conditions.get("DisruptionTarget") or {}
    if evicted.get("status") == "True" and evicted.get("reason") == "DeletionByTaintManager":
        return f"the taint manager is deleting the pod: {evicted.get('message') or 'no message'}"
    ready, containers = conditions.get("Ready") or {}, conditions.get("ContainersReady") or {}
    if (
        status.get("phase") == "Running"
        and not (pod.get("spec") or {}).get("readinessGates")
        and ready.get("status") == "False"
        and containers.get("status") == "True"
    ):
        since = ready.get("lastTransitionTime") or "an unknown time"
        return f"the node controller marked the pod not ready at {since}"
    return ""


def pod_trouble(pod: Mapping[str, Any]) -> Trouble | None:
    """What keeps a pod from running, as the scheduler or the kubelet says it and never ends by itself
    telling: unschedulable, an image that cannot be had, a container crashing in a loop, a lost node."""
    name = (pod.get("metadata") or {}).get("name")
    status = pod.get("status") or {}
    gates = {gate.get("name") for gate in (pod.get("spec") or {}).get("schedulingGates") or []}
    if KUEUE_ADMISSION_GATE in gates:
        queue = _labels(pod).get(QUEUE_LABEL, "")
        return Trouble("Queued", f"in queue {queue} (pod {name} is not admitted by Kueue yet)")
    for condition in status.get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            said = str(condition.get("message") or "").strip()
            hint = (
                "the storage claim is not bound: check storage.storageClassName and storage.accessMode "
                "(a class that cannot provide it leaves the claim Pending)"
                if "PersistentVolumeClaim" in said
                else "no node of its pool has room or matches: check the pool's nodeSelector, tolerations "
                "and the stage's resources, or wait for capacity"
            )
            return Trouble("Unschedulable", f"pod {name} cannot be scheduled: {said} ({hint})")
    lost = _node_lost(pod)
    if lost:
        node = (pod.get("spec") or {}).get("nodeName") or "its node"
        return Trouble(
            "NodeLost",
            f"pod {name} is on node {node}, which stopped reporting ({lost}); its work since the last "
            "checkpoint is lost. Kubernetes evicts the pod once its toleration of node.kubernetes.io/"
            "unreachable runs out (300 s unless the pool says otherwise) and the attempt fails then; if the "
            "node is gone for good and the pod stays Terminating, delete the Node (or taint it "
            "node.kubernetes.io/out-of-service) to let the next attempt start",
        )
    statuses = _container_statuses(status)
    for container in statuses:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        said = str(waiting.get("message") or "").strip()
        if reason in _IMAGE_TROUBLE:
            return Trouble(
                "ImagePullBackOff",
                f"pod {name}: container {container.get('name')} cannot get its image "
                f"{container.get('image')} ({reason}: {said[-300:]}); check spec.images and the registry's "
                "credentials",
            )
        if reason == "CrashLoopBackOff":
            return Trouble(
                "CrashLoopBackOff",
                f"pod {name}: container {container.get('name')} keeps crashing "
                f"({container.get('restartCount', 0)} restarts; last: {_last_exit(container)})",
            )
    return None


def _trouble(pods: Iterable[Mapping[str, Any]]) -> Trouble | None:
    return next((found for found in map(pod_trouble, pods) if found is not None), None)


def _unready(pod: Mapping[str, Any]) -> UnreadyServer | None:
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        started = ((container.get("state") or {}).get("running") or {}).get("startedAt")
        if started and not container.get("ready"):
            return UnreadyServer(pod["metadata"]["name"], str(container.get("name")), str(started))
    return None


def _past_deadline(failed: Mapping[str, Any]) -> bool:
    """A Job's (reason DeadlineExceeded) or the training operator's (its message says so) verdict."""
    return failed.get("reason") == "DeadlineExceeded" or "deadline" in str(failed.get("message", "")).lower()


def _queued(workload: Mapping[str, Any], kueue: Mapping[str, Any] | None) -> Queued | None:
    queue = _labels(workload).get(QUEUE_LABEL)
    if not queue:
        return None
    if kueue is None:
        return Queued(queue)
    pending = next(
        (
            c
            for c in (kueue.get("status") or {}).get("conditions") or []
            if c.get("type") in ("QuotaReserved", "Evicted") and c.get("message")
        ),
        None,
    )
    return Queued(
        queue,
        workload=kueue["metadata"]["name"],
        admitted=_condition(kueue, "Admitted") is not None,
        active=(kueue.get("spec") or {}).get("active") is not False,
        message=str((pending or {}).get("message") or ""),
    )


def queue_trouble(queued: Queued) -> Trouble:
    if queued.workload is None:
        said = (
            "Kueue has not taken it in yet (no Workload for it: check that Kueue runs and manages this "
            "namespace)"
        )
    else:
        said = f"Workload {queued.workload}: {queued.message or 'pending'}"
    return Trouble("Queued", f"in queue {queued.queue} ({said})")


def _attempt(
    stage: Stage,
    number: int,
    workload: Mapping[str, Any],
    pods: list[Mapping[str, Any]],
    kueue: Mapping[str, Any] | None = None,
) -> Attempt:
    spec = workload.get("spec") or {}
    suspended = bool(spec.get("suspend") or (spec.get("runPolicy") or {}).get("suspend"))
    started_at = (workload.get("metadata") or {}).get("creationTimestamp")
    pod = _reporting_pod(pods)
    summary = parse_summary((_terminated(pod) or {}).get("message") if pod else None)
    done = _condition(workload, "Complete") or _condition(workload, "Succeeded")
    failed = _condition(workload, "Failed")
    running = Attempt(
        stage=stage,
        number=number,
        phase="Running",
        message="",
        workload=ref_of(workload),
        suspended=suspended,
        summary=summary,
        started_at=started_at,
        queued=_queued(workload, kueue),
        speaker=_speaker(pod),
    )
    if done is None and failed is None:
        refusal = _refusal(pods)
        if refusal is None:
            return running
        # the same pod spec on the same nodes meets the same refusal: the spec or the cluster must change
        return replace(running, phase="Failed", message=refusal, failure="Permanent", abandoned=True)
    # The workload's condition can arrive before its pod's final status (two watches): wait for the pod,
    # whose termination message is the verdict. A failed workload with no pod left has lost its reason.
    if (pod is not None and not _ended(pod)) or (done is not None and pod is None):
        return running
    # the kubelet's record first: a retry's backoff counts from it, on the cluster's clock
    finished_at = (
        (_finished_at(pod) if pod else "")
        or (summary or {}).get("finished_at")
        or (done or failed or {}).get("lastTransitionTime")
    )
    if done is not None and summary is not None and summary["phase"] == "Succeeded":
        message = str(summary.get("message") or "")
        return replace(running, phase="Succeeded", message=message, finished_at=finished_at)
    failure: Failure = "Transient"
    ended_by_operator = ((workload.get("metadata") or {}).get("annotations") or {}).get(FAILURE_ANNOTATION)
    if failed is not None and _past_deadline(failed) and ended_by_operator:
        message = str(ended_by_operator)  # the operator cut the deadline short, and said why
    elif failed is not None and _past_deadline(failed):
        # the controller killed the pods: whatever they said last, the deadline is why
        deadline = spec.get("activeDeadlineSeconds") or (spec.get("runPolicy") or {}).get(
            "activeDeadlineSeconds"
        )
        message = (
            f"the attempt ran past its deadline of {deadline} s ({wire_section(stage)}.deadlineSeconds); "
            "the next one resumes from what it kept"
        )
    elif summary is not None and summary["phase"] == "Failed" and summary.get("message"):
        message = str(summary["message"])
        failure = "Permanent" if summary.get("failure") == "Permanent" else "Transient"
    elif done is not None:
        # not a stage program (a wrong image or command): the same container would do the same again
        message = "the stage exited successfully but left no summary in its termination message"
        failure = "Permanent"
    else:
        message = _pod_failure(pod)
    failed_attempt = replace(running, phase="Failed", finished_at=finished_at, failure=failure)
    if not message:
        return replace(failed_attempt, message=_lost_pods(workload, failed), reason_lost=True)
    return replace(failed_attempt, message=message)


def _gpu_seconds(pod: Mapping[str, Any], gpu_resources: frozenset[str], now: datetime) -> float:
    gpus = 0
    for container in (pod.get("spec") or {}).get("containers") or []:
        limits = (container.get("resources") or {}).get("limits") or {}
        gpus += sum(int(value) for name, value in limits.items() if name in gpu_resources)
    if not gpus:
        return 0.0
    seconds = 0.0
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        state = status.get("state") or {}
        running, terminated = state.get("running") or {}, state.get("terminated") or {}
        start = _parse_time(running.get("startedAt") or terminated.get("startedAt"))
        end = _parse_time(terminated.get("finishedAt")) or now
        if start is not None:
            seconds = max(seconds, (end - start).total_seconds())
    return gpus * max(seconds, 0.0)


def queued_workload_uids(children: Iterable[Mapping[str, Any]]) -> list[str]:
    """The uids of the run's unfinished workloads that Kueue admits: the ones whose Kueue Workload the
    reconciler reads (Workloads carry none of the run's labels, so no watch of the run's sees them)."""
    return sorted(
        str(body["metadata"].get("uid"))
        for body in children
        if body.get("kind") in WORKLOAD_KINDS
        and _labels(body).get(QUEUE_LABEL)
        and not any(_condition(body, kind) for kind in ("Complete", "Succeeded", "Failed"))
    )


def instance_of(body: Mapping[str, Any]) -> str | None:
    """The uid of the run a child was made for: its label, or the ReasoningRun that owns it (children
    made before the label); None when neither says (a pod of an older Job)."""
    labelled = _labels(body).get(LABEL_RUN_UID)
    if labelled:
        return labelled
    for owner in (body.get("metadata") or {}).get("ownerReferences") or []:
        if owner.get("kind") == "ReasoningRun":
            return str(owner.get("uid"))
    return None


def of_instance(children: Iterable[Mapping[str, Any]], uid: str) -> list[Mapping[str, Any]]:
    """The children of this run, not of an earlier run of the same name whose children the garbage
    collector has not removed yet. The storage claim is every instance's: data outlives a run."""
    return [
        body
        for body in children
        if body.get("kind") == "PersistentVolumeClaim" or instance_of(body) in (None, uid)
    ]


def observe(
    children: Iterable[Mapping[str, Any]], *, gpu_resources: frozenset[str], now: datetime
) -> Observed:
    """Group a run's children by stage and attempt; every child's name is noted, staged or not."""
    workloads: dict[tuple[Stage, int], Mapping[str, Any]] = {}
    pods: dict[tuple[Stage, int], list[Mapping[str, Any]]] = defaultdict(list)
    servers: dict[Stage, list[ChildRef]] = defaultdict(list)
    server_pods: dict[Stage, list[Mapping[str, Any]]] = defaultdict(list)
    pod_gpu_seconds: dict[str, tuple[Stage, float]] = {}
    names: set[tuple[str, str]] = set()
    kueue_workloads: dict[str, Mapping[str, Any]] = {}
    config_generation: int | None = None
    for body in children:
        stage = _stage_of(body)
        kind = body.get("kind", "")
        if kind == "Workload":  # Kueue's, for one of the run's workloads
            kueue_workloads[_labels(body).get(KUEUE_JOB_UID_LABEL, "")] = body
            continue
        names.add((kind, body["metadata"]["name"]))
        if stage is None:  # the run's ConfigMap and storage claim
            if kind == "ConfigMap":
                rendered = ((body.get("metadata") or {}).get("annotations") or {}).get(
                    GENERATION_ANNOTATION, ""
                )
                config_generation = int(rendered) if rendered.isdigit() else None
            continue
        number = _attempt_of(body)
        role = _labels(body).get(LABEL_ROLE, "")
        if kind in WORKLOAD_KINDS and number is not None:
            workloads[(stage, number)] = body
        elif kind == "Pod":
            if number is not None:
                pods[(stage, number)].append(body)
            elif role in SERVER_ROLES:
                server_pods[stage].append(body)
            seconds = _gpu_seconds(body, gpu_resources, now)
            if seconds:
                pod_gpu_seconds[body["metadata"]["name"]] = (stage, seconds)
        elif kind in ("Deployment", "Service") and role in SERVER_ROLES:
            servers[stage].append(ref_of(body))
    attempts: dict[Stage, list[Attempt]] = defaultdict(list)
    for (stage, number), workload in sorted(workloads.items(), key=lambda item: item[0][1]):
        kueue = kueue_workloads.get(str((workload.get("metadata") or {}).get("uid") or ""))
        attempts[stage].append(_attempt(stage, number, workload, pods.get((stage, number), []), kueue))
    trouble: dict[Stage, Trouble] = {}
    for stage, found in attempts.items():
        latest = found[-1]
        if latest.phase == "Running" and latest.queued is not None and not latest.queued.admitted:
            trouble[stage] = queue_trouble(latest.queued)
        elif latest.phase == "Running" and not latest.suspended:
            held = _trouble([*pods.get((stage, latest.number), []), *server_pods.get(stage, [])])
            if held is not None:
                trouble[stage] = held
    return Observed(
        attempts={stage: tuple(found) for stage, found in attempts.items()},
        trouble=trouble,
        servers={
            stage: tuple(sorted(found, key=lambda r: (r.kind, r.name))) for stage, found in servers.items()
        },
        pod_gpu_seconds=pod_gpu_seconds,
        names=frozenset(names),
        config_generation=config_generation,
        unready_servers={
            stage: unready
            for stage, found in server_pods.items()
            if (unready := tuple(u for u in map(_unready, found) if u is not None))
        },
    )
