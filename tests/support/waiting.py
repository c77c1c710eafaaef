"""Polling with a bound: integration tests wait for controllers, never sleep a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.25,
    unless: Callable[[], str | None] | None = None,
) -> T:
    """Call `probe` until it returns something truthy; fail naming `what` if `timeout` seconds pass.

    `unless` is asked each time the probe finds nothing: a reason it returns means what the test waits for
    will never come (the run it belongs to has failed), and the wait fails at once with that reason
    rather than at the timeout with none."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        hopeless = unless() if unless is not None else None
        if hopeless:
            raise AssertionError(f"gave up waiting for {what}: {hopeless}")
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last seen: {last!r})")
        time.sleep(interval)
