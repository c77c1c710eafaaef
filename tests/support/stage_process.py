"""Running a stage program as its own process, the way a pod runs it, and killing it mid-way."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.support.waiting import wait_for


def stage_command(stage: str, config: Path, root: Path) -> list[str]:
    return [sys.executable, "-m", "reasoning_pipeline", stage, "--config", str(config), "--root", str(root)]


def kill_when_journaled(
    command: list[str], journal: Path, lines: int, env: dict[str, str] | None = None
) -> int:
    """Starts the stage, SIGKILLs it once its journal holds `lines` records; returns how many it held."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_for(
            lambda: journal.exists() and journal.read_text().count("\n") >= lines,
            timeout=60,
            what=f"{lines} records in {journal.name}",
        )
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    return journal.read_text().count("\n")


def tear_last_line(journal: Path, partial: str) -> None:
    """What a kill in the middle of a write leaves behind."""
    with journal.open("a") as handle:
        handle.write(partial)
