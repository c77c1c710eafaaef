"""Stage `evaluate`: benchmark scores of the trained student (and, on request, of its base model), each
written with its provenance: prompt template hash, sampling parameters, dtype, model and revision, number
of samples and a hash of the problems. SkyThought's users could not reproduce its scores because these
were not recorded; here they sit next to every number.

Responses come from any OpenAI-compatible server (vLLM in production, `transformers serve` locally) and
are journaled, so a killed evaluation resumes. Math answers go through the filter's math checker, code
through its sandbox, multiple choice through the last boxed letter.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass
from functools import partial
from typing import Any

from reasoning_pipeline.benchmarks import Benchmark, build_benchmark, extract_choice, pass_at_k
from reasoning_pipeline.boxed import last_boxed
from reasoning_pipeline.completions import Completion, Request, run_journaled
from reasoning_pipeline.errors import StageError
from reasoning_pipeline.filter.code import (
    CodeChecker,
    extract_code,
    no_code_verdict,
    parse_tests,
    sandbox_isolation,
)
from reasoning_pipeline.filter.math import MathChecker
from reasoning_pipeline.filter.sandbox import IsolationLevel
from reasoning_pipeline.generate import Budget, chat_over_http
from reasoning_pipeline.served import ServerFacts
from reasoning_pipeline.sources import Unreadable, hub_rows, local_rows
from reasoning_pipeline.spec import (
    CODE_BENCHMARKS,
    BenchmarkSpec,
    CodeCheck,
    EvaluationSpec,
    ReasoningRun,
    Sampling,
    Stage,
)
from reasoning_pipeline.storage import RunPaths, atomic_write_json
from reasoning_pipeline.summary import Output, Progress, StageSummary, now

ENDPOINT_VARIABLE = "REASONING_EVAL_ENDPOINT"
# vLLM serves one model per server: with compareWithBase on vLLM the operator deploys the base model
# apart and says where; `transformers serve` loads whatever model a request names, so one server will do.
BASE_ENDPOINT_VARIABLE = "REASONING_EVAL_ENDPOINT_BASE"
RESULTS_FILE = "results.json"
EVALUATION_CONCURRENCY = 64
EVALUATION_RETRIES = 5


@dataclass(frozen=True)
class Contender:
    label: str
    model: str
    revision: str | None


def contenders(run: ReasoningRun, paths: RunPaths) -> list[Contender]:
    spec = run.spec.evaluation
    trained = spec.server.model or str(paths.stage_dir(Stage.TRAIN) / "model")
    models = [
        Contender(
            "student", str(paths.resolve(trained)) if spec.server.model else trained, spec.server.revision
        )
    ]
    if spec.compare_with_base:
        base = run.spec.training.base_model
        local = paths.resolve(base)
        models.insert(
            0, Contender("base", str(local) if local.exists() else base, run.spec.training.revision)
        )
    return models


def load_benchmark(spec: BenchmarkSpec, paths: RunPaths) -> Benchmark:
    if spec.path:
        rows = list(local_rows(paths.resolve(spec.path)))
    elif spec.hub_id:
        owner = f"benchmark {spec.name}"
        rows = list(hub_rows(spec.hub_id, spec.config_name, spec.split, owner, spec.revision))
    else:
        raise StageError(f"benchmark {spec.name}: give hubId or path")
    # a benchmark is scored on every problem it has: a torn line is a broken file, not a skippable row
    torn = next(((where, row) for where, row in rows if isinstance(row, Unreadable)), None)
    if torn is not None:
        raise StageError(f"benchmark {spec.name}: {torn[0]}: {torn[1].reason}")
    benchmark = build_benchmark(spec.name, rows)
    if spec.limit:
        benchmark = Benchmark(benchmark.name, benchmark.template, benchmark.items[: spec.limit])
    return benchmark


def requests_for(
    contender: Contender, benchmark: Benchmark, sampling: Sampling, system_prompt: str
) -> list[Request]:
    requests = []
    for item in benchmark.items:
        messages = [{"role": "user", "content": item.prompt}]
        if system_prompt:
            messages.insert(0, {"role": "system", "content": system_prompt})
        for sample in range(sampling.samples_per_prompt):
            body: dict[str, Any] = {
                "model": contender.model,
                "messages": messages,
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
                "max_tokens": sampling.max_tokens,
            }
            if sampling.seed is not None:
                body["seed"] = sampling.seed + sample
            requests.append(Request(key=f"{item.id}#{sample}", body=body, payload={"item": item.id}))
    return requests


def to_record(request: Request, completion: Completion) -> dict[str, Any]:
    return {
        "id": request.key,
        "item": request.payload["item"],
        "response": completion.text,
        "promptTokens": completion.prompt_tokens,
        "completionTokens": completion.completion_tokens,
        "finishReason": completion.finish_reason,
    }


def cut_to_fit(responses: list[dict[str, Any]], max_tokens: int, server: ServerFacts | None) -> int:
    """Answers the server gave less room than maxTokens: where prompt + maxTokens exceed its context,
    vLLM lowers max_tokens to what the prompt leaves, without a word. Counted, so a score says so."""
    if server is None or server.max_model_len is None:
        return 0
    limit = server.max_model_len
    return sum(1 for r in responses if r.get("promptTokens") and r["promptTokens"] + max_tokens > limit)


def not_journaled(request: Request, reason: str) -> None:
    """A refused request stays out of the journal: what made the server refuse it (the context, the
    sampling) may change before the next attempt, which then asks again."""
    return None


def unanswered(request: Request) -> dict[str, Any]:
    """What a refused request is scored as: no answer, so wrong."""
    return {"id": request.key, "item": request.payload["item"], "response": ""}


def check_answered(name: str, refusals: dict[str, str], total: int, most: float) -> None:
    """Fails (for good: the same requests are refused again) when the server refused more than `most`
    of a benchmark's requests, with one of its messages; a score of mostly unanswered prompts is not a
    score."""
    if len(refusals) > most * total:
        key, reason = min(refusals.items())
        raise StageError(
            f"evaluate {name}: the server refused {len(refusals)} of {total} requests, more than "
            f"evaluation.maxUnansweredFraction ({most:g}) allows (e.g. {key}: {reason})"
        )


def score_responses(
    benchmark: Benchmark,
    responses: list[dict[str, Any]],
    code_limits: CodeCheck,
    code_timeout: float,
    minimum: IsolationLevel = IsolationLevel.RLIMITS,
) -> dict[str, list[bool]]:
    """Per item, whether each sample is right."""
    items = {item.id: item for item in benchmark.items}
    verdicts: dict[str, list[bool]] = defaultdict(list)
    math = [(r, items[r["item"]]) for r in responses if items[r["item"]].scorer == "math"]
    choice = [(r, items[r["item"]]) for r in responses if items[r["item"]].scorer == "choice"]
    code = [(r, items[r["item"]]) for r in responses if items[r["item"]].scorer == "code"]
    if math:
        with MathChecker() as checker:
            answers = checker.check_many((r["response"], f"\\boxed{{{i.reference}}}") for r, i in math)
            for (_, item), answer in zip(math, answers, strict=True):
                verdicts[item.id].append(answer.correct)
    for response, item in choice:
        text = response["response"]
        verdicts[item.id].append(extract_choice(last_boxed(text), text) == item.reference)
    if code:
        limits = code_limits.model_copy(update={"test_timeout_seconds": code_timeout})
        runnable = []
        for response, item in code:
            tests = parse_tests(item.tests)
            program = extract_code(response["response"])
            if program is None:
                verdicts[item.id].append(no_code_verdict(tests).passed)
            else:
                runnable.append((item, (program, tests, None)))
        with CodeChecker(limits, minimum=minimum) as checker:
            results = checker.check_many(task for _, task in runnable)
            for (item, _), result in zip(runnable, results, strict=True):
                verdicts[item.id].append(result.passed)
    return verdicts


def benchmark_score(
    benchmark: Benchmark, verdicts: dict[str, list[bool]], sampling: Sampling
) -> dict[str, Any]:
    n = sampling.samples_per_prompt
    per_item = [verdicts.get(item.id, []) for item in benchmark.items]
    pass1 = sum(pass_at_k(len(v), sum(v), 1) for v in per_item) / len(per_item)
    score: dict[str, Any] = {
        "score": round(100 * pass1, 2),
        "metric": "pass@1",
        "problems": len(per_item),
        "correct": sum(sum(v) for v in per_item),
    }
    if n > 1:
        score[f"pass@{n}"] = round(
            100 * sum(pass_at_k(len(v), sum(v), n) for v in per_item) / len(per_item), 2
        )
    by_level: dict[str, list[float]] = defaultdict(list)
    for item, samples in zip(benchmark.items, per_item, strict=True):
        if item.metadata.get("difficulty"):
            by_level[str(item.metadata["difficulty"])].append(pass_at_k(len(samples), sum(samples), 1))
    if by_level:  # LiveCodeBench is reported per difficulty
        score["byDifficulty"] = {
            level: round(100 * sum(v) / len(v), 2) for level, v in sorted(by_level.items())
        }
    return score


def sampling_field(spec: EvaluationSpec, benchmark: BenchmarkSpec) -> str:
    """The spec field a benchmark's answer budget comes from, for messages."""
    if benchmark.sampling is None:
        return "evaluation.sampling.maxTokens"
    return f"evaluation.benchmarks[{spec.benchmarks.index(benchmark)}].sampling.maxTokens"


