"""Stage `data`: the loaders on fixtures in each real record format, mixing, deduplication, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from reasoning_pipeline import data
from reasoning_pipeline.errors import StageError
from reasoning_pipeline.prompts import APPS_STDIN_PREFIX
from reasoning_pipeline.sources import normalise_question
from reasoning_pipeline.spec import ReasoningRun, default_sources
from reasoning_pipeline.storage import RunPaths, read_jsonl

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "datasets"


def fixture_sources() -> list[dict[str, Any]]:
    return [
        {
            "name": "numina",
            "format": "numina",
            "path": str(FIXTURES / "numina.jsonl"),
            "subsets": ["amc_aime", "math", "olympiads"],
        },
        {"name": "apps", "format": "apps", "path": str(FIXTURES / "apps.jsonl")},
        {
            "name": "taco",
            "format": "taco",
            "path": str(FIXTURES / "taco.parquet"),
            "difficulties": ["MEDIUM"],
        },
        {"name": "still2", "format": "still2", "path": str(FIXTURES / "still2.jsonl")},
        {"name": "sharegpt", "format": "still2", "path": str(FIXTURES / "sharegpt.jsonl")},
        {"name": "gym", "format": "reasoning-gym", "task": "basic_arithmetic", "size": 5},
    ]


def data_only_run(sources: list[dict[str, Any]], seed: int = 7) -> dict[str, Any]:
    disabled = {"enabled": False}
    return {
        "apiVersion": "reasoning.dev/v1alpha1",
        "kind": "ReasoningRun",
        "metadata": {"name": "fixtures"},
        "spec": {
            "data": {"sources": sources, "seed": seed},
            **{s: disabled for s in ("generation", "rewrite", "filter", "format", "training", "evaluation")},
        },
    }


def run_data(
    tmp_path: Path, sources: list[dict[str, Any]], seed: int = 7
) -> tuple[list[dict[str, Any]], Any]:
    run = ReasoningRun.model_validate(data_only_run(sources, seed))
    summary = data.run(run, RunPaths(tmp_path, "fixtures"))
    records = list(read_jsonl(tmp_path / "runs" / "fixtures" / "data" / "prompts.jsonl"))
    return records, summary


def test_every_format_loads_with_its_filters_and_prompts(tmp_path: Path) -> None:
    records, summary = run_data(tmp_path, fixture_sources())
    by_source: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_source.setdefault(record["source"], []).append(record)

    # Numina: 8 rows; cn_k12 is another subset, one has no \boxed{}, one repeats a question
    numina = by_source["numina"]
    assert len(numina) == 5
    assert all(
        r["prompt"] == f"Return your final response within \\boxed{{}}. {r['question']}" for r in numina
    )
    assert all("\\boxed" in r["reference"] for r in numina)
    # APPS: the row without tests is no candidate; stdin and call-based prompts differ
    apps = {r["metadata"]["call_based"]: r for r in by_source["apps"]}
    assert apps[False]["prompt"].startswith(APPS_STDIN_PREFIX)
    assert apps[True]["tests"] == {"fn_name": "double", "inputs": [[2], [5]], "outputs": [[4], [10]]}
    assert apps[True]["prompt"].rstrip().endswith("def double(x):")
    # TACO from Parquet, MEDIUM only, in the published QUESTION/ANSWER frame
    taco = by_source["taco"]
    assert {r["metadata"]["difficulty"] for r in taco} == {"MEDIUM"}
    assert len(taco) == 2
    assert all(r["prompt"].startswith("\nQUESTION:\n") and r["prompt"].endswith("\nANSWER:\n") for r in taco)
    assert {("Call-Based" in r["prompt"]) for r in taco} == {True, False}
    # STILL-2 flat rows and ShareGPT conversations; its "what is 1+…+10" repeats a Numina question
    assert {r["metadata"]["domain"] for r in by_source["still2"]} == {"physics", "puzzle"}
    assert by_source["sharegpt"][0]["reference"].endswith("$\\boxed{CO_2}$")
    assert len(by_source["gym"]) == 5
    assert all(r["reference"].startswith("\\boxed{") for r in by_source["gym"])

    counts = summary.metrics["sources"]
    assert counts["numina"] == {
        "candidates": 6,
        "selected": 6,
        "duplicates": 1,
        "kept": 5,
        "malformed": 0,
        "malformedExample": None,
    }
    assert counts["still2"]["duplicates"] == 1
    assert summary.metrics["duplicatesDropped"] == 2
    assert summary.outputs["prompts"].records == len(records) == 5 + 2 + 2 + 2 + 1 + 5
    assert len({normalise_question(r["question"]) for r in records}) == len(records)
    assert len({r["id"] for r in records}) == len(records)


def test_same_seed_same_bytes_other_seed_other_sample(tmp_path: Path) -> None:
    limited = [{**s, "limit": 2} if s["name"] == "numina" else s for s in fixture_sources()]
    _, first = run_data(tmp_path / "a", limited, seed=1)
    _, again = run_data(tmp_path / "b", limited, seed=1)
    assert first.outputs["prompts"].sha256 == again.outputs["prompts"].sha256
    picks = set()
    for seed in range(8):
        records, _ = run_data(tmp_path / f"s{seed}", limited, seed=seed)
        picks.add(tuple(r["id"] for r in records if r["source"] == "numina"))
    assert all(len(p) == 2 for p in picks)
    assert len(picks) > 1, "the limit must sample by seed, not take the file's first rows"


def test_first_takes_the_dataset_order_before_the_shuffle(tmp_path: Path) -> None:
    numina = next(s for s in fixture_sources() if s["name"] == "numina")
    picks = set()
    for seed in range(4):
        records, summary = run_data(tmp_path / f"s{seed}", [{**numina, "first": 2}], seed=seed)
        picks.add(frozenset(r["id"] for r in records))
        assert summary.metrics["sources"]["numina"]["candidates"] == 2
    assert len(picks) == 1, "first is a fixed pool, whatever the seed"
    assert len(next(iter(picks))) == 2


def test_the_default_sources_are_sky_t1s_candidate_pools() -> None:
    sources = {s.name: s for s in default_sources()}
    assert (sources["numina-olympiads"].first, sources["numina-olympiads"].limit) == (20000, None)
    assert (sources["taco"].split, sources["taco"].difficulties) == ("train", ["MEDIUM"])
    assert (sources["taco-test"].split, sources["taco-test"].difficulties) == ("test", [])
    assert sources["apps"].split == "test"


def test_a_local_dataset_folder_loads_through_datasets(tmp_path: Path) -> None:
    # the same `datasets.load_dataset` call a hub id takes, on a folder (no hub access here)
    folder = tmp_path / "numina-dataset"
    folder.mkdir()
    shutil.copy(FIXTURES / "numina.jsonl", folder / "train.jsonl")
    source = {"name": "numina", "format": "numina", "hubId": str(folder), "subsets": ["math"]}
    records, _ = run_data(tmp_path / "out", [source])
    assert {r["question"] for r in records} == {
        "Compute $\\frac{1}{2}+\\frac{1}{3}$.",
        "Solve $2x+3=11$ for $x$.",
    }


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(
            '{"source": "math", "solution": "\\\\boxed{1}"}',
            "bad.jsonl:2: missing field 'problem'",
            id="missing-field",
        ),
        pytest.param(
            '{"source": "math", "problem": 3, "solution": "x"}',
            "bad.jsonl:2: field 'problem' must be text",
            id="wrong-type",
        ),
        pytest.param(
            '{"source": "math", "problem": "x", "solution"', "bad.jsonl:2: not valid JSON", id="torn-json"
        ),
        pytest.param('["a list"]', "bad.jsonl:2: expected a record", id="not-an-object"),
    ],
)
def test_a_malformed_row_is_skipped_counted_and_named(tmp_path: Path, line: str, expected: str) -> None:
    bad = tmp_path / "bad.jsonl"
    good = (FIXTURES / "numina.jsonl").read_text().splitlines()[0]
    bad.write_text(f"{good}\n{line}\n{good.replace('What is', 'Find')}\n")
    records, summary = run_data(tmp_path, [{"name": "numina", "format": "numina", "path": str(bad)}])
    assert len(records) == 2, "the rows around it are kept"
    counts = summary.metrics["sources"]["numina"]
    assert counts["malformed"] == summary.metrics["malformedSkipped"] == 1
    assert expected in counts["malformedExample"]
    assert "1 malformed rows skipped" in summary.message


def test_a_source_whose_every_row_is_malformed_fails_naming_its_format(tmp_path: Path) -> None:
    row = json.loads((FIXTURES / "apps.jsonl").read_text().splitlines()[0])
    row["input_output"] = json.dumps({"inputs": ["1\n", "2\n"], "outputs": ["1\n"]})
    bad = tmp_path / "apps.jsonl"
    bad.write_text(json.dumps(row) + "\n")
    with pytest.raises(StageError) as failure:
        run_data(tmp_path, [{"name": "apps", "format": "apps", "path": str(bad)}])
    message = str(failure.value)
    assert "data source 'apps': all 1 rows read are malformed for format 'apps'" in message
    assert "apps.jsonl:1: 'input_output' has 2 inputs but 1 outputs" in message


def test_cli_failure_keeps_the_previous_output_and_reports_in_the_summary(tmp_path: Path) -> None:
    # the same spec both times, its source gone the second time (a spec change would move the output
    # aside instead: tests/stages/test_run_identity.py)
    source = tmp_path / "numina.jsonl"
    shutil.copy(FIXTURES / "numina.jsonl", source)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(data_only_run([{**fixture_sources()[0], "path": str(source)}])))
    cli = [
        sys.executable,
        "-m",
        "reasoning_pipeline",
        "data",
        "--config",
        str(config),
        "--root",
        str(tmp_path),
    ]
    assert subprocess.run(cli, capture_output=True, check=False).returncode == 0
    stage_dir = tmp_path / "runs" / "fixtures" / "data"
    before = (stage_dir / "prompts.jsonl").read_bytes()
    assert json.loads((stage_dir / "summary.json").read_text())["phase"] == "Succeeded"

    source.unlink()
    failed = subprocess.run(cli, capture_output=True, text=True, check=False)

    assert failed.returncode == 1
    assert "numina.jsonl: no such file or folder" in failed.stderr
    summary = json.loads((stage_dir / "summary.json").read_text())
    assert summary["phase"] == "Failed"
    assert "numina.jsonl: no such file or folder" in summary["message"]
    assert summary["failure"] == "Permanent"
    assert (stage_dir / "prompts.jsonl").read_bytes() == before
    assert not list(stage_dir.glob(".*partial"))


def test_cli_rejects_an_invalid_run_file_naming_the_field(tmp_path: Path) -> None:
    document = data_only_run(fixture_sources()[:1])
    document["spec"]["data"]["sources"][0]["limt"] = 3
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(document))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "reasoning_pipeline",
            "data",
            "--config",
            str(config),
            "--root",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "spec.data.sources.0.limt: Extra inputs are not permitted" in result.stderr


def test_the_summary_carries_the_estimate_of_every_stage_ahead(tmp_path: Path) -> None:
    """The other stages as the defaults have them (Sky-T1's teacher, GPT-4o-mini, a 32B student): the
    prompts written price the teacher's and the API's work; a student whose config.json is nowhere to be
    read leaves training's figure unknown, and says so."""
    document = data_only_run(fixture_sources())
    document["spec"] = {"data": document["spec"]["data"]}
    summary = data.run(ReasoningRun.model_validate(document), RunPaths(tmp_path, "fixtures"))
    prompts = summary.outputs["prompts"].records
    made = summary.estimate
    assert made is not None
    assert prompts is not None
    assert made["basis"] == {"prompts": prompts}
    assert set(made["stages"]) == {"generate", "rewrite", "train", "evaluate"}
    assert made["stages"]["generate"]["tokens"] == prompts * 4000
    assert float(made["stages"]["generate"]["usd"]) > 0  # the h100 pool's $2.96 per GPU-hour
    assert "parameter count is not known" in made["stages"]["train"]["unknown"]
    assert float(made["totalUSD"]) == pytest.approx(
        sum(float(s.get("usd") or s.get("apiUSD") or 0) for s in made["stages"].values()), abs=0.02
    )
