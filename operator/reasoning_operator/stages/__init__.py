"""Every object one attempt of a stage needs, as pure functions of the run.

A stage is a driver (a Job running the stage program; a PyTorchJob for train) plus the servers the driver
talks to (a Deployment and a Service each). Servers are named without the attempt and built apart from
the driver, so the caller keeps them across the driver's retries and deletes them when the stage ends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reasoning_pipeline.spec import Stage

from reasoning_operator.run import RunRef
from reasoning_operator.stages import evaluate, generate, rewrite
from reasoning_operator.workloads import (
    EnvVar,
    Manifest,
    Server,
    evaluate_driver_policy,
    no_network_policy,
    pytorch_job,
    server_deployment,
    server_service,
    server_url,
    stage_job,
)


def _nothing(run: RunRef) -> list[Server]:
    return []


def _no_env(run: RunRef) -> list[EnvVar]:
    return []


def _no_isolation(run: RunRef, stage: Stage) -> list[Manifest]:
    return []


def _isolated(run: RunRef, stage: Stage) -> list[Manifest]:
    return [no_network_policy(run, stage)]


def _evaluate_isolation(run: RunRef, stage: Stage) -> list[Manifest]:
    return [evaluate_driver_policy(run, evaluate.servers(run))]


def _never(run: RunRef) -> bool:
    return False


def _always(run: RunRef) -> bool:
    return True


@dataclass(frozen=True)
class StagePlan:
    servers: Callable[[RunRef], list[Server]] = _nothing
    driver_env: Callable[[RunRef], list[EnvVar]] = _no_env
    isolation: Callable[[RunRef, Stage], list[Manifest]] = _no_isolation
    sandboxed: Callable[[RunRef], bool] = _never
    """Whether the driver's pod runs model-written code (in a sandbox container of its own)."""


# data, format and train need nothing beyond their driver; the filter and evaluate run untrusted code
PLANS: dict[Stage, StagePlan] = {
    Stage.GENERATE: StagePlan(servers=generate.servers),
    Stage.REWRITE: StagePlan(servers=rewrite.servers, driver_env=rewrite.driver_env),
    Stage.FILTER: StagePlan(isolation=_isolated, sandboxed=_always),
    Stage.EVALUATE: StagePlan(
        servers=evaluate.servers, isolation=_evaluate_isolation, sandboxed=evaluate.runs_code
    ),
}


def _plan(run: RunRef, stage: Stage) -> StagePlan:
    if not run.spec.section(stage).enabled:
        raise ValueError(f"stage {stage.value} of run {run.name} is disabled: it has no children")
    return PLANS.get(stage, StagePlan())


def server_children(run: RunRef, stage: Stage) -> list[Manifest]:
    """The stage's servers (Service, then Deployment, for each); empty for most stages.

    The Service comes first, as Kubernetes' configuration guide advises, so that its name resolves
    before the server's pods start and anyone who sees the Deployment also finds its Service."""
    return [
        manifest
        for server in _plan(run, stage).servers(run)
        for manifest in (server_service(run, stage, server), server_deployment(run, stage, server))
    ]


def driver_children(run: RunRef, stage: Stage, attempt: int) -> list[Manifest]:
    """The attempt's driver, told where the stage's servers answer."""
    plan = _plan(run, stage)
    if stage is Stage.TRAIN:
        return [pytorch_job(run, attempt)]
    isolation = plan.isolation(run, stage)
    endpoints = [
        {"name": server.endpoint_variable, "value": server_url(run, stage, server.role)}
        for server in plan.servers(run)
    ]
    env = [*endpoints, *plan.driver_env(run)]
    return [*isolation, stage_job(run, stage, attempt, env=env, sandboxed=plan.sandboxed(run))]


def children(run: RunRef, stage: Stage, attempt: int) -> list[Manifest]:
    return [*server_children(run, stage), *driver_children(run, stage, attempt)]
