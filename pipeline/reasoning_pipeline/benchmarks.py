"""Benchmarks in their published record formats, the prompts they are asked with, and how answers score.

Reproductions of Sky-T1 missed its scores by points because of prompt format, dtype and sampling, so each
benchmark here carries its exact prompt template; the evaluate stage records a hash of it with every score.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import pickle
import random
import re
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal

from reasoning_pipeline.errors import StageError
from reasoning_pipeline.prompts import APPS_CALL_BASED_PREFIX, APPS_STDIN_PREFIX, NUMINA_TEMPLATE

Scorer = Literal["math", "choice", "code"]
GPQA_TEMPLATE = (
    "Return your final response within \\boxed{{}} and only include the letter choice (A, B, C, or D) as "
    "your final response. {question}\n\n{choices}"
)
GPQA_SHUFFLE_SEED = 0
LETTERS = "ABCD"


@dataclass(frozen=True)
class Item:
    """One benchmark problem: its prompt, and what a response is scored against."""

    id: str
    prompt: str
    scorer: Scorer
    reference: str
    tests: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Benchmark:
    name: str
    template: str
    items: list[Item]

    @property
    def template_sha256(self) -> str:
        return hashlib.sha256(self.template.encode()).hexdigest()

    @property
    def items_sha256(self) -> str:
        canonical = json.dumps([vars(item) for item in self.items], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


def _require(row: dict[str, Any], name: str, where: str) -> Any:
    if not isinstance(row, dict) or row.get(name) is None:
        raise StageError(f"{where}: missing field {name!r}")
    return row[name]


def math_items(rows: list[tuple[str, dict[str, Any]]], *, year: str | None = None) -> list[Item]:
    """MATH500 rows (problem, solution, answer, unique_id) and AIME rows (id, problem, answer, url)."""
    items = []
    for where, row in rows:
        if year is not None and year not in str(row.get("url", "")):
            continue  # AI-MO's AIME validation set mixes years; AIME24 is its 2024 rows
        problem = str(_require(row, "problem", where))
        answer = str(_require(row, "answer", where))
        identifier = str(row.get("unique_id") or row.get("id") or where)
        items.append(Item(identifier, NUMINA_TEMPLATE.format(problem=problem), "math", answer))
    return items


def gpqa_items(rows: list[tuple[str, dict[str, Any]]]) -> list[Item]:
    """GPQA rows; the four choices are shuffled with a fixed seed per question, so runs compare."""
    items = []
    for index, (where, row) in enumerate(rows):
        question = str(_require(row, "Question", where)).strip()
        correct = str(_require(row, "Correct Answer", where)).strip()
        choices = [correct] + [str(_require(row, f"Incorrect Answer {n}", where)).strip() for n in (1, 2, 3)]
        random.Random(f"{GPQA_SHUFFLE_SEED}:{index}").shuffle(choices)
        letter = LETTERS[choices.index(correct)]
        listing = "\n".join(f"{LETTERS[n]}. {choice}" for n, choice in enumerate(choices))
        identifier = str(row.get("Record ID") or index)
        items.append(
            Item(identifier, GPQA_TEMPLATE.format(question=question, choices=listing), "choice", letter)
        )
    return items


def _decode_private_tests(value: Any) -> list[dict[str, Any]]:
    """LiveCodeBench stores private tests as JSON, or as base64(zlib(pickle(JSON string)))."""
    if not value:
        return []
    if isinstance(value, list):
        return value
    try:
        decoded: list[dict[str, Any]] = json.loads(value)
    except json.JSONDecodeError:
        decoded = json.loads(_unpickle_json_text(value))
    return decoded


class _PlainUnpickler(pickle.Unpickler):
    """Strings, numbers, lists and dicts only: any global a pickle asks for is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing {module}.{name}: the private tests are a pickled JSON string")


