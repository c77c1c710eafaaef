"""Math checks per second: the filter's throughput on answers shaped like the teacher's."""

from __future__ import annotations

import time

from reasoning_pipeline.filter.math import MathChecker

# (response, reference) shapes the teacher produces; numbers vary so no parse is ever cached
SHAPES = [
    ("so the answer is \\boxed{{\\frac{{{n}}}{{{m}}}}}", "$\\boxed{{\\frac{{{n}}}{{{m}}}}}$"),
    ("\\boxed{{{decimal}}}", "\\boxed{{\\frac{{{n}}}{{{m}}}}}"),
    ("\\boxed{{-\\sqrt{{{n}}}, \\sqrt{{{n}}}}}", "\\boxed{{\\pm \\sqrt{{{n}}}}}"),
    ("\\boxed{{x = {n}}}", "\\boxed{{{n}}}"),
    ("\\boxed{{{m}}}", "\\boxed{{{n}}}"),
    ("\\boxed{{{n}\\%}}", "{fraction}"),
    ("\\boxed{{({n}, {m})}}", "({n},{m})"),
    ("\\boxed{{{n}\\pi r^2}}", "{n} \\pi r^2"),
]
CHECKS = 1200


def answers() -> list[tuple[str, str]]:
    pairs = []
    for index in range(CHECKS):
        n, m = index + 2, index + 3
        values = {"n": n, "m": m, "decimal": round(n / m, 6), "fraction": n / 100}
        response, reference = SHAPES[index % len(SHAPES)]
        pairs.append((response.format(**values), reference.format(**values)))
    return pairs


def bench_math_checks_per_second() -> None:
    pairs = answers()
    for workers in (1, 2):
        with MathChecker(timeout_seconds=5, workers=workers) as checker:
            list(checker.check_many(pairs[:16]))  # start the workers and import sympy before timing
            started = time.monotonic()
            verdicts = list(checker.check_many(pairs))
            seconds = time.monotonic() - started
        kept = sum(v.correct for v in verdicts)
        print(
            f"\nmath checks, {workers} worker(s): {len(pairs) / seconds:6.0f} checks/s "
            f"({len(pairs) / seconds / workers:.0f} per core; {kept}/{len(pairs)} equivalent)"
        )
