"""Stage `format`: ShareGPT rows with the STILL-2 prompt, token statistics by the student's tokenizer."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from reasoning_pipeline import format as format_stage
from reasoning_pipeline.errors import StageError, TransientStageError
from reasoning_pipeline.memory import ModelShape
from reasoning_pipeline.spec import STILL2_SYSTEM_PROMPT, ReasoningRun
from reasoning_pipeline.storage import RunPaths, atomic_write_jsonl, read_jsonl, sha256_file

from tests.support.sft_fixture import TWO_CPU_PROCESSES, addition_rows, build_student


@pytest.fixture(scope="module")
def student(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_student(tmp_path_factory.mktemp("student"), addition_rows(64))


def kept_traces(count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"k{n}",
            "source": "numina" if n % 2 else "apps",
            "prompt": row["conversations"][0]["value"],
            "rewritten": row["conversations"][1]["value"] * (60 if n == 3 else 1),  # one far too long
        }
        for n, row in enumerate(addition_rows(count, seed=1))
    ]


def format_run(
    tmp_path: Path, student: Path, max_tokens: int, training: dict[str, Any] | None = None
) -> ReasoningRun:
    disabled = {"enabled": False}
    return ReasoningRun.model_validate(
        {
            "metadata": {"name": "fmt"},
            "spec": {
                **{s: disabled for s in ("data", "generation", "rewrite", "filter", "evaluation")},
                "training": training or disabled,
                "format": {
                    "inputPath": str(tmp_path / "kept.jsonl"),
                    "tokenizer": str(student),
                    "maxTokens": max_tokens,
                },
            },
        }
    )


def test_sft_rows_statistics_and_card(tmp_path: Path, student: Path) -> None:
    atomic_write_jsonl(tmp_path / "kept.jsonl", kept_traces(10))
    summary = format_stage.run(format_run(tmp_path, student, max_tokens=1200), RunPaths(tmp_path, "fmt"))
    stage_dir = tmp_path / "runs" / "fmt" / "format"
    rows = list(read_jsonl(stage_dir / "sft.jsonl"))
    assert len(rows) == 9  # the long one is over the cutoff
    assert rows[0]["system"] == STILL2_SYSTEM_PROMPT
    assert [turn["from"] for turn in rows[0]["conversations"]] == ["user", "assistant"]
    tokens = summary.metrics["tokens"]
    assert tokens["count"] == 9
    assert tokens["p50"] <= tokens["p95"] <= tokens["max"] <= 1200
    assert summary.metrics["droppedOverCutoff"] == 1
    card = json.loads((stage_dir / "dataset-card.json").read_text())
    assert card["sha256"] == sha256_file(stage_dir / "sft.jsonl") == summary.outputs["sft"].sha256
    assert card["sources"] == {"apps": 5, "numina": 4}
    assert card["tokenizer"] == str(student)


def test_every_sample_over_the_cutoff_is_an_error(tmp_path: Path, student: Path) -> None:
    atomic_write_jsonl(tmp_path / "kept.jsonl", kept_traces(3))
    with pytest.raises(
        StageError, match=re.escape("every sample is longer than format.maxTokens (16 tokens)")
    ):
        format_stage.run(format_run(tmp_path, student, max_tokens=16), RunPaths(tmp_path, "fmt"))


def test_a_missing_tokenizer_is_named(tmp_path: Path) -> None:
    atomic_write_jsonl(tmp_path / "kept.jsonl", kept_traces(2))
    with pytest.raises(StageError, match=r"tokenizer .*no-such-tokenizer.* cannot be loaded"):
        format_stage.run(format_run(tmp_path, tmp_path / "no-such-tokenizer", 400), RunPaths(tmp_path, "fmt"))


def test_an_empty_input_is_an_error(tmp_path: Path, student: Path) -> None:
    atomic_write_jsonl(tmp_path / "kept.jsonl", [])
    with pytest.raises(StageError, match="no kept traces"):
        format_stage.run(format_run(tmp_path, student, 400), RunPaths(tmp_path, "fmt"))


def test_a_dataset_too_small_for_one_optimizer_step_fails_before_training(
    tmp_path: Path, student: Path
) -> None:
    atomic_write_jsonl(tmp_path / "kept.jsonl", kept_traces(10))
    run = format_run(tmp_path, student, max_tokens=1200, training=TWO_CPU_PROCESSES)
    expected = (
        "9 SFT samples make 1 micro-batches per process (2 processes × microBatchSize 4), fewer than "
        "gradientAccumulationSteps (2): not one optimizer step; it takes at least 16 samples"
    )
    with pytest.raises(StageError, match=re.escape(expected)) as failed:
        format_stage.run(run, RunPaths(tmp_path, "fmt"))
    assert not isinstance(failed.value, TransientStageError), "more attempts make no more samples"
    assert not (tmp_path / "runs" / "fmt" / "format" / "sft.jsonl").exists()


def test_a_dataset_the_trainer_does_not_read_is_not_held_to_its_batch(tmp_path: Path, student: Path) -> None:
    atomic_write_jsonl(tmp_path / "kept.jsonl", kept_traces(10))
    training = {**TWO_CPU_PROCESSES, "inputPath": "elsewhere/sft.jsonl"}
    summary = format_stage.run(
        format_run(tmp_path, student, max_tokens=1200, training=training), RunPaths(tmp_path, "fmt")
    )
    assert summary.outputs["sft"].records == 9


def test_the_summary_carries_the_estimate_of_training_from_what_it_measured(
    tmp_path: Path, student: Path
) -> None:
    """The student is a folder on the storage: its config.json gives the parameters; the samples and
    their mean length are what this stage wrote. On a CPU pool (no price) the dollars are nil."""
    atomic_write_jsonl(tmp_path / "kept.jsonl", kept_traces(10))
    training = {**TWO_CPU_PROCESSES, "inputPath": "elsewhere/sft.jsonl", "baseModel": str(student)}
    summary = format_stage.run(
        format_run(tmp_path, student, max_tokens=1200, training=training), RunPaths(tmp_path, "fmt")
    )
    assert summary.estimate is not None
    config = json.loads((student / "config.json").read_text())
    parameters = ModelShape.from_config(config).parameters
    mean = summary.metrics["tokens"]["mean"]
    assert summary.estimate["basis"] == {
        "sftSamples": 9,
        "sftTokensPerSample": round(mean, 1),
        "studentParameters": parameters,
    }
    train = summary.estimate["stages"]["train"]
    assert train["tokens"] == int(9 * mean * 3)  # the default 3 epochs
    assert train["madeBy"] == "format"
    assert summary.estimate["totalUSD"] == "0.00"
