"""`reasoning-pipeline check math|code`: the filter's verdicts for JSON Lines on stdin, one out per line in.

Users debug filter decisions with these, and outside suites test the checkers through them. A bad input
line gets an error line of its own (`{"error": "line N: …"}`); every other line is still answered, in order.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from itertools import islice
from typing import IO, Any

from reasoning_pipeline.filter.math import MathChecker
from reasoning_pipeline.spec import CodeCheck, MathCheck

BATCH = 256


def _numbered_objects(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            yield number, f"line {number}: not valid JSON: {error.msg}"
            continue
        if not isinstance(value, dict):
            yield number, f"line {number}: expected a JSON object, got {type(value).__name__}"
            continue
        yield number, value


def _text_field(record: dict[str, Any], name: str, number: int) -> str:
    value = record.get(name)
    if not isinstance(value, str):
        missing = "missing" if name not in record else f"must be text, not {type(value).__name__}"
        raise ValueError(f"line {number}: field {name!r} {missing}")
    return value


def _answer_lines(
    lines: Iterable[str],
    out: IO[str],
    to_task: Callable[[dict[str, Any], int], Any],
    check_batch: Callable[[list[Any]], Iterator[dict[str, Any]]],
) -> int:
    """Reads, validates, checks in batches and writes in input order; returns the number of bad lines."""
    bad = 0
    numbered = _numbered_objects(lines)
    while batch := list(islice(numbered, BATCH)):
        parsed: list[tuple[bool, Any]] = []
        for number, value in batch:
            if isinstance(value, str):
                parsed.append((False, value))
                continue
            try:
                parsed.append((True, to_task(value, number)))
            except ValueError as error:
                parsed.append((False, str(error)))
        verdicts = check_batch([task for ok, task in parsed if ok])
        for ok, task in parsed:
            if ok:
                out.write(json.dumps(next(verdicts), ensure_ascii=False) + "\n")
            else:
                bad += 1
                out.write(json.dumps({"error": task}, ensure_ascii=False) + "\n")
        out.flush()
    return bad


def check_math_lines(lines: Iterable[str], out: IO[str], limits: MathCheck, workers: int = 0) -> int:
    def to_task(record: dict[str, Any], number: int) -> tuple[str, str]:
        return _text_field(record, "response", number), _text_field(record, "reference", number)

    with MathChecker(limits.timeout_seconds, workers) as checker:
        return _answer_lines(
            lines, out, to_task, lambda tasks: (asdict(v) for v in checker.check_many(tasks))
        )


def check_code_lines(lines: Iterable[str], out: IO[str], limits: CodeCheck, workers: int = 0) -> int:
    from reasoning_pipeline.filter.code import CodeChecker, extract_code, no_code_verdict, parse_tests

    def to_task(record: dict[str, Any], number: int) -> tuple[str | None, Any]:
        code = (
            _text_field(record, "code", number)
            if "code" in record
            else extract_code(_text_field(record, "response", number))
        )
        if "tests" not in record:
            raise ValueError(f"line {number}: field 'tests' missing")
        try:
            return code, parse_tests(record["tests"])
        except ValueError as error:
            raise ValueError(f"line {number}: field 'tests': {error}") from error

    def check_batch(tasks: list[tuple[str | None, Any]]) -> Iterator[dict[str, Any]]:
        # a response without a code block is a well-formed input that fails, not a bad line
        verdicts = checker.check_many((code, tests, None) for code, tests in tasks if code is not None)
        for code, tests in tasks:
            yield asdict(no_code_verdict(tests) if code is None else next(verdicts))

    with CodeChecker(limits, workers) as checker:
        return _answer_lines(lines, out, to_task, check_batch)


def main(kind: str, workers: int = 0) -> int:
    if kind == "math":
        check_math_lines(sys.stdin, sys.stdout, MathCheck(), workers)
    else:
        check_code_lines(sys.stdin, sys.stdout, CodeCheck(), workers)
    return 0
