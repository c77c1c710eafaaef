"""Training sequences: SFT samples as token ids and labels, packed several to a sequence or one each, and
padded into a micro-batch. Nothing here needs more than torch, so the GPU check (`gpu_check`) runs the
trainer's own sequences where only torch and transformers are installed."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reasoning_pipeline.errors import StageError

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]  # restarting at 0 where each packed sample starts


def pack_lengths(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Sample indices grouped into sequences of at most `capacity` tokens: best fit, longest sample first
    (each goes where it leaves the least room), which leaves a few percent of padding where one sample per
    sequence leaves most of it. Deterministic: ties go to the lower index, so every rank packs alike."""
    packs: list[list[int]] = []
    room: list[tuple[int, int]] = []  # (tokens left, pack index), sorted
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        length = lengths[index]
        if length > capacity:
            raise StageError(
                f"sample {index + 1}: {length} tokens, longer than a packed sequence ({capacity})"
            )
        at = bisect.bisect_left(room, (length, -1))
        if at == len(room):
            packs.append([index])
            bisect.insort(room, (capacity - length, len(packs) - 1))
            continue
        left, pack = room.pop(at)
        packs[pack].append(index)
        bisect.insort(room, (left - length, pack))
    return packs


def packed(examples: list[Example], capacity: int) -> list[Example]:
    """The samples packed into sequences of at most `capacity` tokens (`batches.pack_lengths`). Each keeps
    its own positions: where positions restart, transformers' attention masks start a new sample, so no
    token attends to another sample's (the loss too stays per sample: every sample starts with prompt
    tokens, which carry no label)."""
    return [
        Example(
            [token for i in pack for token in examples[i].input_ids],
            [label for i in pack for label in examples[i].labels],
            [position for i in pack for position in examples[i].position_ids],
        )
        for pack in pack_lengths([len(e.input_ids) for e in examples], capacity)
    ]


def collate(batch: list[Example], pad_id: int, *, packing: bool = False) -> dict[str, Any]:
    """Padded to the longest sequence of the batch. Unpacked: an attention mask hides the padding.
    Packed: no mask (transformers builds one per sample from the positions), the padding a sample of its
    own whose positions start at 0."""
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = [e.input_ids + [pad_id] * (width - len(e.input_ids)) for e in batch]
    labels = [e.labels + [IGNORE_INDEX] * (width - len(e.labels)) for e in batch]
    if packing:
        positions = [e.position_ids + list(range(width - len(e.position_ids))) for e in batch]
        return {
            "input_ids": torch.tensor(ids),
            "labels": torch.tensor(labels),
            "position_ids": torch.tensor(positions),
        }
    mask = [[1] * len(e.input_ids) + [0] * (width - len(e.input_ids)) for e in batch]
    return {
        "input_ids": torch.tensor(ids),
        "labels": torch.tensor(labels),
        "attention_mask": torch.tensor(mask),
    }
