"""Prompt sources: read a dataset in its own record format and turn each row into a `Problem`.

Rows come from a local JSON Lines / JSON / Parquet file or folder, or through `datasets.load_dataset`
(a hub id on a cluster that reaches the hub; any local dataset folder works the same way offline).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow.parquet as pq

from reasoning_pipeline.errors import StageError, TransientStageError
from reasoning_pipeline.hub import download_snapshot, layout_of, snapshot_rows
from reasoning_pipeline.prompts import apps_prompt, numina_prompt, taco_prompt
from reasoning_pipeline.spec import DataSource
from reasoning_pipeline.storage import RunPaths

ProblemKind = Literal["math", "code", "science"]
BOXED = re.compile(r"\\boxed\s*\{")


class MalformedRowError(StageError):
    """One row without its format's shape (a missing field, a wrong type, tests that do not pair up):
    skipped and counted per source, never fatal on its own; a published dataset has a few."""


@dataclass(frozen=True)
class Unreadable:
    """A line of a JSON Lines file that is not JSON, in place of its row."""

    reason: str


@dataclass
class RowTally:
    """What reading one source met: rows read, and the malformed ones skipped (the first one named)."""

    rows: int = 0
    malformed: int = 0
    example: str | None = None

    def skip(self, reason: str) -> None:
        self.malformed += 1
        self.example = self.example or reason


@dataclass(frozen=True)
class Problem:
    """One prompt for the teacher, with what the filter needs to judge the answer."""

    source: str
    kind: ProblemKind
    question: str
    prompt: str
    reference: str | None = None
    """Math/science: the reference solution or answer (its last \\boxed{} is the answer)."""
    tests: dict[str, Any] | None = None
    """Code: {"inputs": [...], "outputs": [...], "fn_name": optional}."""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return question_key(self.question)[:16]

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": self.id,
            "source": self.source,
            "kind": self.kind,
            "question": self.question,
            "prompt": self.prompt,
            "metadata": self.metadata,
        }
        if self.reference is not None:
            record["reference"] = self.reference
        if self.tests is not None:
            record["tests"] = self.tests
        return record


def normalise_question(text: str) -> str:
    """What makes two questions the same: Unicode compatibility forms, case and whitespace ignored."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def question_key(text: str) -> str:
    return hashlib.sha256(normalise_question(text).encode()).hexdigest()


# ------------------------------------------------------------------------------------------- reading
DATA_SUFFIXES = (".jsonl", ".json", ".parquet")


