"""Stage `generate`: the teacher's raw traces for every prompt, from any OpenAI-compatible server.

The server is vLLM in production (deployed by the operator) and `transformers serve` at small scale. The
client is aiohttp rather than the `openai` package: measured here, the openai client tops out near 500
requests/s on 2 cores, aiohttp above 6,000, and the driver must never be what the GPUs wait on.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import aiohttp

from reasoning_pipeline.completions import (
    Completion,
    DriveReport,
    Request,
    TransientError,
    classify_status,
    completion_from_json,
    drive,
    parse_retry_after,
    run_journaled,
)
from reasoning_pipeline.errors import StageError, TransientStageError
from reasoning_pipeline.progress import bar
from reasoning_pipeline.served import ServerFacts, check_context, facts_from
from reasoning_pipeline.spec import GenerationSpec, ReasoningRun, Stage
from reasoning_pipeline.stage_input import read_stage_input, require_text_fields
from reasoning_pipeline.storage import Journal, RunPaths, atomic_write_jsonl
from reasoning_pipeline.summary import Progress, StageSummary, now, output_of

ENDPOINT_VARIABLE = "REASONING_TEACHER_ENDPOINT"
JOURNAL_FILE = "raw.journal.jsonl"
RAW_FILE = "raw.jsonl"
PROMPT_FIELDS = ("id", "prompt")


def teacher_endpoint(spec: GenerationSpec) -> str:
    """The spec's endpoint, else the one the operator passes for the server it deployed."""
    endpoint = spec.teacher.endpoint or os.environ.get(ENDPOINT_VARIABLE)
    if not endpoint:
        raise StageError(f"no teacher endpoint: set generation.teacher.endpoint or ${ENDPOINT_VARIABLE}")
    return endpoint.rstrip("/")


def input_prompts(run: ReasoningRun, paths: RunPaths) -> list[dict[str, Any]]:
    path, prompts = read_stage_input(
        paths, run.spec.generation.input_path, Stage.DATA, "prompts.jsonl", "generation.inputPath"
    )
    require_text_fields(path, prompts, *PROMPT_FIELDS)
    if not prompts:
        raise StageError(f"{path}: no prompts in the file")
    return prompts


def served_model_name(spec: GenerationSpec, paths: RunPaths) -> str:
    """The name the teacher is served under: a model folder on the storage by its absolute path (how the
    server is started with it), a hub id as it is."""
    local = paths.resolve(spec.teacher.model)
    return str(local) if local.exists() else spec.teacher.model


def sample_requests(spec: GenerationSpec, prompts: list[dict[str, Any]], model: str) -> Iterator[Request]:
    sampling = spec.sampling
    for prompt in prompts:
        messages = [{"role": "user", "content": prompt["prompt"]}]
        if spec.system_prompt:
            messages.insert(0, {"role": "system", "content": spec.system_prompt})
        for sample in range(sampling.samples_per_prompt):
            body: dict[str, Any] = {
                "model": model,
                "messages": messages,
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
                "max_tokens": sampling.max_tokens,
            }
            if sampling.seed is not None:
                body["seed"] = sampling.seed + sample
            key = prompt["id"] if sampling.samples_per_prompt == 1 else f"{prompt['id']}-{sample}"
            yield Request(
                key=key, body=body, payload={"prompt": prompt, "sample": sample, "model": spec.teacher.model}
            )


def make_complete(session: aiohttp.ClientSession, endpoint: str) -> Any:
    url = f"{endpoint}/chat/completions"

    async def complete(body: dict[str, Any]) -> Completion:
        try:
            async with session.post(url, json=body) as response:
                if response.status != 200:
                    text = await response.text()
                    raise classify_status(
                        response.status, text, parse_retry_after(response.headers.get("Retry-After"))
                    )
                text = await response.text()
        except (TimeoutError, aiohttp.ClientError) as error:
            raise TransientError(f"{type(error).__name__}: {error}") from error
        try:
            document = json.loads(text)
        except ValueError as error:  # a proxy's page, a truncated body: the next attempt may get through
            raise TransientError(f"HTTP 200 with a body that is not JSON: {text[:200]!r}") from error
        return completion_from_json(document)

    return complete


async def _get_json(session: aiohttp.ClientSession, url: str) -> dict[str, Any] | None:
    try:
        async with session.get(url) as response:
            if response.status != 200:
                return None
            body = await response.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError, ValueError):
        return None
    return body if isinstance(body, dict) else None


