"""Stage `generate` against real HTTP servers on loopback: retries, refusals, and resume after a kill."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from reasoning_pipeline import generate
from reasoning_pipeline.errors import StageError, TransientStageError
from reasoning_pipeline.spec import ReasoningRun
from reasoning_pipeline.storage import RunPaths, atomic_write_jsonl, read_jsonl

from tests.support.fake_openai import Behaviour, serve_fake_openai
from tests.support.stage_process import kill_when_journaled, stage_command, tear_last_line


def write_prompts(path: Path, count: int) -> list[dict[str, Any]]:
    prompts = [
        {
            "id": f"p{n:04d}",
            "source": "tiny",
            "kind": "math",
            "question": f"{n}+1?",
            "prompt": f"What is {n}+1?",
        }
        for n in range(count)
    ]
    atomic_write_jsonl(path, prompts)
    return prompts


def generate_only_run(tmp_path: Path, endpoint: str, **generation: Any) -> dict[str, Any]:
    disabled = {"enabled": False}
    return {
        "apiVersion": "reasoning.dev/v1alpha1",
        "kind": "ReasoningRun",
        "metadata": {"name": "gen"},
        "spec": {
            "data": disabled,
            "generation": {
                "inputPath": str(tmp_path / "prompts.jsonl"),
                "teacher": {"model": "tiny-teacher", "endpoint": endpoint, "engine": "transformers"},
                "sampling": {"maxTokens": 64},
                "concurrency": 4,
                "maxRetries": 3,
                "serverReadyTimeoutSeconds": 5,
                **generation,
            },
            **{s: disabled for s in ("rewrite", "filter", "format", "training", "evaluation")},
        },
    }


def run_generate(tmp_path: Path, endpoint: str, **generation: Any) -> Any:
    run = ReasoningRun.model_validate(generate_only_run(tmp_path, endpoint, **generation))
    return generate.run(run, RunPaths(tmp_path, "gen"))


def traces(tmp_path: Path) -> list[dict[str, Any]]:
    return list(read_jsonl(tmp_path / "runs" / "gen" / "generate" / "raw.jsonl"))


def test_every_prompt_gets_one_trace_in_prompt_order(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 25)
    with serve_fake_openai() as server:
        summary = run_generate(tmp_path, server.base_url)
    records = traces(tmp_path)
    assert [r["id"] for r in records] == [p["id"] for p in prompts]
    first = records[0]
    assert first["response"] == "Working on: What is 0+1?\nSo the answer is \\boxed{42}."
    assert first["messages"][0]["role"] == "system"  # the Qwen teacher prompt by default
    assert first["messages"][1] == {"role": "user", "content": "What is 0+1?"}
    assert first["usage"] == {
        "promptTokens": len(first["messages"][0]["content"].split()) + 3,
        "completionTokens": 10,
    }
    assert first["question"] == "0+1?"
    assert summary.outputs["traces"].records == 25
    assert summary.metrics["completionTokens"] == 25 * 10


def test_several_samples_per_prompt_get_their_own_seeds(tmp_path: Path) -> None:
    write_prompts(tmp_path / "prompts.jsonl", 3)
    with serve_fake_openai() as server:
        run_generate(tmp_path, server.base_url, sampling={"samplesPerPrompt": 2, "seed": 41, "maxTokens": 8})
        assert server.traffic.requests == 6
    assert [(r["promptId"], r["sample"]) for r in traces(tmp_path)] == [
        (f"p000{n}", s) for n in range(3) for s in range(2)
    ]


def test_rate_limits_are_waited_out_as_the_server_asks(tmp_path: Path) -> None:
    write_prompts(tmp_path / "prompts.jsonl", 8)
    with serve_fake_openai(Behaviour(rate_limit_first=4, retry_after="0.5", server_error_every=5)) as server:
        run_generate(tmp_path, server.base_url)
        assert server.traffic.rate_limited == 4
        assert len(server.traffic.retry_gaps) == 4
        assert min(server.traffic.retry_gaps) >= 0.45
    assert len(traces(tmp_path)) == 8
    assert all("error" not in r for r in traces(tmp_path))


def test_a_refused_prompt_is_recorded_as_failed_and_the_rest_go_on(tmp_path: Path) -> None:
    write_prompts(tmp_path / "prompts.jsonl", 6)
    with serve_fake_openai(Behaviour(refuse_containing="What is 3+1?")) as server:
        summary = run_generate(tmp_path, server.base_url)
    refused = [r for r in traces(tmp_path) if "error" in r]
    assert [r["id"] for r in refused] == ["p0003"]
    assert "HTTP 400" in refused[0]["error"]
    assert summary.metrics["refused"] == 1


def test_an_answer_without_content_is_a_failed_record_not_an_empty_trace(tmp_path: Path) -> None:
    write_prompts(tmp_path / "prompts.jsonl", 4)
    with serve_fake_openai(Behaviour(no_content_containing="What is 2+1?")) as server:
        summary = run_generate(tmp_path, server.base_url)
    failed = {r["id"]: r["error"] for r in traces(tmp_path) if "error" in r}
    assert list(failed) == ["p0002"]
    assert "no content (finish_reason 'stop', refusal \"I can't help with that.\")" in failed["p0002"]
    assert summary.metrics["refused"] == 1
    assert all(r["response"] for r in traces(tmp_path) if "error" not in r)


def test_a_200_that_is_not_json_is_retried_then_left_for_the_next_attempt(tmp_path: Path) -> None:
    write_prompts(tmp_path / "prompts.jsonl", 4)
    with (
        serve_fake_openai(Behaviour(not_json_containing="What is 1+1?")) as server,
        pytest.raises(TransientStageError) as failure,
    ):
        run_generate(tmp_path, server.base_url, maxRetries=1)
    assert "1 of 4 requests still failing after 1 retries" in str(failure.value)
    assert "HTTP 200 with a body that is not JSON: '<html>" in str(failure.value)
    assert server.traffic.requests == 5, "the three others once, the page twice"
    journal = tmp_path / "runs" / "gen" / "generate" / "raw.journal.jsonl"
    assert sorted(json.loads(line)["id"] for line in journal.read_text().splitlines()) == [
        "p0000",
        "p0002",
        "p0003",
    ]


def test_traces_cut_at_max_tokens_are_counted_per_source_and_kept_in_the_raw_file(tmp_path: Path) -> None:
    write_prompts(tmp_path / "prompts.jsonl", 6)
    with serve_fake_openai(Behaviour(truncate_containing="What is 4+1?")) as server:
        summary = run_generate(tmp_path, server.base_url)
    cut = [r["id"] for r in traces(tmp_path) if generate.is_truncated(r)]
    assert cut == ["p0004"], "raw.jsonl keeps what the teacher said; rewrite decides what to use"
    assert (summary.metrics["truncated"], summary.metrics["truncatedBySource"]) == (1, {"tiny": 1})
    assert "1 cut at maxTokens and dropped before rewrite" in summary.message


def test_an_unreachable_endpoint_fails_with_its_address(tmp_path: Path) -> None:
    write_prompts(tmp_path / "prompts.jsonl", 2)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(TransientStageError, match=f"teacher endpoint {endpoint} unreachable after 1 s"):
        run_generate(tmp_path, endpoint, serverReadyTimeoutSeconds=1)


def test_a_prompt_without_text_is_named(tmp_path: Path) -> None:
    atomic_write_jsonl(tmp_path / "prompts.jsonl", [{"id": "a", "prompt": "x"}, {"id": "b"}])
    with pytest.raises(StageError, match=re.escape("prompts.jsonl: record 2: field 'prompt' missing")):
        run_generate(tmp_path, "http://127.0.0.1:9/v1")


def test_killed_mid_way_it_resumes_with_exactly_one_trace_per_prompt(tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl", 60)
    with serve_fake_openai(Behaviour(delay_seconds=0.05)) as server:
        config = tmp_path / "run.yaml"
        config.write_text(yaml.safe_dump(generate_only_run(tmp_path, server.base_url)))
        command = stage_command("generate", config, tmp_path)
        journal = tmp_path / "runs" / "gen" / "generate" / "raw.journal.jsonl"

        done_before = kill_when_journaled(command, journal, 20)
        assert 20 <= done_before < 60
        assert not (journal.parent / "raw.jsonl").exists()
        tear_last_line(journal, '{"id": "p0059", "response": "torn')

        second = subprocess.run(command, capture_output=True, text=True, check=False)
        assert second.returncode == 0, second.stderr

    records = traces(tmp_path)
    assert [r["id"] for r in records] == [p["id"] for p in prompts]
    assert all(
        r["response"].startswith(f"Working on: {p['prompt']}") for r, p in zip(records, prompts, strict=True)
    )
    journaled = [json.loads(line)["id"] for line in journal.read_text().splitlines()]
    assert sorted(journaled) == sorted(p["id"] for p in prompts)
    summary = json.loads((journal.parent / "summary.json").read_text())
    assert summary["phase"] == "Succeeded"
    assert summary["metrics"]["resumed"] == done_before


def test_generate_cli_exits_non_zero_with_the_reason_in_its_summary(tmp_path: Path) -> None:
    write_prompts(tmp_path / "prompts.jsonl", 2)
    with serve_fake_openai(Behaviour(api_key="the-right-key")) as server:
        config = tmp_path / "run.yaml"
        config.write_text(yaml.safe_dump(generate_only_run(tmp_path, server.base_url)))
        result = subprocess.run(
            stage_command("generate", config, tmp_path),
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    assert result.returncode == 1
    summary = json.loads((tmp_path / "runs" / "gen" / "generate" / "summary.json").read_text())
    assert summary["phase"] == "Failed"
    assert "refused the credentials (HTTP 401" in summary["message"]
    assert summary["failure"] == "Permanent", "the same key is refused again on the next attempt"


def test_a_server_that_refuses_every_request_fails_the_stage(tmp_path: Path) -> None:
    write_prompts(tmp_path / "prompts.jsonl", 3)
    with (
        serve_fake_openai(Behaviour(refuse_containing="What is")) as server,
        pytest.raises(StageError, match="refused every request"),
    ):
        run_generate(tmp_path, server.base_url)
    assert not (tmp_path / "runs" / "gen" / "generate" / "raw.jsonl").exists()
