"""The memory planner: what full-parameter SFT under DeepSpeed ZeRO needs per GPU, and the least offload
that fits. Sky-T1 offloaded both optimizer states and parameters to CPU and ran at ≈ 8 % MFU; offloading
only what does not fit keeps the GPUs busy.

Per GPU, with bf16/fp16 mixed-precision AdamW (DeepSpeed keeps fp32 master weights and two fp32 moments):
  parameters 2 B/param, gradients 2 B/param, optimizer states 12 B/param (fp32 copy + m + v),
  each divided by the world size as the ZeRO stage partitions it, and moved to CPU when offloaded;
  activations with gradient checkpointing: every layer's input (s·b·h·2 B) kept, plus one layer recomputed
  at a time (≈ 34·s·b·h B with flash attention: Korthikanti et al. 2022, without the 5·a·s/h term);
  logits: the fp32 logits and their gradient, s·b·V·4 B each, the largest single tensor at long cutoffs;
  a fixed allowance for the CUDA context, NCCL buffers, ZeRO-3's prefetched layers and fragmentation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

GIB = 1024**3
OVERHEAD_BYTES = 6 * GIB
USABLE_FRACTION = 0.92
"""Plans must leave headroom: allocator fragmentation grows with sequence length."""

Offload = Literal["none", "optimizer", "optimizer+parameters"]
OFFLOAD_ORDER: tuple[Offload, ...] = ("none", "optimizer", "optimizer+parameters")
H100_80GB_BYTES = 81559 * 1024**2
"""What an H100 80GB HBM3 reports (nvidia.com/gpu.memory: 81559 MiB)."""


@dataclass(frozen=True)
class ModelShape:
    hidden_size: int
    num_layers: int
    intermediate_size: int
    vocab_size: int
    num_attention_heads: int
    num_key_value_heads: int
    tie_word_embeddings: bool = False
    attention_bias: bool = True
    """Qwen2 has biases on the q, k and v projections."""

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelShape:
        """From a Hugging Face config.json (Qwen2/Llama naming)."""
        heads = int(config["num_attention_heads"])
        return cls(
            hidden_size=int(config["hidden_size"]),
            num_layers=int(config["num_hidden_layers"]),
            intermediate_size=int(config["intermediate_size"]),
            vocab_size=int(config["vocab_size"]),
            num_attention_heads=heads,
            num_key_value_heads=int(config.get("num_key_value_heads") or heads),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            attention_bias=config.get("model_type") == "qwen2" or bool(config.get("attention_bias", False)),
        )

    @property
    def parameters(self) -> int:
        h, kv = self.hidden_size, self.hidden_size // self.num_attention_heads * self.num_key_value_heads
        attention = h * h * 2 + h * kv * 2 + ((h + 2 * kv) if self.attention_bias else 0)
        mlp = 3 * h * self.intermediate_size
        norms = 2 * h
        embeddings = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return self.num_layers * (attention + mlp + norms) + embeddings + h


@dataclass(frozen=True)
class MemoryPlan:
    offload: Offload
    world_size: int
    gpu_memory_bytes: int
    parameters: int
    parameter_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    activation_bytes: int
    logits_bytes: int
    overhead_bytes: int

    @property
    def total_bytes(self) -> int:
        return (
            self.parameter_bytes
            + self.gradient_bytes
            + self.optimizer_bytes
            + self.activation_bytes
            + self.logits_bytes
            + self.overhead_bytes
        )

    @property
    def fits(self) -> bool:
        return self.total_bytes <= self.gpu_memory_bytes * USABLE_FRACTION

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "totalBytes": self.total_bytes, "fits": self.fits}

    def table(self) -> str:
        rows = [
            ("parameters", self.parameter_bytes),
            ("gradients", self.gradient_bytes),
            ("optimizer states", self.optimizer_bytes),
            ("activations", self.activation_bytes),
            ("logits", self.logits_bytes),
            ("overhead", self.overhead_bytes),
            ("total per GPU", self.total_bytes),
        ]
        budget = self.gpu_memory_bytes * USABLE_FRACTION / GIB
        verdict = "fits" if self.fits else "does NOT fit"
        size = (
            f"{self.parameters / 1e9:.2f} B" if self.parameters >= 1e8 else f"{self.parameters / 1e6:.2f} M"
        )
        head = (
            f"memory plan: {size} parameters, {self.world_size} GPUs, "
            f"offload {self.offload}, budget {budget:.1f} GiB per GPU ({verdict})"
        )
        return "\n".join([head, *(f"  {name:<17} {value / GIB:8.2f} GiB" for name, value in rows)])


def plan_memory(
    shape: ModelShape,
    *,
    sequence_length: int,
    micro_batch_size: int,
    world_size: int,
    gpu_memory_bytes: int,
    offload: Offload,
    zero_stage: int = 3,
    half_precision: bool = True,
) -> MemoryPlan:
    p = shape.parameters
    weight_bytes = 2 if half_precision else 4
    params = p * weight_bytes
    grads = p * weight_bytes
    optimizer = p * (12 if half_precision else 8)  # fp32: no separate master copy
    shards = {0: (1, 1, 1), 1: (1, 1, world_size), 2: (1, world_size, world_size), 3: (world_size,) * 3}[
        zero_stage
    ]
    params //= shards[0]
    grads //= shards[1]
    optimizer //= shards[2]
    if offload in ("optimizer", "optimizer+parameters"):
        optimizer = 0
    if offload == "optimizer+parameters":
        params = 0  # only the prefetched layers stay, counted in the overhead
    tokens = sequence_length * micro_batch_size
    h = shape.hidden_size
    activations = shape.num_layers * tokens * h * 2 + 34 * tokens * h
    logits = 2 * tokens * shape.vocab_size * 4
    return MemoryPlan(
        offload=offload,
        world_size=world_size,
        gpu_memory_bytes=gpu_memory_bytes,
        parameters=p,
        parameter_bytes=params,
        gradient_bytes=grads,
        optimizer_bytes=optimizer,
        activation_bytes=activations,
        logits_bytes=logits,
        overhead_bytes=OVERHEAD_BYTES,
    )


def choose_offload(
    shape: ModelShape,
    *,
    sequence_length: int,
    micro_batch_size: int,
    world_size: int,
    gpu_memory_bytes: int,
    zero_stage: int = 3,
    half_precision: bool = True,
) -> MemoryPlan:
    """The plan with the least offload that fits; the full-offload plan (not fitting) when none does."""
    plan = None
    for offload in OFFLOAD_ORDER:
        plan = plan_memory(
            shape,
            sequence_length=sequence_length,
            micro_batch_size=micro_batch_size,
            world_size=world_size,
            gpu_memory_bytes=gpu_memory_bytes,
            offload=offload,
            zero_stage=zero_stage,
            half_precision=half_precision,
        )
        if plan.fits:
            return plan
    assert plan is not None
    return plan
