"""The generate stage's client against a trivial loopback server: it must never be the bottleneck.

The whole stage runs (request building, aiohttp, retries bookkeeping, the journal, the final file), with
the server in another process; the figure is requests per second end to end.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reasoning_pipeline import generate
from reasoning_pipeline.spec import ReasoningRun
from reasoning_pipeline.storage import RunPaths, atomic_write_jsonl

from tests.support.waiting import wait_for

PROMPTS = 20_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bench_generate_client_requests_per_second() -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tests.support.trivial_openai_server", str(port)])
    try:
        wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, timeout=10, what="the server")
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch)
            prompts = [{"id": f"p{n}", "prompt": f"What is {n}+1?"} for n in range(PROMPTS)]
            atomic_write_jsonl(root / "prompts.jsonl", prompts)
            for concurrency in (16, 64, 256):
                disabled = {"enabled": False}
                run = ReasoningRun.model_validate(
                    {
                        "metadata": {"name": f"bench-{concurrency}"},
                        "spec": {
                            "data": disabled,
                            "generation": {
                                "inputPath": str(root / "prompts.jsonl"),
                                "teacher": {"model": "trivial", "endpoint": f"http://127.0.0.1:{port}/v1"},
                                "concurrency": concurrency,
                            },
                            **{
                                s: disabled for s in ("rewrite", "filter", "format", "training", "evaluation")
                            },
                        },
                    }
                )
                started = time.monotonic()
                summary = generate.run(run, RunPaths(root, run.metadata.name))
                seconds = time.monotonic() - started
                print(
                    f"\ngenerate stage, {PROMPTS} prompts, concurrency {concurrency:3d}: "
                    f"{PROMPTS / seconds:7.0f} requests/s end to end "
                    f"(client loop alone: {summary.metrics['requestsPerSecond']:.0f}/s)"
                )
    finally:
        server.terminate()
        server.wait()
