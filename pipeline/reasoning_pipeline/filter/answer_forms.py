"""Readings of an answer that a grader makes and math-verify does not make by itself.

- A condition on one variable (`x > 3`, `-2 < x \\le 5`, `x < 1 \\text{ or } x > 2`, `x \\ne 2`) is the set
  it describes. math-verify reads "or" and "and" both as a comma, so the connectives are read here, from the
  text.
- A trigonometric function of degrees (`\\sin 75^\\circ`) takes its argument in degrees; math-verify drops the
  degree sign and computes the sine of 75 radians. An angle alone (`30^\\circ`) stays the number 30.
- `i` is the imaginary unit when the answers have no other use for it (math-verify keeps it a symbol, so
  `e^{i\\pi}` is not -1 there).
- Two expressions in the same variables are equal when they agree at every one of fixed sample points
  (identities `simplify` misses: `\\tan 2x` and `\\frac{2\\tan x}{1-\\tan^2 x}`), and are undefined at the
  same ones.

Each reading only adds a way to be equal that keeps the meaning; none makes an answer vaguer (`x > 3` is still
not `[3, \\infty)`, and a comma between conditions, which could mean either connective, is not read at all).
"""

from __future__ import annotations

import cmath
import re
from collections.abc import Callable
from typing import Any, TypeVar

import sympy
from latex2sympy2_extended import latex2sympy
from math_verify import parse
from math_verify.utils import timeout

DEGREE_GLYPHS = re.compile(r"°|\\degree(?![a-zA-Z])")
DEGREE_SIGN = re.compile(r"\^\s*\{?\s*\\circ(?![a-zA-Z])")
TRIGONOMETRIC = re.compile(r"\\(?:sin|cos|tan|cot|sec|csc)(?![a-zA-Z])")
CONNECTIVE = re.compile(
    r"\\(?:text|mbox|textrm|mathrm|textnormal)\s*\{\s*(or|and)\s*\}|\\(lor|vee|land|wedge)(?![a-zA-Z])"
)
OR_WORDS = {"or", "lor", "vee"}

# Irrational-looking points, away from the poles and branch cuts of the usual functions at small integers
SAMPLE_POINTS = (0.3719, -1.2113, 2.0347, -0.5821, 1.4729, -2.6617, 0.9103, -0.1377)
ENOUGH_DEFINED_POINTS = 5
AGREEMENT = 1e-15  # relative, on values computed to 30 digits: an identity agrees to ~1e-28
EVALUATION_DIGITS = 30

T = TypeVar("T")


def with_degree_glyphs_as_signs(text: str) -> str:
    """`75°` and `75\\degree` as `75^{\\circ}`, which the parsers know."""
    return DEGREE_GLYPHS.sub(r"^{\\circ}", text)


def _bounded(seconds: int, work: Callable[[], T]) -> T | None:
    """`work()` or None when it fails or takes longer than `seconds` (signal.alarm: the main thread only)."""
    try:
        result: T = timeout(timeout_seconds=seconds)(work)()
    except Exception:  # sympy and the LaTeX parser fail in many ways; a reading that fails is not a reading
        return None
    return result


def degree_reading(text: str, seconds: int) -> Any | None:
    """The expression with trigonometric arguments in degrees, when the text has both (else None)."""
    if not (TRIGONOMETRIC.search(text) and DEGREE_SIGN.search(text)):
        return None
    return _bounded(seconds, lambda: latex2sympy(text, is_real=True, convert_degrees=True))


def _condition(piece: str, seconds: int) -> Any | None:
    parsed = _bounded(seconds, lambda: parse(f"\\boxed{{{piece}}}", parsing_timeout=seconds))
    for candidate in parsed or []:
        if isinstance(candidate, sympy.Basic) and isinstance(
            candidate, sympy.core.relational.Relational | sympy.And | sympy.Or
        ):
            return candidate
    return None


