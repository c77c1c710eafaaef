"""Stage `format`: the SFT dataset. Kept traces become ShareGPT rows with the STILL-2 system prompt (the
same prompt is needed at inference for the thought section to appear); tokens are counted with the
student's tokenizer and chat template, samples over the cutoff are dropped, and a dataset card records
sizes, hashes and sources. A dataset too small for one optimizer step of the run's training fails here,
before the trainer is scheduled.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from reasoning_pipeline.batches import require_one_optimizer_step, training_sequences
from reasoning_pipeline.errors import StageError
from reasoning_pipeline.estimate import Sizes, estimate, student_shape
from reasoning_pipeline.progress import track
from reasoning_pipeline.spec import ReasoningRun, Stage
from reasoning_pipeline.stage_input import read_stage_input, require_text_fields
from reasoning_pipeline.storage import RunPaths, atomic_write_json, atomic_write_jsonl, sha256_file
from reasoning_pipeline.summary import Progress, StageSummary, now, output_of

SFT_FILE = "sft.jsonl"
CARD_FILE = "dataset-card.json"


def sharegpt_row(record: dict[str, Any], system_prompt: str) -> dict[str, Any]:
    return {
        "system": system_prompt,
        "conversations": [
            {"from": "user", "value": record["prompt"]},
            {"from": "assistant", "value": record["rewritten"]},
        ],
    }


def chat_messages(row: dict[str, Any]) -> list[dict[str, str]]:
    """A ShareGPT row as the chat messages a chat template takes (the trainer uses the same)."""
    roles = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}
    messages = [{"role": "system", "content": row["system"]}] if row.get("system") else []
    messages += [{"role": roles[turn["from"]], "content": turn["value"]} for turn in row["conversations"]]
    return messages


def load_tokenizer(name_or_path: str) -> Any:
    from transformers import AutoTokenizer  # heavy: only the stages that count tokens import it

    try:
        return AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as error:
        raise StageError(f"tokenizer {name_or_path!r} cannot be loaded: {error}") from error


def chat_token_ids(
    tokenizer: Any, messages: list[dict[str, str]], *, add_generation_prompt: bool = False
) -> list[int]:
    """Token ids of messages under the tokenizer's own chat template (what the model trains on)."""
    if not getattr(tokenizer, "chat_template", None):
        raise StageError("the tokenizer has no chat template: the student's template is what SFT must use")
    encoded = tokenizer.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=add_generation_prompt, return_dict=True
    )
    return list(encoded["input_ids"])


def token_count(tokenizer: Any, row: dict[str, Any]) -> int:
    return len(chat_token_ids(tokenizer, chat_messages(row)))


def percentile(sorted_values: list[int], fraction: float) -> int:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def token_statistics(lengths: list[int]) -> dict[str, Any]:
    if not lengths:
        return {"count": 0}
    ordered = sorted(lengths)
    return {
        "count": len(ordered),
        "mean": round(sum(ordered) / len(ordered), 1),
        "p50": percentile(ordered, 0.50),
        "p95": percentile(ordered, 0.95),
        "max": ordered[-1],
        "total": sum(ordered),
    }


def run(run: ReasoningRun, paths: RunPaths) -> StageSummary:
    started_at = now()
    spec = run.spec.format
    path, kept = read_stage_input(paths, spec.input_path, Stage.FILTER, "kept.jsonl", "format.inputPath")
    require_text_fields(path, kept, "id", "prompt", "rewritten")
    if not kept:
        raise StageError(f"{path}: no kept traces: the SFT dataset would be empty")
    tokenizer_name = spec.tokenizer or run.spec.training.base_model
    tokenizer = load_tokenizer(str(paths.resolve(tokenizer_name)) if spec.tokenizer else tokenizer_name)
    rows, lengths, dropped = [], [], 0
    sources: Counter[str] = Counter()
    for record in track(kept, len(kept), "format"):
        row = sharegpt_row(record, spec.system_prompt)
        length = token_count(tokenizer, row)
        if length > spec.max_tokens:
            dropped += 1
            continue
        rows.append(row)
        lengths.append(length)
        sources[str(record.get("source"))] += 1
    if not rows:
        raise StageError(f"every sample is longer than format.maxTokens ({spec.max_tokens} tokens)")
    training = run.spec.training
    if training.enabled and training.input_path is None:  # the trainer reads this dataset
        require_one_optimizer_step(training_sequences(lengths, training), training, training.world_size)
    stage_dir = paths.stage_dir(Stage.FORMAT)
    out = stage_dir / SFT_FILE
    atomic_write_jsonl(out, rows)
    statistics = token_statistics(lengths)
    card = {
        "name": f"{run.metadata.name}-sft",
        "format": "sharegpt",
        "samples": len(rows),
        "droppedOverCutoff": dropped,
        "cutoffTokens": spec.max_tokens,
        "tokenizer": tokenizer_name,
        "tokens": statistics,
        "sources": dict(sorted(sources.items())),
        "sha256": sha256_file(out),
        "input": {"path": str(path), "sha256": sha256_file(path)},
        "systemPrompt": spec.system_prompt,
    }
    atomic_write_json(stage_dir / CARD_FILE, card)
    return StageSummary(
        stage=Stage.FORMAT,
        phase="Succeeded",
        message=f"{len(rows)} SFT samples, {dropped} over {spec.max_tokens} tokens dropped; "
        f"tokens mean {statistics['mean']}, p95 {statistics['p95']}, max {statistics['max']}",
        started_at=started_at,
        finished_at=now(),
        progress=Progress(done=len(kept), total=len(kept)),
        outputs={"sft": output_of(out, paths.root, len(rows))},
        metrics={"tokens": statistics, "droppedOverCutoff": dropped, "sources": card["sources"]},
        estimate=estimate(
            run.spec,
            Sizes(
                prompts=0,
                sft_samples=len(rows),
                sft_tokens_per_sample=float(statistics["mean"]),
                student=student_shape(run.spec, paths),
            ),
            made_by=Stage.FORMAT,
        ),
    )
