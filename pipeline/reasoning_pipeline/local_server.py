"""A model served on this machine over the OpenAI protocol: `transformers serve` on CPU, the small-scale
stand-in for the vLLM Deployment the operator runs on GPUs. Used by `reasoning-pipeline run` and tests.

`transformers serve` loads the model named in each request, so one server answers for every local model
path (the trained student and its base alike); with `model` given it preloads that one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from reasoning_pipeline.errors import TransientStageError

READY_TIMEOUT_SECONDS = 180.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _transformers_command() -> list[str]:
    beside = Path(sys.executable).with_name("transformers")
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "transformers.cli.transformers"]


@contextlib.contextmanager
def transformers_server(
    model: str | None = None, *, dtype: str = "float32", ready_timeout: float = READY_TIMEOUT_SECONDS
) -> Iterator[str]:
    """Starts `transformers serve` on a free loopback port; yields its base URL (…/v1); always stops it."""
    port = free_port()
    command = [*_transformers_command(), "serve", "--device", "cpu", "--dtype", dtype]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    if model:
        command.append(model)
    environment = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    with tempfile.TemporaryFile(mode="w+") as log:
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True
        )
        try:
            deadline = time.monotonic() + ready_timeout
            base_url = f"http://127.0.0.1:{port}/v1"
            while not _answers(f"{base_url}/models"):
                if server.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    tail = log.read()[-3000:]
                    state = (
                        f"exited with {server.returncode}" if server.poll() is not None else "did not answer"
                    )
                    raise TransientStageError(
                        f"`{' '.join(command)}` {state} within {ready_timeout:.0f} s:\n{tail}"
                    )
                time.sleep(0.5)
            yield base_url
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.pid, signal.SIGKILL)
                server.wait()
