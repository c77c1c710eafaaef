"""What only run time can see, checked by the CPU stages before any GPU is asked for: the model folders
the spec names on the storage.

A model is named by a hub id or by a folder on the shared storage (relative to its root). A name that
can only be a folder (an absolute or ./ path) or any name while the hub is off (`hub.offline`) must be
there; otherwise the GPU stage that loads it would be the first to find out, with its GPUs held.
"""

from __future__ import annotations

import os
from pathlib import Path

from reasoning_pipeline.errors import StageError
from reasoning_pipeline.spec import ReasoningRun
from reasoning_pipeline.storage import RunPaths


def in_hub_cache(repo_id: str, file: str = "config.json") -> bool:
    """Whether the Hugging Face cache ($HF_HOME, $HF_HUB_CACHE) holds the model repository's `file`."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, file), str)
    except ValueError:  # not a repository id at all
        return False


def model_folder(
    field: str, name: str, paths: RunPaths, *, offline: bool = False, probe: str = "config.json"
) -> Path | None:
    """The folder on the storage that `name` names, or None for a hub id; refused for good, naming
    `field`, when `name` can only be a folder (a path; or, with the hub off, anything its cache lacks)
    and is not there."""
    local = paths.resolve(name)
    if local.exists():
        return local
    offline = offline or os.environ.get("HF_HUB_OFFLINE") == "1"
    if name.startswith(("/", "./", "../")) or (offline and not in_hub_cache(name, probe)):
        where = "nor in the Hugging Face cache, and the hub is off" if offline else ""
        raise StageError(f"{field} {name!r}: no such model folder ({local}){' ' + where if where else ''}")
    return None


def named_models(run: ReasoningRun) -> list[tuple[str, str]]:
    """(field, name) of every model the run's enabled stages load from a name (not from a given
    endpoint, not the train stage's own output)."""
    spec = run.spec
    named = []
    if spec.generation.enabled and spec.generation.teacher.endpoint is None:
        named.append(("generation.teacher.model", spec.generation.teacher.model))
    if spec.format.enabled and spec.format.tokenizer:
        named.append(("format.tokenizer", spec.format.tokenizer))
    if spec.training.enabled:
        named.append(("training.baseModel", spec.training.base_model))
    server = spec.evaluation.server
    if spec.evaluation.enabled and server.endpoint is None and server.model:
        named.append(("evaluation.server.model", server.model))
    return named


def check_models(run: ReasoningRun, paths: RunPaths) -> None:
    """Every missing model folder at once, each with its field."""
    missing = []
    for field, name in named_models(run):
        probe = "tokenizer_config.json" if field == "format.tokenizer" else "config.json"
        try:
            model_folder(field, name, paths, offline=run.spec.hub.offline, probe=probe)
        except StageError as error:
            missing.append(str(error))
    if missing:
        raise StageError("; ".join(missing) + " (checked before any GPU is asked for)")
