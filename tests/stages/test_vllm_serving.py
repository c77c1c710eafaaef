"""The drivers against vLLM itself (the server the operator deploys), on CPU with a small context:
what the server says about itself reaches the summaries, a budget that cannot fit fails before the
first request naming the field, and prompts that overflow the context fail with vLLM's own message."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reasoning_pipeline import evaluate, generate
from reasoning_pipeline.errors import StageError
from reasoning_pipeline.local_server import VLLM_PYTHON_VARIABLE, vllm_server
from reasoning_pipeline.spec import ReasoningRun
from reasoning_pipeline.storage import RunPaths, atomic_write_jsonl
from reasoning_pipeline.tiny_world import TinyWorld

# vLLM's own release, pinned in images/vllm/requirements.txt
VLLM_VERSION = "0.32.0"
# The tiny world's held-out prompts are 54 to 70 tokens with the system prompt: 48 tokens of answer fit
# beside each of them, 100 do not, and a prompt of a few hundred characters alone does not fit.
CONTEXT = 128
SYSTEM_PROMPT = (
    "You are a helpful and harmless assistant. You are Qwen developed by Alibaba. "
    "You should think step-by-step."
)

pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def student_server(tiny_world: TinyWorld) -> Iterator[str]:
    assert os.environ.get(VLLM_PYTHON_VARIABLE), "make setup installs vLLM (hack/vllm.sh venv)"
    with vllm_server(str(tiny_world.student), max_model_len=CONTEXT, dtype="float32") as endpoint:
        yield endpoint


def spec_of(
    tiny_world: TinyWorld, endpoint: str, *, max_model_len: int | None = CONTEXT, **sections: Any
) -> ReasoningRun:
    disabled = {"enabled": False}
    stages = ("data", "generation", "rewrite", "filter", "format", "training", "evaluation")
    served: dict[str, Any] = {
        "model": str(tiny_world.student),
        "endpoint": endpoint,
        "engine": "vllm",
    }
    if max_model_len is not None:
        served["maxModelLen"] = max_model_len
    spec: dict[str, Any] = {stage: disabled for stage in stages}
    for name, section in sections.items():
        key = "teacher" if name == "generation" else "server"
        spec[name] = {**section, key: served}
    return ReasoningRun.model_validate({"metadata": {"name": "vl"}, "spec": spec})


def evaluation(tiny_world: TinyWorld, max_tokens: int, **more: Any) -> dict[str, Any]:
    return {
        "systemPrompt": SYSTEM_PROMPT,
        "sampling": {"temperature": 0, "maxTokens": max_tokens, "seed": 41},
        "benchmarks": [{"name": "held-out", "path": str(tiny_world.held_out), "limit": 8}],
        **more,
    }


def test_evaluate_records_vllm_and_scores_when_the_answers_fit(
    tiny_world: TinyWorld, student_server: str, tmp_path: Path
) -> None:
    run = spec_of(tiny_world, student_server, evaluation=evaluation(tiny_world, 48))
    summary = evaluate.run(run, RunPaths(tmp_path, "vl"))
    score = summary.metrics["results"]["student"]["held-out"]
    assert (score["problems"], score["unanswered"], score["cutToFit"]) == (8, 0, 0)
    assert score["provenance"]["engine"] == f"vllm {VLLM_VERSION}"


def test_evaluate_fails_before_asking_when_max_tokens_exceeds_the_context(
    tiny_world: TinyWorld, student_server: str, tmp_path: Path
) -> None:
    """The schema refuses maxTokens > maxModelLen when the spec says both; a server the spec gives as an
    endpoint (or one started at the model's own length) is asked first, and says 128."""
    section = evaluation(tiny_world, CONTEXT + 1)
    run = spec_of(tiny_world, student_server, max_model_len=None, evaluation=section)
    with pytest.raises(StageError) as failure:
        evaluate.run(run, RunPaths(tmp_path, "vl"))
    message = str(failure.value)
    assert f"evaluation.sampling.maxTokens ({CONTEXT + 1}) exceeds the context" in message
    assert f"serves at most {CONTEXT} tokens" in message
    journals = list((tmp_path / "runs" / "vl" / "evaluate").glob("*.journal.jsonl"))
    assert all(not journal.read_text() for journal in journals), "not one request was sent"


@pytest.mark.parametrize("max_tokens", [100, CONTEXT], ids=["over-with-the-prompt", "the-whole-context"])
def test_evaluate_counts_the_answers_vllm_cut_to_fit_the_context(
    tiny_world: TinyWorld, student_server: str, tmp_path: Path, max_tokens: int
) -> None:
    """No prompt plus 100 fits in 128, and a maxTokens of the whole context (the published protocol:
    32,768 of a 32,768-token model) never does: vLLM answers anyway, lowering each request's max_tokens
    to what its prompt leaves. The score says how many it cut."""
    run = spec_of(tiny_world, student_server, evaluation=evaluation(tiny_world, max_tokens))
    score = evaluate.run(run, RunPaths(tmp_path, "vl")).metrics["results"]["student"]["held-out"]
    assert (score["unanswered"], score["cutToFit"]) == (0, 8)


def test_prompts_longer_than_the_context_fail_evaluate_with_vllms_message(
    tiny_world: TinyWorld, student_server: str, tmp_path: Path
) -> None:
    held_out = [json.loads(line) for line in tiny_world.held_out.read_text().splitlines()[:4]]
    long = [{**row, "problem": f"{row['problem']} " * 8} for row in held_out]
    benchmark = tmp_path / "long.jsonl"
    atomic_write_jsonl(benchmark, long)
    section = evaluation(tiny_world, 48)
    section["benchmarks"] = [{"name": "math500", "path": str(benchmark)}]
    with pytest.raises(StageError) as failure:
        evaluate.run(spec_of(tiny_world, student_server, evaluation=section), RunPaths(tmp_path, "vl"))
    message = str(failure.value)
    assert "the server refused 4 of 4 requests" in message
    assert "HTTP 400" in message
    assert f"maximum context length is {CONTEXT} tokens" in message
    assert not (tmp_path / "runs" / "vl" / "evaluate" / "results.json").exists()


def test_generate_records_the_engine_its_version_and_context(
    tiny_world: TinyWorld, student_server: str, tmp_path: Path
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    atomic_write_jsonl(
        prompts, ({"id": f"p{i}", "prompt": f"What is {i}+{i}?", "source": "t"} for i in range(4))
    )
    generation = {"inputPath": str(prompts), "sampling": {"temperature": 0.7, "maxTokens": 64, "seed": 7}}
    summary = generate.run(
        spec_of(tiny_world, student_server, generation=generation), RunPaths(tmp_path, "vl")
    )
    assert summary.metrics["server"] == {"engine": "vllm", "version": VLLM_VERSION, "maxModelLen": CONTEXT}
    assert summary.outputs["traces"].records == 4
