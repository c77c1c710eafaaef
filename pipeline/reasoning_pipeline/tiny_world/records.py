"""The tiny world's problems in real record formats, and the prompt the teacher is trained to answer.

NuminaMath-CoT rows: `problem`, `solution` (worked, with `\\boxed{}`), `messages` (user = the bare problem,
assistant = the solution), `source`. MATH500 rows: `problem`, `solution`, `answer`, `subject`, `level`,
`unique_id`. The prompt is the recipe's Numina user prompt and the teacher's system prompt is the short
QwQ one (RECIPE.md, "Data" and "Generation").
"""

from __future__ import annotations

from typing import Any

from reasoning_pipeline.prompts import NUMINA_TEMPLATE, numina_prompt
from reasoning_pipeline.spec import QWEN_SYSTEM_PROMPT
from reasoning_pipeline.tiny_world.problems import SUBJECT, Problem

NUMINA_SOURCE = "tiny_arith"
# The teacher is trained on exactly what the generate stage will send it.
TEACHER_SYSTEM_PROMPT = QWEN_SYSTEM_PROMPT
NUMINA_USER_TEMPLATE = NUMINA_TEMPLATE.format(problem="{problem}")


def chat_messages(problem: str, *, system_prompt: str | None = TEACHER_SYSTEM_PROMPT) -> list[dict[str, str]]:
    """The OpenAI-style messages a teacher is asked with (no system turn if `system_prompt` is None)."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt is not None else []
    return [*messages, {"role": "user", "content": numina_prompt(problem)}]


def numina_record(problem: Problem) -> dict[str, Any]:
    return {
        "problem": problem.question,
        "solution": problem.solution,
        "messages": [
            {"role": "user", "content": problem.question},
            {"role": "assistant", "content": problem.solution},
        ],
        "source": NUMINA_SOURCE,
    }


def math500_record(problem: Problem, index: int) -> dict[str, Any]:
    return {
        "problem": problem.question,
        "solution": problem.solution,
        "answer": problem.answer,
        "subject": SUBJECT,
        "level": problem.level,
        "unique_id": f"test/{SUBJECT.lower()}/tiny-{index:04d}.json",
    }
