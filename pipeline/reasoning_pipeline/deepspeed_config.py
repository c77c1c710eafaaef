"""The DeepSpeed configuration of the train stage, derived from the spec (and the memory plan when the spec
leaves offload to it). The operator renders the same dictionary into the PyTorchJob's ConfigMap, so what a
user reads in the cluster is exactly what the trainer runs with.
"""

from __future__ import annotations

from typing import Any

from reasoning_pipeline.memory import MemoryPlan
from reasoning_pipeline.spec import TrainingSpec


def offload_devices(training: TrainingSpec, plan: MemoryPlan | None) -> tuple[str, str]:
    """(optimizer, parameters) offload devices: 'cpu' or 'none'; `auto` follows the plan."""
    settings = training.deepspeed
    planned = plan.offload if plan is not None else "optimizer+parameters"

    def resolve(setting: str, planned_on: bool) -> str:
        if setting == "auto":
            return "cpu" if planned_on else "none"
        return setting

    optimizer = resolve(settings.offload_optimizer, planned in ("optimizer", "optimizer+parameters"))
    parameters = resolve(settings.offload_parameters, planned == "optimizer+parameters")
    if settings.zero_stage != 3:
        parameters = "none"  # only ZeRO-3 partitions (and so can offload) parameters
    return optimizer, parameters


def deepspeed_config(training: TrainingSpec, plan: MemoryPlan | None = None) -> dict[str, Any]:
    optimizer_device, parameter_device = offload_devices(training, plan)
    zero: dict[str, Any] = {
        "stage": training.deepspeed.zero_stage,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": 50_000_000,
    }
    if optimizer_device == "cpu":
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if training.deepspeed.zero_stage == 3:
        zero.update(
            {
                "stage3_prefetch_bucket_size": 50_000_000,
                "stage3_param_persistence_threshold": 100_000,
                "stage3_max_live_parameters": 1_000_000_000,
                "stage3_gather_16bit_weights_on_model_save": True,
            }
        )
        if parameter_device == "cpu":
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return {
        "train_batch_size": training.global_batch_size,
        "train_micro_batch_size_per_gpu": training.micro_batch_size,
        "gradient_accumulation_steps": training.gradient_accumulation_steps,
        "gradient_clipping": 1.0,
        "bf16": {"enabled": training.precision == "bf16"},
        "fp16": {"enabled": training.precision == "fp16"},
        "zero_optimization": zero,
        "steps_per_print": 10**9,  # the trainer logs its own progress
        "wall_clock_breakdown": False,
    }
