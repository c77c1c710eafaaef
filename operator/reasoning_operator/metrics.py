"""Prometheus metrics: runs by phase, stage durations, reconciles and their errors, API requests."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import REGISTRY, Histogram, start_http_server
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from reasoning_operator.cache import Cache
from reasoning_operator.kube import Kube

PHASES = ("Pending", "Running", "Succeeded", "Failed", "Suspended")

RECONCILE_ERRORS = PromCounter("reasoning_reconcile_errors_total", "Reconciles that ended in an error.")
RECONCILE_SECONDS = Histogram("reasoning_reconcile_seconds", "Time one reconcile of one run took.")
STAGE_SECONDS = Histogram(
    "reasoning_stage_duration_seconds",
    "Wall time of finished stages, from the first attempt's start to the end.",
    ["stage", "outcome"],
    buckets=(60, 300, 900, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 24 * 3600, 72 * 3600),
)


def _seconds(entry: Mapping[str, Any]) -> float | None:
    try:
        start = datetime.fromisoformat(str(entry["startedAt"]).replace("Z", "+00:00"))
        end = datetime.fromisoformat(str(entry["finishedAt"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return None
    return (end - start).total_seconds()


def observe_finished_stages(previous: Mapping[str, Any], status: Mapping[str, Any]) -> None:
    """Stage durations, once each: for the stages this status is the first to show finished."""
    before = {entry.get("name"): entry.get("phase") for entry in previous.get("stages") or []}
    for entry in status.get("stages") or []:
        phase = entry.get("phase")
        if phase in ("Succeeded", "Failed") and before.get(entry.get("name")) != phase:
            seconds = _seconds(entry)
            if seconds is not None:
                STAGE_SECONDS.labels(stage=entry["name"], outcome=phase).observe(seconds)


class StateCollector(Collector):
    """Read at scrape time from what the operator already holds: no bookkeeping to drift."""

    def __init__(self, cache: Cache, kube: Kube) -> None:
        self.cache, self.kube = cache, kube

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        phases: Counter[str] = Counter()
        for key in self.cache.runs():
            run = self.cache.run(key) or {}
            phases[(run.get("status") or {}).get("phase") or "Pending"] += 1
        runs = GaugeMetricFamily("reasoning_runs", "ReasoningRuns by phase.", labels=["phase"])
        for phase in PHASES:
            runs.add_metric([phase], phases[phase])
        yield runs
        requests = CounterMetricFamily(
            "reasoning_api_requests",
            "Requests the operator's reconciles sent the API server.",
            labels=["verb"],
        )
        for verb, count in sorted(self.kube.requests.items()):
            requests.add_metric([verb], count)
        yield requests


def serve(port: int, cache: Cache, kube: Kube) -> None:
    REGISTRY.register(StateCollector(cache, kube))
    start_http_server(port)
