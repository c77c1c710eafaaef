"""Stage `rewrite` through the real `openai` client against an OpenAI-protocol server on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from reasoning_pipeline import rewrite
from reasoning_pipeline.errors import StageError, TransientStageError
from reasoning_pipeline.spec import ReasoningRun
from reasoning_pipeline.storage import RunPaths, atomic_write_jsonl, read_jsonl

from tests.support.fake_openai import Behaviour, serve_fake_openai
from tests.support.stage_process import kill_when_journaled, stage_command, tear_last_line
from tests.support.waiting import wait_for

API_KEY = "sk-test-0123456789abcdef"


def layout_answer(messages: list[dict[str, str]]) -> str:
    """What a well-behaved rewrite model returns: the trace in thought/solution layout."""
    trace = messages[-1]["content"].split("Response to reformat:\n", 1)[1]
    if "UNPARSEABLE" in trace:
        return "Sorry, I cannot help with that."
    thought, _, answer = trace.rpartition("\n")
    return (
        f"<|begin_of_thought|>\n\n{thought}\n\n<|end_of_thought|>\n\n"
        f"<|begin_of_solution|>\n\n{answer}\n\n<|end_of_solution|>"
    )


def write_traces(path: Path, count: int) -> list[dict[str, Any]]:
    traces: list[dict[str, Any]] = [
        {
            "id": f"t{n:03d}",
            "kind": "math",
            "question": f"What is {n}+1?",
            "response": f"Let me add {n} and 1.\nSo \\boxed{{{n + 1}}}",
        }
        for n in range(count)
    ]
    traces.append({"id": "t-refused-by-teacher", "error": "HTTP 400: too long"})
    atomic_write_jsonl(path, traces)
    return traces[:-1]


def rewrite_only_run(tmp_path: Path, base_url: str, **rewrite_spec: Any) -> dict[str, Any]:
    disabled = {"enabled": False}
    return {
        "apiVersion": "reasoning.dev/v1alpha1",
        "kind": "ReasoningRun",
        "metadata": {"name": "rw"},
        "spec": {
            **{s: disabled for s in ("data", "generation", "filter", "format", "training", "evaluation")},
            "rewrite": {
                "inputPath": str(tmp_path / "raw.jsonl"),
                "baseUrl": base_url,
                "apiKeySecret": {"name": "openai", "key": "api-key"},
                "concurrency": 4,
                "maxRetries": 3,
                **rewrite_spec,
            },
        },
    }


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    return API_KEY


def run_rewrite(tmp_path: Path, base_url: str, **rewrite_spec: Any) -> Any:
    run = ReasoningRun.model_validate(rewrite_only_run(tmp_path, base_url, **rewrite_spec))
    return rewrite.run(run, RunPaths(tmp_path, "rw"))


def outputs(tmp_path: Path, name: str) -> list[dict[str, Any]]:
    return list(read_jsonl(tmp_path / "runs" / "rw" / "rewrite" / name))


def test_traces_are_rewritten_into_the_layout_with_the_key_from_the_environment(
    tmp_path: Path, api_key: str, capfd: pytest.CaptureFixture[str]
) -> None:
    traces = write_traces(tmp_path / "raw.jsonl", 12)
    with serve_fake_openai(Behaviour(answer=layout_answer, api_key=api_key)) as server:
        summary = run_rewrite(tmp_path, server.base_url, model="gpt-4o-mini")
        assert set(server.traffic.authorizations) == {f"Bearer {api_key}"}
    rewritten = outputs(tmp_path, "rewritten.jsonl")
    assert [r["id"] for r in rewritten] == [t["id"] for t in traces]  # the teacher's refusal is not sent
    first = rewritten[0]
    assert first["rewritten"].startswith("<|begin_of_thought|>\n\nLet me add 0 and 1.")
    assert "<|begin_of_solution|>\n\nSo \\boxed{1}\n\n<|end_of_solution|>" in first["rewritten"]
    assert first["response"] == traces[0]["response"]  # the raw trace stays beside its rewrite
    assert first["rewriteModel"] == "gpt-4o-mini"
    assert summary.metrics["apiCompletionTokens"] > 0
    # the key went only into the Authorization header: not into outputs, summary or logs
    stage_files = (tmp_path / "runs").rglob("*")
    assert not any(api_key in f.read_text() for f in stage_files if f.is_file())
    captured = capfd.readouterr()
    assert api_key not in captured.out + captured.err


def test_unusable_answers_and_refusals_are_failed_records_never_data(tmp_path: Path, api_key: str) -> None:
    write_traces(tmp_path / "raw.jsonl", 4)
    atomic_write_jsonl(
        tmp_path / "raw.jsonl",
        [
            *read_jsonl(tmp_path / "raw.jsonl"),
            {"id": "t-odd", "kind": "math", "question": "?", "response": "UNPARSEABLE ramble"},
            {"id": "t-long", "kind": "math", "question": "?", "response": "TOO LONG\n\\boxed{1}"},
        ],
    )
    behaviour = Behaviour(answer=layout_answer, api_key=api_key, refuse_containing="TOO LONG")
    with serve_fake_openai(behaviour) as server:
        summary = run_rewrite(tmp_path, server.base_url)
    assert [r["id"] for r in outputs(tmp_path, "rewritten.jsonl")] == ["t000", "t001", "t002", "t003"]
    failed = {r["id"]: r["error"] for r in outputs(tmp_path, "failed.jsonl")}
    assert failed["t-odd"].startswith("rewrite unusable: marker <|begin_of_thought|> appears 0 times")
    assert failed["t-long"].startswith("rewrite refused: HTTP 400")
    assert summary.metrics["failed"] == 2


def test_an_api_answer_without_content_is_a_failed_record_and_a_page_is_retried(
    tmp_path: Path, api_key: str
) -> None:
    write_traces(tmp_path / "raw.jsonl", 3)
    atomic_write_jsonl(
        tmp_path / "raw.jsonl",
        [
            *read_jsonl(tmp_path / "raw.jsonl"),
            {"id": "t-declined", "kind": "math", "question": "?", "response": "DECLINE\n\\boxed{1}"},
        ],
    )
    behaviour = Behaviour(answer=layout_answer, api_key=api_key, no_content_containing="DECLINE")
    with serve_fake_openai(behaviour) as server:
        summary = run_rewrite(tmp_path, server.base_url)
    failed = {r["id"]: r["error"] for r in outputs(tmp_path, "failed.jsonl")}
    assert list(failed) == ["t-declined"]
    assert "no content (finish_reason 'stop', refusal \"I can't help with that.\")" in failed["t-declined"]
    assert summary.metrics["failed"] == 1
    behaviour = Behaviour(answer=layout_answer, api_key=api_key, not_json_containing="DECLINE")
    again = tmp_path / "again"
    atomic_write_jsonl(again / "raw.jsonl", list(read_jsonl(tmp_path / "raw.jsonl")))
    with serve_fake_openai(behaviour) as server, pytest.raises(TransientStageError) as failure:
        run_rewrite(again, server.base_url, maxRetries=1)
    assert "1 of 4 requests still failing after 1 retries" in str(failure.value)
    assert len(outputs(again, "rewrite.journal.jsonl")) == 3


def cut_trace(trace_id: str) -> dict[str, Any]:
    return {"id": trace_id, "kind": "math", "question": "?", "response": "Let me", "finishReason": "length"}


def test_traces_the_teacher_cut_at_max_tokens_are_not_rewritten_unless_kept(
    tmp_path: Path, api_key: str
) -> None:
    write_traces(tmp_path / "raw.jsonl", 2)
    atomic_write_jsonl(tmp_path / "raw.jsonl", [*read_jsonl(tmp_path / "raw.jsonl"), cut_trace("t-cut")])
    with serve_fake_openai(Behaviour(answer=layout_answer, api_key=api_key)) as server:
        run_rewrite(tmp_path, server.base_url)
        assert server.traffic.requests == 2
        assert [r["id"] for r in outputs(tmp_path, "rewritten.jsonl")] == ["t000", "t001"]
        run = rewrite_only_run(tmp_path, server.base_url)
        run["spec"]["generation"] = {"enabled": False, "keepTruncated": True}
        rewrite.run(ReasoningRun.model_validate(run), RunPaths(tmp_path, "kept"))
    assert [r["id"] for r in read_jsonl(tmp_path / "runs" / "kept" / "rewrite" / "rewritten.jsonl")] == [
        "t000",
        "t001",
        "t-cut",
    ]


def test_every_trace_cut_at_max_tokens_fails_naming_the_fields(tmp_path: Path, api_key: str) -> None:
    atomic_write_jsonl(tmp_path / "raw.jsonl", [cut_trace("t-a"), cut_trace("t-b")])
    every_cut = r"cut every one of its 2 traces at maxTokens.*generation\.keepTruncated"
    with pytest.raises(StageError, match=every_cut):
        run_rewrite(tmp_path, "http://127.0.0.1:9/v1")


def test_rate_limits_are_waited_out_as_the_api_asks(tmp_path: Path, api_key: str) -> None:
    write_traces(tmp_path / "raw.jsonl", 6)
    behaviour = Behaviour(answer=layout_answer, rate_limit_first=3, retry_after="0.5")
    with serve_fake_openai(behaviour) as server:
        run_rewrite(tmp_path, server.base_url)
        assert server.traffic.rate_limited == 3
        assert len(server.traffic.retry_gaps) == 3
        assert min(server.traffic.retry_gaps) >= 0.45
    assert len(outputs(tmp_path, "rewritten.jsonl")) == 6


def test_a_wrong_key_stops_the_stage_with_a_clear_message(tmp_path: Path, api_key: str) -> None:
    write_traces(tmp_path / "raw.jsonl", 3)
    with (
        serve_fake_openai(Behaviour(answer=layout_answer, api_key="sk-the-right-one")) as server,
        pytest.raises(StageError, match=r"refused the credentials \(HTTP 401"),
    ):
        run_rewrite(tmp_path, server.base_url)
    assert not (tmp_path / "runs" / "rw" / "rewrite" / "rewritten.jsonl").exists()


def test_a_missing_key_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    write_traces(tmp_path / "raw.jsonl", 1)
    with pytest.raises(StageError, match=r"OPENAI_API_KEY is not set: give rewrite\.apiKeySecret"):
        run_rewrite(tmp_path, "http://127.0.0.1:9/v1")


def test_killed_mid_way_it_resumes_with_exactly_one_rewrite_per_trace(tmp_path: Path) -> None:
    traces = write_traces(tmp_path / "raw.jsonl", 50)
    behaviour = Behaviour(answer=layout_answer, delay_seconds=0.05, api_key=API_KEY)
    env = {**os.environ, "OPENAI_API_KEY": API_KEY}
    with serve_fake_openai(behaviour) as server:
        config = tmp_path / "run.yaml"
        config.write_text(yaml.safe_dump(rewrite_only_run(tmp_path, server.base_url)))
        command = stage_command("rewrite", config, tmp_path)
        journal = tmp_path / "runs" / "rw" / "rewrite" / "rewrite.journal.jsonl"
        done_before = kill_when_journaled(command, journal, 15, env=env)
        assert 15 <= done_before < 50
        tear_last_line(journal, '{"id": "t049", "rewritten": "<|begin_of_th')
        second = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
        assert second.returncode == 0, second.stderr
    rewritten = outputs(tmp_path, "rewritten.jsonl")
    assert [r["id"] for r in rewritten] == [t["id"] for t in traces]
    journaled = [json.loads(line)["id"] for line in journal.read_text().splitlines()]
    assert sorted(journaled) == sorted(t["id"] for t in traces)


def test_the_rule_based_stand_in_serves_the_rewrite_stage(tmp_path: Path, api_key: str) -> None:
    atomic_write_jsonl(
        tmp_path / "raw.jsonl",
        [
            {
                "id": "m",
                "kind": "math",
                "question": "1+1?",
                "response": "One plus one.\nIt is \\boxed{2}.\nDone.",
            },
            {
                "id": "c",
                "kind": "code",
                "question": "echo",
                "response": "Plan.\n```python\nprint(input())\n```\nok",
            },
        ],
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "reasoning_pipeline", "rewrite-stand-in", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "REASONING_STAND_IN_API_KEY": api_key},
    )
    try:
        assert server.stdout is not None
        assert "rule-based, not a language model" in server.stdout.readline()
        wait_for(
            lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, timeout=20, what="the stand-in"
        )
        summary = run_rewrite(tmp_path, f"http://127.0.0.1:{port}/v1")
        # as the real API does, a request with another key is refused with 401 and counted
        wrong = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            data=b'{"messages": [{"role": "user", "content": "x"}]}',
            headers={"Authorization": "Bearer sk-not-the-key", "Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError, match="401"):
            urllib.request.urlopen(wrong, timeout=10)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as response:
            counts = json.load(response)
    finally:
        server.terminate()
        server.wait()
    rewritten = {r["id"]: r["rewritten"] for r in outputs(tmp_path, "rewritten.jsonl")}
    assert summary.metrics["failed"] == 0
    assert counts == {"authorized": 2, "refused": 1, "key_required": 1}
    assert "<|begin_of_solution|>\n\nIt is \\boxed{2}.\n\n<|end_of_solution|>" in rewritten["m"]
    assert "<|begin_of_solution|>\n\n```python\nprint(input())\n```\n\n<|end_of_solution|>" in rewritten["c"]
    assert rewritten["m"].startswith("<|begin_of_thought|>\n\nOne plus one.")
