"""The one way stages draw progress: tqdm bars on stderr. On a terminal a bar redraws in place; in a pod it
writes a line every ~10 s in one fixed format, which the operator reads back from the pod's log for the
stage's rate and time left (`parse_progress`)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO, TypeVar

from tqdm import tqdm

T = TypeVar("T")

# what a pod's log line says: "<what>: <done>/<total> done, <rate><unit>/s, <elapsed> elapsed, <left> left"
LOG_FORMAT = "{desc}: {n}/{total} done, {rate_noinv_fmt}, {elapsed} elapsed, {remaining} left"
_LOG_LINE = re.compile(
    r"^(?P<what>.+?): (?P<done>\d+)/(?P<total>\d+|None) done, \s*(?P<rate>[0-9.]+|\?)(?P<unit>[a-z]+)/s, "
)


class _Lines:
    """tqdm redraws with a carriage return, which a container log does not split on: the log would hold
    one ever-growing line until the bar closes. Each redraw becomes a line of its own."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        for part in re.split(r"[\r\n]", text):
            if part.strip():
                self.stream.write(part.rstrip() + "\n")

    def flush(self) -> None:
        self.stream.flush()


def bar(total: int | None, description: str, *, initial: int = 0, unit: str = "rec") -> tqdm[Any]:
    """A manual bar (`.update(n)`); on a terminal it redraws in place, in a pod it logs every ~10 s."""
    if sys.stderr.isatty():
        return tqdm(
            total=total, initial=initial, desc=description, file=sys.stderr, mininterval=0.2, unit=unit
        )
    return tqdm(
        total=total,
        initial=initial,
        desc=description,
        file=_Lines(sys.stderr),
        mininterval=10.0,
        unit=unit,
        bar_format=LOG_FORMAT,
    )


def track(items: Iterable[T], total: int | None, description: str) -> Iterator[T]:
    with bar(total, description) as progress:
        for item in items:
            yield item
            progress.update(1)


@dataclass(frozen=True)
class Reported:
    """A stage's progress as its last log line says it."""

    what: str
    done: int
    total: int | None
    rate: float | None  # per second, of `unit`
    unit: str


def parse_progress(log: str) -> Reported | None:
    """The last progress line of a stage pod's log; None when it has written none yet."""
    for line in reversed(log.splitlines()):
        found = _LOG_LINE.match(line.strip())
        if found is None:
            continue
        total, rate = found["total"], found["rate"]
        return Reported(
            what=found["what"],
            done=int(found["done"]),
            total=None if total == "None" else int(total),
            rate=None if rate == "?" else float(rate),
            unit=found["unit"],
        )
    return None
