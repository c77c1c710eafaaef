"""kopf wiring only: watch events feed the cache and ask for a reconcile of the run they belong to.

Only `on.event` handlers and a resync task: no handler that needs a finalizer (timers and daemons do),
so uninstalling the operator never leaves runs that cannot be deleted, and kopf writes nothing to the
runs but what the reconciler writes (their status). A retry's backoff wakes its run through the
reconciler's own in-process timer, not kopf's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from typing import Any

import kopf
from kubernetes import client, config
from reasoning_pipeline.spec import API_GROUP, API_VERSION

from reasoning_operator import metrics
from reasoning_operator.cache import Cache, RunKey
from reasoning_operator.kube import Kube
from reasoning_operator.leadership import (
    LEASE_NAME_VARIABLE,
    LEASE_NAMESPACE_VARIABLE,
    LEASE_SECONDS_VARIABLE,
    Leadership,
    LeaseSettings,
)
from reasoning_operator.naming import LABEL_RUN
from reasoning_operator.reconciler import Reconciler

log = logging.getLogger(__name__)

# The level-based safety net: every run is reconciled at least this often, events or not.
RESYNC_SECONDS = float(os.environ.get("REASONING_RESYNC_SECONDS", "30"))
METRICS_PORT = int(os.environ.get("REASONING_METRICS_PORT", "9090"))
CHILD_RESOURCES = (
    ("batch", "v1", "jobs"),
    ("", "v1", "pods"),
    ("apps", "v1", "deployments"),
    ("", "v1", "services"),
    ("", "v1", "configmaps"),
    ("", "v1", "persistentvolumeclaims"),
    ("kubeflow.org", "v1", "pytorchjobs"),
    ("networking.k8s.io", "v1", "networkpolicies"),
)

CACHE = Cache()
_state: dict[str, Reconciler] = {}


def _api_client() -> client.ApiClient:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


def _reconciler() -> Reconciler:
    return _state["reconciler"]


def _lease_settings() -> LeaseSettings | None:
    """The Lease replicas elect their active one with (`--leader-election-namespace` sets the variables);
    None: one replica, always active."""
    namespace = os.environ.get(LEASE_NAMESPACE_VARIABLE)
    if not namespace:
        return None
    duration = float(os.environ.get(LEASE_SECONDS_VARIABLE, "15"))
    return LeaseSettings(
        name=os.environ.get(LEASE_NAME_VARIABLE) or "reasoning-operator",
        namespace=namespace,
        identity=os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}",
        duration_seconds=duration,
        renew_seconds=duration / 3,
    )


def _reconcile_every_run() -> None:
    """What a replica does when it becomes the active one: every run it has watched, at once."""
    for key in CACHE.runs():
        _reconciler().reconcile(key)


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # stalled watches are re-established rather than trusted forever (crate-operator does the same)
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.execution.max_workers = 8
    settings.posting.level = logging.WARNING
    api = _api_client()
    kube = Kube(api)
    lease = _lease_settings()
    if lease is None:
        _state["reconciler"] = Reconciler(kube, CACHE)
    else:
        # the election's thread must go on renewing: the first passes run beside it
        leadership = Leadership(
            api, lease, on_elected=lambda: threading.Thread(target=_reconcile_every_run, daemon=True).start()
        )
        memo["leadership"] = leadership
        _state["reconciler"] = Reconciler(kube, CACHE, leading=leadership.leading)
        memo["election"] = asyncio.create_task(leadership.run_forever())
    if METRICS_PORT:
        metrics.serve(METRICS_PORT, CACHE, kube)
    memo["resync"] = asyncio.create_task(_resync_forever())


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    for name in ("resync", "election"):
        task = memo.get(name)
        if isinstance(task, asyncio.Task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    leadership = memo.get("leadership")
    if isinstance(leadership, Leadership):
        await asyncio.to_thread(leadership.release)  # the other replica takes over at once


async def _resync_forever() -> None:
    while True:
        await asyncio.sleep(RESYNC_SECONDS)
        for key in CACHE.runs():
            await asyncio.to_thread(_reconciler().reconcile, key)


@kopf.on.event(API_GROUP, API_VERSION, "reasoningruns")
def run_event(event: kopf.RawEvent, **_: Any) -> None:
    body = event["object"]
    metadata = body.get("metadata") or {}
    key: RunKey = (metadata.get("namespace", ""), metadata.get("name", ""))
    if event["type"] == "DELETED":
        CACHE.drop_run(body)
        _reconciler().forget(key)
        return
    CACHE.put_run(body)
    _reconciler().reconcile(key)


def child_event(event: kopf.RawEvent, **_: Any) -> None:
    body = event["object"]
    owner = CACHE.drop_child(body) if event["type"] == "DELETED" else CACHE.put_child(body)
    if owner is not None and CACHE.run(owner) is not None:
        _reconciler().reconcile(owner)


for _group, _version, _plural in CHILD_RESOURCES:
    kopf.on.event(_group, _version, _plural, labels={LABEL_RUN: kopf.PRESENT})(child_event)
