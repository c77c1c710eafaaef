"""How SFT samples become micro-batches and optimizer steps.

One place for it because two stages need it: `train` walks the micro-batches, and `format` refuses a
dataset too small for one optimizer step, so a run fails in minutes on a CPU node instead of after the
trainer has been scheduled on GPU nodes and has loaded the model.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

from reasoning_pipeline.errors import StageError
from reasoning_pipeline.sequences import pack_lengths
from reasoning_pipeline.spec import TrainingSpec

T = TypeVar("T")


def epoch_order(count: int, seed: int, epoch: int) -> list[int]:
    order = list(range(count))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return order


def micro_batches_per_process(samples: int, micro_batch_size: int, world_size: int) -> int:
    """Every process runs the same number of micro-batches: the ragged tail that cannot give each of them
    a full one is dropped."""
    return samples // (micro_batch_size * world_size)


def micro_batches(
    examples: Sequence[T], spec: TrainingSpec, rank: int, world_size: int, epoch: int
) -> list[list[T]]:
    """This rank's micro-batches of one epoch: every rank walks the same shuffled order and takes its
    stride of the part that fills whole micro-batches on every rank."""
    order = epoch_order(len(examples), spec.seed, epoch)
    per_step = spec.micro_batch_size * world_size
    usable = micro_batches_per_process(len(order), spec.micro_batch_size, world_size) * per_step
    mine = order[rank:usable:world_size]
    return [
        [examples[i] for i in mine[start : start + spec.micro_batch_size]]
        for start in range(0, len(mine), spec.micro_batch_size)
    ]


def require_one_optimizer_step(samples: int, spec: TrainingSpec, world_size: int) -> int:
    """The micro-batches per process and epoch; a permanent failure when they make no optimizer step (the
    optimizer steps once every gradientAccumulationSteps micro-batches)."""
    per_process = micro_batches_per_process(samples, spec.micro_batch_size, world_size)
    if per_process < spec.gradient_accumulation_steps:
        needed = spec.gradient_accumulation_steps * spec.micro_batch_size * world_size
        unit = "sequences" if spec.packing else "samples"
        what = "packed sequences (training.packing)" if spec.packing else unit
        raise StageError(
            f"{samples} SFT {what} make {per_process} micro-batches per process "
            f"({world_size} processes × microBatchSize {spec.micro_batch_size}), fewer than "
            f"gradientAccumulationSteps ({spec.gradient_accumulation_steps}): not one optimizer step; "
            f"it takes at least {needed} {unit}"
        )
    return per_process


def training_sequences(lengths: Sequence[int], spec: TrainingSpec) -> int:
    """How many sequences the trainer makes of samples of these lengths (in tokens)."""
    return len(pack_lengths(lengths, spec.cutoff_len)) if spec.packing else len(lengths)
