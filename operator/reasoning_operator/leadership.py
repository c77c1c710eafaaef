"""One active operator among its replicas: a coordination.k8s.io Lease, held the way Kubernetes' own
controllers hold theirs (client-go's leader election).

Every replica watches and keeps its cache warm; only the holder of the Lease reconciles. The holder
renews it every `renew_seconds`; a replica takes it over once it has seen the same record unchanged for
`duration_seconds` by its own clock (no trust in another machine's clock), writing with the record's
resourceVersion so that of two replicas racing for it exactly one wins. A holder that could not renew
for `duration_seconds` stops acting before anyone else may start, and one that shuts down cleanly gives
the Lease up at once. kopf's own peering was weighed and not used: it freezes operators of equal
priority, needs CRDs of its own, and knows nothing of the resync task and the retry timers here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

# how `python -m reasoning_operator --leader-election-namespace NS [--leader-election-id NAME]` tells the
# handlers (kopf starts them, not main)
LEASE_NAMESPACE_VARIABLE = "REASONING_LEASE_NAMESPACE"
LEASE_NAME_VARIABLE = "REASONING_LEASE_NAME"
LEASE_SECONDS_VARIABLE = "REASONING_LEASE_SECONDS"


@dataclass(frozen=True)
class LeaseSettings:
    name: str
    namespace: str
    identity: str
    duration_seconds: float = 15.0
    renew_seconds: float = 5.0
    retry_seconds: float = 2.0


@dataclass(frozen=True)
class Record:
    """What the Lease says, as far as the election reads it."""

    holder: str
    renewed: str  # the holder's renewTime, compared for change only
    transitions: int
    resource_version: str


def record_of(lease: Any) -> Record:
    spec = lease.spec
    return Record(
        holder=spec.holder_identity or "",
        renewed=str(spec.renew_time or ""),
        transitions=int(spec.lease_transitions or 0),
        resource_version=lease.metadata.resource_version,
    )


def may_take(record: Record, me: str, unchanged_since: float, now: float, duration: float) -> bool:
    """Whether this replica may write itself into the Lease: it is its own, or free, or its holder has
    not renewed it for a whole lease duration as this replica has watched it."""
    return record.holder in ("", me) or now - unchanged_since >= duration


class Leadership:
    def __init__(
        self,
        api: client.ApiClient,
        settings: LeaseSettings,
        on_elected: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = client.CoordinationV1Api(api)
        self.settings = settings
        self.on_elected = on_elected
        self.clock = clock
        self._renewed_at: float | None = None  # when this replica last wrote itself into the Lease
        self._seen: Record | None = None
        self._seen_since = 0.0

    def leading(self) -> bool:
        """True only while this replica's last renewal is younger than a lease duration: a holder cut off
        from the API server stops acting before another replica may take over."""
        renewed = self._renewed_at
        return renewed is not None and self.clock() - renewed < self.settings.duration_seconds

    def try_once(self) -> bool:
        """One round of the election; whether this replica holds the Lease afterwards."""
        was_leading = self.leading()
        settings = self.settings
        started = self.clock()
        try:
            lease = self.api.read_namespaced_lease(settings.name, settings.namespace)
        except ApiException as error:
            if error.status != 404:
                log.warning("leader election: reading Lease %s failed: %s", settings.name, error.reason)
                return self._after(was_leading)
            return self._won(self._create(), was_leading, started)
        record = record_of(lease)
        if record != self._seen:
            self._seen, self._seen_since = record, started
        if not may_take(record, settings.identity, self._seen_since, started, settings.duration_seconds):
            self._renewed_at = None
            return False
        transitions = record.transitions + (record.holder != settings.identity)
        return self._won(self._replace(lease, transitions), was_leading, started)

    def _create(self) -> bool:
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(name=self.settings.name, namespace=self.settings.namespace),
            spec=self._spec(0, acquired=True),
        )
        try:
            self.api.create_namespaced_lease(self.settings.namespace, body)
        except ApiException as error:
            if error.status != 409:  # another replica created it first
                log.warning("leader election: creating Lease %s failed: %s", self.settings.name, error.reason)
            return False
        return True

    def _replace(self, lease: Any, transitions: int) -> bool:
        acquired = lease.spec.holder_identity != self.settings.identity
        lease.spec = self._spec(transitions, acquired=acquired, previous=lease.spec)
        try:
            # the resourceVersion read above: a write by anyone since makes this one fail with 409
            self.api.replace_namespaced_lease(self.settings.name, self.settings.namespace, lease)
        except ApiException as error:
            if error.status != 409:
                log.warning("leader election: renewing Lease %s failed: %s", self.settings.name, error.reason)
            return False
        return True

    def _spec(self, transitions: int, *, acquired: bool, previous: Any = None) -> client.V1LeaseSpec:
        now = datetime.now(UTC)
        return client.V1LeaseSpec(
            holder_identity=self.settings.identity,
            lease_duration_seconds=round(self.settings.duration_seconds),
            acquire_time=now if acquired or previous is None else previous.acquire_time,
            renew_time=now,
            lease_transitions=transitions,
        )

    def _won(self, written: bool, was_leading: bool, started: float) -> bool:
        if written:
            self._renewed_at = started  # counted from before the write: never longer than it held
            if not was_leading:
                log.info("leader election: %s holds Lease %s", self.settings.identity, self.settings.name)
                self.on_elected()
            return True
        return self._after(was_leading)

    def _after(self, was_leading: bool) -> bool:
        if was_leading and not self.leading():
            log.warning("leader election: %s lost Lease %s", self.settings.identity, self.settings.name)
        return self.leading()

    def release(self) -> None:
        """Gives the Lease up (a clean shutdown), so that another replica takes over at once."""
        if not self.leading():
            return
        self._renewed_at = None
        try:
            lease = self.api.read_namespaced_lease(self.settings.name, self.settings.namespace)
            if lease.spec.holder_identity == self.settings.identity:
                lease.spec.holder_identity = None
                self.api.replace_namespaced_lease(self.settings.name, self.settings.namespace, lease)
        except ApiException as error:
            log.warning("leader election: releasing Lease %s failed: %s", self.settings.name, error.reason)

    async def run_forever(self) -> None:
        while True:
            leading = await asyncio.to_thread(self.try_once)
            settings = self.settings
            await asyncio.sleep(settings.renew_seconds if leading else settings.retry_seconds)
