"""The trainer's step on one GPU, timed: tokens per second and MFU, packed against one sample per
sequence, for each attention implementation (and fused kernels) this machine has.

The step is the train stage's own, without DeepSpeed (one GPU has nothing to shard): its sequences
(`sequences.packed`, `sequences.collate`), the forward pass as the stage calls it, gradient
checkpointing, backward and an AdamW step. The model is a Qwen2.5-7B-shaped Qwen2 built from a config
(random weights: nothing to download) and the samples are random tokens with Sky-T1-like lengths up to
16,384. Only torch and transformers are needed:

    PYTHONPATH=pipeline python -m reasoning_pipeline.gpu_check --json "$OUT/gpu-check.json"

`--dry` runs the same code on the CPU with a tiny model and short samples, in seconds: the tests run it,
so the script cannot rot while no GPU is lent.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reasoning_pipeline.sequences import IGNORE_INDEX, Example, collate, packed

# bf16 dense peak of one H100 or H200 SXM (NVIDIA's datasheets, without sparsity)
PEAK_BF16_FLOPS = {"H100": 989.5e12, "H200": 989.5e12}


@dataclass(frozen=True)
class Shape:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    cutoff: int
    median_tokens: int
    samples: int  # per measured configuration: enough micro-batches to time, few enough to stay short
    warmup_samples: int


# Qwen2.5-7B's shape (7.6 B parameters): compute-bound on one GPU, and with bf16 AdamW its weights,
# gradients and moments (≈ 61 GB) leave an H200 room for 16 K-token activations under checkpointing
GPU_SHAPE = Shape(3584, 18944, 28, 28, 4, 152064, 16384, 3500, samples=24, warmup_samples=6)
DRY_SHAPE = Shape(64, 128, 2, 4, 2, 512, 256, 60, samples=24, warmup_samples=4)


def sky_t1_like_lengths(count: int, *, median: int, cutoff: int, floor: int, seed: int) -> list[int]:
    """Sample lengths like Sky-T1's traces: lognormal around the median (sigma 0.7), between floor and cutoff.
    Seeded: the same lengths on every machine."""
    rng = random.Random(seed)
    return [min(cutoff, max(floor, int(rng.lognormvariate(math.log(median), 0.7)))) for _ in range(count)]


def sample_lengths(shape: Shape, count: int, seed: int) -> list[int]:
    floor = max(8, shape.cutoff // 80)
    return sky_t1_like_lengths(count, median=shape.median_tokens, cutoff=shape.cutoff, floor=floor, seed=seed)


def synthetic_examples(shape: Shape, lengths: list[int], seed: int) -> list[Example]:
    """Random tokens; the first eighth of each sample a prompt without labels, as the stage encodes them."""
    rng = random.Random(seed)
    examples = []
    for length in lengths:
        ids = [rng.randrange(shape.vocab) for _ in range(length)]
        prompt = max(1, length // 8)
        examples.append(Example(ids, [IGNORE_INDEX] * prompt + ids[prompt:], list(range(length))))
    return examples


def flops_per_step(parameters: int, shape: Shape, sample_tokens: list[int]) -> float:
    """Training FLOPs of one step as MFU counts them (PaLM's appendix B): 6 per parameter and token, plus
    attention's 12 · layers · hidden · (its sample's length) per token."""
    tokens = sum(sample_tokens)
    attention = sum(12 * shape.layers * shape.hidden * n * n for n in sample_tokens)
    return 6 * parameters * tokens + attention


def available_attention() -> list[str]:
    found = ["sdpa"]
    if importlib.util.find_spec("flash_attn") is not None:
        found.append("flash_attention_2")
    return found


def fused_kernels() -> list[bool]:
    """Liger's fused RMSNorm, SwiGLU, RoPE and linear cross-entropy, where the package is installed."""
    return [False, True] if importlib.util.find_spec("liger_kernel") is not None else [False]


@dataclass(frozen=True)
class Measured:
    layout: str
    attention: str
    fused: bool
    micro_batches: int
    tokens: int
    padding: float
    seconds: float
    tokens_per_second: float
    mfu: float | None
    peak_memory_gib: float | None


