"""Everything stages write goes through here: atomic files and resumable record journals.

Layout: <root>/runs/<run>/<uid>/<stage>/… on a cluster, where the run's uid keeps a run apart from an
earlier one of the same name; <root>/runs/<run>/<stage>/… for a local run, which has no uid. A final
output appears whole or not at all (written to a temporary file in the same directory, fsynced, renamed).
A resumable stage appends one JSON line per finished record to a journal and fsyncs it; after a kill, the
journal is read back, a torn last line is cut off, and the stage skips what is already there.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from reasoning_pipeline.errors import TransientStageError
from reasoning_pipeline.spec import Stage


@dataclass(frozen=True)
class RunPaths:
    root: Path
    run: str
    uid: str | None = None

    def instance_dir(self) -> Path:
        """This run's folder: a run deleted and created again under its name has a new uid, a new one."""
        named = self.root / "runs" / self.run
        return named / self.uid if self.uid else named

    def stage_dir(self, stage: Stage) -> Path:
        return self.instance_dir() / stage.value

    def resolve(self, path: str) -> Path:
        """A path from the spec: absolute as given, relative to the storage root otherwise (so one run file
        works on the cluster's shared volume and on a laptop's folder alike)."""
        given = Path(path).expanduser()
        return given if given.is_absolute() else self.root / given


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary sibling of `path`; on success it replaces `path`, on error it disappears."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        fsync_directory(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_writer(path) as handle:
        handle.write(text)


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def dumps_record(record: Any) -> str:
    """One canonical JSON line: the same record always gives the same bytes (hashes are reproducible)."""
    return json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def atomic_write_jsonl(path: Path, records: Iterable[Any]) -> int:
    count = 0
    with atomic_writer(path) as handle:
        for record in records:
            handle.write(dumps_record(record) + "\n")
            count += 1
    return count


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Records of a JSON Lines file; a line that is not a JSON object is an error naming the line."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid JSON: {error.msg}") from error
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            yield record


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# how long a journal's second writer waits for the first to let go before its attempt fails (transiently)
JOURNAL_LOCK_WAIT_SECONDS = 120.0


class JournalBusyError(TransientStageError):
    """Another process writes the journal."""


def _exclusive_lock(path: Path, wait: float) -> IO[bytes]:
    handle = path.open("ab")
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.close()
                raise JournalBusyError(
                    f"{path.with_suffix('')}: another process has been writing this journal for over "
                    f"{wait:.0f} s (an earlier attempt's pod still running?); it is left to that one"
                ) from None
            time.sleep(min(1.0, wait / 10 or 0.01))


class Journal:
    """An append-only JSON Lines file of finished records, keyed by `key`, that survives being killed.

    Only whole lines count: a line cut short by a kill is truncated away on open. A record whose key is
    already present is never appended twice. One writer at a time: the journal is held through an
    exclusive lock on `<journal>.lock` (flock; on NFS the server's lock, which a client cut off by a
    partition loses when its lease expires), taken before the torn tail is cut, so a second process — an
    evicted pod still running on an unreachable node, a second attempt — waits, then fails transiently.
    """

    def __init__(self, path: Path, key: str = "id", *, lock_wait: float = JOURNAL_LOCK_WAIT_SECONDS) -> None:
        self.path = path
        self.key = key
        self._records: dict[str, dict[str, Any]] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = _exclusive_lock(path.with_name(path.name + ".lock"), lock_wait)
        try:
            self._recover()
            self._handle = path.open("a", encoding="utf-8")
        except BaseException:
            self._lock.close()
            raise

    def _recover(self) -> None:
        if not self.path.exists():
            return
        good_bytes = 0
        with self.path.open("rb") as handle:
            for line in handle:
                if not line.endswith(b"\n"):
                    break  # torn by a kill mid-write
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    break
                good_bytes += len(line)
                if isinstance(record, dict) and self.key in record:
                    self._records.setdefault(str(record[self.key]), record)
        if good_bytes != self.path.stat().st_size:
            with self.path.open("r+b") as handle:
                handle.truncate(good_bytes)
                handle.flush()
                os.fsync(handle.fileno())

    def __contains__(self, key: object) -> bool:
        return str(key) in self._records

    def __len__(self) -> int:
        return len(self._records)

    def records(self) -> dict[str, dict[str, Any]]:
        return dict(self._records)

    def append(self, record: dict[str, Any], *, sync: bool = True) -> bool:
        """Add a finished record; False (and nothing written) if its key is already journaled."""
        key = str(record[self.key])
        if key in self._records:
            return False
        self._handle.write(dumps_record(record) + "\n")
        self._handle.flush()
        if sync:
            os.fsync(self._handle.fileno())
        self._records[key] = record
        return True

    def sync(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if not self._handle.closed:
            self.sync()
            self._handle.close()
        self._lock.close()  # releases the lock

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
