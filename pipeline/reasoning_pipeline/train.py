"""Stage `train`: full-parameter SFT of the student with torch + transformers + DeepSpeed ZeRO.

One program for every launcher: torchrun on a laptop and a Kubeflow PyTorchJob on a cluster both give it
RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT. The loss covers assistant tokens only (the
trace the student must learn to write), under the student's own chat template. Checkpoints are written
every `saveSteps` optimizer steps; a restarted run resumes from the latest one and skips the micro-batches
it already trained on, so a killed job ends with the same number of optimizer steps.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasoning_pipeline import checkpoints as checkpoint_store
from reasoning_pipeline.batches import micro_batches, require_one_optimizer_step
from reasoning_pipeline.deepspeed_config import deepspeed_config
from reasoning_pipeline.deepspeed_ops import CPU_COLLECTIVES_OP, OPTIMIZER_OP, require_loadable
from reasoning_pipeline.errors import StageError
from reasoning_pipeline.format import chat_messages, chat_token_ids
from reasoning_pipeline.memory import H100_80GB_BYTES, MemoryPlan, ModelShape, choose_offload
from reasoning_pipeline.preflight import model_folder
from reasoning_pipeline.progress import bar
from reasoning_pipeline.sequences import IGNORE_INDEX, Example, collate, packed
from reasoning_pipeline.spec import ReasoningRun, Stage, TrainingSpec
from reasoning_pipeline.stage_input import read_stage_input
from reasoning_pipeline.storage import RunPaths, atomic_write_json
from reasoning_pipeline.summary import Output, Progress, StageSummary, now

CHECKPOINTS_DIR = "checkpoints"
MODEL_DIR = "model"
HISTORY_FILE = "loss-history.json"


def encode(tokenizer: Any, row: dict[str, Any], cutoff: int, where: str) -> Example:
    """Tokens of the whole conversation; labels only on the assistant's reply."""
    messages = chat_messages(row)
    if not messages or messages[-1]["role"] != "assistant":
        raise StageError(f"{where}: the conversation must end with the assistant's reply")
    prompt_ids = chat_token_ids(tokenizer, messages[:-1], add_generation_prompt=True)
    full_ids = chat_token_ids(tokenizer, messages)
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise StageError(f"{where}: the chat template renders the prompt differently inside the conversation")
    if len(full_ids) > cutoff:
        raise StageError(
            f"{where}: {len(full_ids)} tokens, longer than training.cutoffLen ({cutoff}); "
            "the format stage drops such samples when format.maxTokens ≤ cutoffLen"
        )
    labels = [IGNORE_INDEX] * len(prompt_ids) + full_ids[len(prompt_ids) :]
    return Example(full_ids, labels, list(range(len(full_ids))))


def warmup_cosine(total_steps: int, warmup_steps: int, schedule: str) -> Any:
    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


@dataclass(frozen=True)
class Distributed:
    rank: int
    world_size: int
    local_rank: int

    @classmethod
    def from_environment(cls) -> Distributed:
        """What torchrun and the PyTorchJob controller set; a lone process is rank 0 of 1."""
        return cls(
            rank=int(os.environ.get("RANK", "0")),
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        )


def memory_plan(model_config: dict[str, Any], spec: TrainingSpec, world_size: int) -> MemoryPlan | None:
    try:
        shape = ModelShape.from_config(model_config)
    except KeyError:
        return None
    return choose_offload(
        shape,
        sequence_length=spec.cutoff_len,
        micro_batch_size=spec.micro_batch_size,
        world_size=world_size,
        gpu_memory_bytes=H100_80GB_BYTES,
        zero_stage=spec.deepspeed.zero_stage,
        half_precision=spec.precision != "fp32",
    )


def load_sft_rows(run: ReasoningRun, paths: RunPaths) -> list[dict[str, Any]]:
    path, rows = read_stage_input(
        paths, run.spec.training.input_path, Stage.FORMAT, "sft.jsonl", "training.inputPath"
    )
    if not rows:
        raise StageError(f"{path}: the SFT dataset is empty")
    for number, row in enumerate(rows, start=1):
        if not isinstance(row.get("conversations"), list):
            raise StageError(f"{path}: record {number}: field 'conversations' missing (ShareGPT format)")
    return rows


