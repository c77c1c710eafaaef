"""The pre-flight cost estimate: each GPU stage's GPU-hours and dollars, and the API's tokens and dollars,
before the first GPU is asked for. The data stage makes it from the prompts it wrote; the format stage
makes it again from the SFT set it measured (sample count and mean tokens), for the stages still ahead.

Everything else is a stated assumption of `spec.estimate` (tokens per answer, generation throughput per
GPU, the filter's keep rate, training MFU) or comes from the memory plan (the student's parameters, what
ZeRO offloads), so a figure can be checked by hand: generation GPU-seconds = tokens ÷ tokens per GPU-second
+ the servers' load time; training seconds = 6 · parameters · tokens ÷ (GPUs · peak FLOP/s · MFU).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasoning_pipeline.deepspeed_config import offload_devices
from reasoning_pipeline.errors import StageError
from reasoning_pipeline.memory import H100_80GB_BYTES, ModelShape, choose_offload
from reasoning_pipeline.preflight import in_hub_cache, model_folder
from reasoning_pipeline.spec import (
    MFU_BY_OFFLOAD,
    STAGE_ORDER,
    ReasoningRunSpec,
    Sampling,
    ServedModel,
    Stage,
)
from reasoning_pipeline.storage import RunPaths

# problems per benchmark as Sky-T1 scored them (LiveCodeBench: release_v2); a `limit` caps them
BENCHMARK_PROBLEMS = {"math500": 500, "aime24": 30, "gpqa-diamond": 198, "livecodebench": 511}


@dataclass(frozen=True)
class Sizes:
    """What the estimate is made from: measured where a stage has run, assumed where it has not."""

    prompts: int
    sft_samples: int | None = None  # measured by format; else prompts × samples × keptFraction
    sft_tokens_per_sample: float | None = None  # measured by format; else prompt + completion tokens
    student: ModelShape | None = None  # training.baseModel's, from its config.json


def _usd(value: float) -> str:
    return f"{value:.2f}"


def stage_pool_price(spec: ReasoningRunSpec, stage: Stage) -> float:
    """USD per GPU-hour where the stage's GPUs are: the teacher's, the trainer's or the evaluated
    model's pool (the other stages run no GPU pods)."""
    pool = {
        Stage.GENERATE: spec.generation.teacher.node_pool,
        Stage.TRAIN: spec.training.node_pool,
        Stage.EVALUATE: spec.evaluation.server.node_pool,
    }.get(stage)
    try:
        return spec.pool(pool).gpu_hour_usd if pool else 0.0
    except KeyError:
        return 0.0


def stage_gpus(spec: ReasoningRunSpec, stage: Stage) -> int:
    """GPUs a stage holds while it runs: its servers' or its trainer's."""
    if stage is Stage.GENERATE and spec.generation.teacher.endpoint is None:
        teacher = spec.generation.teacher
        return teacher.tensor_parallel_size * teacher.replicas
    if stage is Stage.TRAIN:
        return spec.training.nodes * spec.training.gpus_per_node
    if stage is Stage.EVALUATE and spec.evaluation.server.endpoint is None:
        server = spec.evaluation.server
        return server.tensor_parallel_size * server.replicas * (2 if spec.evaluation.compare_with_base else 1)
    return 0


def _answer_tokens(spec: ReasoningRunSpec, answers: int, sampling: Sampling) -> int:
    return answers * sampling.samples_per_prompt * min(spec.estimate.completion_tokens, sampling.max_tokens)


def _serving(
    spec: ReasoningRunSpec, stage: Stage, server: ServedModel, tokens: int, servers: int = 1
) -> dict[str, Any]:
    """GPU-hours of `servers` model servers that each write `tokens` tokens, their loads included."""
    gpus = server.tensor_parallel_size * server.replicas
    seconds = tokens / (spec.estimate.tokens_per_gpu_second * gpus) + spec.estimate.server_start_seconds
    gpu_hours = stage_gpus(spec, stage) * seconds / 3600
    return {
        "gpuHours": f"{gpu_hours:.2f}",
        "usd": _usd(gpu_hours * stage_pool_price(spec, stage)),
        "tokens": tokens * servers,
        "hours": f"{seconds / 3600:.2f}",
    }


def _training(
    spec: ReasoningRunSpec, samples: float, tokens_per_sample: float, student: ModelShape | None
) -> dict[str, Any]:
    training = spec.training
    tokens = int(samples * min(tokens_per_sample, training.cutoff_len) * training.epochs)
    if student is None:
        return {
            "tokens": tokens,
            "unknown": "training.baseModel's config.json is neither on the storage nor in the Hugging Face "
            "cache: its parameter count is not known",
        }
    plan = None
    if training.gpus_per_node:
        plan = choose_offload(
            student,
            sequence_length=training.cutoff_len,
            micro_batch_size=training.micro_batch_size,
            world_size=training.world_size,
            gpu_memory_bytes=H100_80GB_BYTES,
            zero_stage=training.deepspeed.zero_stage,
            half_precision=training.precision != "fp32",
        )
    optimizer, parameters = offload_devices(training, plan)
    offload = "optimizer+parameters" if parameters == "cpu" else "optimizer" if optimizer == "cpu" else "none"
    mfu = spec.estimate.training_mfu or MFU_BY_OFFLOAD[offload]
    gpus = training.nodes * max(training.gpus_per_node, 1)
    seconds = 6 * student.parameters * tokens / (gpus * spec.estimate.gpu_peak_tflops * 1e12 * mfu)
    gpu_hours = gpus * seconds / 3600
    return {
        "gpuHours": f"{gpu_hours:.2f}",
        "usd": _usd(gpu_hours * stage_pool_price(spec, Stage.TRAIN)),
        "tokens": tokens,
        "hours": f"{seconds / 3600:.2f}",
        "offload": offload,
        "mfu": mfu,
    }


