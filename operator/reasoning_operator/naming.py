"""Names and labels of everything the operator creates for a run.

Names are deterministic (`<run>-<stage>[-<role>][-<attempt>]`), so that re-applying after an operator
restart finds the object it made before instead of making a second one.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

from reasoning_pipeline.spec import API_GROUP, ReasoningRunSpec, Stage

LABEL_RUN = f"{API_GROUP}/run"
# the run's uid: a run deleted and created again under its name is another run, and its children must not
# be taken for the earlier one's (their names are the same)
LABEL_RUN_UID = f"{API_GROUP}/run-uid"
LABEL_STAGE = f"{API_GROUP}/stage"
LABEL_ATTEMPT = f"{API_GROUP}/attempt"
LABEL_ROLE = f"{API_GROUP}/role"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "reasoning-operator"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# on the run's ConfigMap: the spec generation its run file was rendered from
GENERATION_ANNOTATION = "reasoning.dev/generation"
# on a workload the operator ended (its deadline cut short): why, in the stage's words
FAILURE_ANNOTATION = "reasoning.dev/failed-because"

# A DNS-1035 label: what Services and PyTorchJobs (the training operator's webhook) require of a name;
# Jobs, Deployments and ConfigMaps accept it too, so every child name is one.
MAX_NAME_LENGTH = 63
# Characters of the run name's hash that stand in for the part of a long run name that was cut.
HASH_LENGTH = 8


class Role(StrEnum):
    """What a child does within its stage (the `reasoning.dev/role` label)."""

    DRIVER = "driver"
    SERVER = "server"
    SERVER_BASE = "server-base"
    REWRITE_STAND_IN = "rewrite-stand-in"
    TRAINER = "trainer"
    ISOLATION = "isolation"  # a NetworkPolicy around the stage's pods


def _run_part(run_name: str, room: int) -> str:
    """The run name, or when it does not fit in `room`, its start and a hash of the whole name: two long
    run names that share a start still get different children."""
    # a DNS-1035 label starts with a letter; a run name (a DNS-1123 label) may start with a digit
    name = run_name if run_name[:1].isalpha() else f"r-{run_name}"
    if len(name) <= room:
        return name
    digest = hashlib.sha256(run_name.encode()).hexdigest()[:HASH_LENGTH]
    return f"{name[: room - HASH_LENGTH - 1].rstrip('-')}-{digest}"


def bounded_name(run_name: str, *suffix: str, max_length: int = MAX_NAME_LENGTH) -> str:
    """`<run>-<suffix…>` in at most `max_length` characters; the suffix is always kept whole."""
    tail = "".join(f"-{part}" for part in suffix)
    if len(tail) + HASH_LENGTH + 2 > max_length:
        raise ValueError(f"name suffix {tail!r} leaves no room for the run name in {max_length} characters")
    return _run_part(run_name, max_length - len(tail)) + tail


def child_name(
    run_name: str,
    stage: Stage,
    *,
    attempt: int | None = None,
    role: str | None = None,
    max_length: int = MAX_NAME_LENGTH,
) -> str:
    """`<run>-<stage>[-<role>][-<attempt>]`; `max_length` is lower for objects whose controller appends
    to the name (a PyTorchJob's pods and Services are `<job>-worker-<i>`)."""
    parts = [stage.value, *([role] if role else []), *([str(attempt)] if attempt is not None else [])]
    return bounded_name(run_name, *parts, max_length=max_length)


def config_map_name(run_name: str) -> str:
    return bounded_name(run_name, "config")


def storage_claim_name(run_name: str, spec: ReasoningRunSpec) -> str:
    """The user's existing claim, else the one the operator makes for the run."""
    return spec.storage.claim_name or bounded_name(run_name, "storage")
