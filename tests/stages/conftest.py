"""Fixtures the stage tests share: the tiny world (built once per machine and cached, minutes cold)."""

from __future__ import annotations

import pytest
from reasoning_pipeline.tiny_world import TinyWorld, build_tiny_world


@pytest.fixture(scope="session")
def tiny_world() -> TinyWorld:
    return build_tiny_world()
