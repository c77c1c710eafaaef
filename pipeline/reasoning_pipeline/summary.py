"""What a stage reports: summary.json next to its outputs and, in a pod, the termination message.

The operator reads the termination message (the kubelet keeps at most 4 KiB of it), so stage pods need no
API access. The full summary stays on storage; the message is the same JSON, shrunk to fit if needed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from reasoning_pipeline.spec import Stage
from reasoning_pipeline.storage import atomic_write_json, sha256_file

TERMINATION_LOG = Path("/dev/termination-log")
TERMINATION_MESSAGE_LIMIT = 4096


class Output(BaseModel):
    path: str = Field(description="File on the shared storage, relative to the storage root.")
    records: int | None = None
    sha256: str | None = None


class Progress(BaseModel):
    done: int = 0
    total: int | None = None


Failure = Literal["Permanent", "Transient"]


class StageSummary(BaseModel):
    stage: Stage
    phase: Literal["Succeeded", "Failed"]
    message: str = ""
    failure: Failure | None = Field(
        default=None,
        description="Of a failed stage: Permanent (bad input or spec: the operator does not try again) or "
        "Transient (another attempt may pass).",
    )
    started_at: str
    finished_at: str
    progress: Progress = Field(default_factory=Progress)
    outputs: dict[str, Output] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    estimate: dict[str, Any] | None = Field(
        default=None, description="The pre-flight cost estimate of the stages ahead (data, format)."
    )


def output_of(path: Path, root: Path, records: int) -> Output:
    """An output file as the status shows it: relative to the storage root, with its record count and hash."""
    return Output(path=str(path.relative_to(root)), records=records, sha256=sha256_file(path))


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def termination_message(summary: StageSummary) -> str:
    """Compact JSON of the summary, at most 4 KiB: metrics go first, then the message is cut."""
    document = summary.model_dump(mode="json")
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    if len(text.encode()) <= TERMINATION_MESSAGE_LIMIT:
        return text
    document["metrics"] = {"truncated": True}
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    while len(text.encode()) > TERMINATION_MESSAGE_LIMIT and document["message"]:
        document["message"] = document["message"][: len(document["message"]) // 2] + "…"
        if len(document["message"]) <= 2:
            document["message"] = ""
        text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    return text


def write_summary(
    summary: StageSummary,
    stage_dir: Path,
    *,
    on_storage: bool = True,
    termination_log: Path = TERMINATION_LOG,
) -> None:
    if on_storage:
        atomic_write_json(stage_dir / "summary.json", summary.model_dump(mode="json"))
    if termination_log.exists():
        termination_log.write_text(termination_message(summary), encoding="utf-8")
