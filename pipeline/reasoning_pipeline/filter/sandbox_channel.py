"""The channel between a stage's checker and the sandbox container of its pod.

In a cluster, model-written programs do not run in the stage's own container, which mounts the run's
storage: they run in a sandbox container of the same pod that mounts no volume of the run's, runs as a
uid of its own and may carry a seccomp profile of its own (one that admits user namespaces, so that its
sandbox reaches a level above rlimits). The two containers share one emptyDir, which the stage's
container writes and the sandbox container mounts read-only:

1. The checker listens on a Unix socket there ($REASONING_SANDBOX_CHANNEL) and takes exactly one
   connection, then removes the socket: the sandbox container's host connects at its start, before any
   program runs, and nothing that starts later can take its place (the folder is read-only for the
   sandbox container, so no program can bind a socket of its own under that name).
2. The host probes its isolation level and says so in one JSON line (`level`, why stronger levels were
   refused, the CPUs it may use).
3. For every checker worker, the checker makes a socket pair and passes one end over the connection
   (SCM_RIGHTS); the host starts a worker process on it. The worker speaks the same JSON lines as a local
   one: requests in, verdicts out, nothing pickled.

The host is the container's pid 1 and not dumpable: a program cannot read what it holds, and when the
host ends the kernel ends everything in the container. When the connection drops, the checker fails
with a SandboxError (the attempt is retried in a fresh pod) and never connects again.

This module imports only the standard library and the sandbox.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass

from reasoning_pipeline.cpus import usable_cpus
from reasoning_pipeline.filter.sandbox import (
    IsolationLevel,
    SandboxError,
    default_interpreter,
    forbid_tracing,
    probe_isolation,
)

CHANNEL_VARIABLE = "REASONING_SANDBOX_CHANNEL"
CONNECT_SECONDS = 120.0
_WORKER_MESSAGE = b"worker"
_HELLO_BYTES = 1 << 16


@dataclass(frozen=True)
class HostHello:
    """What the sandbox container's host says when it connects."""

    level: IsolationLevel
    refused: dict[str, str]
    cpus: int
    interpreter: str


class SandboxHost:
    """The checker's end of the channel: the one connection of the sandbox container, and the workers
    started through it."""

    def __init__(self, path: str, connect_seconds: float = CONNECT_SECONDS) -> None:
        self.path = path
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(path)
            os.chmod(path, 0o666)  # the sandbox container runs as a uid of its own
            listener.listen(1)
            listener.settimeout(connect_seconds)
            try:
                self._control, _ = listener.accept()
            except TimeoutError:
                raise SandboxError(
                    f"the sandbox container did not connect to {path} within {connect_seconds:.0f} s"
                ) from None
        finally:
            listener.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # one host per checker process: nothing else connects, ever
        self._control.settimeout(connect_seconds)
        hello = _read_line(self._control, "the sandbox container's greeting")
        self._control.settimeout(None)
        try:
            record = json.loads(hello)
            self.hello = HostHello(
                IsolationLevel(record["level"]),
                {str(k): str(v) for k, v in record["refused"].items()},
                int(record["cpus"]),
                str(record["interpreter"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise SandboxError(f"the sandbox container greeted with {hello[:200]!r}: {error}") from None

    def start_worker(self) -> socket.socket:
        """A connected socket to a fresh worker process of the sandbox container."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            socket.send_fds(self._control, [_WORKER_MESSAGE], [theirs.fileno()])
        except OSError as error:
            mine.close()
            raise SandboxError(f"the sandbox container is gone ({error})") from None
        finally:
            theirs.close()
        return mine

    def close(self) -> None:
        self._control.close()


def _read_line(connection: socket.socket, what: str) -> str:
    data = b""
    while not data.endswith(b"\n"):
        try:
            chunk = connection.recv(_HELLO_BYTES)
        except TimeoutError:
            raise SandboxError(f"no {what} on the sandbox channel") from None
        if not chunk or len(data) > _HELLO_BYTES:
            raise SandboxError(f"the sandbox channel closed before {what}: {data[:200]!r}")
        data += chunk
    return data.decode()


_shared: SandboxHost | None = None


def shared_host() -> SandboxHost | None:
    """The sandbox container of this pod, when $REASONING_SANDBOX_CHANNEL names one (connected once per
    process); None where programs run in this process's own sandbox (local runs, tests)."""
    global _shared
    path = os.environ.get(CHANNEL_VARIABLE)
    if not path:
        return None
    if _shared is None:
        _shared = SandboxHost(path)
    return _shared


# ------------------------------------------------------------------------------ the sandbox container
def serve(path: str, worker_command: str, package_root: str) -> None:
    """The sandbox container's host: waits for the checker's socket, greets, starts workers on request,
    and stays until the pod ends (a restarted host would find no socket to connect to)."""
    forbid_tracing()
    workers: set[int] = set()

    def leave(*_: object) -> None:
        # in a container the kernel ends every process when pid 1 ends; elsewhere (tests) the host does
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        os._exit(0)

    signal.signal(signal.SIGTERM, leave)  # pid 1 ignores signals it has no handler for
    interpreter = default_interpreter()
    # the probe runs a program in this process's own sandbox, whose supervisor it waits for itself: only
    # then may the host reap whatever ends (its workers, and as pid 1 the orphans it adopts)
    level, refused = probe_isolation(interpreter)
    signal.signal(signal.SIGCHLD, lambda *_: workers.difference_update(_reap()))
    control = _connect(path)
    hello = {
        "level": str(level),
        "refused": {str(k): v for k, v in refused.items()},
        "cpus": usable_cpus(),
        "interpreter": interpreter,
    }
    control.sendall(json.dumps(hello).encode() + b"\n")
    print(f"sandbox: {level} isolation; refused: {refused or 'none'}", file=sys.stderr, flush=True)
    environment = {**os.environ, "PYTHONPATH": package_root}
    argv = [sys.executable, "-c", worker_command, str(level), interpreter]
    while True:
        message, fds, _, _ = socket.recv_fds(control, len(_WORKER_MESSAGE), 1)
        if not message:
            break
        for fd in fds:
            actions = [(os.POSIX_SPAWN_DUP2, fd, 0), (os.POSIX_SPAWN_DUP2, fd, 1), (os.POSIX_SPAWN_CLOSE, fd)]
            workers.add(os.posix_spawn(sys.executable, argv, environment, file_actions=actions))
            os.close(fd)
    print("sandbox: the checker closed the channel", file=sys.stderr, flush=True)
    while True:
        signal.pause()


def _connect(path: str) -> socket.socket:
    while True:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.connect(path)
            return connection
        except (FileNotFoundError, ConnectionRefusedError):
            connection.close()
            time.sleep(0.2)


def _reap() -> set[int]:
    reaped = set()
    with contextlib.suppress(ChildProcessError):
        while pid := os.waitpid(-1, os.WNOHANG)[0]:
            reaped.add(pid)
    return reaped


def main(argv: list[str] | None = None) -> None:
    from reasoning_pipeline.filter.code import PACKAGE_ROOT, WORKER_COMMAND

    arguments = sys.argv[1:] if argv is None else argv
    path = arguments[0] if arguments else os.environ.get(CHANNEL_VARIABLE, "")
    if not path:
        raise SystemExit(f"usage: sandbox_channel <socket path> (or ${CHANNEL_VARIABLE})")
    serve(path, WORKER_COMMAND, PACKAGE_ROOT)


if __name__ == "__main__":
    main()
