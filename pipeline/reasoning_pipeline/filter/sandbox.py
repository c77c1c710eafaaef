"""Run one untrusted Python program under isolation and limits: the sandbox of the code filter.

Model-written code is hostile until proven otherwise: the original recipe ran it in-process behind a
"reliability guard" whose own docstring says it is not a security sandbox. Here every run forks a
supervisor from the calling process, and the supervisor builds the strongest isolation this machine
allows. That level is probed once per process and reported with every result, never assumed:

``namespaces`` (root with CAP_SYS_ADMIN)
    New network (no interfaces up), mount, PID and IPC namespaces. The program runs under a dedicated
    uid per sandbox slot (root is exempt from RLIMIT_NPROC, so it must not run as root), with no new
    privileges. The whole file tree is read-only except a private, size-limited tmpfs on /tmp (its
    working directory) and on /dev/shm; a fresh /proc shows only its own processes. When the program
    ends, the namespace's init exits and the kernel kills everything it left behind.
``user-namespace`` (not root, or root without CAP_SYS_ADMIN)
    The same namespaces inside an unprivileged user namespace. The program keeps the caller's uid;
    root first drops to the slot uid, so that the process limit holds.
``uid`` (root without namespaces)
    A dedicated uid, rlimits, and every process of that uid killed afterwards. The network is NOT
    isolated and world-writable directories stay writable.
``rlimits`` (not root, no user namespaces)
    Rlimits, its own session, and a subreaper supervisor that kills every descendant afterwards. The
    network is NOT isolated and the program runs as the checker's own user, so it can signal the checker
    and read what that user may read. Root gets this level only when $REASONING_SANDBOX_ISOLATION names it.

$REASONING_SANDBOX_ISOLATION caps the level (a weaker one, never a stronger one than the machine allows);
$REASONING_SANDBOX_PYTHON picks the programs' interpreter.

Every level applies rlimits (CPU seconds, address space, file size, open files, processes), a wall-clock
limit, a minimal environment (nothing of the caller's: it may hold API keys), the interpreter's isolated
mode, and a cap on the output read back (a flood cannot exhaust the caller's memory).

This module imports only the standard library, so that a plain system interpreter can load it: the tests
run it as an unprivileged user who cannot read the project's virtual environment.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import math
import os
import resource
import select
import shutil
import signal
import stat
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any, NoReturn

# Dedicated uids, one per sandbox slot, for the root levels: a uid of its own is how every process a
# program leaves behind (double-forked daemons included) is found and killed, and how RLIMIT_NPROC
# counts only that program. 60000-60255 has no Debian account and stays below 65534 (nobody), inside
# the uid range that container runtimes map.
SANDBOX_UID_BASE = int(os.environ.get("REASONING_SANDBOX_UID_BASE", "60000"))
SANDBOX_SLOTS = 256
# Limits the spec does not carry: the largest file the program may write, the size and inode count of
# its private /tmp and /dev/shm, its open files, and how much of its stderr comes back.
FILE_BYTES = 16 << 20
TMPFS_BYTES = 64 << 20
TMPFS_INODES = 4096
OPEN_FILES = 256
STDERR_TAIL_BYTES = 4096
# How long past its wall-clock limit a supervisor may take to report before it is killed outright, and
# how long output still drains after a supervisor has gone (a process outside our reach may hold the pipe).
SUPERVISOR_GRACE_SECONDS = 5.0
STOP_GRACE_SECONDS = 2.0
DRAIN_SECONDS = 0.5
PROGRAM_TAG = "reasoning-sandbox"
# Threads the numeric libraries start on import: one per core would break the process limit on big nodes.
_PROGRAM_ENVIRONMENT = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
# Runs the program as `__main__` without the site module: a .pth hook of the interpreter's installation
# costs more than the rest of the start-up and has no business inside the sandbox. The installation's
# packages stay importable, `exit()`/`quit()` exist as usual, and integers print at any size as they did
# before Python 3.11 (expected outputs of old datasets hold such numbers).
_PRELUDE = """\
import builtins, site, sys, _sitebuiltins
sys.path.extend(p for p in site.getsitepackages() if p not in sys.path)
builtins.exit = _sitebuiltins.Quitter('exit', 'Ctrl-D (i.e. EOF)')
builtins.quit = _sitebuiltins.Quitter('quit', 'Ctrl-D (i.e. EOF)')
sys.set_int_max_str_digits(0)
sys.argv = ['main.py']
main = type(sys)('__main__')
main.__file__ = 'main.py'
main.__builtins__ = builtins
sys.modules['__main__'] = main
with open('main.py', 'rb') as f:
    source = f.read()
