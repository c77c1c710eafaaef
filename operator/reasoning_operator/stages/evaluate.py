"""evaluate: a server for the model being scored and, to compare, one for the training base model."""

from __future__ import annotations

from functools import partial
from pathlib import Path, PurePosixPath

from reasoning_pipeline.spec import CODE_BENCHMARKS, Stage
from reasoning_pipeline.storage import RunPaths

from reasoning_operator.naming import Role
from reasoning_operator.run import RunRef
from reasoning_operator.workloads import Server, model_server

# reasoning_pipeline.evaluate.ENDPOINT_VARIABLE, restated so the operator does not import the stage
# program; a unit test keeps them equal.
EVAL_ENDPOINT_VARIABLE = "REASONING_EVAL_ENDPOINT"
# Where the evaluate program must send the base model's requests when it has a server of its own.
EVAL_BASE_ENDPOINT_VARIABLE = "REASONING_EVAL_ENDPOINT_BASE"


def trained_model(run: RunRef) -> str:
    """What the train stage wrote: `<root>/runs/<run>/<uid>/train/model`, as the evaluate program reads
    it (a run created again under the same name must not serve the earlier run's model)."""
    paths = RunPaths(Path(run.spec.storage.mount_path), run.name, run.uid)
    return str(PurePosixPath(paths.stage_dir(Stage.TRAIN)) / "model")


def runs_code(run: RunRef) -> bool:
    """Whether the driver scores a benchmark by running the model's programs."""
    return any(benchmark.name in CODE_BENCHMARKS for benchmark in run.spec.evaluation.benchmarks)


def servers(run: RunRef) -> list[Server]:
    evaluation = run.spec.evaluation
    if evaluation.server.endpoint:
        return []
    serve = partial(model_server, run, served=evaluation.server, pool_field="evaluation.server.nodePool")
    student = serve(
        Role.SERVER,
        model=evaluation.server.model or trained_model(run),
        revision=evaluation.server.revision,
        endpoint_variable=EVAL_ENDPOINT_VARIABLE,
    )
    # vLLM serves the one model it was started with; `transformers serve` loads whichever model a
    # request names, so one of those answers for the base model too
    if not evaluation.compare_with_base or evaluation.server.engine != "vllm":
        return [student]
    training = run.spec.training
    base = serve(
        Role.SERVER_BASE,
        model=training.base_model,
        revision=training.revision,
        endpoint_variable=EVAL_BASE_ENDPOINT_VARIABLE,
    )
    return [student, base]
