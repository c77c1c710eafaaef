"""Progress in a pod's log: one line per redraw, in the format the operator reads back."""

from __future__ import annotations

import io
import time

import pytest
from reasoning_pipeline import progress


def test_in_a_pod_every_redraw_is_a_line_the_operator_reads_back(monkeypatch: pytest.MonkeyPatch) -> None:
    log = io.StringIO()  # not a terminal, as a container's stderr
    monkeypatch.setattr("sys.stderr", log)
    bar = progress.bar(100, "generate", initial=10)
    bar.mininterval = 0  # every update redraws (10 s in a pod)
    for _ in range(3):
        time.sleep(0.01)
        bar.update(5)
    bar.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue(), "a container log splits on newlines only"
    assert lines[0] == "generate: 10/100 done, ?rec/s, 00:00 elapsed, ? left"
    reported = progress.parse_progress(log.getvalue())
    assert reported is not None
    assert (reported.what, reported.done, reported.total, reported.unit) == ("generate", 25, 100, "rec")
    assert reported.rate is not None
    assert reported.rate > 0


@pytest.mark.parametrize(
    ("line", "done", "total", "rate", "unit"),
    [
        ("train: 3/120 done,  0.02step/s, 02:10 elapsed, 1:37:30 left", 3, 120, 0.02, "step"),
        (
            "data: reading numina: 5000/None done, 1234.56rec/s, 00:04 elapsed, ? left",
            5000,
            None,
            1234.56,
            "rec",
        ),
        ("filter: 0/160 done, ?rec/s, 00:00 elapsed, ? left", 0, 160, None, "rec"),
    ],
)
def test_the_last_progress_line_wins_and_other_lines_are_ignored(
    line: str, done: int, total: int | None, rate: float | None, unit: str
) -> None:
    log = (
        f"loading the model\nx: 1/2 done, 1.00rec/s, 00:01 elapsed, 00:01 left\n{line}\nstep 3/120 loss 1.2\n"
    )
    reported = progress.parse_progress(log)
    assert reported is not None
    assert (reported.done, reported.total, reported.rate, reported.unit) == (done, total, rate, unit)


def test_a_log_without_a_progress_line_reports_nothing() -> None:
    assert progress.parse_progress("") is None
    assert progress.parse_progress("INFO vLLM is loading\nstep 1/3 loss 2.0\n") is None
