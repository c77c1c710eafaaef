"""The reconciler's wake-ups: a plan that waits for a time (a retry's backoff) is reconciled then."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import cast

from reasoning_operator.cache import Cache, RunKey
from reasoning_operator.kube import Kube
from reasoning_operator.observe import parse_time, timestamp
from reasoning_operator.reconciler import Reconciler

KEY: RunKey = ("team", "run")


class Recorder(Reconciler):
    def __init__(self) -> None:
        super().__init__(kube=cast(Kube, None), cache=Cache())  # wake-ups reach neither
        self.reconciled: list[datetime] = []
        self.woken = threading.Event()

    def reconcile(self, key: RunKey) -> None:
        self.reconciled.append(datetime.now(UTC))
        self.woken.set()


def in_seconds(seconds: int) -> str:
    return timestamp(datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=seconds))


def test_a_run_is_reconciled_when_its_wait_ends_and_not_before() -> None:
    reconciler = Recorder()
    moment = in_seconds(1)
    reconciler._wake_at(KEY, moment)
    reconciler._wake_at(KEY, moment)  # every reconcile of the waiting run asks again: still one timer
    assert reconciler.woken.wait(5)
    time.sleep(0.3)
    assert len(reconciler.reconciled) == 1
    assert reconciler.reconciled[0] >= parse_time(moment)


def test_a_wait_that_is_over_or_forgotten_wakes_nobody() -> None:
    reconciler = Recorder()
    reconciler._wake_at(KEY, in_seconds(1))
    reconciler._wake_at(KEY, None)  # the next plan no longer waits (the run was suspended, say)
    reconciler._wake_at(("team", "deleted"), in_seconds(1))
    reconciler.forget(("team", "deleted"))
    assert not reconciler.woken.wait(2.5)
