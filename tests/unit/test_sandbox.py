"""The sandbox contains hostile programs: each is stopped with a reason, nothing of it is left running, and
the same sandbox goes on to run a normal program. Real programs (tests/unit/sandbox_programs), real limits
(small ones, to stay fast), no mocks.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from reasoning_pipeline.filter import sandbox as sandbox_module
from reasoning_pipeline.filter.sandbox import (
    IsolationLevel,
    Sandbox,
    SandboxLimits,
    SandboxResult,
    isolation_level,
    processes_of_uid,
)

PROGRAMS = Path(__file__).parent / "sandbox_programs"
REPOSITORY = Path(__file__).resolve().parents[2]
LIMITS = SandboxLimits(
    wall_seconds=1.5,
    memory_bytes=256 << 20,
    max_processes=8,
    max_output_bytes=64 << 10,
    max_file_bytes=4 << 20,
    tmpfs_bytes=16 << 20,
)
SECRET_VARIABLE = "REASONING_SANDBOX_TEST_SECRET"


def has_cap_sys_admin() -> bool:
    with open("/proc/self/status", encoding="utf-8") as status:
        effective = next(line for line in status if line.startswith("CapEff:"))
    return bool(int(effective.split()[1], 16) & (1 << 21))


ROOT_WITH_NAMESPACES = os.geteuid() == 0 and has_cap_sys_admin()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as box:
        yield box


def hostile(name: str, **settings: object) -> tuple[str, str, str]:
    """A program of sandbox_programs, its stdin, and the marker its processes carry on their command line."""
    marker = f"marker-{uuid4().hex}"
    return (PROGRAMS / f"{name}.py").read_text(), json.dumps({"marker": marker, **settings}), marker


def survivors(marker: str, uid: int) -> list[int]:
    """Processes with the marker on their command line, or of the sandbox's own uid."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as cmdline:
                    if marker.encode() in cmdline.read():
                        found.append(int(entry.name))
            except OSError:
                continue
    if uid != os.geteuid():
        found += processes_of_uid(uid)
    return found


def assert_contained(box: Sandbox, marker: str) -> None:
    assert survivors(marker, box.uid) == []
    after = box.run("print(6 * 7)", b"", LIMITS)
    assert (after.exit_code, after.stdout) == (0, b"42\n"), after


def test_the_machine_gets_the_strongest_isolation_it_allows(sandbox: Sandbox) -> None:
    expected = IsolationLevel.NAMESPACES if ROOT_WITH_NAMESPACES else sandbox.level
    assert isolation_level() is expected
    result = sandbox.run("print('hi')", b"", LIMITS)
    assert result.isolation is sandbox.level


def test_a_program_reads_stdin_and_reports_its_exit_status(sandbox: Sandbox) -> None:
    program = "import sys\nwords = sys.stdin.read().split()\nprint(len(words), words[-1])\nexit(3)"
    result = sandbox.run(program, "one two\nthree\n", LIMITS)
    assert (result.exit_code, result.stdout, result.killed, result.timed_out) == (
        3,
        b"3 three\n",
        None,
        False,
    )


def test_a_runtime_error_leaves_its_traceback_in_the_stderr_tail(sandbox: Sandbox) -> None:
    result = sandbox.run("x = 1\nprint(x / 0)", b"", LIMITS)
    assert result.exit_code == 1
    assert 'File "main.py", line 2' in result.stderr_tail
    assert result.stderr_tail.rstrip().endswith("ZeroDivisionError: division by zero")


def test_files_beside_the_program_and_big_integers(sandbox: Sandbox) -> None:
    program = "print(len(str(3 ** 20000)), open('data.txt').read())"
    result = sandbox.run(program, b"", LIMITS, files={"data.txt": "beside"})
    assert result.stdout == b"9543 beside\n", result


@pytest.mark.skipif(not ROOT_WITH_NAMESPACES, reason="needs root with CAP_SYS_ADMIN")
def test_the_program_runs_as_a_dedicated_uid_in_its_own_namespaces(sandbox: Sandbox) -> None:
    program = (
        "import os\n"
        "pids = sorted(p for p in os.listdir('/proc') if p.isdigit())\n"
        "print(os.getuid(), os.getgid(), os.getcwd(), *pids)"
    )
    result = sandbox.run(program, b"", LIMITS)
    uid = sandbox.uid
    assert uid >= sandbox_module.SANDBOX_UID_BASE
    # pid 1 (the namespace's init) and the program itself: nothing of the host is visible
    assert result.stdout.decode().split() == [str(uid), str(uid), "/tmp", "1", "2"]


