"""rewrite: the driver Job calls an OpenAI-compatible API with a key from a Secret, or the project's
rule-based stand-in, deployed for the run, with no key at all."""

from __future__ import annotations

from reasoning_operator.naming import Role
from reasoning_operator.run import RunRef
from reasoning_operator.workloads import (
    PIPELINE_PROGRAM,
    SERVER_PORT,
    EnvVar,
    Server,
    driver_pool,
    http_container,
)

# reasoning_pipeline.rewrite's API_KEY_VARIABLE and BASE_URL_VARIABLE, restated so the operator does not
# import the stage program (and the openai client); a unit test keeps them equal.
API_KEY_VARIABLE = "OPENAI_API_KEY"
BASE_URL_VARIABLE = "REASONING_REWRITE_BASE_URL"
# The stand-in checks no key, but the openai client refuses to start without one.
STAND_IN_KEY = "stand-in-needs-no-key"


def servers(run: RunRef) -> list[Server]:
    if not run.spec.rewrite.stand_in:
        return []
    command = [PIPELINE_PROGRAM, "rewrite-stand-in", "--host", "0.0.0.0", "--port", str(SERVER_PORT)]
    stand_in = http_container(run.spec.images.pipeline, command, readiness_path="/healthz")
    return [
        Server(
            role=Role.REWRITE_STAND_IN,
            container=stand_in,
            pool=driver_pool(run),
            replicas=1,
            endpoint_variable=BASE_URL_VARIABLE,
        )
    ]


def driver_env(run: RunRef) -> list[EnvVar]:
    """The API key and base URL; with the stand-in, its URL comes from its server, the key is a dummy."""
    rewrite = run.spec.rewrite
    if rewrite.stand_in:
        return [{"name": API_KEY_VARIABLE, "value": STAND_IN_KEY}]
    env: list[EnvVar] = [{"name": BASE_URL_VARIABLE, "value": rewrite.base_url}]
    if rewrite.api_key_secret is not None:
        # a reference, never the value: the key stays in the Secret and out of the Job's manifest
        secret = {"name": rewrite.api_key_secret.name, "key": rewrite.api_key_secret.key}
        env.append({"name": API_KEY_VARIABLE, "valueFrom": {"secretKeyRef": secret}})
    return env
