"""The pod's sandbox container as a process here: `python -m reasoning_pipeline.filter.sandbox_channel`
on a socket path, with the stage's side pointed at it as the operator's pod spec points it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from reasoning_pipeline.filter import sandbox_channel
from reasoning_pipeline.filter.sandbox_channel import CHANNEL_VARIABLE


def start_host(path: Path, level: str | None) -> subprocess.Popen[bytes]:
    """The host, capped at `level` (REASONING_SANDBOX_ISOLATION) when given."""
    environment = {k: v for k, v in os.environ.items() if k != CHANNEL_VARIABLE}
    if level:
        environment["REASONING_SANDBOX_ISOLATION"] = level
    return subprocess.Popen(
        [sys.executable, "-m", "reasoning_pipeline.filter.sandbox_channel", str(path)], env=environment
    )


@contextlib.contextmanager
def sandbox_host(
    folder: Path, monkeypatch: pytest.MonkeyPatch, level: str | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A host on `folder`/checker.sock, and this process's checkers sent to it."""
    path = folder / "checker.sock"
    process = start_host(path, level)
    monkeypatch.setenv(CHANNEL_VARIABLE, str(path))
    monkeypatch.setattr(sandbox_channel, "_shared", None)
    try:
        yield process
    finally:
        process.kill()
        process.wait()
        sandbox_channel._shared = None
