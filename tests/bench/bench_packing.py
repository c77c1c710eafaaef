"""Packed vs one sample per sequence, on a length distribution like Sky-T1's SFT set (17 K traces, cutoff
16,384, 96 sequences per optimizer step on 8 processes): how many sequences and optimizer steps an epoch
makes, how full a sequence is, and how much of a micro-batch is padding."""

from __future__ import annotations

import random
import statistics
import time

from reasoning_pipeline.gpu_check import sky_t1_like_lengths
from reasoning_pipeline.sequences import pack_lengths

SAMPLES, CUTOFF, GLOBAL_BATCH = 17_000, 16_384, 96


def padding_fraction(sequences: list[int], micro_batch: int, seed: int = 0) -> float:
    order = list(range(len(sequences)))
    random.Random(seed).shuffle(order)
    tokens = slots = 0
    for start in range(0, len(order) - micro_batch + 1, micro_batch):
        lengths = [sequences[i] for i in order[start : start + micro_batch]]
        tokens, slots = tokens + sum(lengths), slots + len(lengths) * max(lengths)
    return 1 - tokens / slots


def bench_packed_vs_one_sample_per_sequence() -> None:
    lengths = sky_t1_like_lengths(SAMPLES, median=3500, cutoff=CUTOFF, floor=200, seed=0)
    started = time.monotonic()
    packs = pack_lengths(lengths, CUTOFF)
    packing_seconds = time.monotonic() - started
    packed = [sum(lengths[i] for i in pack) for pack in packs]
    print(
        f"\n{SAMPLES} samples, {sum(lengths) / 1e6:.1f} M tokens (mean {statistics.mean(lengths):.0f}, "
        f"median {statistics.median(lengths):.0f}, max {max(lengths)}); packed in {packing_seconds:.2f} s"
    )
    columns = ("sequences", 10), ("steps/epoch", 12), ("tokens/seq", 11), ("fill", 6), ("pad mb=1", 9)
    print(f"{'':32} " + " ".join(f"{name:>{width}}" for name, width in columns) + f" {'pad mb=4':>9}")
    for name, sequences in (("one sample per sequence", lengths), ("packed to the cutoff", packed)):
        print(
            f"{name:32} {len(sequences):>10} {len(sequences) // GLOBAL_BATCH:>12} "
            f"{statistics.mean(sequences):>11.0f} {statistics.mean(sequences) / CUTOFF:>6.1%} "
            f"{padding_fraction(sequences, 1):>9.1%} {padding_fraction(sequences, 4):>9.1%}"
        )
