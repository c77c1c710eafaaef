"""Stage `rewrite`: an API model (GPT-4o-mini) reformats each raw teacher trace into the
<|begin_of_thought|>…<|end_of_thought|> <|begin_of_solution|>…<|end_of_solution|> layout.

It runs before the correctness check because parsing raw teacher output is what failed (on APPS, "last
code block" parsing of raw QwQ output scored ~25 %, after rewriting >90 %). The original script stored API
errors as if they were rewritten text; here an error, or an answer not in the layout, is a failed record.
The API key comes from the environment (a Secret in the cluster) and is never logged or written.
"""

from __future__ import annotations

import os
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from reasoning_pipeline.completions import (
    Completion,
    Request,
    TransientError,
    answer_text,
    classify_status,
    drive,
    parse_retry_after,
    run_journaled,
)
from reasoning_pipeline.errors import StageError
from reasoning_pipeline.generate import is_truncated
from reasoning_pipeline.progress import bar
from reasoning_pipeline.spec import ReasoningRun, RewriteSpec, Stage
from reasoning_pipeline.stage_input import read_stage_input, require_text_fields
from reasoning_pipeline.storage import Journal, RunPaths, atomic_write_jsonl
from reasoning_pipeline.summary import Progress, StageSummary, now, output_of

API_KEY_VARIABLE = "OPENAI_API_KEY"
BASE_URL_VARIABLE = "REASONING_REWRITE_BASE_URL"
"""Set where the API is deployed for this run (the rule-based stand-in); overrides rewrite.baseUrl."""
JOURNAL_FILE = "rewrite.journal.jsonl"
REWRITTEN_FILE = "rewritten.jsonl"
FAILED_FILE = "failed.jsonl"
MARKERS = ("<|begin_of_thought|>", "<|end_of_thought|>", "<|begin_of_solution|>", "<|end_of_solution|>")

REWRITE_INSTRUCTIONS = """You reformat a model's reasoning into two sections without changing its content.

Copy the reasoning almost word for word into the Thought section: keep every step, check and correction,
drop only filler. Then write the Solution section: the final, clean solution the reasoning arrived at.

Use exactly this layout, each marker exactly once:
<|begin_of_thought|>

{thought, steps separated by blank lines}

<|end_of_thought|>

<|begin_of_solution|>

{solution}

<|end_of_solution|>
"""
KIND_RULES = {
    "math": "The Solution section states exactly one final answer, in \\boxed{}.",
    "science": "The Solution section states exactly one final answer, in \\boxed{}.",
    "code": "The Solution section contains exactly one Python code block: the final program.",
}


def rewrite_messages(record: dict[str, Any]) -> list[dict[str, str]]:
    rule = KIND_RULES.get(str(record.get("kind")), KIND_RULES["math"])
    return [
        {"role": "system", "content": f"{REWRITE_INSTRUCTIONS}\n{rule}"},
        {
            "role": "user",
            "content": f"Problem:\n{record.get('question') or record.get('prompt', '')}\n\n"
            f"Response to reformat:\n{record['response']}",
        },
    ]


def layout_problem(text: str, kind: str) -> str | None:
    """Why a rewrite is unusable, or None when it has the layout the student is trained on."""
    positions = []
    for marker in MARKERS:
        count = text.count(marker)
        if count != 1:
            return f"marker {marker} appears {count} times (expected once)"
        positions.append(text.index(marker))
    if positions != sorted(positions):
        return "the thought and solution markers are out of order"
    solution = text[positions[2] + len(MARKERS[2]) : positions[3]].strip()
    if not solution:
        return "the solution section is empty"
    if kind == "code" and "```" not in solution:
        return "the solution section of a code problem has no code block"
    return None


def input_traces(run: ReasoningRun, paths: RunPaths) -> list[dict[str, Any]]:
    """The teacher's traces, less those the teacher server refused and, unless generation.keepTruncated,
    those it cut at maxTokens."""
    path, records = read_stage_input(
        paths, run.spec.rewrite.input_path, Stage.GENERATE, "raw.jsonl", "rewrite.inputPath"
    )
    require_text_fields(path, records, "id")
    answered = [r for r in records if "error" not in r]
    traces = answered if run.spec.generation.keep_truncated else [r for r in answered if not is_truncated(r)]
    if answered and not traces:
        raise StageError(
            f"{path}: the teacher cut every one of its {len(answered)} traces at maxTokens (finish reason "
            "`length`): raise generation.sampling.maxTokens, or set generation.keepTruncated to use them"
        )
    require_text_fields(path, traces, "response")
    return traces


