"""`reasoning-pipeline`: one stage per verb, the verifier checks, and the tiny world.

  reasoning-pipeline <stage> --config RUN.yaml [--root DIR]   run one stage of a ReasoningRun
  reasoning-pipeline run RUN.yaml [--root DIR]                  every enabled stage in order, locally
  reasoning-pipeline check math|code  < in.jsonl > out.jsonl    the filter's verdicts, one line per input
  reasoning-pipeline rewrite-stand-in [--port N]                a rule-based stand-in for the rewrite API
  reasoning-pipeline tiny-world [--link DIR]                    build the tiny world (cached), link it

A stage exits 0 when it succeeded, 1 when it failed (the reason is in its summary and on stderr), 2 when
the command line or the run file is wrong.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from reasoning_pipeline import lineage
from reasoning_pipeline.errors import StageError, TransientStageError
from reasoning_pipeline.preflight import check_models
from reasoning_pipeline.spec import ReasoningRun, SpecError, Stage, load_run
from reasoning_pipeline.storage import RunPaths
from reasoning_pipeline.summary import Failure, StageSummary, now, write_summary

StageRunner = Callable[[ReasoningRun, RunPaths], StageSummary]


def stage_runners() -> dict[Stage, StageRunner]:
    """The stages built so far, imported lazily so `check` stays light."""
    from reasoning_pipeline import data, evaluate, generate, rewrite, train
    from reasoning_pipeline import format as format_stage
    from reasoning_pipeline.filter import stage as filter_stage

    return {
        Stage.DATA: data.run,
        Stage.GENERATE: generate.run,
        Stage.REWRITE: rewrite.run,
        Stage.FILTER: filter_stage.run,
        Stage.FORMAT: format_stage.run,
        Stage.TRAIN: train.run,
        Stage.EVALUATE: evaluate.run,
    }


def storage_root(run: ReasoningRun, override: str | None) -> Path:
    return Path(override or os.environ.get("REASONING_STORAGE_ROOT") or run.spec.storage.mount_path)


def failure_of(error: Exception) -> Failure:
    """Permanent only for a StageError that says so: an unexpected exception (a lost connection, memory,
    a bug that depends on timing) may pass on another attempt."""
    if isinstance(error, StageError) and not isinstance(error, TransientStageError):
        return "Permanent"
    return "Transient"


def failed_summary(stage: Stage, message: str, failure: Failure, started_at: str) -> StageSummary:
    return StageSummary(
        stage=stage,
        phase="Failed",
        message=message,
        failure=failure,
        started_at=started_at,
        finished_at=now(),
    )


def take_stage_dir(run: ReasoningRun, paths: RunPaths, stage: Stage) -> None:
    """Refuse input made under another spec; then rank 0 makes the stage folder this spec's (a folder of
    another spec moves aside) while the other processes of a distributed stage wait for it."""
    lineage.require_run_of_this_pod(run)
    lineage.require_upstream_of_this_spec(run, paths, stage)
    if os.environ.get("RANK", "0") == "0":
        lineage.claim_stage_dir(run, paths, stage)
    else:
        lineage.wait_for_claim(run, paths, stage)


# the stages that run before the trainer asks for GPUs (generate's driver fails while its teacher still
# loads, and takes it down with it): each checks that the model folders the spec names are there
BEFORE_GPUS = frozenset({Stage.DATA, Stage.GENERATE, Stage.REWRITE, Stage.FILTER, Stage.FORMAT})


def run_stage(stage: Stage, config: str, root_override: str | None) -> int:
    try:
        run = load_run(config)
    except SpecError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    runner = stage_runners().get(stage)
    if runner is None:
        print(f"error: stage {stage.value!r} is not implemented in this version", file=sys.stderr)
        return 2
    paths = RunPaths(storage_root(run, root_override), run.metadata.name, run.metadata.uid)
    started_at = now()
    try:
        if stage in BEFORE_GPUS:
            check_models(run, paths)
        take_stage_dir(run, paths, stage)
        summary = runner(run, paths)
    except StageError as error:
        summary = failed_summary(stage, str(error), failure_of(error), started_at)
    except Exception as error:  # a bug must still leave a summary saying what happened
        traceback.print_exc()
        message = f"internal error: {type(error).__name__}: {error}"
        summary = failed_summary(stage, message, "Transient", started_at)
    # every process of a distributed stage reports through its own pod; only rank 0 writes on storage
    write_summary(summary, paths.stage_dir(stage), on_storage=os.environ.get("RANK", "0") == "0")
    if summary.phase == "Failed":
        print(f"error: {stage.value} failed: {summary.message}", file=sys.stderr)
        return 1
    print(f"{stage.value}: {summary.message}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reasoning-pipeline", description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    for stage in Stage:
        verb = verbs.add_parser(stage.value, help=f"run the {stage.value} stage")
        verb.add_argument("--config", required=True, help="a ReasoningRun manifest (YAML)")
        verb.add_argument(
            "--root", help="storage root (default: $REASONING_STORAGE_ROOT or spec.storage.mountPath)"
        )
    check = verbs.add_parser("check", help="verdicts of the filter's checkers for JSON Lines on stdin")
    check.add_argument("kind", choices=["math", "code"])
    check.add_argument(
        "--workers",
        type=int,
        default=0,
        help="checker processes (default: one per CPU in the cgroup limit)",
    )
    verbs.add_parser(
        "tiny-world",
        help="build (once, cached) the tiny tokenizer, teacher and student; see tiny-world --help",
    )
    whole = verbs.add_parser("run", help="run every enabled stage in order on this machine, resuming")
    whole.add_argument("config", help="a ReasoningRun manifest (YAML)")
    whole.add_argument("--root", default=".", help="storage root (default: the current folder)")
    stand_in = verbs.add_parser(
        "rewrite-stand-in", help="serve the rule-based local stand-in for the rewrite API"
    )
    stand_in.add_argument("--host", default="127.0.0.1")
    stand_in.add_argument("--port", type=int, default=8000)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    if given[:1] == ["tiny-world"]:  # its own options and --help: argparse cannot pass them through
        from reasoning_pipeline.tiny_world.build import main as tiny_world

        return tiny_world(given[1:])
    parser = build_parser()
    arguments = parser.parse_args(given)
    if arguments.verb in {s.value for s in Stage}:
        return run_stage(Stage(arguments.verb), arguments.config, arguments.root)
    if arguments.verb == "check":
        from reasoning_pipeline import check

        return check.main(arguments.kind, arguments.workers)
    if arguments.verb == "run":
        from reasoning_pipeline.local_run import run_all

        return run_all(Path(arguments.config), Path(arguments.root))
    if arguments.verb == "rewrite-stand-in":
        from reasoning_pipeline import rewrite_stand_in

        return rewrite_stand_in.serve(arguments.host, arguments.port)
    parser.error(f"unknown command {arguments.verb!r}")
    return 2
