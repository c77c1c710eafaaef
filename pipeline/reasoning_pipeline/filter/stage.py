"""Stage `filter`: rejection sampling. A rewritten trace is kept only when its final answer matches the
reference (math, science) or its final program passes every test of the problem (code).

Verdicts are journaled one by one as they come, so a killed filter resumes where it stopped; acceptance
rates per source, which Sky-T1 never published, go into the summary.

A program that takes the whole pod down (possible where the sandbox is only rlimits) must not take every
retry down with it: each code check is journaled when its program starts (`started.journal.jsonl`). On
the next attempt, the checks that started and never finished are run one at a time, alone, before the
rest; one that was cut off while it ran alone is rejected without running again.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

from reasoning_pipeline.errors import StageError
from reasoning_pipeline.filter.code import CodeChecker, extract_code, no_code_verdict, parse_tests
from reasoning_pipeline.filter.math import MathChecker
from reasoning_pipeline.filter.sandbox import IsolationLevel
from reasoning_pipeline.progress import bar
from reasoning_pipeline.spec import FilterSpec, ReasoningRun, Stage
from reasoning_pipeline.stage_input import read_stage_input, require_text_fields
from reasoning_pipeline.storage import Journal, RunPaths, atomic_write_jsonl
from reasoning_pipeline.summary import Progress, StageSummary, now, output_of

JOURNAL_FILE = "verdicts.journal.jsonl"
STARTED_FILE = "started.journal.jsonl"
CUT_OFF_ALONE = "its check was cut off while it ran alone (the program took the filter down): not run again"
KEPT_FILE = "kept.jsonl"
REJECTED_FILE = "rejected.jsonl"
BATCH = 128
SOLUTION_START, SOLUTION_END = "<|begin_of_solution|>", "<|end_of_solution|>"


def solution_section(record: dict[str, Any]) -> str:
    """What is judged: the rewritten trace's solution section (its final answer or program)."""
    text = str(record.get("rewritten") or record.get("response") or "")
    start, end = text.rfind(SOLUTION_START), text.rfind(SOLUTION_END)
    if start != -1 and end > start:
        return text[start + len(SOLUTION_START) : end]
    return text


def input_records(run: ReasoningRun, paths: RunPaths) -> list[dict[str, Any]]:
    path, records = read_stage_input(
        paths, run.spec.filter.input_path, Stage.REWRITE, "rewritten.jsonl", "filter.inputPath"
    )
    require_text_fields(path, records, "id")
    for number, record in enumerate(records, start=1):
        if record.get("kind") not in ("math", "science", "code"):
            raise StageError(f"{path}: record {number}: field 'kind' must be math, science or code")
    return records


def _verdict(record: dict[str, Any], kept: bool, reason: str, **extra: Any) -> dict[str, Any]:
    return {"id": record["id"], "source": record.get("source"), "kept": kept, "reason": reason, **extra}


class Judge:
    """Sends each record to the checker of its kind and turns the answers into verdicts, in order."""

    def __init__(self, spec: FilterSpec, minimum: IsolationLevel = IsolationLevel.RLIMITS) -> None:
        self.spec = spec
        self.math = MathChecker(spec.math.timeout_seconds, spec.workers)
        self.code = CodeChecker(spec.code, spec.workers, minimum)

    def close(self) -> None:
        self.math.close()
        self.code.close()

    def _problem_budget(self, record: dict[str, Any]) -> float:
        taco = record.get("metadata", {}).get("format") == "taco"
        code = self.spec.code
        return code.taco_problem_timeout_seconds if taco else code.problem_timeout_seconds

    def judge(
        self, records: list[dict[str, Any]], on_start: Callable[[dict[str, Any]], None] = lambda r: None
    ) -> Iterator[dict[str, Any]]:
        """Each record's verdict as soon as it is known (not in input order); `on_start(record)` just
        before a code record's program first runs."""
        math_items, code_items = [], []
        for record in records:
            solution = solution_section(record)
            if record["kind"] == "code":
                try:
                    tests = parse_tests(record.get("tests"))
                except ValueError as error:
                    yield _verdict(record, False, f"unusable tests: {error}")
                    continue
                code = extract_code(solution)
                if code is None:
                    yield _verdict(record, False, no_code_verdict(tests).reason)
                    continue
                code_items.append((record, (code, tests, self._problem_budget(record))))
            elif not record.get("reference"):
                yield _verdict(record, False, "no reference answer to compare with")
            else:
                math_items.append((record, (solution, str(record["reference"]))))
        for (record, _), answer in zip(
            math_items, self.math.check_many(i for _, i in math_items), strict=True
        ):
            yield _verdict(record, answer.correct, answer.reason, extracted=answer.extracted)
        started = self.code.check_many(
            (i for _, i in code_items), on_start=lambda index: on_start(code_items[index][0])
        )
        for (record, _), result in zip(code_items, started, strict=True):
            yield _verdict(
                record,
                result.passed,
                result.reason,
                testsPassed=result.tests_passed,
                testsTotal=result.tests_total,
            )


