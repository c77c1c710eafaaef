"""Two operators, one active: the Lease election against the real API server, then the chart's replicas
as real processes, the active one killed in the middle of a stage."""

from __future__ import annotations

import contextlib
import time

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from reasoning_operator.leadership import Leadership, LeaseSettings
from reasoning_pipeline.spec import Stage

from tests.support.cluster import ClusterTarget
from tests.support.operator import installed_chart, operator_process
from tests.support.runs import (
    LABEL_RUN,
    LABEL_STAGE,
    complete_stage,
    finish,
    generating,
    stage_summary,
    storage_for,
    wait_for_phase,
)
from tests.support.waiting import wait_for


class Clock:
    """Each replica's own monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def holder(coordination: client.CoordinationV1Api, namespace: str, name: str) -> str:
    try:
        lease = coordination.read_namespaced_lease(name, namespace)
    except ApiException as error:
        if error.status == 404:
            return ""
        raise
    return str(lease.spec.holder_identity or "")


def test_one_replica_holds_the_lease_until_it_stops_renewing_or_gives_it_up(
    api: client.ApiClient, namespace: str
) -> None:
    coordination = client.CoordinationV1Api(api)
    clocks = {"a": Clock(), "b": Clock()}
    replicas = {
        who: Leadership(
            api, LeaseSettings("election", namespace, who, duration_seconds=15), clock=clocks[who]
        )
        for who in ("a", "b")
    }
    a, b = replicas["a"], replicas["b"]
    assert a.try_once()
    assert not b.try_once()  # b has seen the record now; its holder renews
    assert (a.leading(), b.leading()) == (True, False)
    for _ in range(3):  # a renews every 5 s: b never sees the record unchanged for 15 s
        for clock in clocks.values():
            clock.now += 5
        assert a.try_once()
        assert not b.try_once()
    assert holder(coordination, namespace, "election") == "a"
    # a is cut off (it stops renewing): it stops acting a whole duration after its last renewal...
    clocks["a"].now += 15
    assert not a.leading()
    # ...and b takes over only once it has watched the record unchanged for as long
    clocks["b"].now += 14
    assert not b.try_once()
    clocks["b"].now += 1
    assert b.try_once()
    assert b.leading()
    lease = coordination.read_namespaced_lease("election", namespace)
    assert (lease.spec.holder_identity, lease.spec.lease_transitions) == ("b", 1)
    # a comes back: the record changed, so it waits again
    assert not a.try_once()
    # a clean shutdown gives the Lease up: the other takes it at once
    b.release()
    assert not b.leading()
    assert a.try_once()
    assert holder(coordination, namespace, "election") == "a"


def test_of_two_replicas_that_read_the_same_record_only_the_first_to_write_holds_the_lease(
    api: client.ApiClient, namespace: str
) -> None:
    """The race the resourceVersion settles: both read the Lease, both write themselves in."""
    coordination = client.CoordinationV1Api(api)
    a, b = (Leadership(api, LeaseSettings("race", namespace, who)) for who in ("a", "b"))
    assert a.try_once()
    a.release()  # free again, for whoever writes first
    seen_by_a = coordination.read_namespaced_lease("race", namespace)
    seen_by_b = coordination.read_namespaced_lease("race", namespace)
    assert a._replace(seen_by_a, transitions=1)
    assert not b._replace(seen_by_b, transitions=1)  # 409: the record changed since b read it
    assert holder(coordination, namespace, "race") == "a"
    # and two that find no Lease at all: the API server takes one create
    c, d = (Leadership(api, LeaseSettings("fresh", namespace, who)) for who in ("c", "d"))
    assert c._create()
    assert not d._create()


def test_killing_the_active_operator_mid_stage_hands_over_within_seconds_and_doubles_nothing(
    cluster: ClusterTarget,
    api: client.ApiClient,
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    batch: client.BatchV1Api,
    custom: client.CustomObjectsApi,
    restricted: str,
    reasoning_crd: None,
) -> None:
    if not cluster.embedded:
        pytest.skip("pods finish on kwok's cues only on the embedded cluster")
    namespace, run = restricted, "handover"
    coordination = client.CoordinationV1Api(api)
    with contextlib.ExitStack() as stack:
        release = stack.enter_context(installed_chart(cluster, namespace, watch=[namespace]))
        settings = {"leader_election": namespace, "lease_seconds": 6.0}
        replicas = [
            stack.enter_context(operator_process(api, release, name=f"replica-{i}", **settings))
            for i in (1, 2)
        ]
        lease = "reasoning-operator"
        wait_for(
            lambda: holder(coordination, namespace, lease), timeout=60, what="a replica to hold the Lease"
        )
        by_identity = {replica.identity: replica for replica in replicas}
        active = by_identity[holder(coordination, namespace, lease)]
        (standby,) = [replica for replica in replicas if replica is not active]
        stack.enter_context(storage_for(core, namespace, run))
        pod = generating(core, apps, custom, namespace, run)
        active.kill()
        killed_at = time.monotonic()
        finish(
            core, pod, "Succeeded", stage_summary(Stage.GENERATE)
        )  # it ends while only the standby watches
        wait_for(
            lambda: holder(coordination, namespace, lease) == standby.identity,
            timeout=30,
            what="the standby to take the Lease over",
            interval=0.2,
        )
        handover = time.monotonic() - killed_at
        print(f"the standby held the Lease {handover:.1f} s after the active replica was killed")
        assert handover < 6.0 + 2 * 2.0 + 2.0, f"handover took {handover:.1f} s"
        # the new active replica goes on where the killed one stopped: the rewrite starts
        wait_for(
            lambda: (
                batch.list_namespaced_job(
                    namespace, label_selector=f"{LABEL_RUN}={run},{LABEL_STAGE}=rewrite"
                ).items
            ),
            timeout=30,
            what="the rewrite's Job, made by the new active replica",
        )
        active.start()  # back as a standby
        for stage in (Stage.REWRITE, Stage.FILTER, Stage.FORMAT, Stage.TRAIN, Stage.EVALUATE):
            complete_stage(core, namespace, run, stage)
        status = wait_for_phase(custom, namespace, run, "Succeeded")
        assert [(s["name"], s["attempts"]) for s in status["stages"]] == [(stage.value, 1) for stage in Stage]
        jobs = sorted(
            j.metadata.name
            for j in batch.list_namespaced_job(namespace, label_selector=f"{LABEL_RUN}={run}").items
        )
        assert jobs == sorted(f"{run}-{stage.value}-1" for stage in Stage if stage is not Stage.TRAIN)
        # a clean shutdown of the active replica hands the Lease over at once
        standby.stop()
        wait_for(
            lambda: holder(coordination, namespace, lease) == active.identity,
            timeout=2 * 2.0 + 2.0,
            what="the restarted replica to take the Lease given up",
            interval=0.2,
        )
