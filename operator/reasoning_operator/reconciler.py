"""One reconcile of one run: read the cache, ask the machine, carry out its plan.

Reconciles of the same run never overlap (a lock per run); different runs reconcile in parallel. A plan
that waits for a time (a retry's backoff) gets a reconcile then, from a timer in this process: no child
changes at that moment to send an event, and the 30 s resync would make every backoff up to 30 s late.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.rest import ApiException
from reasoning_pipeline.spec import Stage

from reasoning_operator import metrics
from reasoning_operator.cache import Cache, RunKey
from reasoning_operator.cost import gpu_resources
from reasoning_operator.kube import Kube
from reasoning_operator.machine import (
    Plan,
    advance,
    fail_patch,
    invalid,
    overdue_servers,
    suspend_patch,
)
from reasoning_operator.observe import (
    KUEUE_JOB_UID_LABEL,
    KUEUE_WORKLOAD_API,
    ChildRef,
    Observed,
    instance_of,
    observe,
    of_instance,
    parse_time,
    queued_workload_uids,
    timestamp,
)
from reasoning_operator.run import InvalidRun, RunRef
from reasoning_operator.status import Event

log = logging.getLogger(__name__)

# Cost grows every second a GPU pod runs; writing it more often than this would make every reconcile a
# status write (and every status write an event that asks for another reconcile).
COST_REFRESH_SECONDS = 60.0
# A running stage's progress is read from its pod's log at most this often (one request per stage).
PROGRESS_REFRESH_SECONDS = 30.0
PROGRESS_LOG_LINES, PROGRESS_LOG_BYTES = 40, 16384
# A wake-up comes this much after its time: the machine reads the clock in whole seconds.
WAKE_MARGIN_SECONDS = 0.2
RUN_REF = ChildRef("reasoning.dev/v1alpha1", "ReasoningRun", "")


def _without_cost(status: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in status.items() if key != "cost"}


class Reconciler:
    """Reconciles of one run never overlap, and never pile up: a request that arrives while the run is
    being reconciled marks it for one more pass (every child event asks; one pass answers them all)."""

    def __init__(self, kube: Kube, cache: Cache, leading: Callable[[], bool] = lambda: True) -> None:
        self.kube = kube
        self.cache = cache
        # whether this replica may act (leadership.py); one that may not keeps its cache and writes nothing
        self.leading = leading
        self._guard = threading.Lock()
        self._running: set[RunKey] = set()
        self._again: set[RunKey] = set()
        self._cost_written: dict[RunKey, float] = {}
        self._wakeups: dict[RunKey, tuple[str, threading.Timer]] = {}
        self._name_conflicts: set[tuple[str, str, str]] = set()
        # per run and stage: (the speaking pod, monotonic time read, when read, the log's tail)
        self._logs: dict[tuple[RunKey, Stage], tuple[tuple[str, str], float, str, str]] = {}

    def reconcile(self, key: RunKey) -> None:
        with self._guard:
            if key in self._running:
                self._again.add(key)
                return
            self._running.add(key)
        try:
            while True:
                self._reconcile_once(key)
                with self._guard:
                    if key not in self._again:
                        return
                    self._again.discard(key)
        finally:
            with self._guard:
                self._running.discard(key)
                self._again.discard(key)

    def _reconcile_once(self, key: RunKey) -> None:
        if not self.leading():
            return
        body = self.cache.run(key)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        started = time.monotonic()
        try:
            self._reconcile(key, body)
        except ApiException as error:
            metrics.RECONCILE_ERRORS.inc()
            log.warning("reconcile of %s/%s: API error %s %s", *key, error.status, error.reason)
        except Exception:
            metrics.RECONCILE_ERRORS.inc()
            log.exception("reconcile of %s/%s failed", *key)
        finally:
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)

    def _reconcile(self, key: RunKey, body: dict[str, Any]) -> None:
        now = datetime.now(UTC)
        previous: Mapping[str, Any] = body.get("status") or {}
        generation = int(body["metadata"].get("generation") or 0)
        try:
            run = RunRef.from_body(body)
            children = of_instance(self.cache.children(key), run.uid)
            children += self._kueue_workloads(run, children)
            observed = observe(children, gpu_resources=gpu_resources(run.spec), now=now)
            logs = self._progress_logs(key, run, observed, now)
            server_logs = self._overdue_server_logs(run, observed, now)
            plan = advance(run, observed, previous, now=timestamp(now), logs=logs, server_logs=server_logs)
        except InvalidRun as error:  # also a reference the schema cannot check (a node pool's name)
            status = invalid(previous, str(error), generation=generation, now=timestamp(now))
            if status != previous:
                self._write_status(key, body, status)
                self.kube.post_event(body, Event("Warning", "InvalidSpec", str(error)))
            self._wake_at(key, None)
            return
        self._carry_out(run, body, plan)
        self._wake_at(key, plan.wake_at)
        if self._status_due(key, previous, plan.status):
            self._write_status(key, body, plan.status)
            metrics.observe_finished_stages(previous, plan.status)
        for event in plan.events:
            self.kube.post_event(body, event)

    def _carry_out(self, run: RunRef, body: Mapping[str, Any], plan: Plan) -> None:
        for manifest in plan.update:  # before any new attempt starts: it mounts what this writes
            child = ChildRef(manifest["apiVersion"], manifest["kind"], manifest["metadata"]["name"])
            patch = {k: v for k, v in manifest.items() if k not in ("apiVersion", "kind")}
            self.cache.put_child(self.kube.merge_patch(run.namespace, child, patch))
        for manifest in plan.create:
            created = self.kube.create(run.namespace, manifest)
            if created is not None:
                self.cache.put_child(created)
            elif self._name_taken(run, body, manifest):
                break  # the rest would start under the earlier run's ConfigMap: after it is gone
        for workload, suspend in plan.suspend:
            self.cache.put_child(
                self.kube.merge_patch(run.namespace, workload, suspend_patch(workload, suspend))
            )
        for workload, why in plan.fail:
            self.cache.put_child(self.kube.merge_patch(run.namespace, workload, fail_patch(workload, why)))
        for name, active in plan.activate:
            kueue_workload = ChildRef(KUEUE_WORKLOAD_API, "Workload", name)
            self.kube.merge_patch(run.namespace, kueue_workload, {"spec": {"active": active}})
        for child in plan.delete:
            self.kube.delete(run.namespace, child)
            self.cache.forget_child((run.namespace, run.name), child.kind, child.name)

    def _progress_logs(
        self, key: RunKey, run: RunRef, observed: Observed, now: datetime
    ) -> dict[Stage, tuple[str, str]]:
        """Of each running stage, the tail of its reporting pod's log, read again when older than
        PROGRESS_REFRESH_SECONDS (or its pod changed): a rate and an ETA need no fresher reading."""
        logs: dict[Stage, tuple[str, str]] = {}
        for stage, attempts in observed.attempts.items():
            latest = attempts[-1]
            held = self._logs.get((key, stage))
            if latest.phase != "Running" or latest.suspended or latest.speaker is None:
                self._logs.pop((key, stage), None)
                continue
            fresh = time.monotonic() - PROGRESS_REFRESH_SECONDS
            if held is None or held[0] != latest.speaker or held[1] < fresh:
                pod, container = latest.speaker
                log = self.kube.pod_log(
                    run.namespace, pod, container, lines=PROGRESS_LOG_LINES, limit_bytes=PROGRESS_LOG_BYTES
                )
                held = (latest.speaker, time.monotonic(), timestamp(now), log)
                self._logs[(key, stage)] = held
            logs[stage] = (held[2], held[3])
        return logs

    def _overdue_server_logs(self, run: RunRef, observed: Observed, now: datetime) -> dict[str, str]:
        """The log tails of server pods not ready past their time (a pass or two: their attempt ends)."""
        return {
            server.pod: self.kube.pod_log(
                run.namespace,
                server.pod,
                server.container,
                lines=PROGRESS_LOG_LINES,
                limit_bytes=PROGRESS_LOG_BYTES,
            )
            for stage in observed.unready_servers
            for server in overdue_servers(run.spec, stage, observed, timestamp(now))
        }

    def _kueue_workloads(self, run: RunRef, children: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """Kueue's Workloads for the run's unfinished queued workloads, read when needed: they carry
        none of the run's labels, so the run's watches do not see them (a run without a queueName, or
        whose queued workloads have all ended, costs no request)."""
        uids = queued_workload_uids(children)
        if not uids:
            return []
        selector = f"{KUEUE_JOB_UID_LABEL} in ({','.join(uids)})"
        return self.kube.list(run.namespace, KUEUE_WORKLOAD_API, "Workload", selector) or []

    def _name_taken(self, run: RunRef, body: Mapping[str, Any], manifest: Mapping[str, Any]) -> bool:
        """After a 409: True when the name is held by a child of an earlier run of this name, which the
        garbage collector removes shortly (its deletion is a child event: this run reconciles then)."""
        existing = self.kube.read(run.namespace, manifest)
        if existing is None:
            return True  # removed since: the next reconcile creates it
        holder = instance_of(existing)
        if holder in (None, run.uid) or existing.get("kind") == "PersistentVolumeClaim":
            self.cache.put_child(existing)
            return False
        key = (run.namespace, run.name, run.uid)
        if key not in self._name_conflicts:
            self._name_conflicts.add(key)
            message = (
                f"{existing.get('kind')} {manifest['metadata']['name']} still belongs to an earlier run of"
                f" this name (uid {holder}); this run's children are created once it is gone"
            )
            self.kube.post_event(body, Event("Normal", "WaitingForEarlierRun", message))
        return True

    def _status_due(self, key: RunKey, previous: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
        if _without_cost(previous) != _without_cost(status):
            return True
        if previous.get("cost") == status.get("cost"):
            return False
        return time.monotonic() - self._cost_written.get(key, 0.0) >= COST_REFRESH_SECONDS

    def _write_status(self, key: RunKey, body: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        # a merge patch replaces lists whole and deletes keys set to null: status is the operator's alone
        removed = {k: None for k in (body.get("status") or {}) if k not in status}
        run = ChildRef(RUN_REF.api_version, RUN_REF.kind, key[1])
        updated = self.kube.merge_patch(key[0], run, {"status": {**removed, **status}}, subresource="status")
        self.cache.put_run(updated)
        self._cost_written[key] = time.monotonic()

    def _wake_at(self, key: RunKey, moment: str | None) -> None:
        """One pending wake-up per run, for the time its latest plan waits for (none: cancelled)."""
        with self._guard:
            pending = self._wakeups.get(key)
            if pending is not None and pending[0] == moment:
                return
            if pending is not None:
                pending[1].cancel()
                del self._wakeups[key]
            if moment is None:
                return
            delay = (parse_time(moment) - datetime.now(UTC)).total_seconds()
            timer = threading.Timer(max(delay, 0.0) + WAKE_MARGIN_SECONDS, self._woken, (key, moment))
            timer.daemon = True
            self._wakeups[key] = (moment, timer)
            timer.start()

    def _woken(self, key: RunKey, moment: str) -> None:
        with self._guard:
            if self._wakeups.get(key, ("", None))[0] == moment:
                del self._wakeups[key]
        self.reconcile(key)

    def forget(self, key: RunKey) -> None:
        with self._guard:
            self._cost_written.pop(key, None)
            for held in [k for k in list(self._logs) if k[0] == key]:
                self._logs.pop(held, None)
            pending = self._wakeups.pop(key, None)
        if pending is not None:
            pending[1].cancel()
