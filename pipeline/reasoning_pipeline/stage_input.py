"""What a stage reads: an earlier stage's output on the shared storage, or a file the spec names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reasoning_pipeline.errors import StageError
from reasoning_pipeline.spec import Stage
from reasoning_pipeline.storage import RunPaths, read_jsonl


def read_stage_input(
    paths: RunPaths, input_path: str | None, previous: Stage, file_name: str, setting: str
) -> tuple[Path, list[dict[str, Any]]]:
    """The records of `input_path` if given, else of the previous stage's `file_name`."""
    path = paths.resolve(input_path) if input_path else paths.stage_dir(previous) / file_name
    if not path.is_file():
        raise StageError(f"{path}: no such file (run the {previous.value} stage or set {setting})")
    try:
        return path, list(read_jsonl(path))
    except ValueError as error:
        raise StageError(str(error)) from error


def require_text_fields(path: Path, records: list[dict[str, Any]], *names: str) -> None:
    for number, record in enumerate(records, start=1):
        for name in names:
            if not isinstance(record.get(name), str) or not record[name]:
                raise StageError(f"{path}: record {number}: field {name!r} missing or not text")
