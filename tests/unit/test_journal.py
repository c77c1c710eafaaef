"""A journal has one writer at a time: a second one waits, then fails transiently, and touches nothing."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from reasoning_pipeline.errors import TransientStageError
from reasoning_pipeline.storage import Journal, JournalBusyError

HOLD = """
import sys, time
from pathlib import Path
from reasoning_pipeline.storage import Journal
with Journal(Path(sys.argv[1])) as journal:
    journal.append({"id": "a", "v": 1})
    journal._handle.write('{"id": "b", "v"')  # a line being written, not yet whole
    journal._handle.flush()
    print("holding", flush=True)
    time.sleep(30)
"""


def test_a_second_writer_in_another_process_waits_then_fails_and_cuts_nothing(tmp_path: Path) -> None:
    path = tmp_path / "raw.journal.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        with pytest.raises(JournalBusyError, match="another process has been writing this journal") as busy:
            Journal(path, lock_wait=1.0)
        assert time.monotonic() - started >= 1.0
        assert isinstance(busy.value, TransientStageError)  # the operator tries again later
        # the first writer's line in progress is still there: the second did not "recover" the journal
        assert path.read_text().endswith('{"id": "b", "v"')
    finally:
        holder.kill()
        holder.wait()
    with Journal(path) as journal:  # the holder is gone (its lock with it): the torn line is cut now
        assert list(journal.records()) == ["a"]
    assert path.read_text().count("\n") == 1


def test_a_closed_journal_lets_the_next_writer_in(tmp_path: Path) -> None:
    path = tmp_path / "verdicts.journal.jsonl"
    first = Journal(path)
    first.append({"id": "1"})
    with pytest.raises(JournalBusyError):
        Journal(path, lock_wait=0.1)  # a second open file in the same process is a second writer too
    first.close()
    with Journal(path) as second:
        assert "1" in second
