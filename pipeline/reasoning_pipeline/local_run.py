"""`reasoning-pipeline run RUN.yaml`: every enabled stage in order, on this machine, with the same programs
the pods run (each stage is its own process, as in its container). What the operator provides on a
cluster is provided here: the teacher and the evaluated models are served on CPU by the engine the spec
names (vLLM from $REASONING_VLLM_PYTHON, or `transformers serve`), the rewrite stand-in runs when the spec
asks for it, and training runs under torchrun. A stage whose summary says it succeeded under this spec is not
run again, so a rerun resumes where the last one stopped; one that ran under another spec runs again (its
old folder moves aside, see lineage.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from reasoning_pipeline.evaluate import BASE_ENDPOINT_VARIABLE as EVAL_BASE_ENDPOINT
from reasoning_pipeline.evaluate import ENDPOINT_VARIABLE as EVAL_ENDPOINT
from reasoning_pipeline.evaluate import contenders
from reasoning_pipeline.generate import ENDPOINT_VARIABLE as TEACHER_ENDPOINT
from reasoning_pipeline.lineage import is_of_this_spec
from reasoning_pipeline.local_server import free_port, model_server
from reasoning_pipeline.rewrite import BASE_URL_VARIABLE
from reasoning_pipeline.spec import STAGE_ORDER, ReasoningRun, SpecError, Stage, load_run
from reasoning_pipeline.storage import RunPaths

STAND_IN_KEY = "stand-in-needs-no-key"


def _stage_command(stage: Stage, config: Path, root: Path, run: ReasoningRun) -> list[str]:
    program = [
        sys.executable,
        "-m",
        "reasoning_pipeline",
        stage.value,
        "--config",
        str(config),
        "--root",
        str(root),
    ]
    if stage is not Stage.TRAIN:
        return program
    training = run.spec.training
    processes = training.processes_per_node or max(training.gpus_per_node, 1)
    torchrun = Path(sys.executable).with_name("torchrun")
    return [str(torchrun), "--standalone", f"--nproc_per_node={processes}", *program[1:]]


def _summary(paths: RunPaths, stage: Stage) -> dict[str, object] | None:
    path = paths.stage_dir(stage) / "summary.json"
    if not path.is_file():
        return None
    summary: dict[str, object] = json.loads(path.read_text())
    return summary


@contextlib.contextmanager
def _rewrite_stand_in() -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "reasoning_pipeline", "rewrite-stand-in", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        import socket

        deadline = time.monotonic() + 30
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the rewrite stand-in did not start")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.terminate()
        server.wait()


def _services(
    stage: Stage, run: ReasoningRun, paths: RunPaths, stack: contextlib.ExitStack
) -> dict[str, str]:
    """Environment for one stage: the servers a cluster would have deployed for it."""
    spec = run.spec
    if stage is Stage.GENERATE and not spec.generation.teacher.endpoint:
        teacher = spec.generation.teacher
        model = str(paths.resolve(teacher.model))
        print(f"  serving the teacher {model} with {teacher.engine} (CPU)", file=sys.stderr)
        return {TEACHER_ENDPOINT: stack.enter_context(model_server(teacher, model))}
    if stage is Stage.REWRITE and spec.rewrite.stand_in:
        print("  rewrite goes to the rule-based local stand-in, not a language model", file=sys.stderr)
        return {BASE_URL_VARIABLE: stack.enter_context(_rewrite_stand_in()), "OPENAI_API_KEY": STAND_IN_KEY}
    if stage is Stage.EVALUATE and not spec.evaluation.server.endpoint:
        served = spec.evaluation.server
        if served.engine != "vllm":  # one server loads every model a request names
            return {EVAL_ENDPOINT: stack.enter_context(model_server(served, None))}
        endpoints = {}
        for contender in contenders(run, paths):  # vLLM: one server per model, as the operator deploys
            print(f"  serving {contender.model} with vllm (CPU)", file=sys.stderr)
            variable = EVAL_BASE_ENDPOINT if contender.label == "base" else EVAL_ENDPOINT
            endpoints[variable] = stack.enter_context(model_server(served, contender.model))
        return endpoints
    return {}


def run_all(config: Path, root: Path) -> int:
    try:
        run = load_run(config)
    except SpecError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    root = root.resolve()  # servers and stages must agree on every relative path in the spec
    paths = RunPaths(root, run.metadata.name, run.metadata.uid)
    for stage in STAGE_ORDER:
        if not run.spec.section(stage).enabled:
            print(f"- {stage.value}: disabled", file=sys.stderr)
            continue
        done = _summary(paths, stage)
        if done is not None and done.get("phase") == "Succeeded" and is_of_this_spec(run, paths, stage):
            print(f"✓ {stage.value}: done earlier: {done.get('message')}", file=sys.stderr)
            continue
        print(f"▶ {stage.value}", file=sys.stderr)
        started = time.monotonic()
        with contextlib.ExitStack() as stack:
            environment = {**os.environ, **_services(stage, run, paths, stack)}
            result = subprocess.run(_stage_command(stage, config, root, run), env=environment, check=False)
        summary = _summary(paths, stage) or {}
        if result.returncode != 0 or summary.get("phase") != "Succeeded":
            print(
                f"✗ {stage.value} failed: {summary.get('message', f'exit status {result.returncode}')}",
                file=sys.stderr,
            )
            return 1
        print(
            f"✓ {stage.value} ({time.monotonic() - started:.0f} s): {summary.get('message')}", file=sys.stderr
        )
    return 0
