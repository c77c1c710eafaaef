"""Which spec a stage's output was made under, so one run never reuses output made for another spec.

A stage's fingerprint is a digest of its own section of the spec and of the fingerprint of the stage it
reads (the previous enabled one), so changing the teacher changes generate's fingerprint and every one
after it. Fields that only say where and how fast a stage runs (resources, pools, attempts, concurrency)
are left out: changing them must not throw finished work away.

Each stage folder holds `lineage.json`. A stage that starts in a folder made under another fingerprint
moves that folder aside (`<run>/superseded/<stage>-<fingerprint>-<n>`, never deleted: it may be the only
copy of days of generation) and starts afresh; a stage whose input was made under another spec fails
permanently, naming the fields that changed, instead of reading it. A folder without `lineage.json` was
written before stages recorded one and is resumed as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from reasoning_pipeline.errors import StageError, TransientStageError
from reasoning_pipeline.spec import STAGE_ORDER, ReasoningRun, ReasoningRunSpec, Stage
from reasoning_pipeline.storage import RunPaths, atomic_write_json, dumps_record

LINEAGE_FILE = "lineage.json"
SUPERSEDED_DIR = "superseded"
# where and how fast, not what: the same output whatever their values
PLACEMENT_FIELDS = frozenset(
    {
        "enabled",
        "maxAttempts",
        "resources",
        "nodePool",
        "concurrency",
        "workers",
        "maxRetries",
        "cpuKvCacheGib",
    }
)
CLAIM_WAIT_SECONDS = 600
# set by the operator in every stage pod: the uid of the run the pod was made for, and the spec's
# generation it was made under (its run file must be at least that new)
RUN_UID_VARIABLE = "REASONING_RUN_UID"
RUN_GENERATION_VARIABLE = "REASONING_RUN_GENERATION"
SPEC_FIELDS = {
    Stage.GENERATE.value: "generation",
    Stage.TRAIN.value: "training",
    Stage.EVALUATE.value: "evaluation",
}


def _without_placement(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_placement(v) for k, v in value.items() if k not in PLACEMENT_FIELDS}
    if isinstance(value, list):
        return [_without_placement(v) for v in value]
    return value


def _section(spec: ReasoningRunSpec, stage: Stage) -> dict[str, Any]:
    dumped = spec.section(stage).model_dump(by_alias=True, mode="json", exclude_none=True)
    section: dict[str, Any] = _without_placement(dumped)
    return section


def section_of(run: ReasoningRun, stage: Stage) -> dict[str, Any]:
    return _section(run.spec, stage)


def _upstream(spec: ReasoningRunSpec, stage: Stage) -> Stage | None:
    earlier = STAGE_ORDER[: STAGE_ORDER.index(stage)]
    enabled = [s for s in earlier if spec.section(s).enabled]
    return enabled[-1] if enabled else None


def upstream_of(run: ReasoningRun, stage: Stage) -> Stage | None:
    """The enabled stage before `stage`: the one whose output it reads."""
    return _upstream(run.spec, stage)


def fingerprint(run: ReasoningRun, stage: Stage) -> str:
    return spec_fingerprint(run.spec, stage)


def spec_fingerprint(spec: ReasoningRunSpec, stage: Stage) -> str:
    """What the stage's output depends on: its section and, through theirs, every stage before it that
    it reads (the operator compares it too, to see which stages an edit reaches)."""
    upstream = _upstream(spec, stage)
    chained = {
        "stage": stage.value,
        "section": _section(spec, stage),
        "upstream": spec_fingerprint(spec, upstream) if upstream else None,
    }
    return hashlib.sha256(dumps_record(chained).encode()).hexdigest()


def chain_of(run: ReasoningRun, stage: Stage) -> list[Stage]:
    """`stage` and every enabled stage whose output reaches it, earliest first."""
    upstream = upstream_of(run, stage)
    return [*(chain_of(run, upstream) if upstream else []), stage]


def lineage(run: ReasoningRun, stage: Stage) -> dict[str, Any]:
    return {
        "stage": stage.value,
        "fingerprint": fingerprint(run, stage),
        "sections": {s.value: section_of(run, s) for s in chain_of(run, stage)},
    }


def recorded_lineage(stage_dir: Path) -> dict[str, Any] | None:
    path = stage_dir / LINEAGE_FILE
    if not path.is_file():
        return None
    recorded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return recorded


def is_of_this_spec(run: ReasoningRun, paths: RunPaths, stage: Stage) -> bool:
    """False only when the folder says it was made under another spec (no record: an older version's)."""
    recorded = recorded_lineage(paths.stage_dir(stage))
    return recorded is None or recorded.get("fingerprint") == fingerprint(run, stage)


def changed_fields(run: ReasoningRun, stage: Stage, recorded: dict[str, Any]) -> list[str]:
    """The fields of `stage`'s section and of the sections before it that differ from what `recorded`
    was made under."""
    before: dict[str, Any] = recorded.get("sections") or {}
    now = {s.value: section_of(run, s) for s in chain_of(run, stage)}
    changed = []
    for name in [s.value for s in STAGE_ORDER if s.value in before or s.value in now]:
        old, new = before.get(name) or {}, now.get(name) or {}
        field = SPEC_FIELDS.get(name, name)
        changed += [
            f"spec.{field}.{key}" for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)
        ]
        if (name in before) != (name in now):
            changed.append(f"spec.{field}.enabled")
    return changed or [f"the stages before {stage.value}"]


