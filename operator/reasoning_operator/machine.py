"""The stage machine: from a run and what exists of it, what to create, what to delete, and its status.

One pure function, `advance`. Stages run in recipe order; the first enabled stage that has not succeeded
is the current one. Its driver is attempt N (a new Job, or PyTorchJob, per attempt); a transiently failed
attempt is followed by attempt N+1, no sooner than a backoff after it ended, until the stage's
`maxAttempts`; then, or at once when the stage program called its failure permanent (bad input or spec:
another attempt would fail the same way), the run fails with the attempt's reason.
A stage's servers (teacher, rewrite stand-in, evaluated models) exist while the stage runs and are deleted
when it ends or the run is suspended.

Everything is derived again on every call from the children and the previous status, so a lost event or
an operator restart changes nothing: a stage recorded as succeeded stays succeeded even if its children
are not visible yet, and children are only ever created under deterministic names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from reasoning_pipeline.lineage import spec_fingerprint
from reasoning_pipeline.spec import STAGE_ORDER, ReasoningRunSpec, Stage, wire_section

from reasoning_operator import stages
from reasoning_operator.cost import (
    estimate_events,
    live_progress,
    over_budget,
    run_cost,
    run_estimate,
    spent_usd,
)
from reasoning_operator.naming import FAILURE_ANNOTATION, config_map_name, storage_claim_name
from reasoning_operator.observe import (
    Attempt,
    ChildRef,
    Observed,
    UnreadyServer,
    parse_time,
    ref_of,
    timestamp,
)
from reasoning_operator.run import RunRef
from reasoning_operator.status import (
    Event,
    Verdict,
    conditions,
    run_events,
    stage_events,
    stage_failed_message,
)
from reasoning_operator.workloads import Manifest, run_config_map, storage_claim

TERMINAL = ("Succeeded", "Failed")
# Between attempts of a stage: long enough for a restarting server or a flaky network to come back, and
# for an attempt that fails at once not to spin; doubling, so a stage that keeps failing costs little.
RETRY_BACKOFF_SECONDS = 10
RETRY_BACKOFF_MAX_SECONDS = 300


@dataclass(frozen=True)
class Plan:
    create: tuple[Manifest, ...] = ()  # children not seen yet (creating one that exists is a no-op)
    suspend: tuple[tuple[ChildRef, bool], ...] = ()  # workloads whose suspend flag must change
    # Kueue Workloads whose `spec.active` must change: under Kueue a run is suspended through them
    activate: tuple[tuple[str, bool], ...] = ()
    update: tuple[Manifest, ...] = ()  # children to render again (the run's ConfigMap, after an edit)
    # workloads the operator ends as failed, and why: their deadline is cut short, the reason annotated
    fail: tuple[tuple[ChildRef, str], ...] = ()
    delete: tuple[ChildRef, ...] = ()
    status: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[Event, ...] = ()
    # reconcile again no sooner than this: a retry's backoff ends then, and no event will say so
    wake_at: str | None = None


def retry_backoff_seconds(failed_attempt: int) -> int:
    """The wait after attempt `failed_attempt` failed: 10 s, 20 s, 40 s, … up to 5 minutes."""
    return min(RETRY_BACKOFF_SECONDS << max(failed_attempt - 1, 0), RETRY_BACKOFF_MAX_SECONDS)


def retry_not_before(failed: Attempt) -> str | None:
    """When the attempt after `failed` may start (None: at once, the failure has no time)."""
    if not failed.finished_at:
        return None
    moment = parse_time(failed.finished_at) + timedelta(seconds=retry_backoff_seconds(failed.number))
    return timestamp(moment)


def server_ready_timeout(spec: ReasoningRunSpec, stage: Stage) -> float | None:
    """How long a stage's servers may take to become ready (the spec's; None: not watched)."""
    return {
        Stage.GENERATE: spec.generation.server_ready_timeout_seconds,
        Stage.EVALUATE: spec.evaluation.server_ready_timeout_seconds,
    }.get(stage)


def overdue_servers(
    spec: ReasoningRunSpec, stage: Stage, observed: Observed, now: str
) -> list[UnreadyServer]:
    """The stage's server pods that run but have not become ready within the spec's time."""
    timeout = server_ready_timeout(spec, stage)
    if timeout is None:
        return []
    moment = parse_time(now)
    return [
        server
        for server in observed.unready_servers.get(stage, ())
        if (moment - parse_time(server.started_at)).total_seconds() > timeout
    ]


def fail_patch(workload: ChildRef, message: str) -> Manifest:
    """Ends a running workload as failed through its own controller (the deadline cut to a second: its
    pods are killed and it is marked failed) with the reason where the operator reads it back."""
    annotations = {"metadata": {"annotations": {FAILURE_ANNOTATION: message}}}
    if workload.kind == "PyTorchJob":
        return {**annotations, "spec": {"runPolicy": {"activeDeadlineSeconds": 1}}}
    return {**annotations, "spec": {"activeDeadlineSeconds": 1}}


def suspend_patch(workload: ChildRef, suspend: bool) -> Manifest:
    """A Job suspends through `spec.suspend`, a PyTorchJob through `spec.runPolicy.suspend`: either way
    its pods go and it resumes, same name, when the flag is cleared (the stage program then resumes
    from its journal)."""
    if workload.kind == "PyTorchJob":
        return {"spec": {"runPolicy": {"suspend": suspend}}}
    return {"spec": {"suspend": suspend}}


def _missing(manifests: Sequence[Manifest], observed: Observed) -> list[Manifest]:
    return [m for m in manifests if (m["kind"], m["metadata"]["name"]) not in observed.names]


def _run_wide_children(run: RunRef, observed: Observed) -> list[Manifest]:
    """The run's ConfigMap and storage claim, when not seen yet. Checked by name first: rendering run.yaml
    is most of a reconcile's CPU, and they exist on every reconcile but the first."""
    wanted: list[Manifest] = []
    if ("ConfigMap", config_map_name(run.name)) not in observed.names:
        wanted.append(run_config_map(run))
    elif observed.config_generation != run.generation:
        wanted.append(run_config_map(run))  # an edit: rendered again (an update, see `advance`)
    claim = storage_claim_name(run.name, run.spec)
    if not run.spec.storage.claim_name and ("PersistentVolumeClaim", claim) not in observed.names:
        wanted.extend(m for m in [storage_claim(run)] if m is not None)
    return wanted


