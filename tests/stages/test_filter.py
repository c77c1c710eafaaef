"""Stage `filter`: rejection sampling of rewritten traces, math by answer and code in the sandbox."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from reasoning_pipeline.errors import StageError
from reasoning_pipeline.filter import stage as filter_stage
from reasoning_pipeline.spec import ReasoningRun
from reasoning_pipeline.storage import RunPaths, atomic_write_jsonl, read_jsonl

from tests.support.stage_process import stage_command
from tests.support.waiting import wait_for

STDIN_SUM = {"inputs": ["1 2\n", "10 -3\n"], "outputs": ["3\n", "7\n"]}
CALL_DOUBLE = {"fn_name": "double", "inputs": [[2], [5]], "outputs": [[4], [10]]}


def rewritten(solution: str, thought: str = "Let me think.") -> str:
    return (
        f"<|begin_of_thought|>\n\n{thought}\n\n<|end_of_thought|>\n\n"
        f"<|begin_of_solution|>\n\n{solution}\n\n<|end_of_solution|>"
    )


def code_solution(body: str) -> str:
    return f"```python\n{body}\n```"


RECORDS: list[dict[str, Any]] = [
    {"id": "m-right", "source": "numina", "kind": "math", "reference": "so $\\boxed{\\frac{5}{6}}$",
     "rewritten": rewritten("The sum is \\boxed{\\frac{10}{12}}.")},
    {"id": "m-wrong", "source": "numina", "kind": "math", "reference": "\\boxed{55}",
     "rewritten": rewritten("\\boxed{56}")},
    # the thought may box a wrong guess; only the solution section is judged
    {"id": "m-guess", "source": "numina", "kind": "math", "reference": "\\boxed{4}",
     "rewritten": rewritten("x = \\boxed{4}", thought="maybe \\boxed{5}? no.")},
    {"id": "m-nobox", "source": "numina", "kind": "math", "reference": "\\boxed{4}",
     "rewritten": rewritten("x is four")},
    {"id": "s-noref", "source": "still2", "kind": "science", "rewritten": rewritten("\\boxed{2}")},
    {"id": "c-stdin", "source": "apps", "kind": "code", "tests": STDIN_SUM,
     "rewritten": rewritten(code_solution("a, b = map(int, input().split())\nprint(a + b)"))},
    {"id": "c-wrong", "source": "apps", "kind": "code", "tests": STDIN_SUM,
     "rewritten": rewritten(code_solution("a, b = map(int, input().split())\nprint(a - b)"))},
    {"id": "c-call", "source": "taco", "kind": "code", "tests": CALL_DOUBLE, "metadata": {"format": "taco"},
     "rewritten": rewritten(code_solution("def double(x):\n    return 2 * x"))},
    {"id": "c-nocode", "source": "taco", "kind": "code", "tests": CALL_DOUBLE,
     "rewritten": rewritten("use 2*x")},
    {"id": "c-hostile", "source": "apps", "kind": "code", "tests": STDIN_SUM,
     "rewritten": rewritten(code_solution("import os\nwhile True:\n    os.fork()"))},
]  # fmt: skip


def filter_only_spec(tmp_path: Path, **filter_spec: Any) -> dict[str, Any]:
    disabled = {"enabled": False}
    return {
        "apiVersion": "reasoning.dev/v1alpha1",
        "kind": "ReasoningRun",
        "metadata": {"name": "flt"},
        "spec": {
            **{s: disabled for s in ("data", "generation", "rewrite", "format", "training", "evaluation")},
            "filter": {"inputPath": str(tmp_path / "rewritten.jsonl"), "workers": 2, **filter_spec},
        },
    }


def filter_only_run(tmp_path: Path) -> ReasoningRun:
    return ReasoningRun.model_validate(filter_only_spec(tmp_path))


def test_only_right_answers_and_passing_programs_are_kept(tmp_path: Path) -> None:
    atomic_write_jsonl(tmp_path / "rewritten.jsonl", RECORDS)
    summary = filter_stage.run(filter_only_run(tmp_path), RunPaths(tmp_path, "flt"))
    stage_dir = tmp_path / "runs" / "flt" / "filter"
    kept = [r["id"] for r in read_jsonl(stage_dir / "kept.jsonl")]
    assert kept == ["m-right", "m-guess", "c-stdin", "c-call"]
    reasons = {v["id"]: v["reason"] for v in read_jsonl(stage_dir / "rejected.jsonl")}
    assert "not equivalent to the reference answer 55" in reasons["m-wrong"]
    assert reasons["m-nobox"] == "no \\boxed{} answer in the response"
    assert reasons["s-noref"] == "no reference answer to compare with"
    assert reasons["c-wrong"].startswith("test 1: wrong answer")
    assert reasons["c-nocode"] == "no code block in response"
    assert "c-hostile" in reasons
    assert summary.metrics["acceptance"] == {
        "apps": {"checked": 3, "kept": 1, "rate": 0.3333},
        "numina": {"checked": 4, "kept": 2, "rate": 0.5},
        "still2": {"checked": 1, "kept": 0, "rate": 0.0},
        "taco": {"checked": 2, "kept": 1, "rate": 0.5},
    }
    assert summary.metrics["sandboxIsolation"] == "namespaces"


def test_a_rerun_resumes_from_the_journaled_verdicts(tmp_path: Path) -> None:
    atomic_write_jsonl(tmp_path / "rewritten.jsonl", RECORDS)
    journal = tmp_path / "runs" / "flt" / "filter" / "verdicts.journal.jsonl"
    journal.parent.mkdir(parents=True)
    # an earlier attempt judged the first two before it was killed
    journal.write_text(
        json.dumps({"id": "m-right", "source": "numina", "kept": True, "reason": "equivalent"})
        + "\n"
        + json.dumps({"id": "m-wrong", "source": "numina", "kept": False, "reason": "not equivalent"})
        + "\n"
        + '{"id": "m-gue'
    )
    summary = filter_stage.run(filter_only_run(tmp_path), RunPaths(tmp_path, "flt"))
    assert summary.metrics["resumed"] == 2
    assert summary.metrics["kept"] == 4
    assert len(journal.read_text().splitlines()) == len(RECORDS)


def kill_when_started(command: list[str], started: Path, start: str) -> None:
    """Runs the filter and kills it, workers and programs with it, as a pod dies, once `start` (id#try) is
    in its started journal."""
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_for(
            lambda: started.exists() and f'"start":"{start}"' in started.read_text(),
            timeout=120,
            what=f"{start} in {started.name}",
            interval=0.1,
        )
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_a_check_that_takes_the_filter_down_runs_once_more_alone_then_never_again(tmp_path: Path) -> None:
    """The program of c-culprit stands for one that kills its pod (the test kills the filter's whole
    process group while it runs). The retry runs the checks it cut off one at a time, alone; the culprit
    takes that attempt down too, and the third rejects it without running it, keeping everything else."""
    culprit = {
        "id": "c-culprit",
        "source": "apps",
        "kind": "code",
        "tests": STDIN_SUM,
        "rewritten": rewritten(code_solution("import time\ntime.sleep(20)")),
    }
    records = [*RECORDS[:6], culprit, *RECORDS[6:9]]
    atomic_write_jsonl(tmp_path / "rewritten.jsonl", records)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(filter_only_spec(tmp_path, code={"testTimeoutSeconds": 30})))
    stage_dir = tmp_path / "runs" / "flt" / "filter"
    started = stage_dir / filter_stage.STARTED_FILE
    command = stage_command("filter", config, tmp_path)
    kill_when_started(command, started, "c-culprit#1")
    kill_when_started(command, started, "c-culprit#2")
    starts = [r for r in read_jsonl(started) if r["id"] == "c-culprit"]
    assert [(r["start"], r["alone"]) for r in starts] == [("c-culprit#1", False), ("c-culprit#2", True)]
    summary = filter_stage.run(filter_only_run(tmp_path), RunPaths(tmp_path, "flt"))
    assert [r for r in read_jsonl(started) if r["id"] == "c-culprit"] == starts, "not run a third time"
    reasons = {v["id"]: v["reason"] for v in read_jsonl(stage_dir / "rejected.jsonl")}
    assert reasons["c-culprit"] == filter_stage.CUT_OFF_ALONE
    assert [r["id"] for r in read_jsonl(stage_dir / "kept.jsonl")] == [
        "m-right",
        "m-guess",
        "c-stdin",
        "c-call",
    ]
    assert summary.metrics["rejected"] == len(records) - 4


def test_a_record_of_unknown_kind_is_named(tmp_path: Path) -> None:
    atomic_write_jsonl(tmp_path / "rewritten.jsonl", [{"id": "x", "kind": "poetry", "rewritten": "..."}])
    with pytest.raises(StageError, match="record 1: field 'kind' must be math, science or code"):
        filter_stage.run(filter_only_run(tmp_path), RunPaths(tmp_path, "flt"))


def test_check_code_cli_answers_every_line_in_order() -> None:
    lines = [
        {"code": "a, b = map(int, input().split())\nprint(a + b)", "tests": STDIN_SUM},
        {"response": "Here:\n" + code_solution("def double(x):\n    return x * 2"), "tests": CALL_DOUBLE},
        {"response": "no code here", "tests": STDIN_SUM},
        {"code": "print(1)"},
        {"code": "print(1)", "tests": {"inputs": ["1"]}},
    ]
    stdin = "\n".join(json.dumps(line) for line in lines) + "\nnot json\n"
    result = subprocess.run(
        [sys.executable, "-m", "reasoning_pipeline", "check", "code", "--workers", "1"],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    )
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert answers[0] == {"passed": True, "tests_passed": 2, "tests_total": 2, "reason": "all 2 tests passed"}
    assert answers[1]["passed"] is True
    assert answers[2] == {
        "passed": False,
        "tests_passed": 0,
        "tests_total": 2,
        "reason": "no code block in response",
    }
    assert answers[3] == {"error": "line 4: field 'tests' missing"}
    assert answers[4]["error"].startswith("line 5: field 'tests': ")
    assert answers[5] == {"error": "line 6: not valid JSON: Expecting value"}
