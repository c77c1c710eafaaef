"""Math rejection sampling: the response's last \\boxed{} answer against the reference, by math-verify.

math-verify normalises LaTeX (fractions, roots, units, text, percentages, sets, equations) and compares
numerically or symbolically; `answer_forms` adds the readings a grader makes that it does not (conditions as
sets, degrees in trigonometric functions, i as the imaginary unit, identities by sampling). math-verify bounds
each parse and comparison with `signal.alarm`, which only works in a process's main thread, so
`MathChecker` runs checks in worker processes.
"""

from __future__ import annotations

import cmath
import math
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import sympy
from math_verify import parse, verify

from reasoning_pipeline.boxed import last_boxed
from reasoning_pipeline.cpus import usable_cpus
from reasoning_pipeline.filter.answer_forms import (
    condition_set,
    degree_reading,
    equal_by_sampling,
    is_condition,
    with_degree_glyphs_as_signs,
    with_imaginary_unit,
)

RELATIVE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class MathVerdict:
    correct: bool
    extracted: str | None
    reason: str


def check_math(response: str, reference: str, timeout_seconds: float = 5) -> MathVerdict:
    """Call in a process's main thread (math-verify's timeouts use signal.alarm)."""
    answer = last_boxed(response)
    if answer is None:
        return MathVerdict(False, None, "no \\boxed{} answer in the response")
    if not answer:
        return MathVerdict(False, answer, "the \\boxed{} answer is empty")
    answer_text = with_degree_glyphs_as_signs(answer)
    gold_text = last_boxed(reference)
    gold_body = with_degree_glyphs_as_signs(gold_text if gold_text is not None else reference.strip())
    gold_source = f"\\boxed{{{gold_body}}}" if gold_text is not None else f"${gold_body}$"
    seconds = max(1, math.ceil(timeout_seconds))
    gold = _readings(gold_body, parse(gold_source, parsing_timeout=seconds), seconds)
    if not gold:
        return MathVerdict(False, answer, f"the reference answer could not be parsed: {reference[:80]!r}")
    predicted = _readings(answer_text, parse(f"\\boxed{{{answer_text}}}", parsing_timeout=seconds), seconds)
    if not predicted:
        return MathVerdict(False, answer, "the answer could not be parsed (or parsing timed out)")
    started = time.monotonic()
    # math-verify reads a set as a condition's answer by itself; the other way round only when asked
    conditions_as_sets = any(is_condition(candidate) for candidate in predicted)
    if verify(gold, predicted, timeout_seconds=seconds, allow_set_relation_comp=conditions_as_sets):
        return MathVerdict(True, answer, "equivalent to the reference")
    if time.monotonic() - started >= seconds * 0.95:
        return MathVerdict(False, answer, f"the comparison timed out after {seconds} s")
    if _numerically_close(gold[0], predicted[0]):
        return MathVerdict(True, answer, f"numerically equal to the reference within {RELATIVE_TOLERANCE:g}")
    with_unit = with_imaginary_unit(gold[0], predicted[0])
    if with_unit is not None and (
        verify([with_unit[0]], [with_unit[1]], timeout_seconds=seconds)
        or _numerically_close(*with_unit)
        or equal_by_sampling(*with_unit, seconds)
    ):
        return MathVerdict(True, answer, "equivalent to the reference with i the imaginary unit")
    if equal_by_sampling(gold[0], predicted[0], seconds):
        return MathVerdict(True, answer, "equal to the reference at every sample point (an identity)")
    return MathVerdict(False, answer, f"not equivalent to the reference answer {gold[-1]!s}")


def _readings(text: str, parsed: list[Any], seconds: int) -> list[Any]:
    """math-verify's parse, with degrees read as degrees and conditions joined by words as their set."""
    if not parsed:
        return parsed
    in_degrees = degree_reading(text, seconds)
    readings = parsed if in_degrees is None else [in_degrees, *(p for p in parsed if isinstance(p, str))]
    described = condition_set(text, seconds)
    return readings if described is None else [*readings, described]


def _numerically_close(gold: Any, predicted: Any) -> bool:
    """Sky-T1's checker accepted numbers within a relative 1e-4; math-verify rounds to 6 places instead.

    Two integers are never close, only equal: the tolerance is for rounded decimals, and it would take
    100001 for 100000."""
    if isinstance(gold, sympy.Integer) and isinstance(predicted, sympy.Integer):
        return False
    try:
        expected, got = complex(gold), complex(predicted)
    except (TypeError, ValueError):  # not plain numbers: sets, tuples, expressions with symbols, text
        return False
    return cmath.isclose(expected, got, rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-12)


def _check_pair(item: tuple[str, str, float]) -> MathVerdict:
    response, reference, timeout_seconds = item
    try:
        return check_math(response, reference, timeout_seconds)
    except Exception as error:  # sympy can fail in many ways; one bad answer must not stop the pool
        return MathVerdict(False, last_boxed(response), f"checker error: {type(error).__name__}: {error}")


class MathChecker:
    """Worker processes that check (response, reference) pairs, answers in input order."""

    def __init__(self, timeout_seconds: float = 5, workers: int = 0) -> None:
        self.timeout_seconds = timeout_seconds
        self._pool = ProcessPoolExecutor(max_workers=workers or usable_cpus())

    def check_many(self, pairs: Iterable[tuple[str, str]]) -> Iterator[MathVerdict]:
        items = ((response, reference, self.timeout_seconds) for response, reference in pairs)
        yield from self._pool.map(_check_pair, items, chunksize=8)

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)

    def __enter__(self) -> MathChecker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
