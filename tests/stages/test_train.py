"""Stage `train`: DeepSpeed ZeRO-3 SFT under torchrun (2 processes, gloo), resume after a kill, bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from reasoning_pipeline import train
from reasoning_pipeline.errors import StageError
from reasoning_pipeline.sequences import Example, collate, packed
from reasoning_pipeline.spec import ReasoningRun
from reasoning_pipeline.storage import RunPaths

from tests.support.sft_fixture import (
    TWO_CPU_PROCESSES,
    addition_rows,
    build_student,
    qwen2_model,
    write_jsonl,
)
from tests.support.stage_process import kill_processes_mentioning
from tests.support.waiting import wait_for

ENVIRONMENT = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def train_manifest(**training: Any) -> dict[str, Any]:
    disabled = {"enabled": False}
    return {
        "apiVersion": "reasoning.dev/v1alpha1",
        "kind": "ReasoningRun",
        "metadata": {"name": "sft"},
        "spec": {
            **{s: disabled for s in ("data", "generation", "rewrite", "filter", "format", "evaluation")},
            "nodePools": [{"name": "cpu"}],
            "generation": {"enabled": False, "teacher": {"model": "none", "nodePool": "cpu"}},
            "evaluation": {"enabled": False, "server": {"nodePool": "cpu"}},
            "training": {
                "baseModel": "student",
                "inputPath": "sft.jsonl",
                **TWO_CPU_PROCESSES,
                "learningRate": 3e-3,
                "epochs": 4,
                "cutoffLen": 256,
                "precision": "fp32",
                "saveSteps": 3,
                "deepspeed": {"zeroStage": 3, "offloadOptimizer": "none", "offloadParameters": "none"},
                **training,
            },
        },
    }


@pytest.fixture
def sft_root(tmp_path: Path) -> Path:
    rows = addition_rows(64)
    build_student(tmp_path / "student", rows)
    write_jsonl(tmp_path / "sft.jsonl", rows)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(train_manifest()))
    return tmp_path


def torchrun(root: Path) -> list[str]:
    program = ["-m", "reasoning_pipeline", "train", "--config", str(root / "run.yaml"), "--root", str(root)]
    return [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node=2", *program]


def test_zero3_on_two_processes_resumes_after_a_kill_and_the_loss_goes_down(sft_root: Path) -> None:
    stage_dir = sft_root / "runs" / "sft" / "train"
    latest = stage_dir / "checkpoints" / "sealed"
    # killed right after its first checkpoint was sealed (step 3 of 16)
    process = subprocess.Popen(
        torchrun(sft_root),
        env=ENVIRONMENT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(latest.exists, timeout=300, what="the first checkpoint")
    finally:
        kill_processes_mentioning(str(sft_root / "run.yaml"))
        process.wait()
    killed_at = latest.read_text().strip()
    assert not (stage_dir / "summary.json").exists()

    finished = subprocess.run(
        torchrun(sft_root), env=ENVIRONMENT, capture_output=True, text=True, check=False
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    summary = json.loads((stage_dir / "summary.json").read_text())
    metrics = summary["metrics"]
    assert metrics["resumedFrom"] == killed_at
    assert (metrics["packing"], metrics["sequences"]) == (False, 64)
    assert 0 < metrics["paddingFraction"] < 0.5  # samples of 80-odd tokens padded to the batch's longest
    # 64 samples / (4 per micro-batch × 2 processes) = 8 micro-batches per epoch = 4 steps; × 4 epochs
    assert metrics["optimizerSteps"] == 16
    history = json.loads((stage_dir / "loss-history.json").read_text())
    assert [entry["step"] for entry in history] == list(range(1, 17))
    assert metrics["lastLoss"] < metrics["firstLoss"] * 0.8
    deepspeed_config = json.loads((stage_dir / "deepspeed.json").read_text())
    assert deepspeed_config["train_batch_size"] == 16
    assert deepspeed_config["zero_optimization"]["stage"] == 3

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(stage_dir / "model")
    tokenizer = AutoTokenizer.from_pretrained(stage_dir / "model")
    assert model.config.num_hidden_layers == 2
    assert tokenizer.chat_template
    # safetensors (sharded above 5 GB), never one pytorch_model.bin
    assert list((stage_dir / "model").glob("*.safetensors"))
    assert not (stage_dir / "model" / "pytorch_model.bin").exists()
    # checkpoints every 3 steps and at the end; the default keepCheckpoints (2) leaves the newest two
    assert sorted(p.name for p in (stage_dir / "checkpoints").iterdir() if p.is_dir()) == [
        "step-15",
        "step-16",
    ]
    assert latest.read_text().strip() == "step-16"
    assert all((stage_dir / "checkpoints" / tag / "sealed.json").is_file() for tag in ("step-15", "step-16"))


def test_packed_training_makes_fewer_fuller_sequences_and_the_loss_goes_down(sft_root: Path) -> None:
    """64 samples of 80-odd tokens packed into sequences of up to 256: a third as many sequences, little
    padding, and the student learns as it does unpacked."""
    packing = {"packing": True, "microBatchSize": 1, "gradientAccumulationSteps": 2, "globalBatchSize": 4}
    (sft_root / "run.yaml").write_text(yaml.safe_dump(train_manifest(**packing)))
    finished = subprocess.run(
        torchrun(sft_root), env=ENVIRONMENT, capture_output=True, text=True, check=False
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    metrics = json.loads((sft_root / "runs" / "sft" / "train" / "summary.json").read_text())["metrics"]
    assert metrics["packing"] is True
    assert metrics["attention"] == "sdpa"
    assert metrics["sequences"] <= 64 // 2, metrics  # about three samples of 80-odd tokens a sequence
    per_process = metrics["sequences"] // 2
    assert metrics["optimizerSteps"] == per_process // 2 * 4  # 4 epochs
    assert metrics["paddingFraction"] < 0.1
    assert metrics["lastLoss"] < metrics["firstLoss"] * 0.8


def run_in_process(root: Path, **training: Any) -> Any:
    run = ReasoningRun.model_validate(train_manifest(**training))
    return train.run(run, RunPaths(root, "sft"))


def test_a_process_count_that_breaks_the_batch_is_named(sft_root: Path) -> None:
    # one process where the spec planned two
    expected = "must equal microBatchSize (4) × gradientAccumulationSteps (2) × processes (1)"
    with pytest.raises(StageError, match=re.escape(expected)):
        run_in_process(sft_root)


def test_a_missing_model_is_named(sft_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(StageError, match=r"training\.baseModel 'nowhere': no such model folder"):
        run_in_process(sft_root, baseModel="nowhere")


def test_a_sequence_longer_than_the_cutoff_is_named(sft_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(StageError, match=r"SFT record 1: \d+ tokens, longer than training.cutoffLen \(16\)"):
        run_in_process(sft_root, cutoffLen=16)


def test_storage_too_small_for_the_checkpoints_fails_before_training_naming_both_fields(
    tmp_path: Path,
) -> None:
    spec = ReasoningRun.model_validate(train_manifest()).spec.training
    with pytest.raises(StageError) as failure:
        train.require_room_for_checkpoints(spec, 32_763_876_352 * 1000, tmp_path / "checkpoints")
    message = str(failure.value)
    assert "3 checkpoints of" in message
    assert "training.keepCheckpoints" in message
    assert "storage.size" in message
    train.require_room_for_checkpoints(spec, 1_000_000, tmp_path / "checkpoints")  # a tiny model fits


def test_gpus_asked_for_without_cuda_fail_instead_of_training_on_the_cpu() -> None:
    spec = ReasoningRun.model_validate(train_manifest(gpusPerNode=8, processesPerNode=2)).spec.training
    with pytest.raises(StageError, match=re.escape("training.gpusPerNode is 8 but CUDA is not usable")):
        train.require_cuda(spec)


def test_packed_samples_attend_only_to_themselves_and_keep_their_losses() -> None:
    """Two samples packed into one sequence give, token for token, the logits each gives alone (what the
    positions tell transformers' attention masks), and the pack's loss is the token-weighted mean of
    theirs. The same tokens with positions that do not restart attend across: the check can fail."""
    import torch

    torch.manual_seed(0)
    model = qwen2_model(50, hidden=32, layers=2, max_positions=128)
    model.train(False)  # dropout off
    first = Example([1, 2, 3, 4, 5], [-100, -100, 3, 4, 5], [0, 1, 2, 3, 4])
    second = Example([6, 7, 8, 9], [-100, -100, 8, 9], [0, 1, 2, 3])
    (pack,) = packed([first, second], capacity=16)
    assert pack.position_ids == [0, 1, 2, 3, 4, 0, 1, 2, 3]

    def forward(examples: list[Any], packing: bool) -> Any:
        with torch.no_grad():
            return model(**collate(examples, pad_id=0, packing=packing), use_cache=False)

    together = forward([pack], packing=True)
    alone = [forward([e], packing=False) for e in (first, second)]
    assert torch.allclose(together.logits[0, :5], alone[0].logits[0], atol=1e-5)
    assert torch.allclose(together.logits[0, 5:], alone[1].logits[0], atol=1e-5)
    labelled = [3, 2]  # tokens each sample's loss covers (shifted: the first label is never predicted)
    mean = sum(n * float(a.loss) for n, a in zip(labelled, alone, strict=True)) / sum(labelled)
    assert float(together.loss) == pytest.approx(mean, rel=1e-5)
    # padding to a longer neighbour changes nothing either
    padded = forward([pack, first], packing=True)
    assert torch.allclose(padded.logits[0], together.logits[0], atol=1e-5)
    assert torch.allclose(padded.logits[1, :5], alone[0].logits[0], atol=1e-5)

    running_on = Example(pack.input_ids, pack.labels, list(range(9)))
    leaked = forward([running_on], packing=True)
    assert not torch.allclose(leaked.logits[0, 5:], alone[1].logits[0], atol=1e-3)


def test_the_gpu_check_runs_dry_on_the_cpu(tmp_path: Path) -> None:
    """The script a lent GPU runs (`python -m reasoning_pipeline.gpu_check`), on a tiny model: it times
    the trainer's step packed and unpacked over the same tokens and writes its figures."""
    report = tmp_path / "gpu-check.json"
    finished = subprocess.run(
        [sys.executable, "-m", "reasoning_pipeline.gpu_check", "--dry", "--json", str(report)],
        env=ENVIRONMENT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    figures = json.loads(report.read_text())
    assert figures["device"] == "cpu"
    unpacked, packed_ = figures["results"]
    assert (unpacked["layout"], packed_["layout"]) == ("one sample per sequence", "packed")
    assert unpacked["attention"] == packed_["attention"] == "sdpa"
    assert unpacked["tokens"] == packed_["tokens"] > 0
    assert packed_["micro_batches"] < unpacked["micro_batches"] == 24
    assert all(r["tokens_per_second"] > 0 and r["mfu"] is None for r in figures["results"])
    assert "packed" in finished.stdout
