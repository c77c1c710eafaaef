"""Code rejection sampling: a response is kept only when its code passes ALL of the problem's tests.

What is checked (RECIPE.md, "Rejection sampling"):

* The candidate is the last fenced code block of the response (tagged python, py, python3, or untagged).
* Every test runs in the sandbox (`sandbox.py`), one sandboxed run per test; the first failing test ends
  the check. Each test has `test_timeout_seconds` of wall-clock time, and all tests of a problem share a
  budget (`problem_timeout_seconds`, 10 s for APPS; TACO callers pass `taco_problem_timeout_seconds`).
* Standard-input problems: the test's input on stdin, stdout compared the way the APPS/TACO graders are
  lenient: trailing whitespace of each line and trailing blank lines do not count; failing that, the
  whitespace-separated tokens must match one by one, where two integers must be equal and other numbers
  may differ by a relative 1e-4 (or 1e-6 absolute, for answers near zero).
* Call-based problems (`fn_name`): a runner inside the sandbox loads the code as a module (after the
  imports LeetCode and the TACO grader provide: typing, collections, heapq, ...), calls `fn_name` (a
  module-level function, or `Solution().fn_name` when the code defines such a class) with the test's
  positional arguments, and prints the JSON of the result. Results compare as JSON values (a tuple
  equals a list), numbers as above, and an expected `[value]` also accepts `value` (APPS and TACO wrap
  most expected outputs in a one-element list).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from reasoning_pipeline.cpus import usable_cpus
from reasoning_pipeline.errors import StageError
from reasoning_pipeline.filter.sandbox import (
    IsolationLevel,
    Sandbox,
    SandboxError,
    SandboxLimits,
    SandboxResult,
    default_interpreter,
    probe_isolation,
)
from reasoning_pipeline.filter.sandbox_channel import SandboxHost, shared_host

if TYPE_CHECKING:
    from reasoning_pipeline.spec import CodeCheck

REL_TOL = 1e-4
ABS_TOL = 1e-6
_FENCE = "```"
_FENCE_TAG = re.compile(r"[ \t]*([\w+#.-]*)")
_PYTHON_TAGS = {"", "python", "py", "python3"}
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_RESULT_MARK = "@@sandbox-result@@ "
# What LeetCode-style code expects to find imported (`List[int]`, `deque`, `heappush`, `lru_cache` ...).
_CALL_HEADER = """\
from typing import *
from collections import *
from heapq import *
from bisect import *
from itertools import *
from functools import *
import bisect, collections, functools, heapq, itertools, math, re, string, sys
"""
# Runs inside the sandbox as main.py, next to the candidate's solution.py. The candidate's prints go to
# stderr so that stdout carries only the result line.
_CALL_RUNNER = f"""\
import json, sys
request = json.loads(sys.stdin.read())
result_stream, sys.stdout = sys.stdout, sys.stderr
module = type(sys)("solution")
module.__file__ = "solution.py"
sys.modules["solution"] = module
exec({_CALL_HEADER!r}, module.__dict__)
with open("solution.py", encoding="utf-8") as file:
    exec(compile(file.read(), "solution.py", "exec"), module.__dict__)
name = request["fn_name"]
solution = module.__dict__.get("Solution")
if isinstance(solution, type) and hasattr(solution, name):
    function = getattr(solution(), name)
elif callable(module.__dict__.get(name)):
    function = module.__dict__[name]
else:
    sys.exit(f"function {{name!r}} is not defined")
result = function(*request["args"])

def plain(value):
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, (set, frozenset)):
        items = [plain(item) for item in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, dict):
        return {{key if isinstance(key, str) else str(key): plain(item) for key, item in value.items()}}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)

result_stream.write({_RESULT_MARK!r} + json.dumps(plain(result)) + "\\n")
result_stream.flush()
"""


@dataclass(frozen=True)
class CodeTests:
    inputs: list[Any]
    """Stdin texts, or (call-based) each call's positional arguments."""
    outputs: list[Any]
    fn_name: str | None = None
    """Set: call this function (or `Solution().fn_name`) instead of feeding stdin."""


@dataclass(frozen=True)
class CodeVerdict:
    passed: bool
    tests_passed: int
    tests_total: int
    reason: str


