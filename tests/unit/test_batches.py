"""Micro-batches and optimizer steps: what format checks is what train walks."""

from __future__ import annotations

import re

import pytest
from reasoning_pipeline.batches import micro_batches, micro_batches_per_process, require_one_optimizer_step
from reasoning_pipeline.errors import StageError, TransientStageError
from reasoning_pipeline.spec import TrainingSpec


def training(micro: int, accumulation: int, processes: int) -> TrainingSpec:
    return TrainingSpec(
        gpus_per_node=0,
        processes_per_node=processes,
        micro_batch_size=micro,
        gradient_accumulation_steps=accumulation,
        global_batch_size=micro * accumulation * processes,
    )


@pytest.mark.parametrize(
    ("samples", "micro", "processes", "per_process"),
    [
        (64, 4, 2, 8),
        (63, 4, 2, 7),  # the ragged tail is dropped on every process alike
        (7, 4, 2, 0),
        (17, 1, 8, 2),
        (0, 1, 1, 0),
    ],
)
def test_micro_batches_per_process_is_what_every_rank_walks(
    samples: int, micro: int, processes: int, per_process: int
) -> None:
    assert micro_batches_per_process(samples, micro, processes) == per_process
    spec = training(micro, 1, processes)
    samples_list = list(range(samples))
    walked = [micro_batches(samples_list, spec, rank, processes, epoch=0) for rank in range(processes)]
    assert [len(batches) for batches in walked] == [per_process] * processes
    assert all(len(batch) == micro for batches in walked for batch in batches)
    taken = [sample for batches in walked for batch in batches for sample in batch]
    assert len(taken) == len(set(taken)), "no sample is trained twice in one epoch"


@pytest.mark.parametrize(
    ("samples", "micro", "accumulation", "processes", "reason"),
    [
        (
            9,
            4,
            2,
            2,
            "9 SFT samples make 1 micro-batches per process (2 processes × microBatchSize 4), fewer than "
            "gradientAccumulationSteps (2): not one optimizer step; it takes at least 16 samples",
        ),
        (
            95,
            1,
            12,
            8,
            "95 SFT samples make 11 micro-batches per process (8 processes × microBatchSize 1), fewer than "
            "gradientAccumulationSteps (12): not one optimizer step; it takes at least 96 samples",
        ),
    ],
)
def test_too_few_samples_for_one_optimizer_step_is_a_permanent_failure_naming_both_numbers(
    samples: int, micro: int, accumulation: int, processes: int, reason: str
) -> None:
    with pytest.raises(StageError, match=re.escape(reason)) as failed:
        require_one_optimizer_step(samples, training(micro, accumulation, processes), processes)
    assert not isinstance(failed.value, TransientStageError)


def test_enough_samples_give_the_micro_batches_of_an_epoch() -> None:
    assert require_one_optimizer_step(96, training(1, 12, 8), 8) == 12
    assert require_one_optimizer_step(64, training(4, 2, 2), 2) == 8
