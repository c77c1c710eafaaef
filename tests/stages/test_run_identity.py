"""A run's outputs are its own: kept apart by uid, made under one spec, never read under another.

The stage programs run as the pods run them (`reasoning-pipeline <stage> --config`), on the data fixtures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from reasoning_pipeline.cli import run_stage
from reasoning_pipeline.lineage import RUN_GENERATION_VARIABLE, RUN_UID_VARIABLE, SUPERSEDED_DIR
from reasoning_pipeline.spec import Stage
from reasoning_pipeline.storage import RunPaths

from tests.stages.test_data import FIXTURES

UID = "5b0e7c9e-1c1e-4a63-9a4e-2f1d9e0c0001"


def manifest(*, seed: int = 7, uid: str | None = UID, **data: Any) -> dict[str, Any]:
    disabled = {"enabled": False}
    numina = {"name": "numina", "format": "numina", "path": str(FIXTURES / "numina.jsonl")}
    return {
        "apiVersion": "reasoning.dev/v1alpha1",
        "kind": "ReasoningRun",
        "metadata": {"name": "ident", **({"uid": uid} if uid else {})},
        "spec": {
            "data": {"sources": [numina], "seed": seed, **data},
            "generation": {"teacher": {"model": "tiny-teacher", "endpoint": "http://127.0.0.1:9/v1"}},
            **{s: disabled for s in ("rewrite", "filter", "format", "training", "evaluation")},
        },
    }


def run(tmp_path: Path, stage: Stage, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    config = tmp_path / f"run-{stage.value}.yaml"
    config.write_text(yaml.safe_dump(body))
    code = run_stage(stage, str(config), str(tmp_path / "root"))
    uid = body["metadata"].get("uid")
    stage_dir = RunPaths(tmp_path / "root", "ident", uid).stage_dir(stage)
    return code, json.loads((stage_dir / "summary.json").read_text())


def test_runs_of_one_name_with_different_uids_write_to_folders_of_their_own(tmp_path: Path) -> None:
    other = "5b0e7c9e-1c1e-4a63-9a4e-2f1d9e0c0002"
    assert run(tmp_path, Stage.DATA, manifest())[0] == 0
    assert run(tmp_path, Stage.DATA, manifest(seed=8, uid=other))[0] == 0
    named = tmp_path / "root" / "runs" / "ident"
    assert {p.name for p in named.iterdir()} == {UID, other}
    assert (named / UID / "data" / "prompts.jsonl").is_file()
    assert not (named / UID / SUPERSEDED_DIR).exists()  # the second run never touched the first's folder
    # a local run has no uid: its stages' folders are right under its name
    assert RunPaths(Path("/r"), "ident").stage_dir(Stage.DATA) == Path("/r/runs/ident/data")


def test_a_stage_run_again_under_another_spec_moves_the_earlier_output_aside(tmp_path: Path) -> None:
    assert run(tmp_path, Stage.DATA, manifest(seed=7))[0] == 0
    instance = tmp_path / "root" / "runs" / "ident" / UID
    first = (instance / "data" / "prompts.jsonl").read_bytes()
    assert run(tmp_path, Stage.DATA, manifest(seed=8))[0] == 0
    (aside,) = (instance / SUPERSEDED_DIR).iterdir()
    assert aside.name.startswith("data-")
    assert (aside / "prompts.jsonl").read_bytes() == first  # moved whole, not deleted
    recorded = json.loads((instance / "data" / "lineage.json").read_text())
    assert recorded["sections"]["data"]["seed"] == 8


def test_where_and_how_fast_a_stage_runs_is_not_another_spec(tmp_path: Path) -> None:
    assert run(tmp_path, Stage.DATA, manifest())[0] == 0
    placed = manifest(maxAttempts=5, resources={"cpu": "3", "memory": "4Gi"})
    assert run(tmp_path, Stage.DATA, placed)[0] == 0
    assert not (tmp_path / "root" / "runs" / "ident" / UID / SUPERSEDED_DIR).exists()


def test_input_made_under_another_spec_is_refused_for_good_naming_the_field(tmp_path: Path) -> None:
    assert run(tmp_path, Stage.DATA, manifest(seed=7))[0] == 0
    code, summary = run(tmp_path, Stage.GENERATE, manifest(seed=8))
    assert code == 1
    assert summary["failure"] == "Permanent"
    assert "spec.data.seed" in summary["message"]
    assert "not reused" in summary["message"]


def test_a_pod_whose_run_file_is_another_runs_fails_and_may_pass_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(RUN_UID_VARIABLE, "5b0e7c9e-1c1e-4a63-9a4e-2f1d9e0c0009")
    code, summary = run(tmp_path, Stage.DATA, manifest())
    assert code == 1
    assert summary["failure"] == "Transient"
    assert not (tmp_path / "root" / "runs" / "ident" / UID / "data" / "prompts.jsonl").exists()


def test_a_restart_moves_the_stages_it_covers_aside_once_and_resumes_after(tmp_path: Path) -> None:
    """`restartFrom` data, id fix-1: the data stage's earlier output goes aside, the new one records the
    restart; run again under the same restart (a retry), the folder is kept."""
    assert run(tmp_path, Stage.DATA, manifest())[0] == 0
    instance = tmp_path / "root" / "runs" / "ident" / UID
    restarted = {
        **manifest(),
        "spec": {**manifest()["spec"], "restartFrom": {"stage": "data", "id": "fix-1"}},
    }
    assert run(tmp_path, Stage.DATA, restarted)[0] == 0
    (aside,) = (instance / SUPERSEDED_DIR).iterdir()
    assert (aside / "prompts.jsonl").is_file()
    assert json.loads((instance / "data" / "lineage.json").read_text())["restart"] == "fix-1"
    assert run(tmp_path, Stage.DATA, restarted)[0] == 0
    assert len(list((instance / SUPERSEDED_DIR).iterdir())) == 1, "the same restart again: resumed"
    # a restart from a later stage does not reach this one
    later = {**manifest(), "spec": {**manifest()["spec"], "restartFrom": {"stage": "generate", "id": "x"}}}
    assert run(tmp_path, Stage.DATA, later)[0] == 0
    assert len(list((instance / SUPERSEDED_DIR).iterdir())) == 1


def test_a_pod_handed_an_older_run_file_than_it_was_made_for_waits_for_the_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(RUN_GENERATION_VARIABLE, "3")
    stale = {**manifest(), "metadata": {**manifest()["metadata"], "generation": 2}}
    code, summary = run(tmp_path, Stage.DATA, stale)
    assert code == 1
    assert summary["failure"] == "Transient"
    assert "generation 2, this pod was made under generation 3" in summary["message"]
    fresh = {**manifest(), "metadata": {**manifest()["metadata"], "generation": 3}}
    assert run(tmp_path, Stage.DATA, fresh)[0] == 0