def _explained(attempts: tuple[Attempt, ...], recorded: Mapping[str, Any]) -> tuple[Attempt, ...]:
    """A failed attempt whose pods went before their failure was read (the pods of a lost node go with
    it) has lost its reason; what last held it back, as status recorded it, says it instead."""
    latest = attempts[-1] if attempts else None
    held = recorded.get("heldBack") or {}
    if latest is None or not latest.reason_lost or held.get("attempt") != latest.number:
        return attempts
    said = f"{latest.message}; it was last seen held back ({held.get('reason')}): {held.get('message')}"
    return (*attempts[:-1], replace(latest, message=said))


def _stage_entry(stage: Stage, previous: Mapping[str, Any], attempts: Sequence[Attempt]) -> dict[str, Any]:
    """A stage's status from its attempts; what was recorded earlier fills what the children no longer
    show (a summary read before an operator restart, the first start time)."""
    # what held the stage back is said anew on every pass (by `_current_stage`), never carried over
    entry: dict[str, Any] = {
        "name": stage.value,
        **{k: v for k, v in previous.items() if k not in ("name", "waiting")},
    }
    if not attempts:
        entry.setdefault("phase", "Pending")
        entry.setdefault("attempts", 0)
        return entry
    latest = attempts[-1]
    entry["attempts"] = max(latest.number, int(previous.get("attempts", 0)))
    entry.setdefault("startedAt", attempts[0].started_at)
    entry["phase"] = latest.phase
    entry.pop("retryAt", None)
    if latest.phase == "Running":
        entry["message"] = (
            f"attempt {latest.number} suspended" if latest.suspended else f"attempt {latest.number} running"
        )
        entry.pop("finishedAt", None)
        entry.pop("failure", None)
        return entry
    entry["message"] = latest.message
    entry["finishedAt"] = latest.finished_at
    if latest.failure is not None:
        entry["failure"] = latest.failure
    else:
        entry.pop("failure", None)
    summary = latest.summary or {}
    for key in ("progress", "outputs", "metrics"):
        if summary.get(key):
            entry[key] = summary[key]
    return entry