@pytest.mark.skipif(not ROOT_WITH_NAMESPACES, reason="needs a /proc of the program's own")
def test_the_program_is_the_oom_killers_first_choice(sandbox: Sandbox) -> None:
    """A memfd or tmpfs flood is charged to the cgroup but to no process's RSS: the program's score must
    make it the victim, not the worker or the host that started it."""
    result = sandbox.run("print(open('/proc/self/oom_score_adj').read().strip())", b"", LIMITS)
    assert result.stdout == b"1000\n", result
    with open("/proc/self/oom_score_adj") as own:
        assert own.read().strip() != "1000"  # the caller keeps its own


def test_network_access_fails(sandbox: Sandbox) -> None:
    if not sandbox.level.isolates_network:
        pytest.skip(f"isolation level {sandbox.level} does not isolate the network")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        program, stdin, marker = hostile("network", port=listener.getsockname()[1])
        result = sandbox.run(program, stdin, LIMITS)
        assert result.stdout == b"reached: nothing\n"
        assert result.exit_code == 1
        assert "Network is unreachable" in result.stderr_tail
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert_contained(sandbox, marker)


def stopped_by_the_clock(result: SandboxResult) -> None:
    assert result.timed_out
    assert result.killed == f"wall-clock limit of {LIMITS.wall_seconds:g}s exceeded"
    assert LIMITS.wall_seconds <= result.wall_seconds < LIMITS.wall_seconds + 1


def thread_flood_is_capped(result: SandboxResult) -> None:
    stopped_by_the_clock(result)
    started = int(result.stdout.decode().split()[-1])
    assert 0 < started < LIMITS.max_processes


def memory_is_refused(result: SandboxResult) -> None:
    assert result.exit_code == 1
    assert result.stderr_tail.rstrip().endswith("MemoryError")


def output_is_capped(result: SandboxResult) -> None:
    assert result.killed == f"output limit of {LIMITS.max_output_bytes} bytes exceeded"
    assert result.stdout == b"x" * LIMITS.max_output_bytes


def signals_are_refused(result: SandboxResult) -> None:
    assert result.killed == "killed by SIGKILL"  # its own process group, the last thing it tried
    refused = [line.split()[1] for line in result.stdout.decode().splitlines() if line.startswith("refused")]
    assert str(1) in refused


def daemon_was_left(result: SandboxResult) -> None:
    assert (result.exit_code, result.stdout) == (0, b"daemon left behind\n")


@pytest.mark.parametrize(
    ("name", "expect"),
    [
        pytest.param("fork_flood", stopped_by_the_clock, id="fork-flood"),
        pytest.param("thread_flood", thread_flood_is_capped, id="thread-flood"),
        pytest.param("memory_grab", memory_is_refused, id="memory-grab"),
        pytest.param("stdout_flood", output_is_capped, id="stdout-flood"),
        pytest.param("ignore_sigterm", stopped_by_the_clock, id="loop-ignoring-sigterm"),
        pytest.param("kill_everyone", signals_are_refused, id="kill-parent-group-and-everyone"),
        pytest.param("orphan_daemon", daemon_was_left, id="orphaned-daemon"),
    ],
)
def test_a_hostile_program_is_stopped_and_leaves_nothing_running(
    sandbox: Sandbox, name: str, expect: Callable[[SandboxResult], None]
) -> None:
    program, stdin, marker = hostile(name)
    result = sandbox.run(program, stdin, LIMITS)
    expect(result)
    assert_contained(sandbox, marker)


def test_a_disk_fill_stops_at_the_limits(sandbox: Sandbox) -> None:
    program, stdin, marker = hostile("disk_fill")
    result = sandbox.run(program, stdin, LIMITS)
    assert result.exit_code == 1
    lines = result.stdout.decode().splitlines()
    one_file = int(lines[0].split()[2])
    assert one_file == LIMITS.max_file_bytes
    assert "File too large" in lines[0]
    if sandbox.level.isolates_network:  # its own tmpfs is full
        assert "No space left on device" in lines[1]
        assert int(lines[1].split()[2]) <= LIMITS.tmpfs_bytes
    assert_contained(sandbox, marker)


