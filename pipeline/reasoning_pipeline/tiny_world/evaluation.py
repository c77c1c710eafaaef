"""How good a tiny model is: sampled answers to held-out problems at the recipe's temperature."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import GenerationConfig, PreTrainedTokenizerBase, Qwen2ForCausalLM

from reasoning_pipeline.boxed import last_boxed
from reasoning_pipeline.tiny_world.problems import Problem, is_correct
from reasoning_pipeline.tiny_world.records import chat_messages
from reasoning_pipeline.tiny_world.training import render_prompts


@dataclass(frozen=True)
class Score:
    problems: int
    correct: int
    boxed: int  # responses with a final \boxed{} at all, right or wrong

    @property
    def accuracy(self) -> float:
        return self.correct / self.problems if self.problems else 0.0


def sample_completions(
    model: Qwen2ForCausalLM,
    tokenizer: PreTrainedTokenizerBase,
    conversations: Sequence[list[dict[str, str]]],
    *,
    generation_config: GenerationConfig,
    seed: int,
    batch_size: int = 50,
) -> list[str]:
    """One sampled assistant turn per conversation (the model's generation config, seeded per batch)."""
    completions: list[str] = []
    tokenizer.padding_side = "left"
    for start in range(0, len(conversations), batch_size):
        prompts = render_prompts(tokenizer, conversations[start : start + batch_size])
        inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        torch.manual_seed(seed + start)
        with torch.no_grad():
            output = model.generate(**inputs, generation_config=generation_config)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        completions.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return completions


def held_out_score(
    model: Qwen2ForCausalLM,
    tokenizer: PreTrainedTokenizerBase,
    problems: Sequence[Problem],
    *,
    system_prompt: str | None,
    seed: int,
    generation_config: GenerationConfig | None = None,
) -> Score:
    """Accuracy with `generation_config`, by default the model's own (T=0.7 sampling in the tiny world)."""
    completions = sample_completions(
        model,
        tokenizer,
        [chat_messages(problem.question, system_prompt=system_prompt) for problem in problems],
        generation_config=generation_config or model.generation_config,
        seed=seed,
    )
    return Score(
        problems=len(problems),
        correct=sum(
            is_correct(text, problem.answer) for text, problem in zip(completions, problems, strict=True)
        ),
        boxed=sum(last_boxed(text) is not None for text in completions),
    )
