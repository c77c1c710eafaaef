"""Math rejection sampling: the response's last \\boxed{} answer against the reference, by math-verify.

math-verify normalises LaTeX (fractions, roots, units, text, percentages, sets, equations) and compares
numerically or symbolically; it bounds each parse and comparison with `signal.alarm`, which only works in a
process's main thread, so `MathChecker` runs checks in worker processes.
"""

from __future__ import annotations

import cmath
import math
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from math_verify import parse, verify

from reasoning_pipeline.boxed import last_boxed
from reasoning_pipeline.cpus import usable_cpus

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
    gold_text = last_boxed(reference)
    gold_source = f"\\boxed{{{gold_text}}}" if gold_text is not None else f"${reference.strip()}$"
    seconds = max(1, math.ceil(timeout_seconds))
    gold = parse(gold_source, parsing_timeout=seconds)
    if not gold:
        return MathVerdict(False, answer, f"the reference answer could not be parsed: {reference[:80]!r}")
    predicted = parse(f"\\boxed{{{answer}}}", parsing_timeout=seconds)
    if not predicted:
        return MathVerdict(False, answer, "the answer could not be parsed (or parsing timed out)")
    started = time.monotonic()
    if verify(gold, predicted, timeout_seconds=seconds):
        return MathVerdict(True, answer, "equivalent to the reference")
    if time.monotonic() - started >= seconds * 0.95:
        return MathVerdict(False, answer, f"the comparison timed out after {seconds} s")
    if _numerically_close(gold[0], predicted[0]):
        return MathVerdict(True, answer, f"numerically equal to the reference within {RELATIVE_TOLERANCE:g}")
    return MathVerdict(False, answer, f"not equivalent to the reference answer {gold[-1]!s}")


def _numerically_close(gold: Any, predicted: Any) -> bool:
    """Sky-T1's checker accepted numbers within a relative 1e-4; math-verify rounds to 6 places instead."""
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