def make_complete(client: openai.AsyncOpenAI) -> Any:
    async def complete(body: dict[str, Any]) -> Completion:
        try:
            response = await client.chat.completions.create(**body)
        except openai.APIStatusError as error:
            retry_after = parse_retry_after(error.response.headers.get("retry-after"))
            raise classify_status(error.status_code, error.message, retry_after) from error
        except (
            openai.APIConnectionError,
            openai.APITimeoutError,
            openai.APIResponseValidationError,
        ) as error:
            # a body that is not a completion (a proxy's page): the next attempt may get through
            raise TransientError(f"{type(error).__name__}: {error}") from error
        if not isinstance(response, ChatCompletion) or not response.choices:
            raise TransientError(f"malformed completion from the API: {str(response)[:200]!r}")
        choice = response.choices[0]
        usage = response.usage
        return Completion(
            text=answer_text(choice.message.content, choice.finish_reason, choice.message.refusal),
            finish_reason=choice.finish_reason,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            model=response.model,
        )

    return complete


def to_record(request: Request, completion: Completion) -> dict[str, Any]:
    trace = request.payload["trace"]
    problem = layout_problem(completion.text, str(trace.get("kind")))
    if problem is not None:
        return {"id": request.key, "error": f"rewrite unusable: {problem}"}
    return {
        **trace,
        "rewritten": completion.text,
        "rewriteUsage": {
            "promptTokens": completion.prompt_tokens,
            "completionTokens": completion.completion_tokens,
        },
        "rewriteModel": completion.model or request.body["model"],
    }


def refused(request: Request, reason: str) -> dict[str, Any]:
    return {"id": request.key, "error": f"rewrite refused: {reason}"}


def api_base_url(spec: RewriteSpec) -> str:
    return os.environ.get(BASE_URL_VARIABLE) or spec.base_url


async def _rewrite(spec: RewriteSpec, api_key: str, requests: list[Request], journal: Journal) -> Any:
    client = openai.AsyncOpenAI(
        base_url=api_base_url(spec), api_key=api_key, max_retries=0, timeout=spec.request_timeout_seconds
    )
    try:
        with bar(len(requests), "rewrite", initial=len(journal)) as progress:
            return await drive(
                requests,
                journal,
                make_complete(client),
                concurrency=spec.concurrency,
                max_retries=spec.max_retries,
                to_record=to_record,
                on_permanent=refused,
                on_done=lambda: progress.update(1),
            )
    finally:
        await client.close()


def run(run: ReasoningRun, paths: RunPaths) -> StageSummary:
    started_at = now()
    spec = run.spec.rewrite
    api_key = os.environ.get(API_KEY_VARIABLE)
    if not api_key:
        raise StageError(
            f"${API_KEY_VARIABLE} is not set: give rewrite.apiKeySecret, a Secret holding the key"
        )
    traces = input_traces(run, paths)
    requests = [
        Request(
            key=trace["id"],
            body={
                "model": spec.model,
                "messages": rewrite_messages(trace),
                "temperature": spec.temperature,
                "max_tokens": spec.max_tokens,
            },
            payload={"trace": trace},
        )
        for trace in traces
    ]
    stage_dir = paths.stage_dir(Stage.REWRITE)
    done, resumed, _ = run_journaled(
        stage_dir / JOURNAL_FILE,
        lambda journal: _rewrite(spec, api_key, requests, journal),
        total=len(requests),
        max_retries=spec.max_retries,
        where=f"rewrite API {api_base_url(spec)}",
    )
    ordered = [done[r.key] for r in requests]
    good = [r for r in ordered if "error" not in r]
    failed = [r for r in ordered if "error" in r]
    out = stage_dir / REWRITTEN_FILE
    atomic_write_jsonl(out, good)
    atomic_write_jsonl(stage_dir / FAILED_FILE, failed)
    usage = [r["rewriteUsage"] for r in good]
    return StageSummary(
        stage=Stage.REWRITE,
        phase="Succeeded",
        message=f"{len(good)} of {len(requests)} traces rewritten ({len(failed)} failed, {resumed} resumed)",
        started_at=started_at,
        finished_at=now(),
        progress=Progress(done=len(ordered), total=len(requests)),
        outputs={"rewritten": output_of(out, paths.root, len(good))},
        metrics={
            "failed": len(failed),
            "resumed": resumed,
            "apiPromptTokens": sum(u["promptTokens"] for u in usage),
            "apiCompletionTokens": sum(u["completionTokens"] for u in usage),
            "failureReasons": sorted({r["error"] for r in failed})[:5],
        },
    )
