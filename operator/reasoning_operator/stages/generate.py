"""generate: the teacher's server (unless the spec gives an endpoint) for the driver Job to stream to."""

from __future__ import annotations

from reasoning_operator.naming import Role
from reasoning_operator.run import RunRef
from reasoning_operator.workloads import Server, model_server

# reasoning_pipeline.generate.ENDPOINT_VARIABLE, restated so the operator does not import the stage
# program (and its HTTP client); a unit test keeps the two equal.
TEACHER_ENDPOINT_VARIABLE = "REASONING_TEACHER_ENDPOINT"


def servers(run: RunRef) -> list[Server]:
    teacher = run.spec.generation.teacher
    if teacher.endpoint:
        return []
    return [
        model_server(
            run,
            Role.SERVER,
            teacher,
            pool_field="generation.teacher.nodePool",
            model=teacher.model,
            revision=teacher.revision,
            endpoint_variable=TEACHER_ENDPOINT_VARIABLE,
        )
    ]
