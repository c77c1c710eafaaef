"""The tiny world's problems in real record formats, and the prompt the teacher is trained to answer.

NuminaMath-CoT rows: `problem`, `solution` (worked, with `\\boxed{}`), `messages` (user = the bare problem,
assistant = the solution), `source`. MATH500 rows: `problem`, `solution`, `answer`, `subject`, `level`,
`unique_id`. LiveCodeBench code_generation_lite rows: `question_title`, `question_content`, `platform`,
`question_id`, `contest_id`, `contest_date`, `starter_code`, `difficulty`, `public_test_cases` (JSON
text), `private_test_cases` (base64 of zlib of a pickled JSON text, as the dataset ships them),
`metadata` (JSON text). The prompt is the recipe's Numina user prompt and the teacher's system prompt is
the short QwQ one (RECIPE.md, "Data" and "Generation").
"""

from __future__ import annotations

import base64
import json
import pickle
import zlib
from typing import Any

from reasoning_pipeline.prompts import NUMINA_TEMPLATE, numina_prompt
from reasoning_pipeline.spec import QWEN_SYSTEM_PROMPT
from reasoning_pipeline.tiny_world.problems import SUBJECT, Operation, Problem, result_of

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


LIVECODEBENCH_DATE = "2024-08-01T00:00:00"  # inside release_v2's window, as the recipe pins it
PROGRAM_SYMBOL = {Operation.ADDITION: "+", Operation.SUBTRACTION: "-", Operation.MULTIPLICATION: "*"}


def livecodebench_private_tests(cases: list[dict[str, str]]) -> str:
    """The dataset's encoding of its hidden test cases: base64(zlib(pickle(JSON text)))."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(cases)))).decode()


def livecodebench_record(problem: Problem, index: int) -> dict[str, Any]:
    """A standard-input problem: the arithmetic problem, asked for every pair of operands. One public test
    case (the problem's own operands) and three hidden ones."""
    symbol = PROGRAM_SYMBOL[problem.operation]

    def case(left: int, right: int) -> dict[str, str]:
        result = result_of(problem.operation, left, right)
        return {"input": f"{left} {right}\n", "output": f"{result}\n", "testtype": "stdin"}

    hidden = [
        (problem.right, problem.left),
        (problem.left + 7, problem.right),
        (problem.left, problem.right + 3),
    ]
    return {
        "question_title": f"{problem.operation.value.capitalize()} of two integers",
        "question_content": f"{problem.question}\n\nWrite a program for any such pair: read two integers A "
        f"and B from standard input (one line, separated by a space) and print A {symbol} B.",
        "platform": "atcoder",
        "question_id": f"tiny{index:03d}_a",
        "contest_id": f"tiny{index:03d}",
        "contest_date": LIVECODEBENCH_DATE,
        "starter_code": "",
        "difficulty": "easy",
        "public_test_cases": json.dumps([case(problem.left, problem.right)]),
        "private_test_cases": livecodebench_private_tests([case(*pair) for pair in hidden]),
        "metadata": "{}",
    }
