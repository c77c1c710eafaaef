"""Stage summaries: the full one on storage, a ≤ 4 KiB one in the termination message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from reasoning_pipeline import cli
from reasoning_pipeline.errors import StageError, TransientStageError
from reasoning_pipeline.spec import ReasoningRun, Stage
from reasoning_pipeline.storage import RunPaths
from reasoning_pipeline.summary import (
    TERMINATION_MESSAGE_LIMIT,
    StageSummary,
    termination_message,
    write_summary,
)


def summary(message: str, metrics: dict[str, object]) -> StageSummary:
    return StageSummary(
        stage=Stage.FILTER,
        phase="Failed",
        message=message,
        started_at="2026-11-25T00:00:00Z",
        finished_at="2026-11-25T00:01:00Z",
        metrics=metrics,
    )


def test_a_small_summary_is_the_termination_message_as_is() -> None:
    small = summary("kept 3 of 4", {"kept": 3})
    assert json.loads(termination_message(small)) == small.model_dump(mode="json")


def test_a_large_summary_shrinks_to_4_kib_keeping_what_the_operator_needs() -> None:
    large = summary("x" * 10_000, {f"source-{n}": {"checked": n, "kept": n} for n in range(500)})
    text = termination_message(large)
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    shrunk = json.loads(text)
    assert (shrunk["stage"], shrunk["phase"]) == ("filter", "Failed")
    assert shrunk["metrics"] == {"truncated": True}
    assert shrunk["message"].startswith("xxx")


def test_write_summary_writes_storage_and_the_termination_log(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    log.write_text("")
    written = summary("done", {"kept": 1})
    write_summary(written, tmp_path / "stage", termination_log=log)
    assert json.loads((tmp_path / "stage" / "summary.json").read_text())["message"] == "done"
    assert json.loads(log.read_text())["message"] == "done"
    write_summary(written, tmp_path / "worker", on_storage=False, termination_log=tmp_path / "absent")
    assert not (tmp_path / "worker").exists()
    assert not (tmp_path / "absent").exists()


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        (StageError("prompts.jsonl: no such file"), "Permanent"),
        (TransientStageError("teacher endpoint unreachable after 600 s"), "Transient"),
        (ConnectionResetError("connection reset by peer"), "Transient"),
        (MemoryError(), "Transient"),
        (KeyError("a bug"), "Transient"),
    ],
)
def test_a_failed_stage_says_whether_another_attempt_may_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception, failure: str
) -> None:
    def failing(run: ReasoningRun, paths: RunPaths) -> StageSummary:
        raise error

    monkeypatch.setattr(cli, "stage_runners", lambda: {Stage.DATA: failing})
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({"metadata": {"name": "r"}, "spec": {}}))
    assert cli.run_stage(Stage.DATA, str(config), str(tmp_path)) == 1
    written = json.loads((tmp_path / "runs" / "r" / "data" / "summary.json").read_text())
    assert (written["phase"], written["failure"]) == ("Failed", failure)
    assert json.loads(termination_message(StageSummary.model_validate(written)))["failure"] == failure
