"""The recipe's hub datasets read from their repositories' own files, the way a cluster reads them:
`snapshot_download` (offline, from a Hugging Face cache laid out exactly as the hub's repositories are,
tests/support/hub_snapshots.py) and then the files by path. The stage programs run as processes, as in
their containers, with HF_HUB_OFFLINE=1: a pre-staged storage looks like this cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from reasoning_pipeline import sources
from reasoning_pipeline.errors import StageError, TransientStageError

from tests.stages.test_evaluate import answer_by_model
from tests.support.fake_openai import Behaviour, serve_fake_openai
from tests.support.hub_snapshots import FIXTURES, stage_hub_cache
from tests.support.stage_process import run_stage_program

ALL_STAGES = ("data", "generation", "rewrite", "filter", "format", "training", "evaluation")


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stage_hub_cache(tmp_path_factory.mktemp("hub-cache"))


def offline(hub_cache: Path) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub_cache)}


def run_stage(
    root: Path, name: str, spec: dict[str, Any], environment: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    return run_stage_program(root, "hub", name, spec, environment)


def stage(root: Path, name: str, spec: dict[str, Any], environment: dict[str, str]) -> dict[str, Any]:
    status, summary = run_stage(root, name, spec, environment)
    assert status == 0, summary.get("message")
    return summary


def test_the_default_sources_read_their_repositories_files(hub_cache: Path, tmp_path: Path) -> None:
    """Sky-T1's seven candidate pools with no `sources` given: NuminaMath-CoT's parquet shards, APPS's
    test.jsonl (beside its loading script, which never runs), TACO's ALL/ parquet copy, STILL-2's data/."""
    spec: dict[str, Any] = {s: {"enabled": False} for s in ALL_STAGES}
    spec["data"] = {"seed": 42}
    counts = stage(tmp_path, "data", spec, offline(hub_cache))["metrics"]["sources"]
    # the same rows as the fixture file the shards were made of: each subset's rows with a \boxed answer
    rows = [json.loads(line) for line in (FIXTURES / "datasets/numina.jsonl").read_text().splitlines()]
    names = {"amc_aime": "numina-amc-aime", "math": "numina-math", "olympiads": "numina-olympiads"}
    for subset, source in names.items():
        boxed = [r for r in rows if r["source"] == subset and "\\boxed" in r["solution"]]
        assert counts[source]["candidates"] == len(boxed), source
    assert counts["apps"]["candidates"] == 2  # of 3 rows, one has no tests
    assert counts["taco"]["candidates"] == 2  # the MEDIUM rows of both train shards
    assert counts["taco-test"]["candidates"] == 1  # ALL/test-*.parquet
    assert counts["still2"]["candidates"] == 3
    assert all(c["malformed"] == 0 for c in counts.values())


def test_the_default_benchmarks_read_their_repositories_files(hub_cache: Path, tmp_path: Path) -> None:
    """MATH-500's test.jsonl, AIME's parquet (2024 rows only), GPQA's gated gpqa_diamond.csv (by its
    config, not gpqa_main's extra row) and LiveCodeBench release_v2: test.jsonl + test2.jsonl, not
    test3.jsonl, with the private tests in their compressed encoding."""
    with serve_fake_openai(Behaviour(answer=answer_by_model)) as server:
        spec: dict[str, Any] = {s: {"enabled": False} for s in ALL_STAGES}
        spec["evaluation"] = {"server": {"model": "models/student", "endpoint": server.base_url}}
        results = stage(tmp_path, "evaluate", spec, offline(hub_cache))["metrics"]["results"]["student"]
    problems = {name: score["problems"] for name, score in results.items()}
    assert problems == {"math500": 3, "aime24": 2, "gpqa-diamond": 2, "livecodebench": 2}
    assert results["livecodebench"]["score"] == 100.0  # public and decoded private tests both pass


RELEASES = """
import json, sys
from pathlib import Path
from reasoning_pipeline.evaluate import load_benchmark
from reasoning_pipeline.spec import BenchmarkSpec
from reasoning_pipeline.storage import RunPaths
counts = {}
for config in sys.argv[1:]:
    spec = BenchmarkSpec(name="livecodebench", hubId="livecodebench/code_generation_lite", configName=config)
    benchmark = load_benchmark(spec, RunPaths(Path("."), "x"))
    counts[config] = [item.id for item in benchmark.items]
print(json.dumps(counts))
"""


def test_livecodebench_releases_select_their_files(hub_cache: Path) -> None:
    configs = ["release_v1", "release_v2", "release_v3", "v3", "v1_v2"]
    done = subprocess.run(
        [sys.executable, "-c", RELEASES, *configs],
        capture_output=True,
        text=True,
        env=offline(hub_cache),
        check=True,
    )
    ids = json.loads(done.stdout)
    assert len(ids["release_v1"]) == 1
    assert ids["release_v2"] == ids["v1_v2"]
    assert len(ids["release_v2"]) == 2
    assert ids["release_v3"] == [*ids["release_v2"], "v3-only"]
    assert ids["v3"] == ["v3-only"]


def test_an_unknown_release_or_a_missing_gpqa_config_is_named() -> None:
    with pytest.raises(StageError, match="has no release 'release_v9'"):
        list(sources.hub_rows("livecodebench/code_generation_lite", "release_v9", "test", "benchmark lcb"))
    with pytest.raises(StageError, match="Idavidrein/gpqa needs its config"):
        list(sources.hub_rows("Idavidrein/gpqa", None, "train", "benchmark gpqa-diamond"))


def test_a_repository_missing_from_the_offline_cache_fails_for_good(hub_cache: Path, tmp_path: Path) -> None:
    spec: dict[str, Any] = {s: {"enabled": False} for s in ALL_STAGES}
    spec["data"] = {
        "sources": [{"name": "apps", "format": "apps", "hubId": "codeparrot/apps", "revision": "v2"}]
    }
    status, summary = run_stage(tmp_path, "data", spec, offline(hub_cache))
    assert status != 0
    assert summary["failure"] == "Permanent"
    assert "'codeparrot/apps' is not in the local Hugging Face cache (offline)" in summary["message"]


def test_a_gated_repository_without_a_token_names_the_spec_field() -> None:
    import httpx2
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError

    request = httpx2.Request("GET", "https://huggingface.co/api/datasets/Idavidrein/gpqa")
    gated = GatedRepoError(
        "401 Client Error: access to this dataset is restricted",
        response=httpx2.Response(401, request=request),
    )
    failure = sources._hub_failure("Idavidrein/gpqa", gated, "benchmark gpqa-diamond")
    assert type(failure) is StageError
    assert "is gated: give spec.hub.tokenSecret" in str(failure)
    outage = HfHubHTTPError("503 Service Unavailable", response=httpx2.Response(503, request=request))
    assert isinstance(
        sources._hub_failure("Idavidrein/gpqa", outage, "benchmark gpqa-diamond"), TransientStageError
    )
