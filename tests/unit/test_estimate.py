"""The pre-flight estimate against the recipe's published figures: Sky-T1's training was ≈ 19 h on one
8×H100 node, ≈ $450 at $2.96 per H100-hour, with optimizer and parameters offloaded (≈ 8 % MFU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from reasoning_pipeline.estimate import Sizes, estimate, merge_estimates
from reasoning_pipeline.memory import ModelShape
from reasoning_pipeline.spec import ReasoningRun, Stage

from tests.support.model_configs import QWEN25_32B

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
STUDENT = ModelShape.from_config(QWEN25_32B)
# what the format stage measures on the Sky-T1 data: 17K samples of ≈ 4,200 tokens with their prompts
SKY_T1_SFT = Sizes(prompts=0, sft_samples=17_000, sft_tokens_per_sample=4_200, student=STUDENT)


def sky_t1(**spec: Any) -> ReasoningRun:
    document = yaml.safe_load((EXAMPLES / "sky-t1-32b-preview.yaml").read_text())
    document["spec"].update(spec)
    return ReasoningRun.model_validate(document)


def test_the_training_estimate_from_measured_data_is_sky_t1s_19_hours_and_450_dollars() -> None:
    made = estimate(sky_t1().spec, SKY_T1_SFT, made_by=Stage.FORMAT)
    train = made["stages"]["train"]
    assert train["offload"] == "optimizer+parameters"
    assert train["mfu"] == 0.08
    assert float(train["hours"]) == pytest.approx(19, rel=0.1)
    assert float(train["usd"]) == pytest.approx(450, rel=0.1)
    assert float(train["gpuHours"]) == pytest.approx(8 * float(train["hours"]), rel=0.01)
    assert set(made["stages"]) == {"train", "evaluate"}, "only the stages after format"
    assert made["basis"] == {
        "sftSamples": 17_000,
        "sftTokensPerSample": 4_200,
        "studentParameters": 32_763_876_352,
    }


def test_without_offload_the_same_training_is_four_times_cheaper() -> None:
    run = sky_t1(training={"deepspeed": {"offloadOptimizer": "none", "offloadParameters": "none"}})
    train = estimate(run.spec, SKY_T1_SFT, made_by=Stage.FORMAT)["stages"]["train"]
    assert (train["offload"], train["mfu"]) == ("none", 0.35)
    assert float(train["hours"]) == pytest.approx(19 * 0.08 / 0.35, rel=0.1)


def test_the_data_stage_estimates_every_stage_ahead_from_its_prompts() -> None:
    made = estimate(sky_t1().spec, Sizes(prompts=17_000, student=STUDENT), made_by=Stage.DATA)
    assert set(made["stages"]) == {"generate", "rewrite", "train", "evaluate"}
    generate = made["stages"]["generate"]
    # 17,000 answers of 4,000 tokens at 1,000 tokens per GPU-second on 8 GPUs, plus a 10-minute load
    assert generate["tokens"] == 68_000_000
    assert float(generate["hours"]) == pytest.approx(68e6 / 8000 / 3600 + 600 / 3600, abs=0.01)
    # GPT-4o-mini reads each trace and its prompt and writes the trace again
    rewrite = made["stages"]["rewrite"]
    assert rewrite["apiTokens"] == 17_000 * (4_300 + 4_000)
    assert float(rewrite["apiUSD"]) == pytest.approx(
        (17_000 * 4_300 * 0.15 + 17_000 * 4_000 * 0.60) / 1e6, abs=0.01
    )
    total = sum(float(s.get("usd") or s.get("apiUSD")) for s in made["stages"].values())
    assert float(made["totalUSD"]) == pytest.approx(total, abs=0.02)
    assert all(s["madeBy"] == "data" for s in made["stages"].values())


def test_a_later_stages_figures_win_whatever_the_order_they_are_merged_in() -> None:
    spec = sky_t1().spec
    early = estimate(spec, Sizes(prompts=17_000, student=STUDENT), made_by=Stage.DATA)
    late = estimate(spec, SKY_T1_SFT, made_by=Stage.FORMAT)
    merged = merge_estimates(early, late)
    assert merged == merge_estimates(late, early)
    assert merge_estimates(merged, early) == merged
    assert merged["stages"]["generate"] == early["stages"]["generate"]
    assert merged["stages"]["train"] == late["stages"]["train"]
    assert merged["basis"]["prompts"] == 17_000
    assert merged["basis"]["sftSamples"] == 17_000


def test_a_stand_in_rewrite_costs_nothing_and_an_unknown_student_is_said() -> None:
    run = sky_t1(rewrite={"standIn": True})
    made = estimate(run.spec, Sizes(prompts=100), made_by=Stage.DATA)
    assert "rewrite" not in made["stages"]
    assert "parameter count is not known" in made["stages"]["train"]["unknown"]
    assert "usd" not in made["stages"]["train"]
