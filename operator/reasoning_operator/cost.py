"""What a run has cost so far: GPU-hours from its pods' run time, priced by their node pool, and the API's
tokens at the rewrite model's price; and what it is estimated to cost, from the data and format stages'
pre-flight estimates (reasoning_pipeline.estimate), before the GPUs are asked for.

Pods come and go (servers are deleted when their stage ends), so every pod's GPU-seconds are kept in
status by name and only ever grow: the sum survives the pods and operator restarts alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reasoning_pipeline.estimate import merge_estimates, stage_gpus, stage_pool_price
from reasoning_pipeline.progress import parse_progress
from reasoning_pipeline.spec import ReasoningRunSpec, Stage

from reasoning_operator.observe import Observed
from reasoning_operator.status import Event


def gpu_resources(spec: ReasoningRunSpec) -> frozenset[str]:
    return frozenset(pool.gpu_resource_name for pool in spec.node_pools)


def live_progress(spec: ReasoningRunSpec, stage: Stage, log: str, read_at: str) -> dict[str, Any] | None:
    """A running stage's progress from its pod's last progress line: done of total, the rate, and the time
    and dollars left at that rate on the stage's GPUs (what Kubeflow Trainer's progress gives, plus
    dollars). None while the log has no progress line."""
    reported = parse_progress(log)
    if reported is None:
        return None
    progress: dict[str, Any] = {"done": reported.done, "unit": reported.unit, "updatedAt": read_at}
    if reported.total:
        progress["total"] = reported.total
        progress["percent"] = round(100 * reported.done / reported.total, 1)
    if reported.rate:
        progress["ratePerSecond"] = reported.rate
        if reported.total:
            seconds = max(reported.total - reported.done, 0) / reported.rate
            progress["remainingSeconds"] = round(seconds)
            usd = seconds / 3600 * stage_gpus(spec, stage) * stage_pool_price(spec, stage)
            progress["remainingUSD"] = f"{usd:.2f}"
    return progress


def _metric(entries: Sequence[Mapping[str, Any]], stage: Stage, *names: str) -> int:
    for entry in entries:
        if entry.get("name") == stage.value:
            metrics = entry.get("metrics") or {}
            return sum(int(metrics.get(name) or 0) for name in names)
    return 0


def run_cost(
    spec: ReasoningRunSpec,
    observed: Observed,
    entries: Sequence[Mapping[str, Any]],
    previous: Mapping[str, Any],
) -> dict[str, Any]:
    pods: dict[str, dict[str, Any]] = {
        name: dict(seen) for name, seen in (previous.get("pods") or {}).items()
    }
    for name, (stage, seconds) in observed.pod_gpu_seconds.items():
        before = float((pods.get(name) or {}).get("gpuSeconds") or 0)
        pods[name] = {"stage": stage.value, "gpuSeconds": round(max(before, seconds), 1)}
    gpu_seconds = sum(float(p["gpuSeconds"]) for p in pods.values())
    usd = sum(
        float(p["gpuSeconds"]) / 3600 * stage_pool_price(spec, Stage(p["stage"]))
        for p in pods.values()
        if p.get("stage") in {stage.value for stage in Stage}
    )
    # the paid API's tokens (the rewrite's); the teacher's are paid for in GPU-hours
    prompt = _metric(entries, Stage.REWRITE, "apiPromptTokens")
    completion = _metric(entries, Stage.REWRITE, "apiCompletionTokens")
    price = spec.rewrite.price
    api_usd = 0.0
    if not spec.rewrite.stand_in:
        api_usd = (
            prompt * price.prompt_usd_per_million + completion * price.completion_usd_per_million
        ) / 1e6
    return {
        "gpuHours": f"{gpu_seconds / 3600:.2f}",
        "gpuUSD": f"{usd:.2f}",
        "apiUSD": f"{api_usd:.2f}",
        "spentUSD": f"{usd + api_usd:.2f}",
        "apiTokens": prompt + completion,
        "teacherTokens": _metric(entries, Stage.GENERATE, "promptTokens", "completionTokens"),
        "pods": pods,
    }


def spent_usd(cost: Mapping[str, Any]) -> float:
    return float(cost.get("spentUSD") or 0)


def over_budget(spec: ReasoningRunSpec, cost: Mapping[str, Any]) -> bool:
    return spec.budget_usd is not None and spent_usd(cost) >= spec.budget_usd


def run_estimate(observed: Observed, previous: Mapping[str, Any]) -> dict[str, Any]:
    """The run's estimate: what was recorded, with every succeeded data or format attempt's own merged in
    (per stage, the later stage's figure wins, so children gone since change nothing)."""
    merged = dict(previous)
    for stage in (Stage.DATA, Stage.FORMAT):
        for attempt in observed.attempts.get(stage, ()):
            made = (attempt.summary or {}).get("estimate")
            if attempt.phase == "Succeeded" and made:
                merged = merge_estimates(merged, made)
    return merged


def estimate_events(
    spec: ReasoningRunSpec, previous: Mapping[str, Any], current: Mapping[str, Any]
) -> list[Event]:
    """One event when an estimate is made or changes, a warning when it is over the budget: said before the
    GPU stages start, when the budget can still be raised or the spec changed."""
    total = current.get("totalUSD")
    if not total or total == previous.get("totalUSD"):
        return []
    said = ", ".join(
        f"{name} ${figures.get('usd') or figures.get('apiUSD')}"
        for name, figures in (current.get("stages") or {}).items()
        if figures.get("usd") or figures.get("apiUSD")
    )
    message = f"estimated ${total} ({said + '; ' if said else ''}assumptions in spec.estimate)"
    if spec.budget_usd is not None and float(total) > spec.budget_usd:
        return [
            Event(
                "Warning",
                "EstimateOverBudget",
                f"{message}: over spec.budgetUsd ${spec.budget_usd:.2f}; the run is suspended when its "
                "spend passes the budget",
            )
        ]
    return [Event("Normal", "Estimated", message)]
