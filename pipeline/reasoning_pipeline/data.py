"""Stage `data`: mix the prompt sources into one deduplicated, deterministically ordered prompts file."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from reasoning_pipeline.errors import StageError
from reasoning_pipeline.estimate import Sizes, estimate, student_shape
from reasoning_pipeline.progress import track
from reasoning_pipeline.sources import Problem, RowTally, problems_of, question_key
from reasoning_pipeline.spec import DataSpec, ReasoningRun, Stage
from reasoning_pipeline.storage import RunPaths, atomic_write_jsonl
from reasoning_pipeline.summary import Progress, StageSummary, now, output_of

PROMPTS_FILE = "prompts.jsonl"


@dataclass
class SourceCounts:
    candidates: int = 0
    """Rows that passed the source's filters (the first `first` of them, when set)."""
    selected: int = 0
    """After the seeded shuffle and the source's limit."""
    duplicates: int = 0
    """Selected rows dropped because an earlier row asked the same question."""
    kept: int = 0
    tally: RowTally = field(default_factory=RowTally)
    """Rows read and malformed rows skipped."""

    def as_metrics(self) -> dict[str, Any]:
        return {
            "candidates": self.candidates,
            "selected": self.selected,
            "duplicates": self.duplicates,
            "kept": self.kept,
            "malformed": self.tally.malformed,
            "malformedExample": self.tally.example,
        }


@dataclass
class Mix:
    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, SourceCounts] = field(default_factory=dict)


def mix_sources(spec: DataSpec, paths: RunPaths) -> Mix:
    """Each source filtered, cut to its `first`, shuffled by (seed, source name), limited; then deduplicated.

    Shuffling before the limit makes `limit` a random sample, the same for the same seed; keying the
    shuffle by source name keeps one source's order independent of the others.
    """
    mix = Mix()
    seen: set[str] = set()
    for source in spec.sources:
        counts = mix.counts.setdefault(source.name, SourceCounts())
        in_order = islice(problems_of(source, spec.seed, paths, counts.tally), source.first)
        candidates = list(track(in_order, None, f"data: reading {source.name}"))
        tally = counts.tally
        if tally.rows and tally.malformed == tally.rows:
            raise StageError(
                f"data source {source.name!r}: all {tally.rows} rows read are malformed for format "
                f"{source.format!r} (e.g. {tally.example}): is the source's format the dataset's?"
            )
        counts.candidates = len(candidates)
        random.Random(f"{spec.seed}:{source.name}").shuffle(candidates)
        selected = candidates[: source.limit] if source.limit else candidates
        counts.selected = len(selected)
        for problem in selected:
            key = question_key(problem.question)
            if spec.deduplicate and key in seen:
                counts.duplicates += 1
                continue
            seen.add(key)
            mix.problems.append(problem)
            counts.kept += 1
    return mix


def run(run: ReasoningRun, paths: RunPaths) -> StageSummary:
    started_at = now()
    spec = run.spec.data
    if not spec.sources:
        raise StageError("data.sources is empty: give at least one prompt source")
    mix = mix_sources(spec, paths)
    if not mix.problems:
        raise StageError("no prompts: every source was empty after its filters (see the counts per source)")
    out = paths.stage_dir(Stage.DATA) / PROMPTS_FILE
    written = atomic_write_jsonl(out, (p.to_record() for p in mix.problems))
    kinds = Counter(p.kind for p in mix.problems)
    metrics: dict[str, Any] = {
        "sources": {name: c.as_metrics() for name, c in mix.counts.items()},
        "kinds": dict(sorted(kinds.items())),
        "duplicatesDropped": sum(c.duplicates for c in mix.counts.values()),
        "malformedSkipped": sum(c.tally.malformed for c in mix.counts.values()),
    }
    return StageSummary(
        stage=Stage.DATA,
        phase="Succeeded",
        message=f"{written} prompts from {len(spec.sources)} sources "
        f"({metrics['duplicatesDropped']} duplicates dropped, {metrics['malformedSkipped']} malformed rows "
        "skipped)",
        started_at=started_at,
        finished_at=now(),
        progress=Progress(done=written, total=written),
        outputs={"prompts": output_of(out, paths.root, written)},
        metrics=metrics,
        estimate=estimate(
            run.spec,
            Sizes(prompts=written, student=student_shape(run.spec, paths)),
            made_by=Stage.DATA,
        ),
    )