def student_shape(spec: ReasoningRunSpec, paths: RunPaths) -> ModelShape | None:
    """training.baseModel's shape from its config.json (a folder on the storage, or the Hugging Face
    cache); None when neither has it (a missing folder is the preflight's to report)."""
    name = spec.training.base_model
    try:
        folder = model_folder("training.baseModel", name, paths)
    except StageError:
        return None
    config = folder / "config.json" if folder is not None else None
    if config is None and in_hub_cache(name):
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json")
        config = Path(cached) if isinstance(cached, str) else None
    if config is None or not config.is_file():
        return None
    try:
        return ModelShape.from_config(json.loads(config.read_text(encoding="utf-8")))
    except (KeyError, ValueError):
        return None


def estimate(spec: ReasoningRunSpec, sizes: Sizes, *, made_by: Stage) -> dict[str, Any]:
    """The GPU-hours and dollars of the stages after `made_by`, and the API's tokens and dollars, with what
    they rest on. Each stage's figure names the stage that made it: a later one knows more."""
    assume = spec.estimate
    generation = spec.generation
    traces = sizes.prompts * generation.sampling.samples_per_prompt
    completion = min(assume.completion_tokens, generation.sampling.max_tokens)
    stages: dict[str, dict[str, Any]] = {}
    if generation.enabled and generation.teacher.endpoint is None:
        tokens = _answer_tokens(spec, sizes.prompts, generation.sampling)
        stages["generate"] = _serving(spec, Stage.GENERATE, generation.teacher, tokens)
    if spec.rewrite.enabled and not spec.rewrite.stand_in:
        read, written = traces * (completion + assume.prompt_tokens), traces * completion
        price = spec.rewrite.price
        usd = (read * price.prompt_usd_per_million + written * price.completion_usd_per_million) / 1e6
        stages["rewrite"] = {"apiTokens": read + written, "apiUSD": _usd(usd)}
    if spec.training.enabled:
        samples = sizes.sft_samples if sizes.sft_samples is not None else traces * assume.kept_fraction
        per_sample = sizes.sft_tokens_per_sample or (assume.prompt_tokens + completion)
        stages["train"] = _training(spec, samples, per_sample, sizes.student)
    evaluation = spec.evaluation
    if evaluation.enabled and evaluation.server.endpoint is None:
        tokens = sum(
            _answer_tokens(
                spec,
                benchmark.limit or BENCHMARK_PROBLEMS.get(benchmark.name, 0),
                benchmark.sampling or evaluation.sampling,
            )
            for benchmark in evaluation.benchmarks
        )
        servers = 2 if evaluation.compare_with_base else 1
        stages["evaluate"] = _serving(spec, Stage.EVALUATE, evaluation.server, tokens, servers)
    ahead = STAGE_ORDER[STAGE_ORDER.index(made_by) + 1 :]
    stages = {
        name: {**figures, "madeBy": made_by.value} for name, figures in stages.items() if Stage(name) in ahead
    }
    basis: dict[str, Any] = {"prompts": sizes.prompts} if sizes.prompts else {}
    if sizes.sft_samples is not None:
        basis["sftSamples"] = sizes.sft_samples
    if sizes.sft_tokens_per_sample is not None:
        basis["sftTokensPerSample"] = round(sizes.sft_tokens_per_sample, 1)
    if sizes.student is not None:
        basis["studentParameters"] = sizes.student.parameters
    return _with_totals({"basis": basis, "stages": stages})


def _with_totals(made: dict[str, Any]) -> dict[str, Any]:
    gpu_usd = sum(float(s.get("usd") or 0) for s in made["stages"].values())
    api_usd = sum(float(s.get("apiUSD") or 0) for s in made["stages"].values())
    return {**made, "gpuUSD": _usd(gpu_usd), "apiUSD": _usd(api_usd), "totalUSD": _usd(gpu_usd + api_usd)}


def _order(stage_figures: Mapping[str, Any]) -> int:
    return STAGE_ORDER.index(Stage(stage_figures.get("madeBy") or Stage.DATA.value))


def merge_estimates(older: Mapping[str, Any], newer: Mapping[str, Any]) -> dict[str, Any]:
    """One estimate of the whole run from the stages' own: per stage, the figure made by the later stage
    (whichever comes first here), so merging in any order gives the same result."""
    stages = dict(older.get("stages") or {})
    for name, figures in (newer.get("stages") or {}).items():
        if name not in stages or _order(figures) >= _order(stages[name]):
            stages[name] = figures
    basis = {**(older.get("basis") or {}), **(newer.get("basis") or {})}
    return _with_totals({"basis": basis, "stages": stages})
