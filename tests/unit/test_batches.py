"""Micro-batches and optimizer steps: what format checks is what train walks."""

from __future__ import annotations

import math
import re

import pytest
from reasoning_pipeline.batches import (
    micro_batches,
    micro_batches_per_process,
    require_one_optimizer_step,
    training_sequences,
)
from reasoning_pipeline.errors import StageError, TransientStageError
from reasoning_pipeline.gpu_check import sky_t1_like_lengths
from reasoning_pipeline.sequences import pack_lengths
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


def test_packing_fills_sequences_to_the_cutoff_with_every_sample_once() -> None:
    lengths = sky_t1_like_lengths(5000, median=3500, cutoff=16384, floor=200, seed=0)
    packs = pack_lengths(lengths, 16384)
    assert sorted(i for pack in packs for i in pack) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in pack) <= 16384 for pack in packs)
    # within a few percent of the fewest sequences the tokens could fill
    fewest = math.ceil(sum(lengths) / 16384)
    assert len(packs) <= fewest * 1.03, (len(packs), fewest)
    assert pack_lengths(lengths, 16384) == packs, "every rank packs alike"


def test_a_sample_longer_than_a_packed_sequence_is_named() -> None:
    with pytest.raises(
        StageError, match=re.escape("sample 2: 300 tokens, longer than a packed sequence (256)")
    ):
        pack_lengths([10, 300], 256)


def test_with_packing_format_counts_the_sequences_the_trainer_will_make() -> None:
    spec = training(1, 4, 2).model_copy(update={"packing": True, "cutoff_len": 1000})
    lengths = [400] * 20  # two per sequence: 10 sequences, 5 micro-batches per process
    assert training_sequences(lengths, spec) == 10
    assert training_sequences(lengths, training(1, 4, 2)) == 20
    assert require_one_optimizer_step(training_sequences(lengths, spec), spec, 2) == 5
    small = spec.model_copy(update={"gradient_accumulation_steps": 8, "global_batch_size": 16})
    with pytest.raises(StageError, match=re.escape("10 SFT packed sequences (training.packing) make 5")):
        require_one_optimizer_step(training_sequences(lengths, small), small, 2)