def _results(stage_entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    for entry in stage_entries:
        if entry["name"] == Stage.EVALUATE.value and entry.get("phase") == "Succeeded":
            results: dict[str, Any] = (entry.get("metrics") or {}).get("results") or {}
            return results
    return {}


def advance(
    run: RunRef,
    observed: Observed,
    previous: Mapping[str, Any],
    *,
    now: str,
    logs: Mapping[Stage, tuple[str, str]] | None = None,
    server_logs: Mapping[str, str] | None = None,
) -> Plan:
    """`logs`: of running stages, (when read, the tail of the log) of the pod that reports progress;
    `server_logs`: by pod name, the log tails of servers not ready past their time."""
    spec = run.spec
    recorded = {s.get("name"): s for s in previous.get("stages") or []}
    create: list[Manifest] = []
    suspend: list[tuple[ChildRef, bool]] = []
    activate: list[tuple[str, bool]] = []
    delete: list[ChildRef] = []
    fail: list[tuple[ChildRef, str]] = []
    entries: list[dict[str, Any]] = []
    verdict: Verdict | None = None
    wake_at: str | None = None
    # a run over its budget is held as a suspended one is (decided on what was spent by the last pass)
    held = spec.suspend or over_budget(spec, previous.get("cost") or {})

    restarts = list(previous.get("restarts") or [])
    restart = spec.restart_from
    restarting = restart is not None and restart.id not in {r.get("id") for r in restarts}
    if restart is not None and restarting:
        recorded = _restarted(recorded, observed, restart.stage, restart.id)
        restarts.append({"id": restart.id, "stage": restart.stage.value, "at": now})
    stale: Stage | None = None  # the first succeeded stage whose spec changed since it ran

    for stage in STAGE_ORDER:
        if not spec.section(stage).enabled:
            entries.append({"name": stage.value, "phase": "Skipped"})
            continue
        old = recorded.get(stage.value) or {}
        floor = int(old.get("restartedAfter", 0))
        attempts = _explained(tuple(a for a in observed.attempts.get(stage, ()) if a.number > floor), old)
        made_under = spec_fingerprint(spec, stage)
        latest = attempts[-1] if attempts else None
        if (
            latest is not None
            and latest.phase == "Running"
            and old.get("fingerprint") not in (None, made_under)
        ):
            # the spec this attempt runs under changed: it stops, the next one runs under the new spec
            old = {**old, "restartedAfter": latest.number, "phase": "Pending"}
            recorded[stage.value] = old
            attempts = ()
        entry = _stage_entry(stage, old, attempts)
        # attempts from before a restart that still run: stopped, and waited out before the next starts
        floor = int(old.get("restartedAfter", 0))
        stopping = [a for a in observed.attempts.get(stage, ()) if a.number <= floor and a.phase == "Running"]
        if old.get("phase") == "Succeeded":
            entry["phase"] = "Succeeded"  # never regresses, whatever the children show
            if old.get("fingerprint") not in (None, made_under):
                stale = stale or stage
        elif entry["phase"] == "Running" and stage in (logs or {}):
            read_at, log = (logs or {})[stage]
            live = live_progress(spec, stage, log, read_at)
            if live is not None:
                entry["progress"] = live
        entries.append(entry)
        if entry["phase"] == "Succeeded" or verdict is not None:
            delete.extend(observed.servers.get(stage, ()) if entry["phase"] == "Succeeded" else ())
            continue
        if stale is not None:  # what this stage would read was made under an earlier spec
            verdict = _stale(stale, run.generation)
            continue
        if stopping:
            delete.extend([*(a.workload for a in stopping), *observed.servers.get(stage, ())])
            entry.update(
                phase="Pending", message=f"attempt {stopping[-1].number} stopping: the stage runs again"
            )
            verdict = Verdict("Running", "StageRestarting", f"stage {stage.value}: {entry['message']}")
            continue
        step = _current_stage(run, stage, entry, attempts, observed, now=now, held=held, logs=server_logs)
        verdict, wake_at = step.verdict, step.wake_at
        create.extend(step.create)
        delete.extend(step.delete)
        fail.extend(step.fail)
        if step.create:
            entry["fingerprint"] = made_under  # what the attempt it starts runs under
        entry.setdefault("fingerprint", made_under)
        latest = attempts[-1] if attempts else None
        if latest is None or latest.phase != "Running":
            continue
        if latest.queued is not None:
            # Kueue un-suspends what it admits and suspends what it evicts: the operator never touches
            # the flag, and holds the run by deactivating the Workload (Kueue then evicts it)
            if latest.queued.workload is not None and latest.queued.active == held:
                activate.append((latest.queued.workload, not held))
        elif latest.suspended != held:
            suspend.append((latest.workload, held))

    if verdict is None:
        enabled = [e for e in entries if e["phase"] != "Skipped"]
        verdict = Verdict("Succeeded", "Succeeded", f"all {len(enabled)} stages succeeded")
    if held and not spec.suspend and verdict.phase == "Suspended":
        spent = spent_usd(previous.get("cost") or {})
        verdict = Verdict(
            "Suspended",
            "BudgetExceeded",
            f"spent ${spent:.2f} of its ${spec.budget_usd:.2f} budget (spec.budgetUsd): suspended; raise "
            "budgetUsd to go on",
        )
    update: list[Manifest] = []
    if verdict.phase not in TERMINAL and not held:
        run_wide = _run_wide_children(run, observed)
        update = [m for m in run_wide if (m["kind"], m["metadata"]["name"]) in observed.names]
        create[:0] = [m for m in run_wide if m not in update]

    done = sum(1 for e in entries if e["phase"] == "Succeeded")
    enabled_count = sum(1 for e in entries if e["phase"] != "Skipped")
    current = next((e["name"] for e in entries if e["phase"] not in ("Succeeded", "Skipped")), "")
    status: dict[str, Any] = {
        "phase": verdict.phase,
        "currentStage": current if verdict.phase != "Succeeded" else "",
        "progress": f"{done}/{enabled_count}",
        "message": verdict.message,
        "observedGeneration": run.generation,
        "stages": entries,
        "conditions": conditions(
            previous.get("conditions") or [], verdict, generation=run.generation, now=now
        ),
        "cost": run_cost(spec, observed, entries, previous.get("cost") or {}),
        "estimate": run_estimate(observed, previous.get("estimate") or {}),
        "results": _results(entries),
    }
    if restarts:
        status["restarts"] = restarts
    if verdict.phase in TERMINAL:
        status["finishedAt"] = previous.get("finishedAt") or now
    status["startedAt"] = previous.get("startedAt") or now
    events = [
        *(
            [
                Event(
                    "Normal",
                    "Restarted",
                    f"stages from {restart.stage.value} run again (restartFrom id {restart.id})",
                )
            ]
            if restart is not None and restarting
            else []
        ),
        *stage_events(previous.get("stages") or [], entries),
        *estimate_events(spec, previous.get("estimate") or {}, status["estimate"]),
        *run_events(previous.get("phase"), verdict),
    ]
    return Plan(
        create=tuple(create),
        suspend=tuple(suspend),
        activate=tuple(activate),
        update=tuple(update),
        fail=tuple(fail),
        delete=tuple(dict.fromkeys(delete)),
        status=status,
        events=tuple(events),
        wake_at=wake_at,
    )


@dataclass(frozen=True)
class StageStep:
    """What the current stage needs now."""

    verdict: Verdict
    create: Sequence[Manifest] = ()
    delete: Sequence[ChildRef] = ()
    wake_at: str | None = None
    fail: Sequence[tuple[ChildRef, str]] = ()


def _current_stage(
    run: RunRef,
    stage: Stage,
    entry: dict[str, Any],
    attempts: Sequence[Attempt],
    observed: Observed,
    *,
    now: str,
    held: bool,
    logs: Mapping[str, str] | None = None,
) -> StageStep:
    """The first stage not yet succeeded: start, retry, keep, suspend or give up on its driver."""
    spec = run.spec
    section = spec.section(stage)
    latest = attempts[-1] if attempts else None
    servers = observed.servers.get(stage, ())
    if (
        latest is not None
        and latest.phase == "Failed"
        and (
            latest.failure == "Permanent"
            or latest.number - int(entry.get("restartedAfter", 0)) >= section.max_attempts
        )
    ):
        entry["phase"] = "Failed"
        message = stage_failed_message(stage.value, latest.number, latest.failure, latest.message)
        # a workload given up on while it still waits holds its node's share: it goes with the servers
        given_up = (latest.workload,) if latest.abandoned else ()
        return StageStep(Verdict("Failed", "StageFailed", message), delete=(*servers, *given_up))
    if latest is None or latest.phase == "Failed":
        # with no attempt left to see (a TTL or a person deleted the Jobs) the status's count goes on:
        # the attempt it names is made again under its own name, never attempt 1 of a fresh count
        # after a restart (`restartedAfter`), attempts count on past the ones before it
        floor = int(entry.get("restartedAfter", 0))
        number = latest.number + 1 if latest else max(int(entry.get("attempts", 0)), floor + 1)
        if held:
            entry["phase"] = "Pending"
            message = f"suspended before attempt {number} of {stage.value}"
            return StageStep(Verdict("Suspended", "Suspended", message), delete=servers)
        entry.update(phase="Running", attempts=number)
        entry.pop("finishedAt", None)
        entry.pop("failure", None)
        after = ""
        if latest is not None:
            after = f" after attempt {latest.number} failed: {latest.message}"
            not_before = retry_not_before(latest)
            if not_before is not None and parse_time(now) < parse_time(not_before):
                # the servers stay: a teacher that took minutes to load serves the next attempt too
                delay = retry_backoff_seconds(latest.number)
                entry.update(message=f"attempt {number} in {delay} s{after}", retryAt=not_before)
                verdict = Verdict("Running", "RetryingStage", f"stage {stage.value}: {entry['message']}")
                return StageStep(verdict, wake_at=not_before)
        entry["message"] = f"attempt {number} starting{after}"
        wanted = stages.children(run, stage, number)
        verdict = Verdict("Running", "StageRunning", f"stage {stage.value}: attempt {number}")
        return StageStep(verdict, create=_missing(wanted, observed))
    # the latest attempt is running (or suspended): keep what it needs, servers only while not suspended
    create = _missing(stages.driver_children(run, stage, latest.number), observed)
    if held:
        verdict = Verdict("Suspended", "Suspended", f"suspended in stage {stage.value}")
        return StageStep(verdict, create=create, delete=servers)
    server_manifests = stages.server_children(run, stage)
    wanted_servers = {(m["kind"], m["metadata"]["name"]) for m in server_manifests}
    stray = [r for r in servers if (r.kind, r.name) not in wanted_servers]
    create += _missing(server_manifests, observed)
    message = f"stage {stage.value}: attempt {latest.number} of {section.max_attempts}"
    overdue = overdue_servers(spec, stage, observed, now)
    if overdue and not latest.suspended:
        said = _server_words(overdue[0], (logs or {}).get(overdue[0].pod, ""))
        field = f"{wire_section(stage)}.serverReadyTimeoutSeconds"
        within = server_ready_timeout(spec, stage) or 0
        why = f"server pod {overdue[0].pod} did not become ready within {within:.0f} s ({field}); {said}"
        entry["message"] = f"attempt {latest.number} failing: {why}"
        entry["waiting"] = {"reason": "ServerNotReady", "message": why}
        verdict = Verdict("Running", "ServerNotReady", f"{message}: {why}")
        # its servers go with it: the next attempt starts them afresh
        return StageStep(verdict, delete=servers, fail=((latest.workload, why),))
    trouble = observed.trouble.get(stage)
    if trouble is None:
        return StageStep(Verdict("Running", "StageRunning", message), create=create, delete=stray)
    # the stage runs on paper only: say what holds it, under a reason a user can search for
    entry["waiting"] = {"reason": trouble.reason, "message": trouble.message}
    # kept past the attempt's end: if its pods go before their failure is read, this is all there is
    entry["heldBack"] = {"attempt": latest.number, "reason": trouble.reason, "message": trouble.message}
    entry["message"] = f"attempt {latest.number} waiting: {trouble.message}"
    verdict = Verdict("Running", trouble.reason, f"{message}: {trouble.message}")
    return StageStep(verdict, create=create, delete=stray)


def _server_words(server: UnreadyServer, log: str) -> str:
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    if lines:
        return f"its last log line: {lines[-1][-400:]}"
    return f"its container {server.container} has run since {server.started_at} and wrote no log line"


def _restarted(
    recorded: Mapping[str, Mapping[str, Any]], observed: Observed, first: Stage, restart_id: str
) -> dict[str, Mapping[str, Any]]:
    """The stages from `first` on as they read once a restart is asked for: Pending, counting on from
    their attempts so far (the attempts before are done with: stopped if running, never read again)."""
    entries = dict(recorded)
    for stage in STAGE_ORDER[STAGE_ORDER.index(first) :]:
        old = recorded.get(stage.value) or {}
        seen = max((a.number for a in observed.attempts.get(stage, ())), default=0)
        after = max(seen, int(old.get("attempts", 0)), int(old.get("restartedAfter", 0)))
        if after:
            entries[stage.value] = {
                "name": stage.value,
                "phase": "Pending",
                "attempts": after,
                "restartedAfter": after,
                "message": f"to run again (restartFrom id {restart_id})",
            }
    return entries


def _stale(stage: Stage, generation: int) -> Verdict:
    return Verdict(
        "Running",
        "SpecChanged",
        f"stage {stage.value} ran under an earlier spec: its section or one it reads changed (generation "
        f"{generation}), and the stages after it refuse output made under another spec. Set "
        f"spec.restartFrom: {{stage: {stage.value}, id: <a new id>}} to run it again, or undo the edit",
    )


def invalid(previous: Mapping[str, Any], message: str, *, generation: int, now: str) -> dict[str, Any]:
    """The status of a run whose spec the operator cannot read (it got past the API server's schema,
    e.g. through a schema change): it stalls with the reason, nothing is created or deleted."""
    verdict = Verdict(previous.get("phase") or "Pending", "InvalidSpec", message)
    return {
        **previous,
        "message": message,
        "observedGeneration": generation,
        "conditions": conditions(previous.get("conditions") or [], verdict, generation=generation, now=now),
    }


__all__ = ["Plan", "advance", "invalid", "ref_of", "suspend_patch"]