def fenced_blocks(response: str) -> Iterator[tuple[str, str]]:
    """(tag, body) of each ``` block: the tag is what follows the opening fence on its line, the body runs
    from the next line to the next fence. One pass over the text: a response of thousands of fences that
    never close costs what its length does (a lazy regular expression rescanned the rest per fence)."""
    start = response.find(_FENCE)
    while start != -1:
        line_end = response.find("\n", start + len(_FENCE))
        if line_end == -1:
            return
        end = response.find(_FENCE, line_end + 1)
        if end == -1:
            return
        tag = _FENCE_TAG.match(response, start + len(_FENCE), line_end)
        yield (tag.group(1) if tag else ""), response[line_end + 1 : end]
        start = response.find(_FENCE, end + len(_FENCE))


def extract_code(response: str) -> str | None:
    """The last fenced Python (or untagged) code block of a response; None when there is none."""
    blocks = [body for tag, body in fenced_blocks(response) if tag.lower() in _PYTHON_TAGS]
    return blocks[-1] if blocks else None


def no_code_verdict(tests: CodeTests) -> CodeVerdict:
    return CodeVerdict(False, 0, len(tests.inputs), "no code block in response")


def parse_tests(raw: Any) -> CodeTests:
    """APPS/TACO `input_output`: a JSON text or an object with inputs, outputs and optionally fn_name."""
    if isinstance(raw, CodeTests):
        return raw
    if isinstance(raw, str | bytes):
        try:
            raw = json_value(raw)
        except json.JSONDecodeError as error:
            raise ValueError(f"tests are not valid JSON: {error.msg}") from error
    if not isinstance(raw, dict):
        raise ValueError(f"tests must be an object with 'inputs' and 'outputs', not {type(raw).__name__}")
    inputs, outputs = raw.get("inputs"), raw.get("outputs")
    for name, value in (("inputs", inputs), ("outputs", outputs)):
        if not isinstance(value, list):
            missing = "missing" if value is None else f"a {type(value).__name__}"
            raise ValueError(f"tests need a list '{name}', got {missing}")
    assert isinstance(inputs, list)
    assert isinstance(outputs, list)
    if len(inputs) != len(outputs):
        raise ValueError(f"tests have {len(inputs)} inputs but {len(outputs)} outputs")
    if not inputs:
        raise ValueError("tests have no cases")
    fn_name = raw.get("fn_name") or None
    if fn_name is not None:
        if not isinstance(fn_name, str) or not fn_name.isidentifier():
            raise ValueError(f"fn_name must be a Python identifier, got {fn_name!r}")
        return CodeTests(list(inputs), list(outputs), fn_name)
    return CodeTests(
        [_stdin_text(value, "input", number) for number, value in enumerate(inputs, 1)],
        [_stdin_text(value, "output", number) for number, value in enumerate(outputs, 1)],
    )


def _stdin_text(value: Any, what: str, number: int) -> str:
    # TACO stores some standard-input cases as lists of lines
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        return "\n".join(value)
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ValueError(
        f"test {number}: {what} of a standard-input problem must be text, not {type(value).__name__}"
    )


# ------------------------------------------------------------------------------------ comparing
def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def canonical_integer(text: str) -> str:
    """An integer's text without a plus sign or leading zeros ("-0" is "0"): equal texts, equal values."""
    negative = text.startswith("-")
    digits = text.lstrip("+-").lstrip("0") or "0"
    return f"-{digits}" if negative and digits != "0" else digits


class LongInteger(str):
    """A JSON integer longer than int() takes (Python's int-string limit), kept as its canonical digits:
    a program's result may be one, and so may a test's expected value."""


# Python's default limit (sys.get_int_max_str_digits) is 4,300 digits; this leaves a sign's room
_LONGEST_INT_PARSED = 4000


def _json_integer(text: str) -> int | LongInteger:
    return int(text) if len(text) <= _LONGEST_INT_PARSED else LongInteger(canonical_integer(text))


def json_value(text: str | bytes) -> Any:
    """json.loads, with integers of any length (too long for int() they become LongInteger)."""
    return json.loads(text, parse_int=_json_integer)


