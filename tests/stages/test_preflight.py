"""The CPU stages check the model folders the spec names before any GPU is asked for: a teacher, base
model or evaluated model that is not on the storage (nor, with the hub off, in its cache) fails the data
stage for good, each missing one named by its field."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from tests.support.stage_process import run_stage_program

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "datasets"


def data_stage(root: Path, spec: dict[str, Any], environment: dict[str, str]) -> tuple[int, dict[str, Any]]:
    return run_stage_program(root, "pre", "data", spec, environment)


def spec_naming(teacher: str, base_model: str, *, offline: bool = False) -> dict[str, Any]:
    source = {"name": "numina", "format": "numina", "path": str(FIXTURES / "numina.jsonl")}
    return {
        "hub": {"offline": offline},
        "data": {"sources": [source]},
        "generation": {"teacher": {"model": teacher}},
        "training": {"baseModel": base_model},
        "evaluation": {"enabled": False},
    }


def cached_model(cache: Path, repo_id: str) -> None:
    """A model repository as the hub's cache keeps it: refs/main naming a snapshot with its config."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")


def test_a_model_path_that_is_not_there_fails_the_data_stage_naming_its_field(tmp_path: Path) -> None:
    (tmp_path / "models" / "teacher").mkdir(parents=True)
    code, summary = data_stage(tmp_path, spec_naming("models/teacher", "./models/student"), dict(os.environ))
    assert code == 1
    assert (summary["phase"], summary["failure"]) == ("Failed", "Permanent")
    assert summary["message"].startswith("training.baseModel './models/student': no such model folder")
    assert summary["message"].endswith("(checked before any GPU is asked for)")
    assert "generation.teacher.model" not in summary["message"]  # that one is there
    assert not (tmp_path / "runs" / "pre" / "data" / "prompts.jsonl").exists()


def test_with_the_hub_off_a_hub_id_must_be_in_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "hub-cache"
    environment = {**os.environ, "HF_HUB_CACHE": str(cache)}
    (tmp_path / "models" / "student").mkdir(parents=True)
    spec = spec_naming("org/teacher", "models/student", offline=True)
    code, summary = data_stage(tmp_path, spec, environment)
    assert code == 1
    assert summary["message"].startswith("generation.teacher.model 'org/teacher': no such model folder"), (
        summary["message"]
    )
    assert "nor in the Hugging Face cache, and the hub is off" in summary["message"]
    cached_model(cache, "org/teacher")
    code, summary = data_stage(tmp_path, spec, environment)
    assert (code, summary["phase"]) == (0, "Succeeded"), summary["message"]
    # online, a hub id is the hub's to answer for
    code, summary = data_stage(tmp_path, spec_naming("org/elsewhere", "models/student"), environment)
    assert code == 0, summary["message"]
