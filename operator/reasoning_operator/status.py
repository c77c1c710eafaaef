"""Conditions in the shape GitOps tools read, and the events a status change is worth.

kstatus (which Flux and `kubectl wait` follow) reads `Ready`, `Reconciling` and `Stalled` with the
condition's `observedGeneration`; Argo CD's health check for this kind reads the same (see the chart's
health/argocd.lua). A condition keeps its `lastTransitionTime` until its status flips.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

RunPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Suspended"]


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Verdict:
    """Where the run stands, in a phase and the words a user reads."""

    phase: RunPhase
    # CamelCase, searchable: StageRunning, RetryingStage, Succeeded, StageFailed, Suspended, InvalidSpec
    reason: str
    message: str


def _wanted(verdict: Verdict) -> dict[str, tuple[str, str, str]]:
    """type → (status, reason, message) for the three kstatus conditions."""
    running = verdict.phase in ("Pending", "Running")
    stalled = verdict.phase == "Failed" or verdict.reason in ("InvalidSpec", "SpecChanged")
    return {
        "Ready": (
            "True" if verdict.phase == "Succeeded" else "False",
            verdict.reason,
            verdict.message,
        ),
        "Reconciling": (
            "True" if running and not stalled else "False",
            verdict.reason if running else "Idle",
            verdict.message if running else "",
        ),
        "Stalled": (
            "True" if stalled else "False",
            verdict.reason if stalled else "Healthy",
            verdict.message if stalled else "",
        ),
    }


def conditions(
    previous: Sequence[Mapping[str, Any]], verdict: Verdict, *, generation: int, now: str
) -> list[dict[str, Any]]:
    before = {c.get("type"): c for c in previous}
    result = []
    for kind, (status, reason, message) in _wanted(verdict).items():
        old = before.get(kind) or {}
        changed = old.get("status") != status
        result.append(
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "observedGeneration": generation,
                "lastTransitionTime": now
                if changed or not old.get("lastTransitionTime")
                else old["lastTransitionTime"],
            }
        )
    return result


def stage_failed_message(name: str, attempts: int, failure: str | None, reason: str) -> str:
    """How a stage that is given up on reads, in the run's status, its conditions and the event."""
    if failure == "Permanent":
        return f"stage {name} failed at attempt {attempts}, not retried (a permanent failure): {reason}"
    return f"stage {name} failed after {attempts} attempt{'s' if attempts != 1 else ''}: {reason}"


def ended_because(status: Mapping[str, Any]) -> str:
    """One line for a person whose run ended otherwise than hoped: the run's phase and message, and the
    failed stage's name and message (the stage program's own words)."""
    line = f"{status.get('phase')} - {status.get('message', '')}"
    failed = next((s for s in status.get("stages") or [] if s.get("phase") == "Failed"), None)
    if failed is not None:
        line += f" (stage {failed.get('name')}: {failed.get('message', '')})"
    return line


QUIET_WAITS = frozenset({"Queued"})


def stage_events(previous: Sequence[Mapping[str, Any]], current: Sequence[Mapping[str, Any]]) -> list[Event]:
    """What changed between two `status.stages` lists, as events on the run."""
    before = {s.get("name"): s for s in previous}
    events = []
    for stage in current:
        name, phase, attempts = stage.get("name"), stage.get("phase"), stage.get("attempts", 0)
        old = before.get(name) or {}
        waiting = stage.get("waiting") or {}
        if waiting and waiting.get("reason") != (old.get("waiting") or {}).get("reason"):
            # waiting for admission is how a shared cluster works; the rest needs someone to act
            said = f"stage {name}: {waiting['message']}"
            quiet = waiting["reason"] in QUIET_WAITS
            events.append(Event("Normal" if quiet else "Warning", str(waiting["reason"]), said))
        if phase == old.get("phase") and attempts == old.get("attempts", 0):
            continue
        if phase == "Running" and attempts > 1 and attempts != old.get("attempts", 0):
            events.append(Event("Warning", "RetryingStage", f"stage {name}: {stage.get('message', '')}"))
        elif phase == "Running" and old.get("phase") != "Running":
            events.append(Event("Normal", "StageStarted", f"stage {name} started"))
        elif phase == "Succeeded":
            events.append(Event("Normal", "StageSucceeded", f"stage {name}: {stage.get('message', '')}"))
        elif phase == "Failed":
            message = stage_failed_message(
                str(name), attempts, stage.get("failure"), stage.get("message", "")
            )
            events.append(Event("Warning", "StageFailed", message))
    return events


def run_events(previous_phase: str | None, verdict: Verdict) -> list[Event]:
    if previous_phase == verdict.phase:
        return []
    if verdict.phase == "Succeeded":
        return [Event("Normal", "RunSucceeded", verdict.message)]
    if verdict.phase == "Failed":
        return [Event("Warning", "RunFailed", verdict.message)]
    if verdict.phase == "Suspended":
        return [Event("Normal", "Suspended", verdict.message)]
    return []
