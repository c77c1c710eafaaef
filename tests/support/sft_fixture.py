"""A small SFT world for format/train tests: a tokenizer with a chat template, a random-init Qwen2 student
and ShareGPT rows of worked additions. Seconds to build, so stage tests need not wait for the tiny world.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from reasoning_pipeline.spec import STILL2_SYSTEM_PROMPT

SYSTEM = "Think, then answer."
# training.* of two CPU processes under torchrun: 4 samples a micro-batch × 2 micro-batches a step × 2
# processes = 16 samples an optimizer step
TWO_CPU_PROCESSES: dict[str, Any] = {
    "nodePool": "cpu",
    "gpusPerNode": 0,
    "processesPerNode": 2,
    "microBatchSize": 4,
    "gradientAccumulationSteps": 2,
    "globalBatchSize": 16,
}


def addition_rows(count: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        answer = (
            f"<|begin_of_thought|>\n\n{a} + {b}: ones {a % 10 + b % 10}, so {a + b}.\n\n"
            "<|end_of_thought|>\n\n"
            f"<|begin_of_solution|>\n\n\\boxed{{{a + b}}}\n\n<|end_of_solution|>"
        )
        rows.append(
            {
                "system": SYSTEM,
                "conversations": [
                    {"from": "user", "value": f"What is {a}+{b}?"},
                    {"from": "assistant", "value": answer},
                ],
            }
        )
    return rows


def build_student(directory: Path, rows: list[dict[str, Any]]) -> Path:
    """Tokenizer (trained on the rows) and a random-init two-layer Qwen2 model, saved for from_pretrained."""
    from reasoning_pipeline.tiny_world.tokenizer import save_tokenizer, train_tokenizer

    corpus = [turn["value"] for row in rows for turn in row["conversations"]] + [SYSTEM, STILL2_SYSTEM_PROMPT]
    tokenizer = save_tokenizer(
        train_tokenizer(corpus * 3, vocab_size=400),
        directory,
        default_system_prompt=SYSTEM,
        model_max_length=512,
    )
    qwen2_model(
        len(tokenizer),
        hidden=64,
        layers=2,
        max_positions=512,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    ).save_pretrained(directory)
    return directory


def qwen2_model(vocab_size: int, *, hidden: int, layers: int, max_positions: int, **more: Any) -> Any:
    """A random-init Qwen2ForCausalLM: heads of 16 dimensions, two query heads per key/value head, an MLP
    twice as wide as the model."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 16,
        num_key_value_heads=hidden // 32,
        max_position_embeddings=max_positions,
        **more,
    )
    return Qwen2ForCausalLM(config)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path