def _unpickle_json_text(value: str) -> str:
    """The dataset's own encoding of a JSON string, unpickled so that nothing but plain values can come
    out of it: a pickle that names any class or function is refused, not run."""
    try:
        raw = _PlainUnpickler(io.BytesIO(zlib.decompress(base64.b64decode(value)))).load()
    except (pickle.UnpicklingError, ValueError, zlib.error, EOFError) as error:
        raise StageError(f"LiveCodeBench private tests that do not decode: {error}") from error
    if not isinstance(raw, str):
        raise StageError(f"LiveCodeBench private tests decode to {type(raw).__name__}, not JSON text")
    return raw


def livecodebench_items(rows: list[tuple[str, dict[str, Any]]]) -> list[Item]:
    items = []
    for where, row in rows:
        content = str(_require(row, "question_content", where))
        public = row.get("public_test_cases") or "[]"
        cases = (json.loads(public) if isinstance(public, str) else public) + _decode_private_tests(
            row.get("private_test_cases")
        )
        if not cases:
            raise StageError(f"{where}: no test cases")
        metadata = json.loads(row.get("metadata") or "{}") if isinstance(row.get("metadata"), str) else {}
        functional = cases[0].get("testtype") == "functional"
        starter = str(row.get("starter_code") or "")
        if functional:
            fn_name = metadata.get("func_name")
            if not fn_name:
                raise StageError(f"{where}: a functional problem without metadata.func_name")
            tests = {
                "inputs": [[json.loads(line) for line in c["input"].splitlines()] for c in cases],
                "outputs": [json.loads(c["output"]) for c in cases],
                "fn_name": fn_name,
            }
            prompt = f"{APPS_CALL_BASED_PREFIX}{content}\n{starter}".rstrip() + "\n"
        else:
            tests = {"inputs": [c["input"] for c in cases], "outputs": [c["output"] for c in cases]}
            prompt = f"{APPS_STDIN_PREFIX}{content}"
        identifier = str(row.get("question_id") or where)
        difficulty = str(row.get("difficulty") or "")
        items.append(Item(identifier, prompt, "code", "", tests=tests, metadata={"difficulty": difficulty}))
    return items


TEMPLATES = {
    "math500": NUMINA_TEMPLATE,
    "aime24": NUMINA_TEMPLATE,
    "held-out": NUMINA_TEMPLATE,
    "gpqa-diamond": GPQA_TEMPLATE,
    "livecodebench": f"{APPS_STDIN_PREFIX}{{question}} | {APPS_CALL_BASED_PREFIX}{{question}}{{starter}}",
}


def build_benchmark(name: str, rows: list[tuple[str, dict[str, Any]]]) -> Benchmark:
    if name in ("math500", "held-out"):
        items = math_items(rows)
    elif name == "aime24":
        items = math_items(rows, year="2024")
    elif name == "gpqa-diamond":
        items = gpqa_items(rows)
    elif name == "livecodebench":
        items = livecodebench_items(rows)
    else:
        raise StageError(f"unknown benchmark {name!r}")
    if not items:
        raise StageError(f"benchmark {name}: no problems after loading")
    return Benchmark(name, TEMPLATES[name], items)


CHOICE_PATTERN = re.compile(r"\b([ABCD])\b")


def extract_choice(boxed: str | None, response: str) -> str | None:
    """The letter in the last \\boxed{}, else the last standalone A–D in the response."""
    for text in (boxed or "", response[-200:]):
        letters: list[str] = CHOICE_PATTERN.findall(text)
        if letters:
            return letters[-1]
    return None


def pass_at_k(samples: int, correct: int, k: int) -> float:
    """The unbiased estimator of Chen et al. (2021): 1 - C(n-c, k) / C(n, k)."""
    if samples - correct < k:
        return 1.0
    estimate = 1.0
    for remaining in range(samples - correct + 1, samples + 1):
        estimate *= 1.0 - k / remaining
    return 1.0 - estimate