def json_text(value: Any) -> str:
    """json.dumps, writing a LongInteger as the number it is (json.dumps would quote it)."""
    if isinstance(value, LongInteger):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(json_text(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{json_text(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def _integer_text(value: Any) -> str | None:
    if isinstance(value, LongInteger):
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _tokens_match(expected: str, got: str) -> bool:
    if expected == got:
        return True
    if not (_NUMBER.fullmatch(expected) and _NUMBER.fullmatch(got)):
        return False
    if _INTEGER.fullmatch(expected) and _INTEGER.fullmatch(got):
        # a big integer answer must be exact; compared as digits: int() refuses more than 4,300 of them
        # (Python's int-string limit) and is quadratic below it
        return canonical_integer(expected) == canonical_integer(got)
    return math.isclose(float(expected), float(got), rel_tol=REL_TOL, abs_tol=ABS_TOL)


def outputs_match(expected: str, got: str) -> bool:
    """Standard-output comparison as lenient as the APPS/TACO graders (see the module's docstring)."""
    if _lines(expected) == _lines(got):
        return True
    expected_tokens, got_tokens = expected.split(), got.split()
    return len(expected_tokens) == len(got_tokens) and all(
        _tokens_match(e, g) for e, g in zip(expected_tokens, got_tokens, strict=True)
    )


def values_match(expected: Any, got: Any) -> bool:
    """Call-based comparison of JSON values; an expected one-element list also accepts its element."""
    if _value_matches(expected, got):
        return True
    return isinstance(expected, list) and len(expected) == 1 and _value_matches(expected[0], got)


def _value_matches(expected: Any, got: Any) -> bool:
    if isinstance(expected, LongInteger) or isinstance(got, LongInteger):
        expected_digits, got_digits = _integer_text(expected), _integer_text(got)
        return expected_digits is not None and expected_digits == got_digits
    if isinstance(expected, bool) or isinstance(got, bool):
        return type(expected) is type(got) and expected == got
    if isinstance(expected, int | float) and isinstance(got, int | float):
        if isinstance(expected, int) and isinstance(got, int):
            return expected == got
        return math.isclose(expected, got, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    if isinstance(expected, list | tuple) and isinstance(got, list | tuple):
        return len(expected) == len(got) and all(
            _value_matches(e, g) for e, g in zip(expected, got, strict=True)
        )
    if isinstance(expected, dict) and isinstance(got, dict):
        return expected.keys() == got.keys() and all(_value_matches(expected[k], got[k]) for k in expected)
    return bool(expected == got)


def _shown(value: str, limit: int = 40) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "…")


def _output_difference(expected: str, got: str) -> str:
    expected_lines, got_lines = _lines(expected), _lines(got)
    if not got_lines:
        return f"expected {_shown(expected.strip())}, got no output"
    if len(expected_lines) <= 1 and len(got_lines) <= 1:
        return f"expected {_shown(expected.strip())}, got {_shown(got.strip())}"
    for number, (e, g) in enumerate(zip(expected_lines, got_lines, strict=False), 1):
        if e != g:
            return f"line {number}: expected {_shown(e)}, got {_shown(g)}"
    return f"expected {len(expected_lines)} lines, got {len(got_lines)}"


def _json_shown(value: Any) -> str:
    return _shown(json_text(value), 60)


# ------------------------------------------------------------------------------------ checking
@dataclass(frozen=True)
class _Budget:
    """The limits of one check, as plain numbers (workers need no pydantic)."""

    test_seconds: float
    problem_seconds: float
    memory_bytes: int
    max_processes: int
    max_output_bytes: int

    @classmethod
    def of(cls, limits: CodeCheck, problem_timeout: float | None) -> _Budget:
        return cls(
            float(limits.test_timeout_seconds),
            float(problem_timeout or limits.problem_timeout_seconds),
            int(limits.memory_mb) << 20,
            int(limits.max_processes),
            int(limits.max_output_bytes),
        )

    def sandbox_limits(self, wall_seconds: float) -> SandboxLimits:
        return SandboxLimits(
            wall_seconds=wall_seconds,
            memory_bytes=self.memory_bytes,
            max_processes=self.max_processes,
            max_output_bytes=self.max_output_bytes,
        )


def check_code(
    code: str,
    tests: CodeTests,
    limits: CodeCheck,
    *,
    problem_timeout: float | None = None,
    sandbox: Sandbox | None = None,
) -> CodeVerdict:
    """Runs `code` against every test in the sandbox; stops at the first failure."""
    budget = _Budget.of(limits, problem_timeout)
    if sandbox is not None:
        return _check(code, tests, budget, sandbox)
    with Sandbox() as own_sandbox:
        return _check(code, tests, budget, own_sandbox)


def check_response(
    response: str, tests: CodeTests, limits: CodeCheck, *, problem_timeout: float | None = None
) -> CodeVerdict:
    """`check_code` on the response's last code block; a response without one fails."""
    code = extract_code(response)
    if code is None:
        return no_code_verdict(tests)
    return check_code(code, tests, limits, problem_timeout=problem_timeout)


def _check(code: str, tests: CodeTests, budget: _Budget, sandbox: Sandbox) -> CodeVerdict:
    total = len(tests.inputs)
    deadline = time.monotonic() + budget.problem_seconds
    for number, (given, expected) in enumerate(zip(tests.inputs, tests.outputs, strict=True), 1):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            why = (
                f"problem time limit {budget.problem_seconds:g}s exceeded after {number - 1} of {total} tests"
            )
            return CodeVerdict(False, number - 1, total, why)
        wall = min(budget.test_seconds, remaining)
        limits = budget.sandbox_limits(wall)
        if tests.fn_name is None:
            result = sandbox.run(code, str(given), limits)
        else:
            arguments = given if isinstance(given, list) else [given]
            request = json_text({"fn_name": tests.fn_name, "args": arguments})
            result = sandbox.run(_CALL_RUNNER, request, limits, files={"solution.py": code})
        failure = _failure(result, tests.fn_name is not None, expected)
        if failure is not None:
            if result.timed_out and wall < budget.test_seconds:
                failure = f"problem time limit {budget.problem_seconds:g}s exceeded"
            elif result.timed_out:
                failure = f"time limit {budget.test_seconds:g}s exceeded"
            return CodeVerdict(False, number - 1, total, f"test {number}: {failure}")
    return CodeVerdict(True, total, total, f"all {total} tests passed" if total != 1 else "the test passed")


def _failure(result: SandboxResult, call_based: bool, expected: Any) -> str | None:
    if result.killed is not None:
        return result.killed
    if result.exit_code != 0:
        return f"runtime error: {_last_error_line(result.stderr_tail) or f'exit status {result.exit_code}'}"
    if not call_based:
        got = result.stdout_text
        return (
            None
            if outputs_match(str(expected), got)
            else f"wrong answer: {_output_difference(str(expected), got)}"
        )
    lines = [line for line in result.stdout_text.split("\n") if line.startswith(_RESULT_MARK)]
    if not lines:
        return "runtime error: the function's result was not printed"
    try:
        got = json_value(lines[-1][len(_RESULT_MARK) :])
    except json.JSONDecodeError:
        return "runtime error: the function's result is not JSON"
    expected = _as_json_shape(expected)  # tuples become lists, as the result's did
    if values_match(expected, got):
        return None
    shown_expected = expected[0] if isinstance(expected, list) and len(expected) == 1 else expected
    return f"wrong answer: expected {_json_shown(shown_expected)}, got {_json_shown(got)}"


def _as_json_shape(value: Any) -> Any:
    """`value` as JSON would give it back: tuples as lists (and no int() of its long integers)."""
    if isinstance(value, list | tuple):
        return [_as_json_shape(item) for item in value]
    if isinstance(value, dict):
        return {
            key if isinstance(key, str) else str(key): _as_json_shape(item) for key, item in value.items()
        }
    return value


def _last_error_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1][:160] if lines else ""


# ------------------------------------------------------------------------------------ the pool
# The workers are plain interpreters running `_serve`, not a ProcessPoolExecutor: each sandboxed test
# forks the worker three times, and a worker that imported only this module and the sandbox (no
# pydantic, nothing of the caller's main module) forks several times faster.
WORKER_COMMAND = "from reasoning_pipeline.filter.code import _serve; _serve()"
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
# fresh workers that may die before taking an item before the pool gives up (a broken installation)
_MAX_DELIVERIES = 3
WORKER_TAKEN_DOWN = "the program took down the checker's worker while it ran"


def require_isolation(level: IsolationLevel, minimum: IsolationLevel, refused: dict[str, str]) -> None:
    """Refuses (for good: the same pod spec reaches the same level) a sandbox weaker than the spec's
    `sandbox.minimumIsolation`, before any program runs, with why each stronger level was refused."""
    order = list(IsolationLevel)
    if order.index(level) <= order.index(minimum):
        return
    why = "; ".join(f"{name}: {reason}" for name, reason in refused.items()) or "nothing stronger was tried"
    raise StageError(
        f"sandbox.minimumIsolation: the sandbox reaches only the {level} level, below the {minimum} the "
        f"spec requires ({why}). Give the sandbox container a seccomp profile that admits user namespaces "
        f"(sandbox.seccompProfile, see the README) and, on nodes that enforce AppArmor, an AppArmor profile "
        f"that allows userns and mount (sandbox.appArmorProfile), or allow {level} explicitly."
    )


def sandbox_isolation(minimum: IsolationLevel) -> tuple[IsolationLevel, str, int]:
    """The level programs run under (probed once per process: in the pod's sandbox container where there
    is one, else here), their interpreter and the CPUs they share; refused below `minimum`."""
    host = shared_host()
    if host is not None:
        hello = host.hello
        level, refused, interpreter, cpus = hello.level, hello.refused, hello.interpreter, hello.cpus
    else:
        interpreter = default_interpreter()
        level, refused_levels = probe_isolation(interpreter)
        refused, cpus = {str(k): v for k, v in refused_levels.items()}, usable_cpus()
    require_isolation(level, minimum, refused)
    return level, interpreter, cpus


class _Worker:
    """One checker worker: a process of this container's own (local runs, tests) or of the pod's sandbox
    container, started through its host; either way JSON lines in and out."""

    def __init__(self, level: IsolationLevel, interpreter: str, host: SandboxHost | None) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.connection: socket.socket | None = None
        if host is not None:
            self.connection = host.start_worker()
            self.requests: IO[bytes] = self.connection.makefile("wb")
            self.replies: IO[bytes] = self.connection.makefile("rb")
        else:
            environment = dict(os.environ)
            environment["PYTHONPATH"] = os.pathsep.join(
                part for part in (PACKAGE_ROOT, environment.get("PYTHONPATH")) if part
            )
            self.process = subprocess.Popen(
                [sys.executable, "-c", WORKER_COMMAND, str(level), interpreter],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=environment,
            )
            assert self.process.stdin is not None
            assert self.process.stdout is not None
            self.requests = self.process.stdin
            self.replies = self.process.stdout
        # (index, request, deliveries tried, whether this worker took it)
        self.task: tuple[int, dict[str, Any], int, bool] | None = None

    def send(self, index: int, request: dict[str, Any], deliveries: int) -> None:
        try:
            self.requests.write(json_text(request).encode() + b"\n")
            self.requests.flush()
        except (BrokenPipeError, ConnectionResetError):  # dead before it took the item: seen by the read
            self.task = (index, request, deliveries, False)
            return
        self.task = (index, request, deliveries, True)

    def reply(self) -> bytes:
        """The worker's next line; empty when it died (a socket whose peer died with input unread is
        reset rather than closed)."""
        try:
            return self.replies.readline()
        except ConnectionResetError:
            return b""

    def stop(self) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.requests.close()
        if self.connection is not None:
            # end of input: the worker leaves; its process is the sandbox container's to reap
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_WR)
            self.replies.close()
            self.connection.close()
            return
        assert self.process is not None
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.replies.close()


class CodeChecker:
    """Worker processes that check (code, tests, problem timeout) items; verdicts in input order."""

    def __init__(
        self, limits: CodeCheck, workers: int = 0, minimum: IsolationLevel = IsolationLevel.RLIMITS
    ) -> None:
        self.limits = limits
        self._host = shared_host()
        self.isolation, self.interpreter, cpus = sandbox_isolation(minimum)
        self._workers = [self._new_worker() for _ in range(workers or cpus)]
        self._selector = selectors.DefaultSelector()

    def check_many(
        self,
        items: Iterable[tuple[str, CodeTests, float | None]],
        on_start: Callable[[int], None] = lambda index: None,
    ) -> Iterator[CodeVerdict]:
        """Verdicts in input order; `on_start(index)` just before the item's program first runs (the
        filter journals it, so that a program that takes the whole pod down is known on the next try)."""
        pending = iter(items)
        # at most this far ahead of the oldest unfinished item, so that one slow problem does not let
        # thousands of verdicts pile up
        window = 4 * len(self._workers)
        try:
            yield from self._run(pending, window, on_start)
        finally:
            self._settle()

    def _run(
        self,
        pending: Iterator[tuple[str, CodeTests, float | None]],
        window: int,
        on_start: Callable[[int], None],
    ) -> Iterator[CodeVerdict]:
        exhausted = False
        finished: dict[int, CodeVerdict] = {}
        next_out = next_in = 0
        while True:
            for worker in self._workers:
                if worker.task is None and not exhausted and next_in < next_out + window:
                    item = next(pending, None)
                    if item is None:
                        exhausted = True
                        break
                    on_start(next_in)
                    self._dispatch(worker, next_in, self._request(*item), 1)
                    next_in += 1
            while next_out in finished:
                yield finished.pop(next_out)
                next_out += 1
            if exhausted and next_out == next_in:
                return
            if not any(worker.task for worker in self._workers):
                continue
            for key, _ in self._selector.select():
                worker = key.data
                index, verdict = self._receive(worker)
                if verdict is not None:
                    finished[index] = verdict

    def _settle(self) -> None:
        """Waits out the items still in flight: a caller that stops reading leaves none to the next call."""
        for worker in self._workers:
            if worker.task is not None:
                worker.reply()
                self._selector.unregister(worker.replies)
                worker.task = None

    def _request(self, code: str, tests: CodeTests, problem_timeout: float | None) -> dict[str, Any]:
        return {
            "code": code,
            "tests": asdict(tests),
            "budget": asdict(_Budget.of(self.limits, problem_timeout)),
        }

    def _dispatch(self, worker: _Worker, index: int, request: dict[str, Any], deliveries: int) -> None:
        self._selector.register(worker.replies, selectors.EVENT_READ, worker)
        worker.send(index, request, deliveries)

    def _receive(self, worker: _Worker) -> tuple[int, CodeVerdict | None]:
        assert worker.task is not None
        index, request, deliveries, taken = worker.task
        line = worker.reply()
        self._selector.unregister(worker.replies)
        worker.task = None
        if line:
            reply = json.loads(line)
            if "error" in reply:
                raise SandboxError(reply["error"])
            return index, CodeVerdict(**reply)
        # The worker died. While checking the item: its program got far enough out of the sandbox's limits
        # to take the worker down (a weaker isolation level allows it), and is rejected at once, never
        # run again. Before taking it: not the item's doing, a fresh worker takes it.
        worker.stop()
        replacement = self._new_worker()
        self._workers[self._workers.index(worker)] = replacement
        if taken:
            return index, CodeVerdict(False, 0, len(request["tests"]["inputs"]), WORKER_TAKEN_DOWN)
        if deliveries >= _MAX_DELIVERIES:
            raise SandboxError(f"{deliveries} fresh checker workers in a row died before taking an item")
        self._dispatch(replacement, index, request, deliveries + 1)
        return index, None

    def _new_worker(self) -> _Worker:
        return _Worker(self.isolation, self.interpreter, self._host)

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()
        self._workers = []
        self._selector.close()

    def __enter__(self) -> CodeChecker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _serve() -> None:
    """A worker: one JSON request per line on stdin, one verdict per line on stdout."""
    level, interpreter = IsolationLevel(sys.argv[1]), sys.argv[2]
    replies = sys.stdout
    sys.stdout = sys.stderr  # nothing but verdicts on the reply channel
    with Sandbox(level=level, interpreter=interpreter) as sandbox:
        for line in sys.stdin.buffer:
            request = json_value(line)
            try:
                tests = CodeTests(**request["tests"])
                verdict = asdict(_check(request["code"], tests, _Budget(**request["budget"]), sandbox))
            except SandboxError as error:
                verdict = {"error": str(error)}
            replies.write(json.dumps(verdict) + "\n")
            replies.flush()