def test_the_callers_environment_stays_out(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"sk-{uuid4().hex}"
    monkeypatch.setenv(SECRET_VARIABLE, secret)
    program, stdin, marker = hostile("read_environment")
    result = sandbox.run(program, stdin, LIMITS)
    assert result.exit_code == 0
    assert "'PATH'" in result.stdout_text
    assert secret not in result.stdout_text + result.stderr_tail
    assert SECRET_VARIABLE not in result.stdout_text
    assert_contained(sandbox, marker)


def test_writes_outside_the_temp_dir_do_not_reach_the_host(sandbox: Sandbox) -> None:
    name = f"pwned-{uuid4().hex}"
    targets = [Path("/tmp", name), Path("/dev/shm", name), Path("/var/tmp", name), REPOSITORY / name]
    program, stdin, marker = hostile("write_outside", paths=[str(path) for path in targets])
    result = sandbox.run(program, stdin, LIMITS)
    written = [path for path in targets if path.exists()]
    for path in written:
        path.unlink()
    if sandbox.level.isolates_network:
        assert written == []
        # its private /tmp and /dev/shm took the writes; the repository and /var/tmp refused them
        outcome = {line.split()[1]: line.split()[0] for line in result.stdout.decode().splitlines()}
        assert outcome == {
            str(targets[0]): "wrote",
            str(targets[1]): "wrote",
            str(targets[2]): "refused",
            str(targets[3]): "refused",
        }
    else:
        assert REPOSITORY / name not in written
    assert_contained(sandbox, marker)


@pytest.mark.skipif(os.geteuid() != 0, reason="the uid level is root's fallback")
def test_the_uid_level_kills_every_process_of_its_uid_and_removes_its_directory() -> None:
    with Sandbox(level=IsolationLevel.UID) as box:
        program, stdin, marker = hostile("orphan_daemon")
        assert box.run(program, stdin, LIMITS).stdout == b"daemon left behind\n"
        assert_contained(box, marker)
        program, stdin, marker = hostile("fork_flood")
        stopped_by_the_clock(box.run(program, stdin, LIMITS))
        assert_contained(box, marker)
        where = box.run("import os\nprint(os.getcwd(), os.getuid())", b"", LIMITS).stdout.decode().split()
        assert int(where[1]) == box.uid
        assert not os.path.exists(where[0])


@pytest.mark.skipif(os.geteuid() != 0, reason="root's path into a user namespace")
def test_root_without_cap_sys_admin_gets_a_user_namespace_owned_by_the_slot_uid() -> None:
    with Sandbox(level=IsolationLevel.USER_NAMESPACE) as box, socket.socket() as listener:
        assert box.uid >= sandbox_module.SANDBOX_UID_BASE
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        program, stdin, marker = hostile("network", port=listener.getsockname()[1])
        assert box.run(program, stdin, LIMITS).stdout == b"reached: nothing\n"
        assert_contained(box, marker)
        program, stdin, marker = hostile("fork_flood")
        stopped_by_the_clock(box.run(program, stdin, LIMITS))
        assert_contained(box, marker)
        assert box.run("import os\nprint(os.getuid())", b"", LIMITS).stdout == f"{box.uid}\n".encode()


# ------------------------------------------------------------------------------------ not root
# The same module, loaded by the system interpreter as nobody: a restricted pod runs without root and
# without capabilities, and cannot read the project's virtual environment either.
NOBODY_DRIVER = """\
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("sandbox", sys.argv[1])
sandbox = importlib.util.module_from_spec(spec)
sys.modules["sandbox"] = sandbox
spec.loader.exec_module(sandbox)
level = sandbox.IsolationLevel(sys.argv[2]) if sys.argv[2] else None
limits = sandbox.SandboxLimits(**json.loads(sys.argv[3]))
answers = []
with sandbox.Sandbox(level=level) as box:
    for program, stdin in json.loads(sys.stdin.read()):
        result = box.run(program, stdin, limits)
        answers.append({"level": str(result.isolation), "exit": result.exit_code,
                        "stdout": result.stdout_text, "stderr": result.stderr_tail, "killed": result.killed})
print(json.dumps(answers))
"""
NOBODY_TOOLS = os.geteuid() == 0 and shutil.which("setpriv") and os.path.exists("/usr/bin/python3")


def run_as_nobody(level: str, requests: list[tuple[str, str]], secret: str) -> list[dict[str, object]]:
    limits = {
        "wall_seconds": LIMITS.wall_seconds,
        "memory_bytes": LIMITS.memory_bytes,
        "max_processes": LIMITS.max_processes,
        "max_output_bytes": LIMITS.max_output_bytes,
    }
    command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
    command += [
        "/usr/bin/python3",
        "-I",
        "-c",
        NOBODY_DRIVER,
        sandbox_module.__file__,
        level,
        json.dumps(limits),
    ]
    environment = {"PATH": "/usr/bin:/bin", SECRET_VARIABLE: secret}
    completed = subprocess.run(
        command,
        input=json.dumps(requests),
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    answers: list[dict[str, object]] = json.loads(completed.stdout)
    return answers


@pytest.mark.skipif(not NOBODY_TOOLS, reason="needs root (to become nobody), setpriv and /usr/bin/python3")
def test_not_root_the_user_namespace_level_isolates_just_as_well() -> None:
    secret = f"sk-{uuid4().hex}"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        name = f"pwned-{uuid4().hex}"
        requests = [
            hostile("network", port=listener.getsockname()[1])[:2],
            hostile("read_environment")[:2],
            hostile("write_outside", paths=[f"/tmp/{name}", f"/var/tmp/{name}"])[:2],
            hostile("orphan_daemon")[:2],
            hostile("fork_flood")[:2],
            ("print(6 * 7)", ""),
        ]
        markers = [json.loads(stdin)["marker"] for _, stdin in requests[:-1]]
        network, environment, writes, daemon, flood, normal = run_as_nobody("", requests, secret)
        with pytest.raises(BlockingIOError):
            listener.accept()
    if network["level"] != IsolationLevel.USER_NAMESPACE:
        pytest.skip(f"no user namespaces here: nobody gets {network['level']}")
    assert network["stdout"] == "reached: nothing\n"
    assert secret not in str(environment["stdout"]) + str(environment["stderr"])
    assert not Path("/tmp", name).exists()
    assert not Path("/var/tmp", name).exists()
    assert str(writes["stdout"]).startswith(f"wrote /tmp/{name}\nrefused /var/tmp/{name}")
    assert daemon["stdout"] == "daemon left behind\n"
    assert flood["killed"] == f"wall-clock limit of {LIMITS.wall_seconds:g}s exceeded"
    assert normal["stdout"] == "42\n"
    assert [survivors(marker, os.geteuid()) for marker in markers] == [[]] * len(markers)


@pytest.mark.skipif(not NOBODY_TOOLS, reason="needs root (to become nobody), setpriv and /usr/bin/python3")
def test_not_root_the_rlimits_level_still_kills_what_the_program_leaves() -> None:
    requests = [hostile("orphan_daemon")[:2], hostile("fork_flood")[:2], ("print(6 * 7)", "")]
    markers = [json.loads(stdin)["marker"] for _, stdin in requests[:-1]]
    daemon, flood, normal = run_as_nobody("rlimits", requests, "unused")
    assert daemon["level"] == IsolationLevel.RLIMITS
    assert daemon["stdout"] == "daemon left behind\n"
    assert flood["killed"] == f"wall-clock limit of {LIMITS.wall_seconds:g}s exceeded"
    assert normal["stdout"] == "42\n"
    assert [survivors(marker, os.geteuid()) for marker in markers] == [[]] * len(markers)


@pytest.mark.skipif(not NOBODY_TOOLS, reason="needs root (to become nobody), setpriv and /usr/bin/python3")
def test_not_root_at_the_rlimits_level_no_ancestor_can_be_read_or_written_through_proc() -> None:
    """The level a restricted pod gets: the program runs as the checker's own uid. The checker and the
    supervisor are not dumpable, so /proc/<pid>/environ and /proc/<pid>/fd of every ancestor are refused:
    no secret of theirs read, no forged result written into their pipes."""
    secret = f"sk-{uuid4().hex}"
    (snoop,) = run_as_nobody("rlimits", [hostile("snoop_ancestors")[:2]], secret)
    assert snoop["level"] == IsolationLevel.RLIMITS
    lines = str(snoop["stdout"]).splitlines()
    assert len(lines) >= 4, snoop  # the supervisor and the checker, two lines each
    assert all(" refused " in f"{line} " for line in lines), lines
    assert secret not in str(snoop["stdout"]) + str(snoop["stderr"])
    assert snoop["exit"] == 0
    assert "forged" not in str(snoop)


@pytest.mark.parametrize(
    "reports",
    [
        [{"event": "exited", "exit_code": 0, "signal": None, "timed_out": False, "cpu": 0.1}] * 2,
        [{"event": "exited", "status": 0, "forged": True}],
    ],
    ids=["two-results", "malformed-result"],
)
def test_a_status_channel_its_supervisor_did_not_write_alone_fails_the_run_not_the_checker(
    reports: list[dict[str, object]],
) -> None:
    collected = sandbox_module._Collected(b"", b"", reports, 0, False, False)
    result = collected.result(LIMITS, IsolationLevel.RLIMITS)
    assert result.killed == "the sandbox's status channel held a result its supervisor did not write"


def test_the_module_needs_nothing_but_the_standard_library() -> None:
    imported = set()
    for node in ast.walk(ast.parse(Path(sandbox_module.__file__).read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported - {"__future__"} <= set(sys.stdlib_module_names)
