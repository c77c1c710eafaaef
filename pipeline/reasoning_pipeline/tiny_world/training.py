"""Supervised fine-tuning of a tiny causal LM on chat examples, loss on the assistant's tokens only.

The prompt is tokenized from the chat template exactly as a server renders it (`add_generation_prompt`),
and the completion separately, so what the model learns to continue is byte for byte what it is asked
at serving time.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase, Qwen2ForCausalLM

from reasoning_pipeline.tiny_world.tokenizer import IM_END

IGNORE_INDEX = -100


@dataclass(frozen=True)
class ChatExample:
    messages: list[dict[str, str]]  # the conversation up to the assistant's turn
    completion: str  # the assistant's answer


@dataclass(frozen=True)
class EncodedExample:
    input_ids: list[int]
    labels: list[int]


@dataclass(frozen=True)
class TrainingReport:
    steps: int
    examples: int
    seconds: float
    first_loss: float
    final_loss: float  # mean over the last tenth of the steps


def render_prompts(
    tokenizer: PreTrainedTokenizerBase, conversations: Sequence[list[dict[str, str]]]
) -> list[str]:
    prompts: list[str] = []
    for messages in conversations:
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert isinstance(prompt, str)
        prompts.append(prompt)
    return prompts


def encode_examples(
    tokenizer: PreTrainedTokenizerBase, examples: Sequence[ChatExample]
) -> list[EncodedExample]:
    prompts = render_prompts(tokenizer, [example.messages for example in examples])
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(
        [example.completion + IM_END for example in examples], add_special_tokens=False
    )["input_ids"]
    return [
        EncodedExample(
            input_ids=[*prompt, *completion], labels=[IGNORE_INDEX] * len(prompt) + list(completion)
        )
        for prompt, completion in zip(prompt_ids, completion_ids, strict=True)
    ]


def _batch(examples: Sequence[EncodedExample], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(example.input_ids) for example in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        length = len(example.input_ids)
        input_ids[row, :length] = torch.tensor(example.input_ids)
        labels[row, :length] = torch.tensor(example.labels)
        attention_mask[row, :length] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def _length_bucketed_batches(
    pool: list[EncodedExample], batch_size: int, order: random.Random
) -> list[list[EncodedExample]]:
    """One shuffled pass over `pool` in batches of similar lengths: padding is compute on two cores."""
    order.shuffle(pool)
    batches: list[list[EncodedExample]] = []
    window = batch_size * 16
    for start in range(0, len(pool) - batch_size + 1, window):
        chunk = sorted(pool[start : start + window], key=lambda example: len(example.input_ids))
        batches.extend(
            chunk[offset : offset + batch_size]
            for offset in range(0, len(chunk) - batch_size + 1, batch_size)
        )
    order.shuffle(batches)
    return batches


def _warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def train_causal_lm(
    model: Qwen2ForCausalLM,
    examples: Sequence[EncodedExample],
    *,
    steps: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    pad_id: int,
    log: Callable[[str], None] = lambda line: None,
) -> TrainingReport:
    """`steps` AdamW steps on batches drawn in a seeded order (the examples are cycled if too few)."""
    torch.manual_seed(seed)
    order = random.Random(seed)
    pool = list(examples)
    if len(pool) < batch_size:
        raise ValueError(f"{len(pool)} examples cannot fill a batch of {batch_size}")
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, betas=(0.9, 0.98), weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(max(1, steps // 20), steps))
    losses: list[float] = []
    started = time.monotonic()
    batches: list[list[EncodedExample]] = []
    for step in range(steps):
        if not batches:
            batches = _length_bucketed_batches(pool, batch_size, order)
        batch = batches.pop()
        loss = model(**_batch(batch, pad_id)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(float(loss.item()))
        if (step + 1) % 50 == 0 or step + 1 == steps:
            log(f"step {step + 1}/{steps} loss {losses[-1]:.3f} ({time.monotonic() - started:.0f} s)")
    model.eval()  # type: ignore[no-untyped-call]
    tail = losses[-max(1, steps // 10) :]
    return TrainingReport(
        steps=steps,
        examples=steps * batch_size,
        seconds=round(time.monotonic() - started, 1),
        first_loss=losses[0],
        final_loss=sum(tail) / len(tail),
    )
