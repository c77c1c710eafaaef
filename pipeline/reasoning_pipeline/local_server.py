"""A model served on this machine over the OpenAI protocol, for `reasoning-pipeline run` and the tests:
vLLM's own server on CPU (what the operator deploys, there on GPUs or CPU nodes), or `transformers serve`
(the documented fallback).

vLLM serves the one model it was started with; `transformers serve` loads the model named in each
request, so one of those answers for every local model path (the trained student and its base alike).
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

from reasoning_pipeline.cpus import usable_cpus
from reasoning_pipeline.errors import TransientStageError
from reasoning_pipeline.spec import ServedModel

READY_TIMEOUT_SECONDS = 180.0
# vLLM imports for a minute or more on two cores before it loads anything
VLLM_READY_TIMEOUT_SECONDS = 600.0


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


VLLM_PYTHON_VARIABLE = "REASONING_VLLM_PYTHON"
# vLLM on CPU pins its threads to cores, which a shared machine or a pod under a CPU quota cannot honour
VLLM_CPU_NO_PINNING = {"VLLM_CPU_OMP_THREADS_BIND": "nobind"}


def vllm_python() -> str:
    """The interpreter with vLLM: $REASONING_VLLM_PYTHON (`make setup` builds one, hack/vllm.sh), else this
    one. vLLM pins its own torch and transformers, so it lives in an environment of its own."""
    return os.environ.get(VLLM_PYTHON_VARIABLE) or sys.executable


def vllm_command(
    model: str, *, port: int, dtype: str, max_model_len: int | None, enforce_eager: bool
) -> list[str]:
    command = [vllm_python(), "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--dtype", dtype]
    if max_model_len is not None:
        command += ["--max-model-len", str(max_model_len)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    return [*command, "--enforce-eager"] if enforce_eager else command


@contextlib.contextmanager
def _serving(
    command: list[str], port: int, environment: dict[str, str], ready_timeout: float
) -> Iterator[str]:
    """Runs a server command; yields its base URL (…/v1) once /v1/models answers; always stops it."""
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
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.pid, signal.SIGKILL)
                server.wait()


def _offline_environment() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}


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
    with _serving(command, port, _offline_environment(), ready_timeout) as base_url:
        yield base_url


@contextlib.contextmanager
def vllm_server(
    model: str,
    *,
    max_model_len: int | None,
    dtype: str = "float32",
    enforce_eager: bool = True,
    kv_cache_gib: int = 1,
    ready_timeout: float = VLLM_READY_TIMEOUT_SECONDS,
) -> Iterator[str]:
    """Starts vLLM's OpenAI-compatible server for one model on CPU, on a free loopback port; yields its
    base URL (…/v1) once it answers; always stops it."""
    port = free_port()
    command = vllm_command(
        model, port=port, dtype=dtype, max_model_len=max_model_len, enforce_eager=enforce_eager
    )
    environment = {
        **_offline_environment(),
        **VLLM_CPU_NO_PINNING,
        "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib),
        # vLLM otherwise drops to one thread when it cannot pin; it may use what this machine allows
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(usable_cpus())),
    }
    with _serving(command, port, environment, ready_timeout) as base_url:
        yield base_url


def model_server(served: ServedModel, model: str | None) -> contextlib.AbstractContextManager[str]:
    """The server the spec's engine names, on this machine's CPU. vLLM serves exactly `model`;
    `transformers serve` loads whichever model a request names (and preloads `model` when given)."""
    if served.engine == "vllm":
        if model is None:
            raise ValueError("vLLM serves one model: name it")
        return vllm_server(
            model,
            max_model_len=served.max_model_len,
            dtype=served.dtype,
            enforce_eager=served.enforce_eager,
            kv_cache_gib=served.cpu_kv_cache_gib,
        )
    return transformers_server(model, dtype=served.dtype)