def _batches(todo: list[dict[str, Any]], cut_off: set[str]) -> Iterator[tuple[list[dict[str, Any]], bool]]:
    """(records, alone): first the checks a killed attempt cut off, each alone; then the rest."""
    for record in todo:
        if record["id"] in cut_off:
            yield [record], True
    rest = iter([r for r in todo if r["id"] not in cut_off])
    while batch := list(islice(rest, BATCH)):
        yield batch, False


def _cut_off(started: Journal, verdicts: Journal) -> tuple[set[str], set[str]]:
    """(checks started and never finished, those of them that ran alone when they were cut off)."""
    unfinished = [r for r in started.records().values() if r["id"] not in verdicts]
    return {str(r["id"]) for r in unfinished}, {str(r["id"]) for r in unfinished if r["alone"]}


def acceptance(verdicts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    per_source: dict[str, dict[str, Any]] = defaultdict(lambda: {"checked": 0, "kept": 0})
    for verdict in verdicts:
        counts = per_source[str(verdict.get("source"))]
        counts["checked"] += 1
        counts["kept"] += int(verdict["kept"])
    for counts in per_source.values():
        counts["rate"] = round(counts["kept"] / counts["checked"], 4)
    return dict(sorted(per_source.items()))


def run(run: ReasoningRun, paths: RunPaths) -> StageSummary:
    started_at = now()
    records = input_records(run, paths)
    if not records:
        raise StageError("no rewritten traces to filter")
    stage_dir = paths.stage_dir(Stage.FILTER)
    judge = Judge(run.spec.filter, IsolationLevel(run.spec.sandbox.minimum_isolation))
    try:
        with (
            Journal(stage_dir / JOURNAL_FILE) as journal,
            Journal(stage_dir / STARTED_FILE, key="start") as started,
        ):
            resumed = len(journal)
            cut_off, cut_off_alone = _cut_off(started, journal)
            with bar(len(records), "filter", initial=resumed) as progress:
                for record in records:
                    if record["id"] in cut_off_alone and record["id"] not in journal:
                        journal.append(_verdict(record, False, CUT_OFF_ALONE))
                        progress.update(1)
                todo = [r for r in records if r["id"] not in journal]
                tries = Counter(str(r["id"]) for r in started.records().values())
                for batch, alone in _batches(todo, cut_off):

                    def starting(record: dict[str, Any], alone: bool = alone) -> None:
                        tries[record["id"]] += 1
                        start = f"{record['id']}#{tries[record['id']]}"
                        started.append({"start": start, "id": record["id"], "alone": alone})

                    for verdict in judge.judge(batch, on_start=starting):
                        journal.append(verdict, sync=False)  # written through: a killed pod keeps it
                        progress.update(1)
                    journal.sync()
            verdicts = journal.records()
        isolation = judge.code.isolation
    finally:
        judge.close()
    ordered = [verdicts[r["id"]] for r in records]
    kept = [{**r, "verdict": v["reason"]} for r, v in zip(records, ordered, strict=True) if v["kept"]]
    rejected = [v for v in ordered if not v["kept"]]
    out = stage_dir / KEPT_FILE
    atomic_write_jsonl(out, kept)
    atomic_write_jsonl(stage_dir / REJECTED_FILE, rejected)
    rates = acceptance(ordered)
    return StageSummary(
        stage=Stage.FILTER,
        phase="Succeeded",
        message=f"kept {len(kept)} of {len(records)} ({len(kept) / len(records):.0%}, {resumed} resumed)",
        started_at=started_at,
        finished_at=now(),
        progress=Progress(done=len(records), total=len(records)),
        outputs={"kept": output_of(out, paths.root, len(kept))},
        metrics={
            "kept": len(kept),
            "rejected": len(rejected),
            "acceptance": rates,
            "resumed": resumed,
            "sandboxIsolation": isolation,
        },
    )