exec(compile(source, 'main.py', 'exec'), main.__dict__)
"""


class IsolationLevel(StrEnum):
    """How the program is isolated, strongest first (see the module's docstring)."""

    NAMESPACES = "namespaces"
    USER_NAMESPACE = "user-namespace"
    UID = "uid"
    RLIMITS = "rlimits"

    @property
    def isolates_network(self) -> bool:
        return self in (IsolationLevel.NAMESPACES, IsolationLevel.USER_NAMESPACE)


class SandboxError(RuntimeError):
    """The sandbox itself failed (setup, supervisor): it says nothing about the program."""


@dataclass(frozen=True)
class SandboxLimits:
    wall_seconds: float = 4.0
    memory_bytes: int = 1 << 30
    max_processes: int = 16
    max_output_bytes: int = 1 << 20
    max_file_bytes: int = FILE_BYTES
    max_open_files: int = OPEN_FILES
    tmpfs_bytes: int = TMPFS_BYTES

    @property
    def cpu_seconds(self) -> int:
        # A second above the wall clock: a busy loop ends on the wall clock with its clearer message.
        return math.ceil(self.wall_seconds) + 1


@dataclass(frozen=True)
class SandboxResult:
    exit_code: int | None
    """The program's exit status; None when a signal ended it."""
    term_signal: int | None
    stdout: bytes
    """At most the limit's max_output_bytes."""
    stderr_tail: str
    timed_out: bool
    killed: str | None
    """Why the sandbox ended the program (wall clock, CPU, output, a signal), None when it ended itself."""
    wall_seconds: float
    cpu_seconds: float
    isolation: IsolationLevel

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.killed is None

    @property
    def stdout_text(self) -> str:
        return self.stdout.decode("utf-8", "replace")


# ------------------------------------------------------------------------------------ system calls
_CLONE_NEWNS = 0x00020000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8
_MS_REMOUNT = 32
_MS_NOATIME = 1024
_MS_NODIRATIME = 2048
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_MS_RELATIME = 1 << 21
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NO_NEW_PRIVS = 38
_SYS_MOUNT_SETATTR = 442  # the same number on every architecture (a syscall added after the unified table)
_AT_FDCWD = -100
_AT_RECURSIVE = 0x8000
_MOUNT_ATTR_RDONLY = 1
_MOUNT_ATTR_NOSUID = 2

_libc = ctypes.CDLL(None, use_errno=True)


def _descriptor_ceiling() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return hard if 0 < hard <= 1 << 20 else 1 << 20


_MAX_FD = _descriptor_ceiling()


def _checked(result: Any, what: str) -> None:
    if int(result) == -1:
        number = ctypes.get_errno()
        raise OSError(number, f"{what}: {os.strerror(number)}")


def _unshare(flags: int) -> None:
    _checked(_libc.unshare(ctypes.c_int(flags)), "unshare")


def _prctl(option: int, value: int) -> None:
    _checked(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(value), 0, 0, 0), f"prctl {option}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def raw(text: str | None) -> bytes | None:
        return None if text is None else text.encode()

    result = _libc.mount(
        raw(source), raw(target), raw(fstype), ctypes.c_ulong(flags), ctypes.c_char_p(raw(data))
    )
    _checked(result, f"mount {fstype or 'flags'} on {target}")


def _make_tree_read_only() -> None:
    """Every mount read-only and nosuid; falls back to a remount per mount on kernels before 5.12."""
    attributes = (ctypes.c_uint64 * 4)(_MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID, 0, 0, 0)
    result = _libc.syscall(
        ctypes.c_long(_SYS_MOUNT_SETATTR),
        ctypes.c_long(_AT_FDCWD),
        ctypes.c_char_p(b"/"),
        ctypes.c_long(_AT_RECURSIVE),
        ctypes.byref(attributes),
        ctypes.c_long(ctypes.sizeof(attributes)),
    )
    if int(result) == 0:
        return
    if ctypes.get_errno() != errno.ENOSYS:
        _checked(result, "mount_setattr /")
    _remount_each_read_only()


def _remount_each_read_only() -> None:
    keep = {
        os.ST_NODEV: _MS_NODEV,
        os.ST_NOEXEC: _MS_NOEXEC,
        os.ST_NOATIME: _MS_NOATIME,
        os.ST_NODIRATIME: _MS_NODIRATIME,
        os.ST_RELATIME: _MS_RELATIME,
    }
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        points = [_unescape_mount_point(line.split()[4]) for line in mountinfo]
    for point in points:
        try:
            # a user namespace may not clear flags it inherited locked, so the existing ones are kept
            current = os.statvfs(point).f_flag
            flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID
            flags |= sum(mount_flag for st_flag, mount_flag in keep.items() if current & st_flag)
            _mount(None, point, None, flags)
        except OSError:
            if point == "/":
                raise
            # an over-mounted or vanished mount point: not reachable by that path, so not writable by it


def _unescape_mount_point(field: str) -> str:
    return field.encode().decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")


# ------------------------------------------------------------------------------------ probing
_probed: dict[str, tuple[IsolationLevel, dict[IsolationLevel, str]]] = {}


def default_interpreter() -> str:
    """The interpreter for programs: $REASONING_SANDBOX_PYTHON, else one every user may execute.

    The pipeline's own interpreter may live where a dropped uid cannot read it (a virtual environment
    under /root), so a system interpreter comes first.
    """
    configured = os.environ.get("REASONING_SANDBOX_PYTHON")
    if configured:
        return configured
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if _executable_by_everyone(candidate):
            return candidate
    return sys.executable


def _executable_by_everyone(path: str) -> bool:
    real = os.path.realpath(path)
    if not os.path.isfile(real):
        return False
    parts = real.split("/")
    directories = ["/".join(parts[:i]) or "/" for i in range(1, len(parts))]
    try:
        if any(not os.stat(directory).st_mode & stat.S_IXOTH for directory in directories):
            return False
        return bool(os.stat(real).st_mode & stat.S_IXOTH)
    except OSError:
        return False


def _candidate_levels() -> list[IsolationLevel]:
    order = list(IsolationLevel)
    levels = order if os.geteuid() == 0 else [IsolationLevel.USER_NAMESPACE, IsolationLevel.RLIMITS]
    strongest = os.environ.get("REASONING_SANDBOX_ISOLATION")
    if strongest:
        # an operator may ask for a weaker level than the machine allows, never a stronger one
        floor = order.index(IsolationLevel(strongest))
        return [level for level in levels if order.index(level) >= floor]
    if os.geteuid() == 0:
        # untrusted code running as root is no isolation: root gets the rlimits level only by name
        levels = [level for level in levels if level is not IsolationLevel.RLIMITS]
    return levels


def probe_isolation(interpreter: str | None = None) -> tuple[IsolationLevel, dict[IsolationLevel, str]]:
    """The strongest level that runs a program here, and why each stronger one was refused (cached)."""
    interpreter = interpreter or default_interpreter()
    if interpreter in _probed:
        return _probed[interpreter]
    refused: dict[IsolationLevel, str] = {}
    limits = SandboxLimits(wall_seconds=10)
    for level in _candidate_levels():
        if _needs_slot_uid(level) and not _executable_by_everyone(interpreter):
            refused[level] = f"the sandbox uid cannot execute {interpreter}"
            continue
        try:
            with Sandbox(level=level, interpreter=interpreter) as sandbox:
                result = sandbox.run("print('ok')", b"", limits)
        except (SandboxError, OSError) as error:
            refused[level] = str(error)
            continue
        if result.ok and result.stdout == b"ok\n":
            _probed[interpreter] = (level, refused)
            return level, refused
        refused[level] = f"test program failed: exit {result.exit_code}, {result.stderr_tail[-300:]!r}"
    raise SandboxError(f"no isolation level works with {interpreter}: {refused}")


def isolation_level(interpreter: str | None = None) -> IsolationLevel:
    """The isolation the sandbox applies on this machine (probed once per process and interpreter)."""
    return probe_isolation(interpreter)[0]


def forbid_tracing() -> None:
    """Makes this process not dumpable: its /proc/<pid>/environ, mem and fd become root's and nothing of
    the same uid can ptrace it (inherited across fork, not across a credential change or execve)."""
    _prctl(_PR_SET_DUMPABLE, 0)


def _needs_slot_uid(level: IsolationLevel) -> bool:
    return os.geteuid() == 0 and level is not IsolationLevel.RLIMITS


# ------------------------------------------------------------------------------------ slots
class _Slot:
    """An exclusive sandbox uid, held through a lock file for as long as the sandbox lives."""

    def __init__(self, index: int, lock_fd: int) -> None:
        self.index = index
        self.uid = SANDBOX_UID_BASE + index
        self._lock_fd = lock_fd

    @classmethod
    def acquire(cls) -> _Slot:
        directory = os.path.join(tempfile.gettempdir(), f"reasoning-sandbox-slots-{os.geteuid()}")
        os.makedirs(directory, mode=0o700, exist_ok=True)
        info = os.lstat(directory)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
            raise SandboxError(f"{directory} must be a private directory of uid {os.geteuid()}")
        for index in range(SANDBOX_SLOTS):
            path = os.path.join(directory, f"slot-{index}")
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            slot = cls(index, fd)
            kill_processes_of_uid(slot.uid)  # whatever a crashed previous holder left behind
            return slot
        raise SandboxError(f"all {SANDBOX_SLOTS} sandbox slots in {directory} are in use")

    def release(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def processes_of_uid(uid: int) -> list[int]:
    """Live (not zombie) processes whose real uid is `uid`, from /proc."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", encoding="utf-8", errors="replace") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
        except OSError:
            continue
        if int(fields.get("Uid", "-1 -1").split()[0]) == uid and not fields.get(
            "State", ""
        ).strip().startswith("Z"):
            found.append(int(entry.name))
    return found


def kill_processes_of_uid(uid: int) -> None:
    """Kills every process of `uid` (root only): a helper of that uid calls kill(-1), which reaches all."""
    for _ in range(20):
        if not processes_of_uid(uid):
            return
        helper = os.fork()
        if helper == 0:
            code = 1
            try:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
                for _ in range(3):
                    os.kill(-1, signal.SIGKILL)
                code = 0
            except ProcessLookupError:
                code = 0
            finally:
                os._exit(code)
        os.waitpid(helper, 0)
        time.sleep(0.01)  # the killed are reaped by their parents, outside our control
    raise SandboxError(f"processes of sandbox uid {uid} survive SIGKILL: {processes_of_uid(uid)}")


# ------------------------------------------------------------------------------------ the sandbox
@dataclass(frozen=True)
class _Plan:
    """Everything the forked supervisor needs; it must not touch anything else of its parent."""

    level: IsolationLevel
    slot_uid: int | None
    interpreter: str
    limits: SandboxLimits
    files: Mapping[str, str]
    workdir: str | None
    stdin_fd: int
    stdout_fd: int
    stderr_fd: int
    status_fd: int
    parent_pid: int


class Sandbox:
    """Runs programs one at a time, under one isolation level and (for root) one dedicated uid."""

    def __init__(self, *, level: IsolationLevel | None = None, interpreter: str | None = None) -> None:
        self.interpreter = interpreter or default_interpreter()
        self.level = level or isolation_level(self.interpreter)
        self._slot = _Slot.acquire() if _needs_slot_uid(self.level) else None
        # Below the namespaces levels the programs run as this process's own uid: not dumpable, its
        # /proc/<pid>/environ, mem and fd are root's and it cannot be ptraced, so a program can neither
        # read what it holds nor write a forged result into its pipes. The supervisors it forks inherit
        # this; a program's own execve makes the program dumpable again, which is harmless.
        forbid_tracing()

    @property
    def uid(self) -> int:
        """The uid the program runs under, as the host sees it."""
        return self._slot.uid if self._slot else os.geteuid()

    def close(self) -> None:
        if self._slot:
            self._slot.release()
            self._slot = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def run(
        self,
        program: str,
        stdin: str | bytes = b"",
        limits: SandboxLimits | None = None,
        *,
        files: Mapping[str, str] | None = None,
    ) -> SandboxResult:
        """Runs `program` as main.py in a private working directory with `files` beside it."""
        limits = limits or SandboxLimits()
        workfiles = {"main.py": program, **(files or {})}
        for name in workfiles:
            if not name or "/" in name or name.startswith("."):
                raise ValueError(f"file name {name!r} must be a plain name")
        stdin_bytes = stdin.encode() if isinstance(stdin, str) else stdin
        # the namespace levels write the files into their own tmpfs; the others need a directory here
        workdir = None if self.level.isolates_network else self._host_workdir(workfiles)
        parent_ends: list[int] = []
        child_ends: list[int] = []
        try:
            child_ends.append(_memory_file(stdin_bytes))
            for _ in range(3):  # stdout, stderr, the supervisor's reports
                read_end, write_end = os.pipe()
                parent_ends.append(read_end)
                child_ends.append(write_end)
            plan = _Plan(
                level=self.level,
                slot_uid=self._slot.uid if self._slot else None,
                interpreter=self.interpreter,
                limits=limits,
                files=workfiles,
                workdir=workdir,
                stdin_fd=child_ends[0],
                stdout_fd=child_ends[1],
                stderr_fd=child_ends[2],
                status_fd=child_ends[3],
                parent_pid=os.getpid(),
            )
            supervisor = os.fork()
            if supervisor == 0:
                _supervise(plan)
            for fd in child_ends:
                os.close(fd)
            child_ends.clear()
            collected = _collect(supervisor, parent_ends[0], parent_ends[1], parent_ends[2], limits)
        finally:
            for fd in parent_ends + child_ends:
                os.close(fd)
            if self._slot and not self.level.isolates_network:
                # the namespace levels need no sweep: their supervisor exits only after the kernel has
                # reaped every process of the namespace
                kill_processes_of_uid(self._slot.uid)
            if workdir:
                _remove_tree(workdir)
        return collected.result(limits, self.level)

    def _host_workdir(self, workfiles: Mapping[str, str]) -> str:
        workdir = tempfile.mkdtemp(prefix="reasoning-sandbox-")
        for name, text in workfiles.items():
            path = os.path.join(workdir, name)
            with open(path, "w", encoding="utf-8") as file:
                file.write(text)
            if self._slot:
                os.chown(path, self._slot.uid, self._slot.uid)
        if self._slot:
            os.chown(workdir, self._slot.uid, self._slot.uid)
        return workdir


def _memory_file(data: bytes) -> int:
    fd = os.memfd_create("sandbox-stdin", os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _remove_tree(path: str) -> None:
    def allow_and_retry(function: Any, failed: str, _: Any) -> None:
        # the program may have left directories without permissions
        os.chmod(os.path.dirname(failed), 0o700)
        if os.path.isdir(failed) and not os.path.islink(failed):
            os.chmod(failed, 0o700)
        function(failed)

    try:
        shutil.rmtree(path, onerror=allow_and_retry)
    except OSError:
        # at the rlimits level a process that escaped may still be writing: leave its remains, go on
        shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------------------------ collecting
def _well_formed_exit(report: Mapping[str, Any]) -> bool:
    def integer_or_none(value: object) -> bool:
        return value is None or (isinstance(value, int) and not isinstance(value, bool))

    return (
        integer_or_none(report.get("exit_code"))
        and integer_or_none(report.get("signal"))
        and isinstance(report.get("cpu"), int | float)
        and isinstance(report.get("timed_out"), bool)
    )


@dataclass
class _Collected:
    stdout: bytes
    stderr: bytes
    reports: list[dict[str, Any]]
    supervisor_status: int
    output_exceeded: bool
    supervisor_killed: bool

    def result(self, limits: SandboxLimits, level: IsolationLevel) -> SandboxResult:
        errors = [report["message"] for report in self.reports if report.get("event") == "setup_error"]
        if errors:
            raise SandboxError(f"sandbox setup failed ({level}): {errors[0]}")
        exits = [report for report in self.reports if report.get("event") == "exited"]
        exited = exits[0] if exits else None
        stderr_tail = self.stderr.decode("utf-8", "replace")
        if len(exits) > 1 or (exited is not None and not _well_formed_exit(exited)):
            # only the supervisor writes there, once: anything else means a program reached the channel
            why = "the sandbox's status channel held a result its supervisor did not write"
            return SandboxResult(None, None, self.stdout, stderr_tail, False, why, 0.0, 0.0, level)
        if exited is None:
            if self.output_exceeded:
                why = f"output limit of {limits.max_output_bytes} bytes exceeded"
            elif self.supervisor_killed:
                why = "the sandbox supervisor did not report in time"
            else:
                why = f"the sandbox supervisor ended without a report (status {self.supervisor_status})"
            return SandboxResult(None, None, self.stdout, stderr_tail, False, why, 0.0, 0.0, level)
        code, number = exited["exit_code"], exited["signal"]
        cpu = float(exited["cpu"])
        killed = None
        if self.output_exceeded:
            killed = f"output limit of {limits.max_output_bytes} bytes exceeded"
        elif exited["timed_out"]:
            killed = f"wall-clock limit of {limits.wall_seconds:g}s exceeded"
        elif number == signal.SIGXCPU or (number == signal.SIGKILL and cpu >= limits.cpu_seconds):
            killed = f"CPU time limit of {limits.cpu_seconds}s exceeded"
        elif number is not None:
            killed = f"killed by {_signal_name(number)}"
        return SandboxResult(
            code,
            number,
            self.stdout,
            stderr_tail,
            bool(exited["timed_out"]),
            killed,
            float(exited["wall"]),
            cpu,
            level,
        )


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _collect(supervisor: int, out_r: int, err_r: int, status_r: int, limits: SandboxLimits) -> _Collected:
    """Reads the program's output with caps while its supervisor runs; stops it on an output flood."""
    pidfd = os.pidfd_open(supervisor)
    poller = select.poll()
    for fd in (out_r, err_r, status_r, pidfd):
        poller.register(fd, select.POLLIN)
    streams = {out_r, err_r, status_r}
    stdout, stderr, status = bytearray(), bytearray(), bytearray()
    deadline = time.monotonic() + limits.wall_seconds + SUPERVISOR_GRACE_SECONDS
    stop_deadline: float | None = None
    supervisor_status: int | None = None
    exited_at = 0.0
    output_exceeded = supervisor_killed = False
    try:
        while True:
            now = time.monotonic()
            if supervisor_status is not None and (not streams or now > exited_at + DRAIN_SECONDS):
                break
            if supervisor_status is None and (now > deadline or (stop_deadline and now > stop_deadline)):
                os.kill(supervisor, signal.SIGKILL)
                supervisor_killed = True
                deadline = stop_deadline = math.inf
            wake = min(
                deadline, stop_deadline or math.inf, exited_at + DRAIN_SECONDS if exited_at else math.inf
            )
            timeout_ms = None if wake == math.inf else max(0, math.ceil((wake - now) * 1000))
            for fd, _ in poller.poll(timeout_ms):
                if fd == pidfd:
                    poller.unregister(pidfd)
                    supervisor_status = os.waitpid(supervisor, 0)[1]
                    exited_at = time.monotonic()
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    poller.unregister(fd)
                    streams.discard(fd)
                elif fd == out_r:
                    room = limits.max_output_bytes - len(stdout)
                    stdout += chunk[:room]
                    if len(chunk) > room and not output_exceeded:
                        output_exceeded = True
                        _stop(supervisor)
                        stop_deadline = time.monotonic() + STOP_GRACE_SECONDS
                elif fd == err_r:
                    stderr += chunk
                    del stderr[:-STDERR_TAIL_BYTES]
                elif len(status) < 1 << 16:
                    status += chunk
    finally:
        if supervisor_status is None:  # interrupted: leave nothing running
            os.kill(supervisor, signal.SIGKILL)
            supervisor_status = os.waitpid(supervisor, 0)[1]
        os.close(pidfd)
    reports = []
    for line in status.decode("utf-8", "replace").splitlines():
        try:
            reports.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return _Collected(
        bytes(stdout), bytes(stderr), reports, supervisor_status, output_exceeded, supervisor_killed
    )


def _stop(supervisor: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(supervisor, signal.SIGTERM)


# ------------------------------------------------------------------------------------ the supervisor
# Everything below runs in processes forked from the caller: it never returns into the caller's code and
# ends with os._exit, so that no finaliser, atexit hook or buffered output of the caller runs twice.
def _report(plan: _Plan, record: Mapping[str, Any]) -> None:
    with contextlib.suppress(OSError):
        os.write(plan.status_fd, (json.dumps(record) + "\n").encode())


def _supervise(plan: _Plan) -> NoReturn:
    code = 125
    try:
        os.setsid()  # the caller's terminal signals stay with the caller
        # the caller's descriptors (its pipes to a pool, say) must not stay open for as long as we run
        keep = sorted({2, plan.stdin_fd, plan.stdout_fd, plan.stderr_fd, plan.status_fd})
        for low, high in zip([-1, *keep], [*keep, _MAX_FD], strict=True):
            os.closerange(low + 1, high)
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # the checker died: so does everything below
        if os.getppid() != plan.parent_pid:
            os._exit(code)
        _offer_to_the_oom_killer()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if plan.level is IsolationLevel.NAMESPACES:
            _supervise_in_namespaces(plan, user_namespace=False)
        elif plan.level is IsolationLevel.USER_NAMESPACE:
            _supervise_in_namespaces(plan, user_namespace=True)
        else:
            _supervise_directly(plan)
        code = 0
    except BaseException as error:
        _report(plan, {"event": "setup_error", "message": f"{type(error).__name__}: {error}"})
    finally:
        os._exit(code)


def _offer_to_the_oom_killer() -> None:
    """This supervisor and all it starts go first when their cgroup runs out of memory: a memfd, tmpfs or
    page-cache flood belongs to no process's RSS, so by size alone the kernel would pick the checker's
    worker or the sandbox host. Any process may raise its own score; the program inherits it."""
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "wb") as score:
        score.write(b"1000")


def _drop_to(uid: int) -> None:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def _supervise_in_namespaces(plan: _Plan, *, user_namespace: bool) -> None:
    if user_namespace and plan.slot_uid is not None:
        _drop_to(plan.slot_uid)  # root without CAP_SYS_ADMIN: the slot uid owns the user namespace
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # a credential change clears it
        if os.getppid() != plan.parent_pid:
            return
    if user_namespace:
        # not dumpable (inherited from the Sandbox, or after the credential change), /proc/self is root's,
        # and the maps below are written there; no program of this run exists yet, and the others live in
        # user namespaces of their own, from which they cannot attach to this one
        _prctl(_PR_SET_DUMPABLE, 1)
    uid, gid = os.geteuid(), os.getegid()
    flags = _CLONE_NEWNS | _CLONE_NEWNET | _CLONE_NEWPID | _CLONE_NEWIPC
    _unshare(flags | (_CLONE_NEWUSER if user_namespace else 0))
    if user_namespace:
        for name, text in (
            ("setgroups", "deny"),
            ("uid_map", f"{uid} {uid} 1"),
            ("gid_map", f"{gid} {gid} 1"),
        ):
            # bytes, no codec: after the drop to the slot uid no module of a root-only installation loads
            with open(f"/proc/self/{name}", "wb") as file:
                file.write(text.encode())
    # nothing of the same uid may attach to a process that holds capabilities in the namespaces
    _prctl(_PR_SET_DUMPABLE, 0)
    init_pid = 0

    def stop_namespace(*_: object) -> None:
        if init_pid:
            os.kill(init_pid, signal.SIGKILL)

    signal.signal(signal.SIGTERM, stop_namespace)
    init_pid = os.fork()
    if init_pid == 0:
        code = 125
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            _run_namespace_init(plan, user_namespace=user_namespace)
            code = 0
        except BaseException as error:
            _report(plan, {"event": "setup_error", "message": f"{type(error).__name__}: {error}"})
        finally:
            # pid 1 leaving takes every other process of the namespace with it, before our parent's
            # wait returns: when the supervisor has exited, nothing of the program is left
            os._exit(code)
    os.waitpid(init_pid, 0)


def _run_namespace_init(plan: _Plan, *, user_namespace: bool) -> None:
    if user_namespace or plan.slot_uid is None:
        program_uid, program_gid = os.geteuid(), os.getegid()  # the only ids mapped
    else:
        program_uid = program_gid = plan.slot_uid
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    _make_tree_read_only()
    size = plan.limits.tmpfs_bytes
    _mount(
        "tmpfs",
        "/tmp",
        "tmpfs",
        _MS_NOSUID | _MS_NODEV,
        f"size={size},nr_inodes={TMPFS_INODES},mode=0700,uid={program_uid},gid={program_gid}",
    )
    if os.path.isdir("/dev/shm"):  # multiprocessing's semaphores live here
        _mount("tmpfs", "/dev/shm", "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={size},nr_inodes=1024,mode=1777")
    try:
        _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    except OSError:
        # a container's masked /proc forbids a new one in a user namespace: hide the old one instead
        _mount(
            "tmpfs", "/proc", "tmpfs", _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, "size=4k,mode=0555"
        )
    for name, text in plan.files.items():
        path = os.path.join("/tmp", name)
        with open(path, "wb") as file:
            file.write(text.encode())
        os.chown(path, program_uid, program_gid)
    drop = plan.slot_uid if not user_namespace else None
    program = _start_program(plan, "/tmp", drop)
    _report(plan, _await_program(program, plan.limits))


def _supervise_directly(plan: _Plan) -> None:
    """The levels without namespaces: this process adopts every orphan and kills them all afterwards."""
    assert plan.workdir is not None
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    program = 0

    def stop_program(*_: object) -> None:
        if program:
            os.killpg(program, signal.SIGKILL)

    signal.signal(signal.SIGTERM, stop_program)
    program = _start_program(plan, plan.workdir, plan.slot_uid)
    _report(plan, {"event": "started", "pid": program})
    record = _await_program(program, plan.limits)
    if plan.slot_uid is not None:
        kill_processes_of_uid(plan.slot_uid)
    _kill_descendants()
    _report(plan, record)


def _kill_descendants() -> None:
    for _ in range(1000):
        children: dict[int, list[int]] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as stat_file:
                    fields = stat_file.read().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
        descendants, frontier = [], [os.getpid()]
        while frontier:
            found = children.get(frontier.pop(), [])
            descendants += found
            frontier += found
        for pid in descendants:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                if not descendants:
                    return
                break
        time.sleep(0.002)
    raise SandboxError("descendants of the program survive SIGKILL")


def _start_program(plan: _Plan, workdir: str, drop_to: int | None) -> int:
    limits = plan.limits
    processes = limits.max_processes
    if plan.level is IsolationLevel.USER_NAMESPACE:
        processes += 2  # the supervisor and the namespace's init count against the same user
    elif plan.level is IsolationLevel.RLIMITS:
        processes += _tasks_of_uid(os.geteuid())  # the limit counts every process of this user
    pid = os.fork()
    if pid:
        return pid
    try:
        os.setsid()
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        # an ignored signal stays ignored across exec (Python ignores SIGPIPE and SIGXFSZ, for one)
        for number in signal.valid_signals():
            if number not in (signal.SIGKILL, signal.SIGSTOP) and signal.getsignal(number) != signal.SIG_DFL:
                with contextlib.suppress(OSError, ValueError):
                    signal.signal(number, signal.SIG_DFL)
        os.dup2(plan.stdin_fd, 0)
        os.dup2(plan.stdout_fd, 1)
        os.dup2(plan.stderr_fd, 2)
        cpu = limits.cpu_seconds
        for kind, soft, hard in (
            (resource.RLIMIT_CPU, cpu, cpu + 1),  # SIGXCPU at the soft limit, SIGKILL a second later
            (resource.RLIMIT_AS, limits.memory_bytes, limits.memory_bytes),
            (resource.RLIMIT_FSIZE, limits.max_file_bytes, limits.max_file_bytes),
            (resource.RLIMIT_NOFILE, limits.max_open_files, limits.max_open_files),
            (resource.RLIMIT_NPROC, processes, processes),
            (resource.RLIMIT_CORE, 0, 0),
        ):
            _lower_limit(kind, soft, hard)
        if drop_to is not None:
            _drop_to(drop_to)
        _prctl(_PR_SET_NO_NEW_PRIVS, 1)
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        os.chdir(workdir)
        # every inherited descriptor goes; the status pipe stays until exec closes it (it is close-on-exec)
        os.closerange(3, plan.status_fd)
        os.closerange(plan.status_fd + 1, _MAX_FD)
        environment = {**_PROGRAM_ENVIRONMENT, "HOME": workdir, "TMPDIR": workdir}
        # no int-string limit: a correct answer may print a 5,000-digit integer, and the checker compares
        # integers as digits (the cost of a long conversion falls on the program's own time limit)
        argv = [
            plan.interpreter,
            "-I",
            "-S",
            "-X",
            "utf8",
            "-X",
            "int_max_str_digits=0",
            "-c",
            _PRELUDE,
            PROGRAM_TAG,
        ]
        os.execve(plan.interpreter, argv, environment)
    except BaseException as error:
        _report(plan, {"event": "setup_error", "message": f"starting the program: {error}"})
    finally:
        os._exit(127)


def _lower_limit(kind: int, soft: int, hard: int) -> None:
    """Sets a limit, never above the hard limit already in force (a user cannot raise it)."""
    current = resource.getrlimit(kind)[1]
    if current != resource.RLIM_INFINITY:
        soft, hard = min(soft, current), min(hard, current)
    resource.setrlimit(kind, (soft, hard))


def _tasks_of_uid(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:
                continue
    return count


def _await_program(pid: int, limits: SandboxLimits) -> dict[str, Any]:
    started = time.monotonic()
    pidfd = os.pidfd_open(pid)
    ready, _, _ = select.select([pidfd], [], [], limits.wall_seconds)
    timed_out = not ready
    if timed_out:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)
    _, status, usage = os.wait4(pid, 0)
    wall = time.monotonic() - started
    os.close(pidfd)
    return {
        "event": "exited",
        "exit_code": os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        "timed_out": timed_out,
        "wall": round(wall, 4),
        "cpu": round(usage.ru_utime + usage.ru_stime, 4),
    }
