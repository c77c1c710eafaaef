"""The checker and the pod's sandbox container, as two real processes on one socket (the cluster test of
the same pair is in tests/integration/test_e2e_demo.py)."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from reasoning_pipeline.errors import StageError
from reasoning_pipeline.filter import sandbox_channel
from reasoning_pipeline.filter.code import WORKER_TAKEN_DOWN, CodeChecker, CodeTests
from reasoning_pipeline.filter.sandbox import IsolationLevel, SandboxError
from reasoning_pipeline.filter.sandbox_channel import SandboxHost
from reasoning_pipeline.spec import CodeCheck

from tests.support.sandbox_host import sandbox_host

ECHO = "print(int(input()) * 2)"
WRONG = "print(int(input()) * 3)"
# at the rlimits level the program is its worker's grandchild (worker → supervisor → program)
KILL_WORKER = """
import os, signal
def parent(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])
os.kill(parent(parent(os.getpid())), signal.SIGKILL)
"""
TESTS = CodeTests(inputs=["2\n"], outputs=["4\n"])


@pytest.fixture
def host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[subprocess.Popen[bytes]]:
    with sandbox_host(tmp_path, monkeypatch, getattr(request, "param", None)) as process:
        yield process


def test_programs_run_in_the_host_and_nothing_else_can_connect(
    host: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    with CodeChecker(CodeCheck(), workers=2) as checker:
        verdicts = list(checker.check_many([(ECHO, TESTS, None), (WRONG, TESTS, None), (ECHO, TESTS, None)]))
        shared = sandbox_channel.shared_host()
        assert shared is not None
        assert checker.isolation is shared.hello.level
    assert [v.passed for v in verdicts] == [True, False, True]
    # the one connection was taken: the socket is gone, so no later process can pose as the host
    assert not (tmp_path / "checker.sock").exists()


@pytest.mark.parametrize("host", ["rlimits"], indirect=True)
def test_a_program_that_kills_its_worker_is_rejected_and_the_next_one_gets_a_fresh_worker(
    host: subprocess.Popen[bytes],
) -> None:
    with CodeChecker(CodeCheck(), workers=1) as checker:
        assert checker.isolation is IsolationLevel.RLIMITS
        killer, after = checker.check_many([(KILL_WORKER, TESTS, None), (ECHO, TESTS, None)])
    assert (killer.passed, killer.reason) == (False, WORKER_TAKEN_DOWN)
    assert after.passed


@pytest.mark.parametrize("host", ["rlimits"], indirect=True)
def test_a_host_weaker_than_the_minimum_fails_for_good_naming_the_field(
    host: subprocess.Popen[bytes],
) -> None:
    with pytest.raises(StageError, match=r"sandbox\.minimumIsolation.*only the rlimits level") as raised:
        CodeChecker(CodeCheck(), workers=1, minimum=IsolationLevel.USER_NAMESPACE)
    assert type(raised.value) is StageError  # permanent: the same pod reaches the same level


def test_a_host_that_goes_away_fails_the_checker_not_the_verdicts(host: subprocess.Popen[bytes]) -> None:
    with CodeChecker(CodeCheck(), workers=1) as checker:
        assert next(iter(checker.check_many([(ECHO, TESTS, None)]))).passed
        host.send_signal(signal.SIGTERM)
        host.wait()
        with pytest.raises(SandboxError, match="the sandbox container is gone"):
            list(checker.check_many([(ECHO, TESTS, None)]))


def test_no_host_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match=r"did not connect to .*checker\.sock within 1 s"):
        SandboxHost(str(tmp_path / "checker.sock"), connect_seconds=1.0)
