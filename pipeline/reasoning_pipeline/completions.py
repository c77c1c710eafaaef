"""Driving many chat completions against an OpenAI-compatible server: bounded concurrency, retries with
backoff that honour Retry-After, and a journal so a killed stage resumes without losing or repeating work.

Used by `generate` (the teacher server) and `rewrite` (the API model); each brings its own transport.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reasoning_pipeline.errors import StageError, TransientStageError
from reasoning_pipeline.storage import Journal

if TYPE_CHECKING:  # served.py raises this module's FatalError
    from reasoning_pipeline.served import ServerFacts

# A journal fsync per record would cap throughput at the disk's sync rate; every record is still
# written (flushed to the OS) before it counts, so a killed process loses nothing it reported.
SYNC_EVERY_RECORDS = 256
SYNC_EVERY_SECONDS = 1.0


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    model: str


class TransientError(Exception):
    """Worth retrying: connection trouble, timeouts, 408/409/429/5xx. `retry_after` from the server."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    """This request will never succeed (e.g. 400: prompt longer than the context)."""


class FatalError(Exception):
    """No request can succeed (e.g. 401/403: the API key is wrong): stop the whole stage at once."""


Complete = Callable[[dict[str, Any]], Awaitable[Completion]]


def classify_status(status: int, body: str, retry_after: float | None) -> Exception:
    """The exception for an HTTP error answer, shared by every transport."""
    detail = f"HTTP {status}: {body[:300]}"
    if status in (401, 403):
        return FatalError(f"the server refused the credentials ({detail})")
    if status in (408, 409, 429) or status >= 500:
        return TransientError(detail, retry_after)
    return PermanentError(detail)


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare for these APIs, fall back to our own backoff


def answer_text(content: object, finish_reason: str | None, refusal: object = None) -> str:
    """A choice's text. `content: null` (a refusal, a filtered answer, a tool call) fails this request for
    good, saying so: never an empty answer that a score would count as wrong or a trace as data."""
    if isinstance(content, str):
        return content
    declined = f", refusal {str(refusal)[:200]!r}" if refusal else ""
    raise PermanentError(f"the server answered with no content (finish_reason {finish_reason!r}{declined})")


def completion_from_json(document: dict[str, Any]) -> Completion:
    """An OpenAI chat.completion object; a malformed one is a transient server fault."""
    try:
        choice = document["choices"][0]
        usage = document.get("usage") or {}
        message = choice["message"]
        return Completion(
            text=answer_text(message.get("content"), choice.get("finish_reason"), message.get("refusal")),
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            model=str(document.get("model") or ""),
        )
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as error:
        raise TransientError(f"malformed completion from the server: {error!r}") from error


@dataclass(frozen=True)
class Backoff:
    base_seconds: float = 1.0
    max_seconds: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_seconds * 5)
        # full jitter: many workers hitting one rate limit must not retry in lockstep
        return random.uniform(0, min(self.max_seconds, self.base_seconds * 2**attempt))


async def complete_with_retries(
    complete: Complete, body: dict[str, Any], max_retries: int, backoff: Backoff = Backoff()
) -> Completion:
    attempt = 0
    while True:
        try:
            return await complete(body)
        except TransientError as error:
            if attempt >= max_retries:
                raise
            await asyncio.sleep(backoff.delay(attempt, error.retry_after))
            attempt += 1


@dataclass(frozen=True)
class Request:
    key: str
    body: dict[str, Any]
    payload: dict[str, Any]
    """What the finished record carries besides the completion (the prompt record, sample index…)."""


@dataclass
class DriveReport:
    completed: int = 0
    permanent_failures: int = 0
    unjournaled_refusals: dict[str, str] = field(default_factory=dict)
    """Permanent failures kept out of the journal (on_permanent gave None), by key: asked again on a rerun."""
    transient_failures: dict[str, str] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    server: ServerFacts | None = None
    """What the server said about itself before the first request (HTTP drivers)."""


async def drive(
    requests: Iterable[Request],
    journal: Journal,
    complete: Complete,
    *,
    concurrency: int,
    max_retries: int,
    to_record: Callable[[Request, Completion], dict[str, Any]],
    on_permanent: Callable[[Request, str], dict[str, Any] | None],
    on_done: Callable[[], object] = lambda: None,
    backoff: Backoff = Backoff(),
) -> DriveReport:
    """Runs every request not yet journaled. A success becomes a journal record, and so does a permanent
    failure unless `on_permanent` gives None (then the report keeps its reason); a request still failing
    transiently after its retries is left out, so a rerun tries it again."""
    report = DriveReport()
    pending = iter(requests)
    last_sync = time.monotonic()
    unsynced = 0
    started = time.monotonic()

    def record(entry: dict[str, Any]) -> None:
        nonlocal last_sync, unsynced
        journal.append(entry, sync=False)
        unsynced += 1
        if unsynced >= SYNC_EVERY_RECORDS or time.monotonic() - last_sync >= SYNC_EVERY_SECONDS:
            journal.sync()
            last_sync, unsynced = time.monotonic(), 0
        on_done()

    async def worker() -> None:
        for request in pending:  # one shared iterator: each request is taken by exactly one worker
            if request.key in journal:
                continue
            try:
                completion = await complete_with_retries(complete, request.body, max_retries, backoff)
            except PermanentError as error:
                report.permanent_failures += 1
                entry = on_permanent(request, str(error))
                if entry is None:
                    report.unjournaled_refusals[request.key] = str(error)
                else:
                    record(entry)
                continue
            except TransientError as error:
                report.transient_failures[request.key] = str(error)
                continue
            report.completed += 1
            report.prompt_tokens += completion.prompt_tokens
            report.completion_tokens += completion.completion_tokens
            record(to_record(request, completion))

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        journal.sync()
    report.seconds = time.monotonic() - started
    return report


def run_journaled(
    journal_path: Path,
    driving: Callable[[Journal], Coroutine[Any, Any, DriveReport]],
    *,
    total: int,
    max_retries: int,
    where: str,
) -> tuple[dict[str, dict[str, Any]], int, DriveReport]:
    """Drives requests into a journal; returns every journaled record by key, how many were there before,
    and the report. A fatal error, or requests still failing after their retries, fail the stage."""
    with Journal(journal_path) as journal:
        resumed = len(journal)
        try:
            report = asyncio.run(driving(journal))
        except FatalError as error:
            raise StageError(f"{where}: {error}") from error
        done = journal.records()
    if report.transient_failures:
        key, reason = next(iter(report.transient_failures.items()))
        raise TransientStageError(
            f"{where}: {len(report.transient_failures)} of {total} requests still failing after "
            f"{max_retries} retries (e.g. {key}: {reason}); {len(done)} are saved, a rerun resumes"
        )
    return done, resumed, report