def provenance(
    contender: Contender,
    benchmark: Benchmark,
    sampling: Sampling,
    spec: EvaluationSpec,
    server: ServerFacts | None = None,
) -> dict[str, Any]:
    served = server or ServerFacts()
    return {
        "model": contender.model,
        "revision": contender.revision,
        "dtype": spec.server.dtype,
        "engine": spec.server.engine,
        "engineVersion": served.version,
        "maxModelLen": served.max_model_len,
        "sampling": sampling.model_dump(by_alias=True),
        "samples": sampling.samples_per_prompt,
        "promptTemplateSha256": benchmark.template_sha256,
        "systemPromptSha256": hashlib.sha256(spec.system_prompt.encode()).hexdigest(),
        "problemsSha256": benchmark.items_sha256,
    }


def compact_provenance(full: dict[str, Any]) -> dict[str, Any]:
    """What the run's status shows next to a score (the summary travels in a 4 KiB termination message;
    results.json keeps the full record): enough to tell two scores' conditions apart."""
    sampling = full["sampling"]
    return {
        "model": full["model"],
        "revision": full["revision"],
        "dtype": full["dtype"],
        "engine": " ".join(str(p) for p in (full.get("engine"), full.get("engineVersion")) if p),
        "temperature": sampling.get("temperature"),
        "maxTokens": sampling.get("maxTokens"),
        "seed": sampling.get("seed"),
        "samples": full["samples"],
        "prompt": full["promptTemplateSha256"][:12],
        "systemPrompt": full["systemPromptSha256"][:12],
        "problems": full["problemsSha256"][:12],
    }


