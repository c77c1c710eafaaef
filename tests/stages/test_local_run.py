"""`reasoning-pipeline run`: every enabled stage in order as its own process, resuming what is done."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.support.fake_openai import serve_fake_openai

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "datasets"


def teacher_answer(messages: list[dict[str, str]]) -> str:
    """A teacher that knows 1+…+10 and 2x+3=11, and guesses 7 for everything else."""
    prompt = messages[-1]["content"]
    answer = "55" if "10$?" in prompt else "4" if "2x+3" in prompt else "7"
    return f"Let me work it out step by step.\nThe answer is \\boxed{{{answer}}}."


def data_half(endpoint: str) -> dict[str, Any]:
    disabled = {"enabled": False}
    return {
        "apiVersion": "reasoning.dev/v1alpha1",
        "kind": "ReasoningRun",
        "metadata": {"name": "half"},
        "spec": {
            "data": {
                "sources": [{"name": "numina", "format": "numina", "path": str(FIXTURES / "numina.jsonl")}]
            },
            "generation": {"teacher": {"model": "teacher", "endpoint": endpoint}, "concurrency": 2},
            "rewrite": {"standIn": True},
            "filter": {"workers": 1},
            **{s: disabled for s in ("format", "training", "evaluation")},
        },
    }


def test_the_data_half_runs_in_order_and_a_rerun_resumes(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    command = [sys.executable, "-m", "reasoning_pipeline", "run", str(config), "--root", str(tmp_path)]
    with serve_fake_openai() as teacher:
        teacher.behaviour.answer = teacher_answer
        config.write_text(yaml.safe_dump(data_half(teacher.base_url)))
        first = subprocess.run(command, capture_output=True, text=True, check=False)
        assert first.returncode == 0, first.stderr[-3000:]
        asked = teacher.traffic.requests
        again = subprocess.run(command, capture_output=True, text=True, check=False)
        assert again.returncode == 0
        assert teacher.traffic.requests == asked

    for stage in ("data", "generate", "rewrite", "filter"):
        assert f"✓ {stage} (" in first.stderr
        assert f"✓ {stage}: done earlier" in again.stderr
    assert "- format: disabled" in first.stderr
    assert "rule-based local stand-in" in first.stderr
    filter_summary = json.loads((tmp_path / "runs" / "half" / "filter" / "summary.json").read_text())
    # 8 Numina rows: another subset is kept here (no subset filter), one lacks \boxed{}, one repeats
    assert filter_summary["metrics"]["acceptance"]["numina"] == {"checked": 6, "kept": 2, "rate": 0.3333}


def test_a_failing_stage_stops_the_run_with_its_reason(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    manifest = data_half("http://127.0.0.1:9/v1")
    manifest["spec"]["generation"]["serverReadyTimeoutSeconds"] = 1
    config.write_text(yaml.safe_dump(manifest))
    result = subprocess.run(
        [sys.executable, "-m", "reasoning_pipeline", "run", str(config), "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "✗ generate failed: teacher endpoint http://127.0.0.1:9/v1 unreachable after 1 s" in result.stderr
    assert "rewrite" not in result.stderr
