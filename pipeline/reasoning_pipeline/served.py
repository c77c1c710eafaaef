"""What a model server says about itself before the drivers send it anything: its engine and version
(recorded beside the results) and the context length it serves a model with (checked against what the
spec asks of it, so that a budget that cannot fit fails before the first request, naming the field)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reasoning_pipeline.completions import FatalError


@dataclass(frozen=True)
class ServerFacts:
    engine: str | None = None
    """Who serves the model, as /v1/models says (`owned_by`: "vllm" for vLLM)."""
    version: str | None = None
    """The engine's version, from vLLM's /version; None where the server has no such route."""
    max_model_len: int | None = None
    """Prompt plus answer tokens the server allows for the model asked for (vLLM lists it per model)."""

    def as_status(self) -> dict[str, Any]:
        return {"engine": self.engine, "version": self.version, "maxModelLen": self.max_model_len}


def facts_from(models: dict[str, Any], version: dict[str, Any] | None, model: str) -> ServerFacts:
    """From the bodies of GET /v1/models and GET /version; the entry of `model`, else the first one (a
    server may list a model under another of its names)."""
    entries = [e for e in models.get("data") or [] if isinstance(e, dict)]
    entry = next((e for e in entries if e.get("id") == model), entries[0] if entries else {})
    length = entry.get("max_model_len")
    engine = entry.get("owned_by")
    release = (version or {}).get("version")
    return ServerFacts(
        engine=str(engine) if engine else None,
        version=str(release) if release else None,
        max_model_len=length if isinstance(length, int) and not isinstance(length, bool) else None,
    )


def check_context(facts: ServerFacts, *, max_tokens: int, field: str, where: str) -> None:
    """Fails for good when the answers the spec asks for exceed the context the server allows: vLLM
    refuses every such request (HTTP 400), so none is sent. Up to the context it answers, with what each
    prompt leaves (counted by evaluate as cut to fit)."""
    if facts.max_model_len is not None and max_tokens > facts.max_model_len:
        raise FatalError(
            f"{field} ({max_tokens}) exceeds the context: {where} serves at most "
            f"{facts.max_model_len} tokens of prompt and answer together (its max_model_len); lower "
            f"{field} or serve the model with a larger maxModelLen"
        )
