"""evaluate: a server for the model being scored and, to compare, one for the training base model."""

from __future__ import annotations

from functools import partial
from pathlib import PurePosixPath

from reasoning_pipeline.spec import Stage

from reasoning_operator.naming import Role
from reasoning_operator.run import RunRef
from reasoning_operator.workloads import Server, model_server

# reasoning_pipeline.evaluate.ENDPOINT_VARIABLE, restated so the operator does not import the stage
# program; a unit test keeps them equal.
EVAL_ENDPOINT_VARIABLE = "REASONING_EVAL_ENDPOINT"
# Where the evaluate program must send the base model's requests when it has a server of its own.
EVAL_BASE_ENDPOINT_VARIABLE = "REASONING_EVAL_ENDPOINT_BASE"


def trained_model(run: RunRef) -> str:
    """What the train stage wrote: `<root>/runs/<run>/train/model`, as the evaluate program reads it."""
    root = PurePosixPath(run.spec.storage.mount_path)
    return str(root / "runs" / run.name / Stage.TRAIN.value / "model")


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