def endpoint_for(contender: Contender, default: str) -> str:
    if contender.label == "base":
        return (os.environ.get(BASE_ENDPOINT_VARIABLE) or default).rstrip("/")
    return default


def run(run: ReasoningRun, paths: RunPaths) -> StageSummary:
    started_at = now()
    spec = run.spec.evaluation
    endpoint = (spec.server.endpoint or os.environ.get(ENDPOINT_VARIABLE) or "").rstrip("/")
    if not endpoint:
        raise StageError(f"no model endpoint: set evaluation.server.endpoint or ${ENDPOINT_VARIABLE}")
    benchmarks = [(b, load_benchmark(b, paths)) for b in spec.benchmarks]
    minimum = IsolationLevel(run.spec.sandbox.minimum_isolation)
    # a sandbox too weak for the spec fails the stage before any model is asked anything
    runs_code = any(b.name in CODE_BENCHMARKS for b, _ in benchmarks)
    isolation = sandbox_isolation(minimum)[0] if runs_code else None
    stage_dir = paths.stage_dir(Stage.EVALUATE)
    results: dict[str, dict[str, Any]] = {}
    asked = 0
    for contender in contenders(run, paths):
        for benchmark_spec, benchmark in benchmarks:
            sampling = benchmark_spec.sampling or spec.sampling
            requests = requests_for(contender, benchmark, sampling, spec.system_prompt)
            name = f"{contender.label}-{benchmark.name}"
            where = endpoint_for(contender, endpoint)
            journaled, _, report = run_journaled(
                stage_dir / f"{name}.journal.jsonl",
                partial(
                    chat_over_http,
                    where,
                    requests,
                    concurrency=EVALUATION_CONCURRENCY,
                    max_retries=EVALUATION_RETRIES,
                    request_timeout=3600,
                    ready_timeout=spec.server_ready_timeout_seconds,
                    description=f"evaluate {name}",
                    to_record=to_record,
                    on_permanent=not_journaled,
                    model=contender.model,
                    budget=Budget(sampling.max_tokens, sampling_field(spec, benchmark_spec)),
                ),
                total=len(requests),
                max_retries=EVALUATION_RETRIES,
                where=f"model endpoint {where} ({name})",
            )
            check_answered(name, report.unjournaled_refusals, len(requests), spec.max_unanswered_fraction)
            responses = [journaled.get(r.key) or unanswered(r) for r in requests]
            verdicts = score_responses(
                benchmark, responses, run.spec.filter.code, spec.code_timeout_seconds, minimum
            )
            score = benchmark_score(benchmark, verdicts, sampling)
            score["unanswered"] = len(report.unjournaled_refusals)
            score["cutToFit"] = cut_to_fit(responses, sampling.max_tokens, report.server)
            score["provenance"] = provenance(contender, benchmark, sampling, spec, report.server)
            results.setdefault(contender.label, {})[benchmark.name] = score
            asked += len(requests)
    out = stage_dir / RESULTS_FILE
    atomic_write_json(out, results)
    headline = ", ".join(
        f"{label} {name} {score['score']:.1f}"
        for label, scores in results.items()
        for name, score in scores.items()
    )
    return StageSummary(
        stage=Stage.EVALUATE,
        phase="Succeeded",
        message=headline,
        started_at=started_at,
        finished_at=now(),
        progress=Progress(done=asked, total=asked),
        outputs={"results": Output(path=str(out.relative_to(paths.root)))},
        metrics={
            "results": {
                label: {
                    name: {**score, "provenance": compact_provenance(score["provenance"])}
                    for name, score in scores.items()
                }
                for label, scores in results.items()
            },
            **({"sandboxIsolation": str(isolation)} if isolation is not None else {}),
        },
    )
