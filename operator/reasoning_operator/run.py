"""The run as the operator's pure functions see it: identity plus the validated spec."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from reasoning_pipeline.spec import ReasoningRunSpec, describe_validation_error


class InvalidRun(ValueError):  # noqa: N818 -- the name other modules and handlers use
    """A ReasoningRun whose spec does not validate; the message names each field at fault."""


@dataclass(frozen=True)
class RunRef:
    name: str
    namespace: str
    uid: str
    generation: int
    spec: ReasoningRunSpec

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> RunRef:
        """From the resource as the API server returns it (kopf's `body`): camelCase, defaults filled in."""
        metadata = body.get("metadata") or {}
        name = metadata.get("name") or "(unnamed)"
        try:
            spec = ReasoningRunSpec.model_validate(body.get("spec") or {})
        except ValidationError as error:
            raise InvalidRun(
                f"ReasoningRun {name}: spec is invalid:\n{describe_validation_error(error)}"
            ) from error
        missing = [field for field in ("name", "namespace", "uid") if not metadata.get(field)]
        if missing:
            raise InvalidRun(f"ReasoningRun {name}: metadata lacks {', '.join(missing)}")
        return cls(
            name=metadata["name"],
            namespace=metadata["namespace"],
            uid=metadata["uid"],
            generation=int(metadata.get("generation") or 0),
            spec=spec,
        )
