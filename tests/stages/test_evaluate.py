"""Stage `evaluate`: benchmark loaders in their published formats, scorers, provenance, resume."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from reasoning_pipeline import evaluate
from reasoning_pipeline.benchmarks import GPQA_TEMPLATE, build_benchmark, pass_at_k
from reasoning_pipeline.errors import StageError
from reasoning_pipeline.prompts import NUMINA_TEMPLATE
from reasoning_pipeline.sources import local_rows
from reasoning_pipeline.spec import ReasoningRun, SandboxSpec
from reasoning_pipeline.storage import RunPaths
from reasoning_pipeline.summary import termination_message

from tests.support.fake_openai import Behaviour, serve_fake_openai
from tests.support.sandbox_host import sandbox_host

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "benchmarks"
MATH_ANSWERS = {"Compute $1+1$": "2", "Simplify": "0.5", "What is $3^2$": "6", "2024 I problem 1": "204"}
CODE_ANSWERS = {
    "print a+b": "a, b = map(int, input().split())\nprint(a + b)",
    "Return twice": "class Solution:\n    def twice(self, n):\n        return 2 * n",
}


def student_answer(messages: list[dict[str, str]]) -> str:
    """A student that gets some right: fixed answers keyed by the problem text."""
    prompt = messages[-1]["content"]
    for key, program in CODE_ANSWERS.items():
        if key in prompt:
            return f"Plan.\n```python\n{program}\n```"
    for key, answer in MATH_ANSWERS.items():
        if key in prompt:
            return f"<|begin_of_thought|>...<|end_of_thought|> \\boxed{{{answer}}}"
    if "Photon" in prompt:  # knows the physics, guesses the chemistry
        letter = re.search(r"([ABCD])\. Photon", prompt)
        assert letter is not None
        return f"\\boxed{{{letter.group(1)}}}"
    return "\\boxed{A}"


def answer_by_model(messages: list[dict[str, str]]) -> str:
    return student_answer(messages)


def test_benchmark_formats_load_with_their_quirks() -> None:
    aime = build_benchmark("aime24", list(local_rows(FIXTURES / "aime.jsonl")))
    assert [item.reference for item in aime.items] == ["204", "33"]  # the 2023 row is not AIME24
    gpqa = build_benchmark("gpqa-diamond", list(local_rows(FIXTURES / "gpqa.jsonl")))
    again = build_benchmark("gpqa-diamond", list(local_rows(FIXTURES / "gpqa.jsonl")))
    assert [i.prompt for i in gpqa.items] == [i.prompt for i in again.items]  # shuffled with a fixed seed
    first = gpqa.items[0]
    assert f"{first.reference}. Photon" in first.prompt
    lcb = build_benchmark("livecodebench", list(local_rows(FIXTURES / "livecodebench.jsonl")))
    stdin, functional = lcb.items
    assert stdin.tests == {"inputs": ["1 2\n", "5 5\n"], "outputs": ["3\n", "10\n"]}  # public + private
    assert functional.tests == {"inputs": [[3], [-4]], "outputs": [6, -8], "fn_name": "twice"}
    assert functional.metadata == {"difficulty": "medium"}


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"), [(1, 1, 1, 1.0), (4, 1, 1, 0.25), (4, 0, 2, 0.0), (4, 1, 2, 0.5)]
)
def test_pass_at_k_is_the_unbiased_estimator(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def evaluation_run(tmp_path: Path, endpoint: str, **evaluation: Any) -> ReasoningRun:
    disabled = {"enabled": False}
    benchmarks = [
        {"name": "math500", "path": str(FIXTURES / "math500.jsonl")},
        {"name": "aime24", "path": str(FIXTURES / "aime.jsonl"),
         "sampling": {"temperature": 0.7, "samplesPerPrompt": 2, "seed": 41}},
        {"name": "gpqa-diamond", "path": str(FIXTURES / "gpqa.jsonl")},
        {"name": "livecodebench", "path": str(FIXTURES / "livecodebench.jsonl")},
    ]  # fmt: skip
    return ReasoningRun.model_validate(
        {
            "metadata": {"name": "ev"},
            "spec": {
                **{s: disabled for s in ("data", "generation", "rewrite", "filter", "format", "training")},
                "evaluation": {
                    "benchmarks": benchmarks,
                    "server": {"model": "models/student", "endpoint": endpoint, "engine": "transformers"},
                    **evaluation,
                },
            },
        }
    )


def test_scores_carry_their_provenance_and_a_rerun_asks_nothing_again(tmp_path: Path) -> None:
    with serve_fake_openai(Behaviour(answer=answer_by_model)) as server:
        summary = evaluate.run(evaluation_run(tmp_path, server.base_url), RunPaths(tmp_path, "ev"))
        asked = server.traffic.requests
        evaluate.run(evaluation_run(tmp_path, server.base_url), RunPaths(tmp_path, "ev"))
        assert server.traffic.requests == asked
    results = json.loads((tmp_path / "runs" / "ev" / "evaluate" / "results.json").read_text())["student"]
    assert results["math500"]["score"] == pytest.approx(66.67)  # 1+1 and 1/2 right, 3^2 wrong
    assert results["aime24"]["score"] == 50.0
    assert results["aime24"]["pass@2"] == 50.0
    assert results["gpqa-diamond"]["correct"] >= 1
    assert results["livecodebench"]["score"] == 100.0
    assert results["livecodebench"]["byDifficulty"] == {"easy": 100.0, "medium": 100.0}
    provenance = results["math500"]["provenance"]
    assert provenance["promptTemplateSha256"] == hashlib.sha256(NUMINA_TEMPLATE.encode()).hexdigest()
    assert (
        results["gpqa-diamond"]["provenance"]["promptTemplateSha256"]
        == hashlib.sha256(GPQA_TEMPLATE.encode()).hexdigest()
    )
    assert provenance["model"] == str(tmp_path / "models" / "student")
    assert provenance["dtype"] == "float32"
    assert provenance["sampling"]["temperature"] == 0.0
    assert provenance["sampling"]["seed"] == 41
    assert results["aime24"]["provenance"]["samples"] == 2
    assert "student math500 66.7" in summary.message
    shown = summary.metrics["results"]["student"]["math500"]
    assert shown["score"] == pytest.approx(66.67)
    assert shown["provenance"]["dtype"] == "float32"
    assert shown["provenance"]["prompt"] == provenance["promptTemplateSha256"][:12]


def test_refused_requests_fail_the_stage_with_the_servers_message_never_a_silent_zero(tmp_path: Path) -> None:
    """vLLM answers 400 when prompt + max_tokens exceed its context: one of math500's three prompts is
    a third of the benchmark, far over the default maxUnansweredFraction."""
    refused = Behaviour(answer=answer_by_model, refuse_containing="What is $3^2$")
    with serve_fake_openai(refused) as server, pytest.raises(StageError) as failure:
        evaluate.run(evaluation_run(tmp_path, server.base_url), RunPaths(tmp_path, "ev"))
    message = str(failure.value)
    assert "evaluate student-math500: the server refused 1 of 3 requests" in message
    assert "evaluation.maxUnansweredFraction (0.01)" in message
    assert 'HTTP 400: {"error": {"message": "maximum context length exceeded"}}' in message
    assert not (tmp_path / "runs" / "ev" / "evaluate" / "results.json").exists()


def test_refusals_within_the_stated_fraction_are_scored_wrong_counted_and_asked_again(tmp_path: Path) -> None:
    refused = Behaviour(answer=answer_by_model, refuse_containing="Simplify")
    with serve_fake_openai(refused) as server:
        run = evaluation_run(tmp_path, server.base_url, maxUnansweredFraction=0.5)
        evaluate.run(run, RunPaths(tmp_path, "ev"))
        asked = server.traffic.requests
        summary = evaluate.run(run, RunPaths(tmp_path, "ev"))
        assert server.traffic.requests == asked + 1, "only the refused request is asked again"
    math500 = summary.metrics["results"]["student"]["math500"]
    assert (math500["unanswered"], math500["correct"]) == (1, 1)
    assert math500["score"] == pytest.approx(33.33)
    assert summary.metrics["results"]["student"]["aime24"]["unanswered"] == 0


def test_the_base_model_is_asked_where_its_own_server_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """vLLM serves one model per server: with compareWithBase the operator deploys the base apart."""
    with (
        serve_fake_openai(Behaviour(answer=answer_by_model)) as student_server,
        serve_fake_openai(Behaviour(answer=lambda messages: "\\boxed{A}")) as base_server,
    ):
        monkeypatch.setenv(evaluate.BASE_ENDPOINT_VARIABLE, base_server.base_url)
        run = evaluation_run(tmp_path, student_server.base_url, compareWithBase=True)
        summary = evaluate.run(run, RunPaths(tmp_path, "ev"))
        asked_student, asked_base = student_server.traffic.requests, base_server.traffic.requests
    results = json.loads((tmp_path / "runs" / "ev" / "evaluate" / "results.json").read_text())
    assert set(results) == {"base", "student"}
    assert asked_student == asked_base > 0
    assert results["base"]["math500"]["score"] == 0.0
    assert results["student"]["math500"]["score"] == pytest.approx(66.67)
    # eight scores with their provenance still fit the termination message the operator reads
    message = json.loads(termination_message(summary))
    assert message["metrics"]["results"]["base"]["livecodebench"]["provenance"]["dtype"] == "float32"


def test_private_tests_that_pickle_anything_but_text_are_refused_not_run(tmp_path: Path) -> None:
    """LiveCodeBench's private tests are base64(zlib(pickle(JSON text))); a pickle naming a callable
    (what `pickle.loads` would run) is refused."""
    import base64
    import os
    import pickle
    import zlib

    class Runs:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    row = json.loads((FIXTURES / "livecodebench.jsonl").read_text().splitlines()[0])
    row["private_test_cases"] = base64.b64encode(zlib.compress(pickle.dumps(Runs()))).decode()
    with pytest.raises(StageError, match=re.escape("refusing posix.system")):
        build_benchmark("livecodebench", [("lcb.jsonl:1", row)])
    assert not (tmp_path / "ran").exists()


def test_livecodebench_is_scored_in_the_pods_sandbox_container_and_its_level_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in a cluster: the driver's checker starts its workers in the sandbox container's host (here a
    process on a socket), which says which level it reaches; a spec that asks for more fails the stage
    before a single model is asked anything."""
    lcb_only = {"benchmarks": [{"name": "livecodebench", "path": str(FIXTURES / "livecodebench.jsonl")}]}
    with (
        sandbox_host(tmp_path, monkeypatch, level="rlimits"),
        serve_fake_openai(Behaviour(answer=answer_by_model)) as server,
    ):
        strict = evaluation_run(tmp_path, server.base_url, **lcb_only)
        with pytest.raises(StageError, match=r"sandbox\.minimumIsolation: .*only the rlimits level"):
            evaluate.run(strict, RunPaths(tmp_path, "ev"))
        assert server.traffic.requests == 0
        allowed = strict.model_copy(
            update={
                "spec": strict.spec.model_copy(update={"sandbox": SandboxSpec(minimum_isolation="rlimits")})
            }
        )
        summary = evaluate.run(allowed, RunPaths(tmp_path, "ev"))
    assert summary.metrics["sandboxIsolation"] == "rlimits"
    assert summary.metrics["results"]["student"]["livecodebench"]["score"] == 100.0