def _superseded_path(paths: RunPaths, stage: Stage, old_fingerprint: str) -> Path:
    base = paths.instance_dir() / SUPERSEDED_DIR
    number = 1
    while (candidate := base / f"{stage.value}-{old_fingerprint[:12]}-{number}").exists():
        number += 1
    return candidate


def restart_of(run: ReasoningRun, stage: Stage) -> str | None:
    """The id of the spec's `restartFrom` when it covers `stage` (its stage or an earlier one)."""
    restart = run.spec.restart_from
    if restart is None or STAGE_ORDER.index(stage) < STAGE_ORDER.index(restart.stage):
        return None
    return restart.id


def _is_mine(recorded: dict[str, Any] | None, mine: dict[str, Any]) -> bool:
    """Made under this spec, and, when a restart covers the stage, since that restart."""
    if recorded is None or recorded.get("fingerprint") != mine["fingerprint"]:
        return False
    return mine.get("restart") is None or recorded.get("restart") == mine["restart"]


def claim_stage_dir(run: ReasoningRun, paths: RunPaths, stage: Stage) -> Path:
    """The stage folder, made under this spec (and since the restart that covers it): another one is
    moved aside first."""
    stage_dir = paths.stage_dir(stage)
    recorded = recorded_lineage(stage_dir)
    mine = lineage(run, stage)
    restart = restart_of(run, stage)
    if restart is not None:
        mine["restart"] = restart
    if recorded is not None and not _is_mine(recorded, mine):
        aside = _superseded_path(paths, stage, str(recorded.get("fingerprint", "unknown")))
        aside.parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage_dir, aside)
    stage_dir.mkdir(parents=True, exist_ok=True)
    if not _is_mine(recorded, mine):
        atomic_write_json(stage_dir / LINEAGE_FILE, mine)
    return stage_dir


def wait_for_claim(
    run: ReasoningRun, paths: RunPaths, stage: Stage, timeout: float = CLAIM_WAIT_SECONDS
) -> None:
    """The other processes of a distributed stage: rank 0 claims the folder, they wait until it has."""
    deadline = time.monotonic() + timeout
    mine: dict[str, Any] = {"fingerprint": fingerprint(run, stage), "restart": restart_of(run, stage)}
    while not _is_mine(recorded_lineage(paths.stage_dir(stage)), mine):
        if time.monotonic() > deadline:
            raise StageError(f"rank 0 did not claim {paths.stage_dir(stage)} within {timeout:.0f} s")
        time.sleep(1)


def require_run_of_this_pod(run: ReasoningRun) -> None:
    """A pod made for one run whose run file is another's (an earlier run of the same name whose
    ConfigMap had not gone yet): transient, the operator makes the new one's before long."""
    made_for = os.environ.get(RUN_UID_VARIABLE)
    if made_for and made_for != run.metadata.uid:
        raise TransientStageError(
            f"the run file is the one of run uid {run.metadata.uid}, this pod was made for uid {made_for}"
        )
    # the operator renders the run file again when the spec changes; a pod made after that may still be
    # handed the earlier one for a moment (the kubelet's copy of the ConfigMap lags behind)
    made_under = os.environ.get(RUN_GENERATION_VARIABLE, "")
    rendered = run.metadata.generation
    if made_under.isdigit() and rendered is not None and rendered < int(made_under):
        raise TransientStageError(
            f"the run file is of the spec's generation {rendered}, this pod was made under generation "
            f"{made_under}: the node has not seen the run's ConfigMap change yet"
        )


def require_upstream_of_this_spec(run: ReasoningRun, paths: RunPaths, stage: Stage) -> None:
    """Refuse, permanently, to read input that was made under another spec."""
    upstream = upstream_of(run, stage)
    if upstream is None:
        return
    recorded = recorded_lineage(paths.stage_dir(upstream))
    if recorded is None or recorded.get("fingerprint") == fingerprint(run, upstream):
        return
    fields = ", ".join(changed_fields(run, upstream, recorded))
    raise StageError(
        f"the {upstream.value} stage's output was made under another spec ({fields} changed since it ran);"
        f" it is not reused: run the {upstream.value} stage again under this spec"
    )