def measure(
    shape: Shape, *, packing: bool, attention: str, fused: bool, device: str, dtype: Any, seed: int
) -> Measured:
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    if fused:
        from liger_kernel.transformers import apply_liger_kernel_to_qwen2

        apply_liger_kernel_to_qwen2()
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=shape.cutoff,
    )
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(  # type: ignore[no-untyped-call]
            config, attn_implementation=attention
        ).to(dtype)
    model.gradient_checkpointing_enable()
    model.train(True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.95))
    parameters = sum(p.numel() for p in model.parameters())

    def sequences(count: int, offset: int) -> list[list[Example]]:
        lengths = sample_lengths(shape, count, seed + offset)
        examples = synthetic_examples(shape, lengths, seed + offset)
        units = packed(examples, shape.cutoff) if packing else examples
        # one sequence per micro-batch, as Sky-T1 (microBatchSize 1): a packed one holds several samples
        return [[unit] for unit in units]

    def step(batch: list[Example]) -> None:
        inputs = {k: v.to(device) for k, v in collate(batch, pad_id=0, packing=packing).items()}
        model(**inputs, use_cache=False).loss.backward()

    def optimizer_step() -> None:
        # once per phase, for both layouts alike: how often a real run steps depends on its batch sizes
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def synchronize() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for batch in sequences(shape.warmup_samples, offset=1):
        step(batch)
    optimizer_step()
    synchronize()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    measured = sequences(shape.samples, offset=2)
    started = time.perf_counter()
    for batch in measured:
        step(batch)
    optimizer_step()
    synchronize()
    seconds = time.perf_counter() - started
    lengths = [len(unit.input_ids) for batch in measured for unit in batch]
    sample_tokens = [
        run_length
        for batch in measured
        for unit in batch
        for run_length in _sample_lengths(unit.position_ids)
    ]
    tokens = sum(lengths)
    slots = sum(len(batch) * max(len(u.input_ids) for u in batch) for batch in measured)
    peak = _peak_flops(device)
    achieved = flops_per_step(parameters, shape, sample_tokens) / seconds
    chosen = str(getattr(model.config, "_attn_implementation", attention))
    return Measured(
        layout="packed" if packing else "one sample per sequence",
        attention=chosen,
        fused=fused,
        micro_batches=len(measured),
        tokens=tokens,
        padding=round(1 - tokens / slots, 4),
        seconds=round(seconds, 3),
        tokens_per_second=round(tokens / seconds, 1),
        mfu=round(achieved / peak, 4) if peak else None,
        peak_memory_gib=round(torch.cuda.max_memory_allocated() / 2**30, 1)
        if device.startswith("cuda")
        else None,
    )


def _sample_lengths(positions: list[int]) -> list[int]:
    """The lengths of the samples in a sequence: positions restart at 0 where each begins."""
    starts = [i for i, p in enumerate(positions) if p == 0] + [len(positions)]
    return [b - a for a, b in itertools.pairwise(starts)]


def _peak_flops(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    import torch

    name = torch.cuda.get_device_name()
    return next((flops for model, flops in PEAK_BF16_FLOPS.items() if model in name), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry", action="store_true", help="a tiny model on the CPU, to check the script")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args(argv)
    import torch

    if arguments.dry:
        shape, device, dtype = DRY_SHAPE, "cpu", torch.float32
    else:
        if not torch.cuda.is_available():
            print("no CUDA device: run with --dry to check the script on the CPU", file=sys.stderr)
            return 2
        shape, device, dtype = GPU_SHAPE, "cuda", torch.bfloat16
    device_name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(f"device {device_name}, torch {torch.__version__}, shape {asdict(shape)}", flush=True)
    results = []
    # fused kernels last: Liger patches transformers' Qwen2 classes for the rest of the process
    for fused in fused_kernels():
        for attention in available_attention():
            for packing in (False, True):
                found = measure(
                    shape,
                    packing=packing,
                    attention=attention,
                    fused=fused,
                    device=device,
                    dtype=dtype,
                    seed=arguments.seed,
                )
                results.append(found)
                mfu = f"{found.mfu:.1%}" if found.mfu is not None else "n/a"
                print(
                    f"{found.layout:24} {found.attention:18} fused={fused!s:5} "
                    f"{found.micro_batches:3} micro-batches {found.tokens:8} tokens "
                    f"{found.tokens_per_second:10.1f} tokens/s  MFU {mfu:>6}  "
                    f"padding {found.padding:.1%}  peak {found.peak_memory_gib} GiB",
                    flush=True,
                )
                if device == "cuda":
                    torch.cuda.empty_cache()
    if arguments.json:
        report = {"device": device_name, "torch": torch.__version__, "shape": asdict(shape)}
        arguments.json.write_text(json.dumps({**report, "results": [asdict(r) for r in results]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