async def wait_for_server(
    session: aiohttp.ClientSession, endpoint: str, timeout: float, model: str
) -> ServerFacts:
    """vLLM takes minutes to load a 32B model; the driver Job may start before it is ready. Returns what
    the server says about itself and the model once it answers."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        try:
            async with session.get(f"{endpoint}/models") as response:
                if response.status == 200:
                    models = await response.json(content_type=None)
                    # /version sits beside /v1 on vLLM; `transformers serve` has none (None)
                    version = await _get_json(session, f"{endpoint.removesuffix('/v1')}/version")
                    return facts_from(models if isinstance(models, dict) else {}, version, model)
                last_error = f"HTTP {response.status}"
        except (TimeoutError, aiohttp.ClientError, ValueError) as error:
            last_error = f"{type(error).__name__}: {error}"
        if time.monotonic() >= deadline:
            # the server may still be loading, or restarting on another node: the next attempt waits again
            raise TransientStageError(
                f"teacher endpoint {endpoint} unreachable after {timeout:.0f} s ({last_error})"
            )
        await asyncio.sleep(min(2.0, max(0.1, deadline - time.monotonic())))


@dataclass(frozen=True)
class Budget:
    """The answer length the requests ask for, and the spec field it comes from."""

    max_tokens: int
    field: str


def to_record(request: Request, completion: Completion) -> dict[str, Any]:
    prompt = request.payload["prompt"]
    return {
        **{k: v for k, v in prompt.items() if k != "id"},
        "id": request.key,
        "promptId": prompt["id"],
        "sample": request.payload["sample"],
        "messages": request.body["messages"],
        "response": completion.text,
        "finishReason": completion.finish_reason,
        "usage": {"promptTokens": completion.prompt_tokens, "completionTokens": completion.completion_tokens},
        # as the run names it, not as served (a local path resolved under this run's storage root), so
        # the same run on another root writes the same bytes
        "model": request.payload["model"],
    }


def is_truncated(trace: dict[str, Any]) -> bool:
    """The server stopped the trace at max_tokens: its thought is cut and it has no final answer."""
    return trace.get("finishReason") == "length"


def truncated_by_source(traces: Iterable[dict[str, Any]]) -> dict[str, int]:
    return dict(sorted(Counter(str(t.get("source")) for t in traces if is_truncated(t)).items()))


def permanent_failure(request: Request, reason: str) -> dict[str, Any]:
    return {"id": request.key, "promptId": request.payload["prompt"]["id"], "error": reason}


async def chat_over_http(
    endpoint: str,
    requests: list[Request],
    journal: Journal,
    *,
    concurrency: int,
    max_retries: int,
    request_timeout: float,
    ready_timeout: float,
    description: str,
    to_record: Callable[[Request, Completion], dict[str, Any]],
    on_permanent: Callable[[Request, str], dict[str, Any] | None],
    model: str,
    budget: Budget,
) -> DriveReport:
    """Every request not yet journaled, against an OpenAI-compatible server once it answers and once the
    answers asked for fit the context it serves `model` with."""
    timeout = aiohttp.ClientTimeout(total=request_timeout)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        facts = await wait_for_server(session, endpoint, ready_timeout, model)
        check_context(facts, max_tokens=budget.max_tokens, field=budget.field, where=endpoint)
        with bar(len(requests), description, initial=len(journal)) as progress:
            report = await drive(
                requests,
                journal,
                make_complete(session, endpoint),
                concurrency=concurrency,
                max_retries=max_retries,
                to_record=to_record,
                on_permanent=on_permanent,
                on_done=lambda: progress.update(1),
            )
    return replace(report, server=facts)


def run(run: ReasoningRun, paths: RunPaths) -> StageSummary:
    started_at = now()
    spec = run.spec.generation
    prompts = input_prompts(run, paths)
    endpoint = teacher_endpoint(spec)
    model = served_model_name(spec, paths)
    requests = list(sample_requests(spec, prompts, model))
    stage_dir = paths.stage_dir(Stage.GENERATE)
    done, resumed, report = run_journaled(
        stage_dir / JOURNAL_FILE,
        lambda journal: chat_over_http(
            endpoint,
            requests,
            journal,
            concurrency=spec.concurrency,
            max_retries=spec.max_retries,
            request_timeout=spec.request_timeout_seconds,
            ready_timeout=spec.server_ready_timeout_seconds,
            description="generate",
            to_record=to_record,
            on_permanent=permanent_failure,
            model=model,
            budget=Budget(spec.sampling.max_tokens, "generation.sampling.maxTokens"),
        ),
        total=len(requests),
        max_retries=spec.max_retries,
        where=f"teacher endpoint {endpoint}",
    )
    failed = sum(1 for record in done.values() if "error" in record)
    if failed == len(requests):
        example = next(iter(done.values()))["error"]
        raise StageError(f"teacher endpoint {endpoint} refused every request (e.g. {example})")
    out = stage_dir / RAW_FILE
    written = atomic_write_jsonl(out, (done[r.key] for r in requests))
    tokens = sum(r.get("usage", {}).get("completionTokens", 0) for r in done.values())
    truncated = truncated_by_source(done.values())
    cut = sum(truncated.values())
    fate = "kept" if spec.keep_truncated else "dropped before rewrite"
    return StageSummary(
        stage=Stage.GENERATE,
        phase="Succeeded",
        message=f"{written - failed} traces for {len(prompts)} prompts ({failed} refused by the server, "
        f"{cut} cut at maxTokens and {fate}, {resumed} resumed from an earlier attempt)",
        started_at=started_at,
        finished_at=now(),
        progress=Progress(done=written, total=len(requests)),
        outputs={"traces": output_of(out, paths.root, written)},
        metrics={
            "requests": len(requests),
            "resumed": resumed,
            "refused": failed,
            "truncated": cut,
            "truncatedBySource": truncated,
            "completionTokens": tokens,
            "promptTokens": sum(r.get("usage", {}).get("promptTokens", 0) for r in done.values()),
            "requestsPerSecond": round(report.completed / report.seconds, 2) if report.seconds else None,
            "server": report.server.as_status() if report.server else None,
        },
    )
