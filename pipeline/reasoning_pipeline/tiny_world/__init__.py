"""The tiny world: a locally trained tokenizer, teacher and student, and arithmetic problems in real
dataset formats, built once (seeded, minutes on two cores) and cached outside the repository.

    from reasoning_pipeline.tiny_world import build_tiny_world
    world = build_tiny_world()          # ~/.cache/reasoning-operator/tiny-world-<hash>/
    world.teacher, world.held_out, world.manifest["teacher"]["held_out_accuracy"]

`python -m reasoning_pipeline.tiny_world` builds it and prints where everything is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reasoning_pipeline.tiny_world.build import TinyWorld, build_tiny_world

__all__ = ["TinyWorld", "build_tiny_world"]


def __getattr__(name: str) -> Any:
    # torch and transformers load only when a model is wanted: the problem generator stays light
    if name in __all__:
        from reasoning_pipeline.tiny_world import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
