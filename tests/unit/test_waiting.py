"""Waits that fail fast: a run that ended otherwise than hoped stops the wait at once, with its reason."""

from __future__ import annotations

import time
from typing import Any

import pytest
from reasoning_operator.demo import report
from reasoning_operator.status import ended_because

from tests.support.waiting import wait_for

FAILED_RUN: dict[str, Any] = {
    "phase": "Failed",
    "message": "stage format failed at attempt 1, not retried (a permanent failure): 9 SFT samples make …",
    "stages": [
        {"name": "data", "phase": "Succeeded", "message": "64 prompts"},
        {"name": "format", "phase": "Failed", "message": "9 SFT samples make 1 micro-batches per process …"},
        {"name": "train", "phase": "Pending"},
    ],
}


def test_a_hopeless_wait_fails_at_once_with_the_reason() -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError, match="gave up waiting for the trainer: the run failed") as failed:
        wait_for(lambda: None, timeout=60, what="the trainer", unless=lambda: "the run failed")
    assert time.monotonic() - started < 5
    assert "timed out" not in str(failed.value)


def test_a_wait_that_finds_what_it_waits_for_does_not_ask_whether_to_give_up() -> None:
    def never() -> str:
        raise AssertionError("asked")

    assert wait_for(lambda: "pod", timeout=1, what="a pod", unless=never) == "pod"


def test_a_run_that_ended_reads_with_its_message_and_the_failed_stage() -> None:
    assert ended_because(FAILED_RUN) == (
        f"Failed - {FAILED_RUN['message']} (stage format: 9 SFT samples make 1 micro-batches per process …)"
    )
    assert ended_because({"phase": "Succeeded", "message": "all 7 stages succeeded"}) == (
        "Succeeded - all 7 stages succeeded"
    )
    assert report(FAILED_RUN)[0] == f"phase: {ended_because(FAILED_RUN)}", "the demo says why it failed"
