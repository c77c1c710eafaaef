"""What the code sandbox costs: one sandboxed run against a bare interpreter start, and how many sandboxed
test runs per second the checker's pool gets through on this machine."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

from reasoning_pipeline.filter.code import CodeChecker, CodeTests, parse_tests
from reasoning_pipeline.filter.sandbox import default_interpreter, isolation_level
from reasoning_pipeline.spec import CodeCheck

REPEATS = 40
# Timed in a process that imported only the sandbox, like a pool worker: every run forks the caller, and
# a fork costs more the more memory the caller has mapped (this pytest process, say).
SANDBOXED_PASS = f"""\
import time
from reasoning_pipeline.filter.sandbox import Sandbox
with Sandbox() as sandbox:
    sandbox.run("pass")
    started = time.perf_counter()
    for _ in range({REPEATS}):
        sandbox.run("pass")
    print((time.perf_counter() - started) / {REPEATS} * 1000)
"""


def _mean_ms(action: Callable[[], object]) -> float:
    action()  # warm caches
    started = time.perf_counter()
    for _ in range(REPEATS):
        action()
    return (time.perf_counter() - started) / REPEATS * 1000


def _runs_per_second(checker: CodeChecker, code: str, tests: CodeTests) -> tuple[float, bool]:
    problems = [(code, tests, None)] * 20
    list(checker.check_many(problems[:2]))
    started = time.perf_counter()
    verdicts = list(checker.check_many(problems))
    elapsed = time.perf_counter() - started
    return sum(verdict.tests_total for verdict in verdicts) / elapsed, all(v.passed for v in verdicts)


def bench_sandbox_overhead_and_test_runs_per_second() -> None:
    interpreter = default_interpreter()
    bare = _mean_ms(lambda: subprocess.run([interpreter, "-c", "pass"], check=True))
    bare_isolated = _mean_ms(lambda: subprocess.run([interpreter, "-I", "-S", "-c", "pass"], check=True))
    measured = subprocess.run(
        [sys.executable, "-c", SANDBOXED_PASS], check=True, capture_output=True, text=True
    )
    sandboxed = float(measured.stdout)
    print(f"\nsandbox: isolation level {isolation_level()}, interpreter {interpreter}, {os.cpu_count()} CPUs")
    print(f"bare `python3 -c pass`:                  {bare:6.1f} ms")
    print(f"bare `python3 -I -S -c pass`:            {bare_isolated:6.1f} ms")
    print(f"sandboxed run of `pass` (one at a time): {sandboxed:6.1f} ms")
    print(f"sandbox overhead over `-c pass`:         {sandboxed - bare:+6.1f} ms")
    print(f"sandbox overhead over `-I -S -c pass`:   {sandboxed - bare_isolated:+6.1f} ms")

    sums = {"inputs": [f"{n} {n}\n" for n in range(10)], "outputs": [str(2 * n) for n in range(10)]}
    calls = {
        "inputs": [[[n, n]] for n in range(10)],
        "outputs": [[2 * n] for n in range(10)],
        "fn_name": "total",
    }
    kinds = [
        ("standard input", "a, b = map(int, input().split())\nprint(a + b)", parse_tests(sums)),
        (
            "call-based",
            "class Solution:\n    def total(self, xs: List[int]) -> int:\n        return sum(xs)",
            parse_tests(calls),
        ),
    ]
    with CodeChecker(CodeCheck()) as checker:
        for kind, code, tests in kinds:
            rate, passed = _runs_per_second(checker, code, tests)
            workers = len(checker._workers)
            print(f"pool of {workers} workers, {kind:>14}: {rate:5.1f} test runs/s, all passed: {passed}")
