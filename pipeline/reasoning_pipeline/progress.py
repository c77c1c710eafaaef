"""The one way stages draw progress: tqdm bars on stderr, refreshed sparingly (pod logs keep every line)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def bar(total: int | None, description: str, *, initial: int = 0) -> tqdm[Any]:
    """A manual bar (`.update(n)`); on a terminal it redraws in place, in a pod it logs every ~10 s."""
    interactive = sys.stderr.isatty()
    return tqdm(
        total=total,
        initial=initial,
        desc=description,
        file=sys.stderr,
        mininterval=0.2 if interactive else 10.0,
        dynamic_ncols=interactive,
        unit="rec",
    )


def track(items: Iterable[T], total: int | None, description: str) -> Iterator[T]:
    with bar(total, description) as progress:
        for item in items:
            yield item
            progress.update(1)
