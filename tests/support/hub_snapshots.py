"""A Hugging Face Hub cache holding the recipe's dataset repositories, each in its published layout:
the same file names and folders, columns, types and encodings as on the hub (see
pipeline/reasoning_pipeline/hub.py), with the rows of tests/fixtures. Under HF_HUB_OFFLINE=1 with
HF_HUB_CACHE pointing here, `huggingface_hub.snapshot_download` — the call the stages make on a cluster —
finds each repository as if it had been downloaded (pre-staged storage looks exactly like this).

The repositories published with loading scripts get a script that fails if anything ever runs it.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SCRIPT_THAT_MUST_NOT_RUN = "raise RuntimeError('a loading script ran: the loaders must read the files')\n"


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _write_parquet(path: Path, rows: list[dict[str, Any]], schema: pa.Schema | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(column for row in rows for column in row))
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def snapshot_folder(cache: Path, repo_id: str) -> Path:
    """`datasets--org--name/snapshots/<commit>/`, with `refs/main` naming the commit, as the hub's cache
    keeps a downloaded repository."""
    repo = cache / f"datasets--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    folder = repo / "snapshots" / commit
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _numina(folder: Path) -> None:
    rows = jsonl(FIXTURES / "datasets" / "numina.jsonl")
    schema = pa.schema(
        [
            ("source", pa.string()),
            ("problem", pa.string()),
            ("solution", pa.string()),
            ("messages", pa.list_(pa.struct([("content", pa.string()), ("role", pa.string())]))),
        ]
    )
    half = len(rows) // 2  # two shards, read in name order
    _write_parquet(folder / "data" / "train-00000-of-00002.parquet", rows[:half], schema)
    _write_parquet(folder / "data" / "train-00001-of-00002.parquet", rows[half:], schema)
    _write_parquet(folder / "data" / "test-00000-of-00001.parquet", rows[:1], schema)


def _apps(folder: Path) -> None:
    rows = jsonl(FIXTURES / "datasets" / "apps.jsonl")
    _write_jsonl(folder / "test.jsonl", rows)
    _write_jsonl(folder / "train.jsonl", rows[:1])
    (folder / "apps.py").write_text(SCRIPT_THAT_MUST_NOT_RUN)


def _taco(folder: Path) -> None:
    table = pq.read_table(FIXTURES / "datasets" / "taco.parquet")
    # the hub's copy declares every one of its 17 columns a string
    table = table.cast(pa.schema([(name, pa.string()) for name in table.column_names]))
    rows = table.to_pylist()
    _write_parquet(folder / "ALL" / "train-00000-of-00002.parquet", rows[:2], table.schema)
    _write_parquet(folder / "ALL" / "train-00001-of-00002.parquet", rows[2:], table.schema)
    _write_parquet(folder / "ALL" / "test-00000-of-00001.parquet", rows[:1], table.schema)
    (folder / "TACO.py").write_text(SCRIPT_THAT_MUST_NOT_RUN)


def _still2(folder: Path) -> None:
    _write_parquet(
        folder / "data" / "train-00000-of-00001.parquet", jsonl(FIXTURES / "datasets" / "still2.jsonl")
    )


def _math500(folder: Path) -> None:
    _write_jsonl(folder / "test.jsonl", jsonl(FIXTURES / "benchmarks" / "math500.jsonl"))


def _aime(folder: Path) -> None:
    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("problem", pa.string()),
            ("solution", pa.string()),
            ("answer", pa.string()),
            ("url", pa.string()),
        ]
    )
    _write_parquet(
        folder / "data" / "train-00000-of-00001.parquet",
        jsonl(FIXTURES / "benchmarks" / "aime.jsonl"),
        schema,
    )


GPQA_CONFIGS = ("gpqa_diamond", "gpqa_main", "gpqa_extended", "gpqa_experts")


def _gpqa(folder: Path) -> None:
    diamond = jsonl(FIXTURES / "benchmarks" / "gpqa.jsonl")
    main = [*copy.deepcopy(diamond), {**diamond[0], "Record ID": "main-only", "Question": "Only in main?"}]
    for config, rows in zip(GPQA_CONFIGS, (diamond, main, main, main), strict=True):
        _write_csv(folder / f"{config}.csv", rows)
    configs = "".join(f"- config_name: {config}\n  data_files: {config}.csv\n" for config in GPQA_CONFIGS)
    (folder / "README.md").write_text(f"---\nextra_gated_prompt: terms\nconfigs:\n{configs}---\n")


def _livecodebench(folder: Path) -> None:
    """release_v1 is test.jsonl, release_v2 adds test2.jsonl, and so on: a row per file here."""
    first, second = jsonl(FIXTURES / "benchmarks" / "livecodebench.jsonl")
    later = {**first, "question_id": "v3-only", "question_title": "in release_v3 only"}
    _write_jsonl(folder / "test.jsonl", [first])
    _write_jsonl(folder / "test2.jsonl", [second])
    _write_jsonl(folder / "test3.jsonl", [later])
    (folder / "code_generation_lite.py").write_text(SCRIPT_THAT_MUST_NOT_RUN)


REPOSITORIES = {
    "AI-MO/NuminaMath-CoT": _numina,
    "codeparrot/apps": _apps,
    "BAAI/TACO": _taco,
    "RUC-AIBOX/long_form_thought_data_5k": _still2,
    "HuggingFaceH4/MATH-500": _math500,
    "AI-MO/aimo-validation-aime": _aime,
    "Idavidrein/gpqa": _gpqa,
    "livecodebench/code_generation_lite": _livecodebench,
}


def stage_hub_cache(cache: Path) -> Path:
    """Every repository of REPOSITORIES into `cache` (an HF_HUB_CACHE); returns the cache."""
    for repo_id, write in REPOSITORIES.items():
        write(snapshot_folder(cache, repo_id))
    return cache
