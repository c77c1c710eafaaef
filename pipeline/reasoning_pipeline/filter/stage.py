"""Stage `filter`: rejection sampling. A rewritten trace is kept only when its final answer matches the
reference (math, science) or its final program passes every test of the problem (code).

Verdicts are journaled as they come, so a killed filter resumes where it stopped; acceptance rates per
source, which Sky-T1 never published, go into the summary.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from itertools import islice
from typing import Any

from reasoning_pipeline.errors import StageError
from reasoning_pipeline.filter.code import CodeChecker, extract_code, no_code_verdict, parse_tests
from reasoning_pipeline.filter.math import MathChecker
from reasoning_pipeline.progress import bar
from reasoning_pipeline.spec import FilterSpec, ReasoningRun, Stage
from reasoning_pipeline.stage_input import read_stage_input, require_text_fields
from reasoning_pipeline.storage import Journal, RunPaths, atomic_write_jsonl
from reasoning_pipeline.summary import Progress, StageSummary, now, output_of

JOURNAL_FILE = "verdicts.journal.jsonl"
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

    def __init__(self, spec: FilterSpec) -> None:
        self.spec = spec
        self.math = MathChecker(spec.math.timeout_seconds, spec.workers)
        self.code = CodeChecker(spec.code, spec.workers)

    def close(self) -> None:
        self.math.close()
        self.code.close()

    def _problem_budget(self, record: dict[str, Any]) -> float:
        taco = record.get("metadata", {}).get("format") == "taco"
        code = self.spec.code
        return code.taco_problem_timeout_seconds if taco else code.problem_timeout_seconds

    def judge(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        verdicts: dict[str, dict[str, Any]] = {}
        math_items, code_items = [], []
        for record in records:
            solution = solution_section(record)
            if record["kind"] == "code":
                try:
                    tests = parse_tests(record.get("tests"))
                except ValueError as error:
                    verdicts[record["id"]] = _verdict(record, False, f"unusable tests: {error}")
                    continue
                code = extract_code(solution)
                if code is None:
                    verdicts[record["id"]] = _verdict(record, False, no_code_verdict(tests).reason)
                    continue
                code_items.append((record, (code, tests, self._problem_budget(record))))
            elif not record.get("reference"):
                verdicts[record["id"]] = _verdict(record, False, "no reference answer to compare with")
            else:
                math_items.append((record, (solution, str(record["reference"]))))
        for (record, _), answer in zip(
            math_items, self.math.check_many(i for _, i in math_items), strict=True
        ):
            verdicts[record["id"]] = _verdict(
                record, answer.correct, answer.reason, extracted=answer.extracted
            )
        for (record, _), result in zip(
            code_items, self.code.check_many(i for _, i in code_items), strict=True
        ):
            verdicts[record["id"]] = _verdict(
                record,
                result.passed,
                result.reason,
                testsPassed=result.tests_passed,
                testsTotal=result.tests_total,
            )
        return [verdicts[r["id"]] for r in records]


def _batches(records: list[dict[str, Any]], journal: Journal) -> Iterator[list[dict[str, Any]]]:
    todo = iter([r for r in records if r["id"] not in journal])
    while batch := list(islice(todo, BATCH)):
        yield batch


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
    judge = Judge(run.spec.filter)
    try:
        with Journal(stage_dir / JOURNAL_FILE) as journal:
            resumed = len(journal)
            with bar(len(records), "filter", initial=resumed) as progress:
                for batch in _batches(records, journal):
                    for verdict in judge.judge(batch):
                        journal.append(verdict, sync=False)
                    journal.sync()
                    progress.update(len(batch))
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
