"""The Hugging Face Hub datasets of the recipe, read from the files their repositories hold.

`codeparrot/apps`, `BAAI/TACO` and `livecodebench/code_generation_lite` are published with loading
scripts, which `datasets` 4 and later refuse to run; the others are plain data files. Each known
repository's layout is written down here — which files hold a (config, split) — and read by path from a
snapshot of the repository (`huggingface_hub.snapshot_download`, only the files needed: it uses HF_TOKEN
for gated repositories such as GPQA, and the local cache alone under HF_HUB_OFFLINE=1). No script runs and
`trust_remote_code` is never needed. A repository not listed goes through `datasets.load_dataset`.

The layouts were read from the repositories' file lists, cards and loading scripts (LiveCodeBench's
releases from its `code_generation_lite.py`: release_vN is test.jsonl … testN.jsonl).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from reasoning_pipeline.errors import StageError

Layout = Callable[[str | None, str], list[str]]
"""(config, split) -> glob patterns of the files that hold those rows, relative to the repository root."""

# LiveCodeBench's releases, each a file more than the one before (release_v2: 400 + 111 = 511 problems)
LIVECODEBENCH_FILES = ["test.jsonl", *(f"test{n}.jsonl" for n in range(2, 7))]
LIVECODEBENCH_RELEASES = {f"release_v{n}": LIVECODEBENCH_FILES[:n] for n in range(1, 7)}
LIVECODEBENCH_RELEASES["release_latest"] = LIVECODEBENCH_FILES


def _livecodebench(config: str | None, split: str) -> list[str]:
    """`release_vN` (cumulative), `vN` (that release's problems only) or `vA_vB` (releases A to B)."""
    release = config or "release_latest"
    if release in LIVECODEBENCH_RELEASES:
        return LIVECODEBENCH_RELEASES[release]
    single = {f"v{n}": [name] for n, name in enumerate(LIVECODEBENCH_FILES, start=1)}
    if release in single:
        return single[release]
    first, _, last = release.partition("_")
    if first in single and last in single:
        return LIVECODEBENCH_FILES[int(first[1:]) - 1 : int(last[1:])]
    known = ", ".join([*LIVECODEBENCH_RELEASES, "vN", "vA_vB"])
    raise StageError(f"livecodebench/code_generation_lite has no release {release!r} (known: {known})")


def _gpqa(config: str | None, split: str) -> list[str]:
    if config not in {"gpqa_diamond", "gpqa_main", "gpqa_extended", "gpqa_experts"}:
        raise StageError(
            f"Idavidrein/gpqa needs its config (configName: gpqa_diamond, gpqa_main, gpqa_extended or "
            f"gpqa_experts), got {config!r}"
        )
    return [f"{config}.csv"]  # one file per config, all of it the `train` split


KNOWN_LAYOUTS: dict[str, Layout] = {
    "AI-MO/NuminaMath-CoT": lambda config, split: [f"data/{split}-*.parquet"],
    # the APPS configs (introductory, interview, competition) are difficulty filters: `difficulties`
    "codeparrot/apps": lambda config, split: [f"{split}.jsonl"],
    # the parquet copy of the script's arrow shards; its configs are filters too (EASY … VERY_HARD)
    "BAAI/TACO": lambda config, split: [f"ALL/{split}-*.parquet"],
    "RUC-AIBOX/long_form_thought_data_5k": lambda config, split: [f"data/{split}-*.parquet"],
    "HuggingFaceH4/MATH-500": lambda config, split: [f"{split}.jsonl"],
    "AI-MO/aimo-validation-aime": lambda config, split: [f"data/{split}-*.parquet"],
    "Idavidrein/gpqa": _gpqa,
    "livecodebench/code_generation_lite": _livecodebench,
}


def download_snapshot(hub_id: str, patterns: list[str], revision: str | None) -> Path:
    """The repository's files matching `patterns`, downloaded (or found in the cache when offline)."""
    from huggingface_hub import snapshot_download

    folder = snapshot_download(hub_id, repo_type="dataset", revision=revision, allow_patterns=patterns)
    return Path(folder)


def csv_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):  # line 1 holds the header
            yield f"{path}:{number}", dict(row)


def snapshot_rows(
    folder: Path,
    patterns: list[str],
    read: Callable[[Path], Iterator[tuple[str, Any]]],
    where: str,
) -> Iterator[tuple[str, Any]]:
    """The rows of the files matching each pattern in turn (the files of one pattern in name order)."""
    for pattern in patterns:
        files = sorted(p for p in folder.glob(pattern) if p.is_file())
        if not files:
            raise StageError(f"{where}: no file matches {pattern!r} in the repository snapshot {folder}")
        for file in files:
            yield from (csv_rows(file) if file.suffix == ".csv" else read(file))


def layout_of(hub_id: str) -> Layout | None:
    return KNOWN_LAYOUTS.get(hub_id)