def _model_source(spec: TrainingSpec, paths: RunPaths) -> str:
    local = model_folder("training.baseModel", spec.base_model, paths)
    return str(local) if local is not None else spec.base_model  # a hub id


# What one checkpoint holds per parameter: 16-bit weights (2 bytes) in the model states, and the fp32
# master weights with Adam's two moments (12 bytes) in the optimizer states; 32.8 B parameters ≈ 459 GB.
CHECKPOINT_BYTES_PER_PARAMETER = 14
# What the final model holds per parameter (16-bit weights, sharded safetensors).
MODEL_BYTES_PER_PARAMETER = 2
MODEL_SHARD_SIZE = "5GB"


def require_cuda(spec: TrainingSpec) -> None:
    """GPUs asked for and none usable is a broken node or image, never a reason to train on the CPU."""
    import torch

    if spec.gpus_per_node > 0 and not torch.cuda.is_available():
        raise StageError(
            f"training.gpusPerNode is {spec.gpus_per_node} but CUDA is not usable in this container (torch "
            f"{torch.__version__}, built for CUDA {torch.version.cuda}, "
            f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}): check the node's NVIDIA "
            "driver and device plugin, and that the trainer image has a CUDA build of torch"
        )


def require_room_for_checkpoints(spec: TrainingSpec, parameters: int, checkpoints: Path) -> None:
    """Fails before any process joins when the storage cannot hold `keepCheckpoints` checkpoints (one more
    while the next is written, before the oldest goes) and the final model."""
    import shutil

    each = parameters * CHECKPOINT_BYTES_PER_PARAMETER
    needed = (spec.keep_checkpoints + 1) * each + parameters * MODEL_BYTES_PER_PARAMETER
    checkpoints.mkdir(parents=True, exist_ok=True)
    held = sum(f.stat().st_size for f in checkpoints.rglob("*") if f.is_file())
    free = shutil.disk_usage(checkpoints).free + held  # what this run's own old checkpoints hold is reused
    if needed > free:
        raise StageError(
            f"the storage has {free / 1e9:.1f} GB for checkpoints but training needs about "
            f"{needed / 1e9:.1f} GB: {spec.keep_checkpoints + 1} checkpoints of {each / 1e9:.1f} GB "
            f"(training.keepCheckpoints {spec.keep_checkpoints}, plus the one being written) and the "
            f"model; lower training.keepCheckpoints or raise storage.size"
        )


