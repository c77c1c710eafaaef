"""The DeepSpeed configuration follows the spec; `auto` offload follows the memory plan."""

from __future__ import annotations

from reasoning_pipeline.deepspeed_config import deepspeed_config
from reasoning_pipeline.memory import H100_80GB_BYTES, ModelShape, choose_offload
from reasoning_pipeline.spec import TrainingSpec

from tests.support.model_configs import QWEN25_32B


def test_sky_t1_defaults_offload_everything_with_batch_96() -> None:
    config = deepspeed_config(TrainingSpec())
    assert (config["train_batch_size"], config["train_micro_batch_size_per_gpu"]) == (96, 1)
    assert config["gradient_accumulation_steps"] == 12
    assert config["bf16"] == {"enabled": True}
    zero = config["zero_optimization"]
    assert zero["stage"] == 3
    assert zero["offload_optimizer"] == {"device": "cpu", "pin_memory": True}
    assert zero["offload_param"] == {"device": "cpu", "pin_memory": True}
    assert zero["stage3_gather_16bit_weights_on_model_save"] is True


def test_auto_offload_takes_the_planners_choice() -> None:
    training = TrainingSpec.model_validate(
        {"deepspeed": {"offloadOptimizer": "auto", "offloadParameters": "auto"}}
    )
    shape = ModelShape.from_config(QWEN25_32B)
    on_8 = choose_offload(
        shape, sequence_length=16384, micro_batch_size=1, world_size=8, gpu_memory_bytes=H100_80GB_BYTES
    )
    zero_8 = deepspeed_config(training, on_8)["zero_optimization"]
    assert "offload_optimizer" in zero_8
    assert "offload_param" not in zero_8
    on_16 = choose_offload(
        shape, sequence_length=16384, micro_batch_size=1, world_size=16, gpu_memory_bytes=H100_80GB_BYTES
    )
    training_16 = training.model_copy(update={"nodes": 2, "gradient_accumulation_steps": 6})
    zero_16 = deepspeed_config(training_16, on_16)["zero_optimization"]
    assert "offload_optimizer" not in zero_16
    assert "offload_param" not in zero_16


def test_forced_settings_win_over_the_plan_and_stage_2_never_offloads_parameters() -> None:
    training = TrainingSpec.model_validate(
        {
            "deepspeed": {"zeroStage": 2, "offloadOptimizer": "none", "offloadParameters": "cpu"},
            "precision": "fp16",
        }
    )
    config = deepspeed_config(training)
    assert config["zero_optimization"] == {
        "stage": 2,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": 50_000_000,
    }
    assert config["fp16"] == {"enabled": True}
