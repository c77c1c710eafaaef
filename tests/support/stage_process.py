"""Running a stage program as its own process, the way a pod runs it, and killing it mid-way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.support.waiting import wait_for


def stage_command(stage: str, config: Path, root: Path) -> list[str]:
    return [sys.executable, "-m", "reasoning_pipeline", stage, "--config", str(config), "--root", str(root)]


def run_stage_program(
    root: Path, run: str, stage: str, spec: dict[str, Any], environment: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    """One stage program as its container runs it, on a run file with `spec`: its exit status and the
    summary it left on the storage."""
    config = root / "run.yaml"
    config.write_text(yaml.safe_dump({"metadata": {"name": run}, "spec": spec}))
    done = subprocess.run(stage_command(stage, config, root), capture_output=True, text=True, env=environment)
    summary: dict[str, Any] = json.loads((root / "runs" / run / stage / "summary.json").read_text())
    return done.returncode, summary


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


def kill_processes_mentioning(text: str) -> int:
    """SIGKILL every process whose command line mentions `text`, as a container runtime kills a whole
    container: torchrun's workers run in sessions of their own, so signalling its group is not enough."""
    killed = 0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                os.kill(int(cmdline.parent.name), signal.SIGKILL)
                killed += 1
        except (OSError, ValueError):  # it ended while we looked
            continue
    return killed