def train(run: ReasoningRun, paths: RunPaths) -> StageSummary:
    import deepspeed
    import torch
    from transformers import AutoConfig, AutoTokenizer

    started_at, started = now(), time.monotonic()
    spec = run.spec.training
    where = Distributed.from_environment()
    if where.world_size * spec.micro_batch_size * spec.gradient_accumulation_steps != spec.global_batch_size:
        raise StageError(
            f"training.globalBatchSize ({spec.global_batch_size}) must equal microBatchSize "
            f"({spec.micro_batch_size}) × gradientAccumulationSteps ({spec.gradient_accumulation_steps}) × "
            f"processes ({where.world_size})"
        )
    torch.manual_seed(spec.seed)
    source = _model_source(spec, paths)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=spec.revision)
        config = AutoConfig.from_pretrained(source, revision=spec.revision)
    except (OSError, ValueError) as error:
        raise StageError(f"training.baseModel {spec.base_model!r} cannot be loaded: {error}") from error
    plan = memory_plan(config.to_dict(), spec, where.world_size)
    if plan is not None and where.rank == 0:
        print(plan.table(), flush=True)
    rows = load_sft_rows(run, paths)
    examples = [
        encode(tokenizer, row, spec.cutoff_len, f"SFT record {n}") for n, row in enumerate(rows, start=1)
    ]
    sequences = packed(examples, spec.cutoff_len) if spec.packing else examples
    per_epoch = require_one_optimizer_step(len(sequences), spec, where.world_size)
    stage_dir = paths.stage_dir(Stage.TRAIN)
    checkpoints = stage_dir / CHECKPOINTS_DIR
    resume = checkpoint_store.resumable(checkpoints)
    tag = resume.tag
    for passed in resume.passed_over:
        print(f"checkpoint {passed}: not resumed from", flush=True)
    require_cuda(spec)
    ds_config = deepspeed_config(spec, plan)
    offloading = "offload_optimizer" in ds_config["zero_optimization"]
    # DeepSpeedCPUAdam when the optimizer is offloaded; the CPU collectives where the accelerator is the CPU
    require_loadable(CPU_COLLECTIVES_OP[0], *([OPTIMIZER_OP[0]] if offloading else []))
    if plan is not None and where.rank == 0:
        require_room_for_checkpoints(spec, plan.parameters, checkpoints)
    # every check of the input is done: only now join the other processes; the backend follows the spec,
    # never what happens to be usable (a GPU run must not fall back to gloo on a broken node)
    deepspeed.init_distributed(dist_backend="nccl" if spec.gpus_per_node > 0 else "gloo")
    if where.rank == 0:  # every process has chosen its checkpoint: joining needs them all
        checkpoint_store.discard_passed_over(checkpoints, resume)
    steps_per_epoch = per_epoch // spec.gradient_accumulation_steps
    total_steps = max(1, math.floor(steps_per_epoch * spec.epochs))
    total_micro = total_steps * spec.gradient_accumulation_steps

    model, partitioned = load_student(source, spec, ds_config)
    model.gradient_checkpointing_enable()
    optimizer = None
    if not offloading:
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=spec.learning_rate, betas=(0.9, 0.95), weight_decay=0.0
        )
    else:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        optimizer = DeepSpeedCPUAdam(model.parameters(), lr=spec.learning_rate, betas=(0.9, 0.95))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(total_steps, int(total_steps * spec.warmup_ratio), spec.lr_scheduler)
    )
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=schedule, config=ds_config
    )

    history: list[dict[str, Any]] = []
    micro_done, resumed_from = 0, None
    if tag is not None:
        try:
            _, client_state = engine.load_checkpoint(str(checkpoints), tag)
        except Exception as error:  # DeepSpeed raises many kinds for a damaged checkpoint
            raise StageError(f"checkpoint {checkpoints / tag} cannot be loaded: {error}") from error
        if client_state is None:
            raise StageError(f"checkpoint {checkpoints / tag} cannot be loaded: its state is missing")
        micro_done, history, resumed_from = client_state["micro_batches"], client_state["history"], tag

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    tokens_seen, slots, window_loss, window_count = 0, 0, 0.0, 0
    engine.train()
    # rank 0's bar is the stage's progress in its pod's log (the operator reads its rate from there)
    steps = bar(total_steps, "train", initial=len(history), unit="step") if where.rank == 0 else None
    for micro in range(micro_done, total_micro):
        epoch, index = divmod(micro, per_epoch)
        chosen = micro_batches(sequences, spec, where.rank, where.world_size, epoch)[index]
        batch = collate(chosen, pad_id, packing=spec.packing)
        batch = {k: v.to(engine.device) for k, v in batch.items()}
        # no key/value cache in training: with one, transformers would not look for packed samples
        loss = engine(**batch, use_cache=False).loss
        engine.backward(loss)
        engine.step()
        tokens_seen += sum(len(e.input_ids) for e in chosen)
        slots += len(chosen) * max(len(e.input_ids) for e in chosen)
        window_loss, window_count = window_loss + float(loss), window_count + 1
        if (micro + 1) % spec.gradient_accumulation_steps == 0:  # DeepSpeed stepped the optimizer
            step = (micro + 1) // spec.gradient_accumulation_steps
            history.append(
                {"step": step, "loss": round(window_loss / window_count, 5), "lr": schedule.get_last_lr()[0]}
            )
            window_loss, window_count = 0.0, 0
            if steps is not None:
                print(f"step {step}/{total_steps} loss {history[-1]['loss']:.4f}", flush=True)
                steps.update(1)
            if step % spec.save_steps == 0 or step == total_steps:
                engine.save_checkpoint(
                    str(checkpoints),
                    tag=f"step-{step}",
                    client_state={"micro_batches": micro + 1, "history": history},
                )
                # save_checkpoint returns once every process has written its part and `latest` is set
                if where.rank == 0:
                    checkpoint_store.seal(checkpoints, f"step-{step}")
                    checkpoint_store.prune(checkpoints, spec.keep_checkpoints)
    if steps is not None:
        steps.close()
    out = stage_dir / MODEL_DIR
    save_model(engine, model, out, where.rank)
    del partitioned
    seconds = time.monotonic() - started
    shape = {
        "packing": spec.packing,
        "sequences": len(sequences),
        "paddingFraction": round(1 - tokens_seen / slots, 4) if slots else None,
        "attention": str(getattr(model.config, "_attn_implementation", None)),
    }
    if where.rank != 0:
        return _summary(
            started_at, history, total_steps, resumed_from, out, paths, seconds, tokens_seen, where, shape
        )
    model.config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(out)
    atomic_write_json(stage_dir / HISTORY_FILE, history)
    (stage_dir / "deepspeed.json").write_text(json.dumps(ds_config, indent=2))
    return _summary(
        started_at, history, total_steps, resumed_from, out, paths, seconds, tokens_seen, where, shape
    )


