"""Which training checkpoint a restarted trainer resumes from, and which old ones go.

DeepSpeed writes a checkpoint's files from every process and then its `latest` file, in place: a process
killed in between leaves a folder with some files short or missing, or a `latest` that is empty or names
a folder that is not whole. So after each save, rank 0 seals the checkpoint — `sealed.json` in its folder
lists every file with its size, written atomically — and then points `sealed` at it. A restart resumes
from the newest checkpoint whose seal still matches its files, and says which newer ones it passed over
and why; with none, training starts from the beginning (a checkpoint made before seals existed is used
when none is sealed and DeepSpeed's `latest` names a folder that exists).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from reasoning_pipeline.storage import atomic_write_json, atomic_write_text

SEAL_FILE = "sealed.json"
SEALED_POINTER = "sealed"
DEEPSPEED_POINTER = "latest"
TAG_PREFIX = "step-"


@dataclass(frozen=True)
class Resume:
    tag: str | None  # None: from the beginning
    passed_over: list[str] = field(default_factory=list)  # "<tag>: <why>", newest first


def _steps(checkpoints: Path) -> list[Path]:
    """The `step-N` folders, by N (step-10 after step-9)."""
    found = [
        p for p in checkpoints.glob(f"{TAG_PREFIX}*") if p.is_dir() and p.name[len(TAG_PREFIX) :].isdigit()
    ]
    return sorted(found, key=lambda p: int(p.name[len(TAG_PREFIX) :]))


def _files(folder: Path) -> dict[str, int]:
    return {
        str(path.relative_to(folder)): path.stat().st_size
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != SEAL_FILE and not path.name.endswith(".partial")
    }


def seal(checkpoints: Path, tag: str) -> None:
    """Rank 0, once every process has written its part of `tag` (DeepSpeed's save returns then)."""
    folder = checkpoints / tag
    atomic_write_json(folder / SEAL_FILE, {"tag": tag, "files": _files(folder)})
    atomic_write_text(checkpoints / SEALED_POINTER, tag + "\n")


def broken_seal(folder: Path) -> str | None:
    """Why the checkpoint in `folder` is not whole (None: it is)."""
    path = folder / SEAL_FILE
    if not path.is_file():
        return "not sealed (its save did not finish)"
    try:
        sealed: dict[str, int] = json.loads(path.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError):
        return f"its {SEAL_FILE} is unreadable"
    present = _files(folder)
    for name, size in sealed.items():
        if name not in present:
            return f"{name} is missing"
        if present[name] != size:
            return f"{name} has {present[name]} bytes, {size} when sealed"
    return None


def _pointer(checkpoints: Path, name: str) -> str | None:
    path = checkpoints / name
    tag = path.read_text(encoding="utf-8").strip() if path.is_file() else ""
    return tag or None


def resumable(checkpoints: Path) -> Resume:
    steps = _steps(checkpoints)
    if not any((folder / SEAL_FILE).exists() for folder in steps):
        # none sealed: checkpoints of a version before seals (or one save, killed): DeepSpeed's pointer,
        # and nothing passed over, so nothing an older version made is discarded
        legacy = _pointer(checkpoints, DEEPSPEED_POINTER)
        if legacy is not None and legacy.startswith(TAG_PREFIX) and (checkpoints / legacy).is_dir():
            return Resume(legacy)
        return Resume(None)
    passed_over: list[str] = []
    for folder in reversed(steps):
        why = broken_seal(folder)
        if why is None:
            return Resume(folder.name, passed_over)
        passed_over.append(f"{folder.name}: {why}")
    return Resume(None, passed_over)


def discard_passed_over(checkpoints: Path, resume: Resume) -> None:
    """Rank 0 at a restart: the unfinished checkpoints after the one resumed from are of no use, and the
    newest by number would otherwise outlast the good ones when old checkpoints are pruned."""
    for passed in resume.passed_over:
        shutil.rmtree(checkpoints / passed.split(":", 1)[0], ignore_errors=True)


def prune(checkpoints: Path, keep: int) -> list[str]:
    """Deletes all but the newest `keep` `step-N` checkpoints, never one a pointer names."""
    protected = {_pointer(checkpoints, SEALED_POINTER), _pointer(checkpoints, DEEPSPEED_POINTER)}
    doomed = [p for p in _steps(checkpoints)[:-keep] if p.name not in protected]
    for path in doomed:
        shutil.rmtree(path)
    return [p.name for p in doomed]
