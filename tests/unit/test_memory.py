"""The memory planner against a hand calculation: Qwen2.5-32B at Sky-T1's cutoff (README, "Memory plan")."""

from __future__ import annotations

import pytest
from reasoning_pipeline.memory import GIB, H100_80GB_BYTES, ModelShape, choose_offload, plan_memory

from tests.support.model_configs import QWEN25_32B

SHAPE = ModelShape.from_config(QWEN25_32B)


def test_parameter_count_by_hand() -> None:
    h, kv, inner, vocab = 5120, 1024, 27648, 152064
    per_layer = (2 * h * h + 2 * h * kv + h + 2 * kv) + 3 * h * inner + 2 * h
    assert SHAPE.parameters == 64 * per_layer + 2 * vocab * h + h == 32_763_876_352


@pytest.mark.parametrize(
    ("gpus", "chosen", "gib_per_gpu"),
    [
        # 8 H100s: 16 B/param / 8 = 61.0 GiB of states alone; with 37.2 GiB of activations, logits and
        # overhead that is 98.3 GiB > 73.3 GiB usable, so the optimizer (45.8 GiB) goes to the CPU: 52.5 GiB
        (8, "optimizer", 52.48),
        # 16 H100s: 30.5 GiB of states + 37.2 GiB = 67.7 GiB: fits with no offload at all
        (16, "none", 67.73),
    ],
)
def test_least_offload_that_fits_at_cutoff_16384(gpus: int, chosen: str, gib_per_gpu: float) -> None:
    plan = choose_offload(
        SHAPE, sequence_length=16384, micro_batch_size=1, world_size=gpus, gpu_memory_bytes=H100_80GB_BYTES
    )
    print(plan.table())
    assert plan.offload == chosen
    assert plan.fits
    assert plan.total_bytes / GIB == pytest.approx(gib_per_gpu, abs=0.01)
    tokens = 16384
    assert plan.activation_bytes == 64 * tokens * 5120 * 2 + 34 * tokens * 5120
    assert plan.logits_bytes == 2 * tokens * 152064 * 4


def test_sky_t1_full_offload_is_never_needed_but_always_fits_less() -> None:
    full = plan_memory(
        SHAPE,
        sequence_length=16384,
        micro_batch_size=1,
        world_size=8,
        gpu_memory_bytes=H100_80GB_BYTES,
        offload="optimizer+parameters",
    )
    assert full.parameter_bytes == 0
    assert full.optimizer_bytes == 0
    assert full.fits


def test_a_model_too_large_for_any_offload_says_so() -> None:
    plan = choose_offload(
        SHAPE, sequence_length=131072, micro_batch_size=1, world_size=8, gpu_memory_bytes=H100_80GB_BYTES
    )
    assert plan.offload == "optimizer+parameters"
    assert not plan.fits
    assert "does NOT fit" in plan.table()