def _rows_of_file(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, row) pairs; `where` is `file:line` or `file#row` for error messages."""
    if path.suffix == ".parquet":
        try:
            table = pq.read_table(path)
        except Exception as error:  # pyarrow raises several types for unreadable files
            raise StageError(f"{path}: not a readable Parquet file: {error}") from error
        for index, row in enumerate(table.to_pylist()):
            yield f"{path}#{index}", row
        return
    with path.open(encoding="utf-8") as handle:
        head = handle.read(1)
        while head.isspace():
            head = handle.read(1)
        handle.seek(0)
        if head == "[":  # a JSON array file
            try:
                rows = json.load(handle)
            except json.JSONDecodeError as error:
                raise StageError(f"{path}: not valid JSON: {error.msg} (line {error.lineno})") from error
            for index, row in enumerate(rows):
                yield f"{path}#{index}", row
            return
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                row = Unreadable(f"not valid JSON: {error.msg}")
            yield f"{path}:{number}", row


def local_rows(path: Path) -> Iterator[tuple[str, Any]]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in DATA_SUFFIXES and p.is_file())
        if not files:
            raise StageError(f"{path}: no {', '.join(DATA_SUFFIXES)} files in this folder")
    elif path.is_file():
        files = [path]
    else:
        raise StageError(f"{path}: no such file or folder")
    for file in files:
        yield from _rows_of_file(file)


def _hub_failure(hub_id: str, error: Exception, owner: str) -> StageError:
    """A missing repository, revision or file, or a gated one without a token, fails for good; anything
    else (the network, the hub's own trouble) is worth another attempt."""
    kind = type(error).__name__
    if kind == "GatedRepoError":
        return StageError(
            f"{owner}: {hub_id!r} is gated: give spec.hub.tokenSecret, a token whose account accepted the "
            f"dataset's terms ({error})"
        )
    if kind in {"RepositoryNotFoundError", "RevisionNotFoundError", "EntryNotFoundError"}:
        return StageError(f"{owner}: {hub_id!r}: {error}")
    if kind == "LocalEntryNotFoundError":
        return StageError(f"{owner}: {hub_id!r} is not in the local Hugging Face cache (offline): {error}")
    return TransientStageError(f"{owner}: cannot fetch {hub_id!r}: {kind}: {error}")


def hub_rows(
    hub_id: str, config_name: str | None, split: str, owner: str, revision: str | None = None
) -> Iterator[tuple[str, Any]]:
    """Rows of a hub dataset: a known repository's files by path (hub.KNOWN_LAYOUTS), anything else
    through `datasets.load_dataset`. `owner` names who asked."""
    layout = layout_of(hub_id)
    if layout is not None:
        patterns = layout(config_name, split)
        try:
            folder = download_snapshot(hub_id, patterns, revision)
        except Exception as error:  # huggingface_hub raises a type per cause; _hub_failure sorts them
            raise _hub_failure(hub_id, error, owner) from error
        yield from snapshot_rows(folder, patterns, _rows_of_file, f"{owner} ({hub_id})")
        return
    import datasets  # heavy: only when a source actually reads through it

    try:
        dataset = datasets.load_dataset(hub_id, config_name, split=split, revision=revision)
    except Exception as error:  # the library raises many types; the message is what matters
        raise StageError(
            f"{owner}: cannot load {hub_id!r} (config {config_name!r}, split {split!r}): {error}"
        ) from error
    for index, row in enumerate(dataset):
        yield f"{hub_id}[{split}]#{index}", dict(row)


def _reasoning_gym_rows(source: DataSource, seed: int) -> Iterator[tuple[str, dict[str, Any]]]:
    import reasoning_gym

    assert source.task is not None
    try:
        dataset = reasoning_gym.create_dataset(source.task, size=source.size, seed=seed)
    except Exception as error:
        raise StageError(
            f"data source {source.name!r}: reasoning-gym task {source.task!r}: {error}"
        ) from error
    for index, entry in enumerate(dataset):
        yield f"reasoning-gym:{source.task}#{index}", dict(entry)


def raw_rows(source: DataSource, seed: int, paths: RunPaths) -> Iterator[tuple[str, Any]]:
    if source.format == "reasoning-gym":
        return _reasoning_gym_rows(source, seed)
    if source.path is not None:
        return local_rows(paths.resolve(source.path))
    assert source.hub_id is not None
    owner = f"data source {source.name!r}"
    return hub_rows(source.hub_id, source.config_name, source.split, owner, source.revision)


# ---------------------------------------------------------------------------------------- converting
def _field(row: dict[str, Any], name: str, where: str, source: DataSource) -> Any:
    if not isinstance(row, dict):
        raise MalformedRowError(
            f"{where}: expected a record (object), got {type(row).__name__} ({source.format} format)"
        )
    if name not in row or row[name] is None:
        raise MalformedRowError(
            f"{where}: missing field {name!r} ({source.format} format, source {source.name!r})"
        )
    return row[name]


def _text(row: dict[str, Any], name: str, where: str, source: DataSource) -> str:
    value = _field(row, name, where, source)
    if not isinstance(value, str):
        raise MalformedRowError(f"{where}: field {name!r} must be text, got {type(value).__name__}")
    return value


def _numina(row: dict[str, Any], where: str, source: DataSource) -> Problem | None:
    problem = _text(row, "problem", where, source)
    solution = _text(row, "solution", where, source)
    subset = _text(row, "source", where, source)
    if source.subsets and subset not in source.subsets:
        return None
    if not BOXED.search(solution):  # Sky-T1 kept only rows whose reference has a \boxed{} answer
        return None
    return Problem(
        source.name, "math", problem, numina_prompt(problem), reference=solution, metadata={"subset": subset}
    )


def _code_tests(row: dict[str, Any], where: str, source: DataSource) -> dict[str, Any] | None:
    raw = _field(row, "input_output", where, source)
    if isinstance(raw, str):
        if not raw.strip():
            return None
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as error:
            raise MalformedRowError(
                f"{where}: field 'input_output' is not valid JSON: {error.msg}"
            ) from error
    if not isinstance(raw, dict):
        raise MalformedRowError(f"{where}: field 'input_output' must be an object with inputs and outputs")
    inputs, outputs = raw.get("inputs"), raw.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        raise MalformedRowError(f"{where}: field 'input_output' needs lists 'inputs' and 'outputs'")
    if len(inputs) != len(outputs):
        raise MalformedRowError(
            f"{where}: 'input_output' has {len(inputs)} inputs but {len(outputs)} outputs"
        )
    if not inputs:  # a problem with no tests cannot be checked: not a candidate
        return None
    tests: dict[str, Any] = {"inputs": inputs, "outputs": outputs}
    if raw.get("fn_name"):
        tests["fn_name"] = raw["fn_name"]
    return tests


def _apps_or_taco(row: dict[str, Any], where: str, source: DataSource) -> Problem | None:
    question = _text(row, "question", where, source)
    difficulty = str(row.get("difficulty") or "")
    if source.difficulties and difficulty not in source.difficulties:
        return None
    tests = _code_tests(row, where, source)
    if tests is None:
        return None
    starter = str(row.get("starter_code") or "")
    call_based = "fn_name" in tests
    render = taco_prompt if source.format == "taco" else apps_prompt
    metadata = {"difficulty": difficulty, "call_based": call_based}
    if source.format == "taco":
        metadata["time_limit"] = row.get("time_limit")
    return Problem(
        source.name, "code", question, render(question, starter, call_based), tests=tests, metadata=metadata
    )


def _still2(row: dict[str, Any], where: str, source: DataSource) -> Problem | None:
    """STILL-2's flat rows (question, combined_text, domain) or ShareGPT conversations."""
    if isinstance(row, dict) and "conversations" in row:
        turns = _field(row, "conversations", where, source)
        if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
            raise MalformedRowError(f"{where}: field 'conversations' must be a list of {{from, value}} turns")
        users = [t.get("value") for t in turns if t.get("from") in ("human", "user")]
        answers = [t.get("value") for t in turns if t.get("from") in ("gpt", "assistant")]
        if not users or not isinstance(users[0], str):
            raise MalformedRowError(f"{where}: conversation has no user turn with text")
        question, reference = users[0], answers[-1] if answers else None
        domain = str(row.get("domain") or "")
    else:
        question = _text(row, "question", where, source)
        reference = next((row[k] for k in ("combined_text", "solution", "answer") if row.get(k)), None)
        domain = str(row.get("domain") or "")
    if source.subsets and domain not in source.subsets:
        return None
    kind: ProblemKind = "math" if domain == "math" else "science"
    return Problem(source.name, kind, question, question, reference=reference, metadata={"domain": domain})


def _reasoning_gym(row: dict[str, Any], where: str, source: DataSource) -> Problem | None:
    question = _text(row, "question", where, source)
    answer = str(_field(row, "answer", where, source))
    return Problem(
        source.name,
        "math",
        question,
        numina_prompt(question),
        reference=f"\\boxed{{{answer}}}",
        metadata={"task": source.task},
    )


CONVERTERS = {
    "numina": _numina,
    "apps": _apps_or_taco,
    "taco": _apps_or_taco,
    "still2": _still2,
    "reasoning-gym": _reasoning_gym,
}


def problems_of(
    source: DataSource, seed: int, paths: RunPaths, tally: RowTally | None = None
) -> Iterator[Problem]:
    """Every row of the source that passes its filters, as a Problem, in the dataset's order. Malformed
    rows are skipped into `tally`."""
    convert = CONVERTERS[source.format]
    tally = tally if tally is not None else RowTally()
    for where, row in raw_rows(source, seed, paths):
        tally.rows += 1
        if isinstance(row, Unreadable):
            tally.skip(f"{where}: {row.reason}")
            continue
        try:
            problem = convert(row, where, source)
        except MalformedRowError as error:
            tally.skip(str(error))
            continue
        if problem is not None:
            problem.metadata["format"] = source.format  # the filter gives TACO problems a larger budget
            yield problem