def load_student(
    source: str, spec: TrainingSpec, ds_config: dict[str, Any], *, partition_at_load: bool = True
) -> tuple[Any, Any]:
    """The model to train, and what must stay alive until training ends. Under ZeRO-3, transformers
    builds the model inside deepspeed.zero.Init while an HfDeepSpeedConfig lives: each process holds only
    its partition of the weights from the start, never a whole copy on its device (`partition_at_load`
    False is the whole copy, for the bench that measures the two). Call after the processes have joined."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.integrations.deepspeed import HfDeepSpeedConfig

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[spec.precision]
    partitioned = partition_at_load and spec.deepspeed.zero_stage == 3
    keep = HfDeepSpeedConfig(ds_config) if partitioned else None  # type: ignore[no-untyped-call]
    model = AutoModelForCausalLM.from_pretrained(source, revision=spec.revision, torch_dtype=dtype)
    return model, keep


def save_model(engine: Any, model: Any, out: Path, rank: int) -> None:
    """The trained weights in 16 bits as sharded safetensors (`model-0000N-of-0000M.safetensors` and its
    index), which vLLM and transformers load without a single 64 GB file. Under ZeRO-3 every process
    takes part in gathering the partitions; rank 0 writes."""
    if engine.zero_optimization_partition_weights():
        state = engine._zero3_consolidated_16bit_state_dict()
    else:
        state = engine.module.state_dict()
    if rank == 0:
        model.save_pretrained(out, state_dict=state, safe_serialization=True, max_shard_size=MODEL_SHARD_SIZE)


def _summary(
    started_at: str,
    history: list[dict[str, Any]],
    total_steps: int,
    resumed_from: str | None,
    out: Path,
    paths: RunPaths,
    seconds: float,
    tokens: int,
    where: Distributed,
    shape: dict[str, Any],
) -> StageSummary:
    first, last = history[0]["loss"], history[-1]["loss"]
    return StageSummary(
        stage=Stage.TRAIN,
        phase="Succeeded",
        message=f"{total_steps} optimizer steps, loss {first:.3f} → {last:.3f}"
        + (f" (resumed from {resumed_from})" if resumed_from else ""),
        started_at=started_at,
        finished_at=now(),
        progress=Progress(done=len(history), total=total_steps),
        outputs={"model": Output(path=str(out.relative_to(paths.root)))},
        metrics={
            "optimizerSteps": len(history),
            "firstLoss": first,
            "lastLoss": last,
            "resumedFrom": resumed_from,
            "worldSize": where.world_size,
            "tokensPerSecondThisRun": round(tokens * where.world_size / seconds, 1) if seconds else None,
            # of this run's micro-batches (this process's): how much of each step was padding
            **shape,
        },
    )


def run(run: ReasoningRun, paths: RunPaths) -> StageSummary:
    return train(run, paths)
