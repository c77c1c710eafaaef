"""The math checker: last \\boxed{} answer, equivalence by math-verify, and `check math` on JSON Lines."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys

import pytest
from reasoning_pipeline.boxed import last_boxed
from reasoning_pipeline.filter.math import MathChecker, check_math


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a \\boxed{1} b \\boxed{\\frac{1}{2}} c", "\\frac{1}{2}"),
        ("x \\boxed {5}", "5"),
        ("\\boxed{\\left\\{ 1, 2 \\right\\}}", "\\left\\{ 1, 2 \\right\\}"),
        ("\\boxed{3} then \\boxed{4", "3"),
        ("\\fbox{7}", "7"),
        ("\\boxedx{3}", None),
        ("the answer is 55", None),
    ],
)
def test_last_boxed(text: str, expected: str | None) -> None:
    assert last_boxed(text) == expected


@pytest.mark.parametrize(
    ("response", "reference"),
    [
        ("so \\boxed{0.5}", "The answer: \\boxed{\\frac12}"),
        ("\\boxed{\\dfrac{5}{6}}", "$\\boxed{\\frac{5}{6}}$"),
        ("\\boxed{-\\sqrt2, \\sqrt{2}}", "$x = \\boxed{\\pm \\sqrt{2}}$"),
        ("\\boxed{\\{2, 1\\}}", "\\boxed{\\{1,2\\}}"),
        ("\\boxed{50\\%}", "0.5"),
        ("\\boxed{x=4}", "Subtract and divide: $x=\\boxed{4}$."),
        ("\\boxed{5 \\text{ cm}}", "5"),
        ("\\boxed{\\text{mixed}}", "\\boxed{\\text{mixed}}"),
        ("\\boxed{1.00001}", "1"),  # Sky-T1's relative tolerance 1e-4
        ("\\boxed{\\begin{pmatrix}1\\\\2\\end{pmatrix}}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
        ("\\boxed{B}", "B"),
    ],
)
def test_equivalent_answers_are_correct(response: str, reference: str) -> None:
    verdict = check_math(response, reference)
    assert verdict.correct, verdict


@pytest.mark.parametrize(
    ("response", "reference", "reason"),
    [
        ("\\boxed{56}", "\\boxed{55}", "not equivalent to the reference answer 55"),
        ("\\boxed{1.001}", "1", "not equivalent"),
        ("\\boxed{C}", "B", "not equivalent"),
        ("the answer is 55", "\\boxed{55}", "no \\boxed{} answer in the response"),
        ("\\boxed{}", "\\boxed{55}", "the \\boxed{} answer is empty"),
        ("\\boxed{9^{9^{9^{9}}}}", "5", "the comparison timed out after 1 s"),
    ],
)
def test_wrong_or_missing_answers_are_rejected_with_a_reason(
    response: str, reference: str, reason: str
) -> None:
    verdict = check_math(response, reference, timeout_seconds=1)
    assert not verdict.correct
    assert reason in verdict.reason


@pytest.mark.parametrize(
    ("response", "reference"),
    [
        # a condition on one variable is the set it describes, either way round
        ("x > 3", "(3, \\infty)"),
        ("(3,\\infty)", "x>3"),
        ("x \\geq 3", "[3, \\infty)"),
        ("-2 < x < 5", "(-2, 5)"),
        ("y > 3", "(3,\\infty)"),
        ("x \\neq 2", "(-\\infty,2)\\cup(2,\\infty)"),
        ("x^2 > 4", "(-\\infty,-2)\\cup(2,\\infty)"),
        ("x>3", "x \\in (3,\\infty)"),
        ("x \\le -1 \\text{ or } x \\ge 2", "(-\\infty,-1] \\cup [2,\\infty)"),
        ("(-\\infty,1)\\cup(2,\\infty)", "x<1 \\text{ or } x>2"),
        ("x<1 \\lor x>2", "(-\\infty,1)\\cup(2,\\infty)"),
        ("-1 \\le x < 2 \\text{ or } x \\geq 5", "[-1,2)\\cup[5,\\infty)"),
        ("x > 0 \\text{ and } x < 4 \\text{ or } x > 9", "(0,4)\\cup(9,\\infty)"),
        # trigonometric functions of degrees take degrees
        ("\\sin 75^\\circ", "\\frac{\\sqrt6+\\sqrt2}{4}"),
        ("\\tan(15^{\\circ})", "2-\\sqrt3"),
        ("\\sin 30°", "\\frac12"),
        ("\\frac{\\sqrt{3}}{2}", "\\sin 120^\\circ"),
        ("\\cos 20^\\circ\\cos 40^\\circ\\cos 80^\\circ", "\\frac18"),
        # i is the imaginary unit
        ("e^{i\\pi}", "-1"),
        ("e^{i\\pi/2}", "i"),
        ("(1+i)^2", "2i"),
        ("\\frac{1}{i}", "-i"),
        ("\\frac{e^{ix}+e^{-ix}}{2}", "\\cos x"),
        # closed forms and their simplified values: what sympy proves, and identities it misses
        ("\\tan 2x", "\\frac{2\\tan x}{1-\\tan^2 x}"),
        ("\\sin 3x", "3\\sin x - 4\\sin^3 x"),
        ("e^{2\\ln 3}", "9"),
        ("\\sqrt[3]{e^6}", "e^2"),
        ("\\cos\\frac{\\pi}{7}\\cos\\frac{2\\pi}{7}\\cos\\frac{4\\pi}{7}", "-\\frac18"),
        ("\\frac{x^2-1}{x-1}", "x+1"),
    ],
)
def test_forms_a_grader_accepts_are_correct(response: str, reference: str) -> None:
    verdict = check_math(f"\\boxed{{{response}}}", f"\\boxed{{{reference}}}")
    assert verdict.correct, verdict


@pytest.mark.parametrize(
    ("response", "reference"),
    [
        # near misses of the forms above stay wrong
        ("x > 3", "[3, \\infty)"),
        ("x \\geq 3", "(3, \\infty)"),
        ("x > 3", "(-\\infty, 3)"),
        ("x<1 \\text{ or } x > 2", "(1,2)"),
        ("x < 1 \\text{ and } x > 2", "(1,2)"),
        ("x > 3 \\text{ or } x < 5", "(3,5)"),
        ("x > 3 \\text{ and } y < 2", "(3,\\infty)"),
        ("x>3, x<5", "(3,5)"),  # a comma could be either connective: not read
        ("x^2 = 3x-2", "\\{1,2\\}"),  # an equation is not its solution set
        ("x>3", "\\{4,5\\}"),
        ("1 \\le x \\le 3", "\\{1,2,3\\}"),
        ("\\sin 75^\\circ", "\\sin 75"),
        ("\\sin 75", "\\sin 75^\\circ"),
        ("2\\pi", "360^\\circ"),  # an angle alone is its number
        ("\\cos 60^\\circ", "60"),
        ("e^{i\\pi}", "1"),
        ("e^{i\\pi}", "e^{\\pi}"),
        ("i", "1"),
        ("i^2", "1"),
        ("x + i", "x - i"),
        ("a_i", "a"),
        ("2\\sin x\\cos x", "\\cos 2x"),
        ("\\tan x", "\\cot x"),
        ("\\sqrt{x^2}", "x"),  # differ where x < 0
        ("|x|", "x"),
        ("\\ln(x^2)", "2\\ln x"),
        ("x^{100}+1", "x^{100}"),
        ("1000000001x", "1000000000x"),
        ("x+1.00001", "x+1"),
        ("\\sin x", "\\sin y"),
        ("f(x)", "f(y)"),
        ("100001", "100000"),  # integers are equal or not: Sky-T1's 1e-4 tolerance took these as equal
    ],
)
def test_near_misses_of_those_forms_stay_wrong(response: str, reference: str) -> None:
    verdict = check_math(f"\\boxed{{{response}}}", f"\\boxed{{{reference}}}")
    assert not verdict.correct, verdict
    assert "not equivalent" in verdict.reason


def test_pool_answers_in_order_and_survives_a_pathological_answer() -> None:
    pairs = [("\\boxed{9^{9^{9^{9}}}}", "5")] + [
        (f"\\boxed{{{n}}}", str(n if n % 3 else n + 1)) for n in range(20)
    ]
    with MathChecker(timeout_seconds=1, workers=2) as checker:
        verdicts = list(checker.check_many(pairs))
    assert [v.correct for v in verdicts] == [False] + [n % 3 != 0 for n in range(20)]
    assert [v.extracted for v in verdicts[1:]] == [str(n) for n in range(20)]


def test_check_math_cli_answers_every_line_in_order() -> None:
    lines = [
        {"response": "so \\boxed{0.5}", "reference": "\\boxed{\\frac12}"},
        "not json",
        {"response": "no box"},
        {"response": "\\boxed{3}", "reference": "4"},
        [1],
        {"response": "\\boxed{x}", "reference": 5},
        {"response": "no box here", "reference": "5"},
    ]
    stdin = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    result = subprocess.run(
        [sys.executable, "-m", "reasoning_pipeline", "check", "math", "--workers", "1"],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    )
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert answers == [
        {"correct": True, "extracted": "0.5", "reason": "equivalent to the reference"},
        {"error": "line 2: not valid JSON: Expecting value"},
        {"error": "line 3: field 'reference' missing"},
        {"correct": False, "extracted": "3", "reason": "not equivalent to the reference answer 4"},
        {"error": "line 5: expected a JSON object, got list"},
        {"error": "line 6: field 'reference' must be text, not int"},
        {"correct": False, "extracted": None, "reason": "no \\boxed{} answer in the response"},
    ]


def reference_last_boxed(text: str) -> str | None:
    """What last_boxed was before it was linear (a brace scan per box): the reference it must agree with."""
    for box in reversed(list(re.finditer(r"\\(?:boxed|fbox)(?![a-zA-Z])", text))):
        opening = box.end()
        while opening < len(text) and text[opening].isspace():
            opening += 1
        if opening < len(text) and text[opening] == "{":
            depth = 0
            for index in range(opening, len(text)):
                depth += {"{": 1, "}": -1}.get(text[index], 0)
                if depth == 0:
                    return text[opening + 1 : index].strip()
    return None


def test_last_boxed_finds_what_the_brace_scan_found() -> None:
    pieces = ["\\boxed", "\\fbox", "\\boxedx", "{", "}", " ", "1", "x", "\\frac{1}{2}", "\n"]
    generator = random.Random(11)
    for _ in range(5000):
        text = "".join(generator.choice(pieces) for _ in range(generator.randint(0, 12)))
        assert last_boxed(text) == reference_last_boxed(text), repr(text)


@pytest.mark.timeout(20)  # linear: milliseconds; a brace scan per box took 215 s at 200 KB, this is 10 × that
def test_thousands_of_unclosed_boxes_cost_what_their_length_does() -> None:
    assert last_boxed("\\boxed{" * 300_000) is None
    assert last_boxed("\\boxed{7} " + "\\boxed{" * 300_000) == "7"