def condition_set(text: str, seconds: int) -> sympy.Set | None:
    """The set that conditions joined by "or" and "and" describe ("and" binds tighter), on one variable.

    None when the text has no connective, a piece is not a condition, or the conditions name several
    variables (a region of the plane is not an interval)."""
    pieces = CONNECTIVE.split(text)
    if len(pieces) == 1:
        return None
    # split() interleaves the text between connectives with the two groups of each connective
    parts = pieces[0::3]
    words = [first or second for first, second in zip(pieces[1::3], pieces[2::3], strict=True)]
    found = [_condition(part.strip(), seconds) for part in parts]
    conditions = [condition for condition in found if condition is not None]
    if len(conditions) != len(found):
        return None
    variables = set().union(*(condition.free_symbols for condition in conditions))
    if len(variables) != 1:
        return None
    alternatives: list[list[Any]] = [[conditions[0]]]
    for word, condition in zip(words, conditions[1:], strict=True):
        if word in OR_WORDS:
            alternatives.append([condition])
        else:
            alternatives[-1].append(condition)
    formula = sympy.Or(*(sympy.And(*group) for group in alternatives))
    described = _bounded(seconds, formula.as_set)
    return described if isinstance(described, sympy.Set) else None


def is_condition(expression: object) -> bool:
    """An inequality, or inequalities joined by And/Or: what a set can be written as (an equation is not:
    `x^2 = 3x - 2` is not an answer of {1, 2})."""
    if isinstance(expression, sympy.And | sympy.Or):
        return all(is_condition(argument) for argument in expression.args)
    return isinstance(expression, sympy.core.relational.Relational) and not isinstance(
        expression, sympy.Equality
    )


def _named_i(expression: sympy.Basic) -> set[sympy.Symbol]:
    return {symbol for symbol in expression.free_symbols if getattr(symbol, "name", None) == "i"}


def with_imaginary_unit(gold: Any, predicted: Any) -> tuple[Any, Any] | None:
    """Both with the symbol i replaced by the imaginary unit, when one has it and both have the same other
    variables (else None: i is then an index or a variable, not the unit)."""
    if not (isinstance(gold, sympy.Basic) and isinstance(predicted, sympy.Basic)):
        return None
    gold_i, predicted_i = _named_i(gold), _named_i(predicted)
    if not (gold_i or predicted_i):
        return None
    if gold.free_symbols - gold_i != predicted.free_symbols - predicted_i:
        return None
    return (
        gold.subs({symbol: sympy.I for symbol in gold_i}),
        predicted.subs({symbol: sympy.I for symbol in predicted_i}),
    )


def _value(expression: sympy.Expr, point: dict[sympy.Symbol, float]) -> complex | None:
    try:
        value = complex(expression.evalf(EVALUATION_DIGITS, subs=point))
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):  # symbolic leftovers, zoo, nan
        return None
    return value if cmath.isfinite(value) else None


def _same_value(first: complex, second: complex) -> bool:
    return abs(first - second) <= AGREEMENT * max(1.0, abs(first), abs(second))


def agree_everywhere_sampled(gold: Any, predicted: Any) -> bool:
    """Equal values at every sample point where either is defined (and defined at the same points), enough
    of them defined. Only for plain expressions in the same variables; sets, relations and matrices are not
    values."""
    if not (isinstance(gold, sympy.Expr) and isinstance(predicted, sympy.Expr)):
        return False
    variables = sorted(gold.free_symbols, key=str)
    if set(variables) != predicted.free_symbols:
        return False
    defined = 0
    for shift in range(len(SAMPLE_POINTS)):
        point = {
            variable: SAMPLE_POINTS[(shift + 3 * index) % len(SAMPLE_POINTS)]
            for index, variable in enumerate(variables)
        }
        expected, got = _value(gold, point), _value(predicted, point)
        if (expected is None) != (got is None):
            return False
        if expected is None or got is None:
            continue
        if not _same_value(expected, got):
            return False
        defined += 1
        if not variables:  # a constant has one value; one point says it all
            return True
    return defined >= ENOUGH_DEFINED_POINTS


def equal_by_sampling(gold: Any, predicted: Any, seconds: int) -> bool:
    return bool(_bounded(seconds, lambda: agree_everywhere_sampled(gold, predicted)))
