"""Peak host memory per training process while the student loads and DeepSpeed ZeRO-3 takes it over:
partitioned at load (what the train stage does, `train.load_student`) beside a whole copy per process
that ZeRO-3 partitions afterwards (what the train stage did before), two processes under torchrun on this
machine's CPU, where the "device" the partitions live on is host memory too. Figures only.

The model is a Qwen2-architecture student of about 200 M parameters built from a config (800 MB in
fp32): large enough that a whole copy per process stands out from the interpreter's own few hundred MB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

LOAD = """
import json, os, resource, sys
import deepspeed
from reasoning_pipeline.deepspeed_config import deepspeed_config
from reasoning_pipeline.spec import TrainingSpec
from reasoning_pipeline.train import load_student

partition_at_load = sys.argv[2] == "partitioned"
spec = TrainingSpec.model_validate({
    "nodePool": "cpu", "gpusPerNode": 0, "processesPerNode": 2, "microBatchSize": 1,
    "gradientAccumulationSteps": 1, "globalBatchSize": 2, "precision": "fp32",
    "deepspeed": {"zeroStage": 3, "offloadOptimizer": "none", "offloadParameters": "none"},
})
deepspeed.init_distributed(dist_backend="gloo")
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
before = rss()
config = deepspeed_config(spec, None)
model, keep = load_student(sys.argv[1], spec, config, partition_at_load=partition_at_load)
loaded = rss()
import torch
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
ready = rss()
print(json.dumps({"rank": int(os.environ["RANK"]), "before": before, "loaded": loaded, "ready": ready}))
"""


def build_student(folder: Path) -> int:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        hidden_size=1024,
        intermediate_size=2816,
        num_hidden_layers=12,
        num_attention_heads=16,
        num_key_value_heads=4,
        vocab_size=32000,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
    )
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def peak_per_rank(folder: Path, how: str) -> list[dict[str, float]]:
    script = folder.parent / "load.py"
    script.write_text(LOAD)
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--standalone", "--nproc_per_node=2", str(script), str(folder), how]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=environment, check=True)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return sorted(lines, key=lambda line: line["rank"])


def bench_peak_host_memory_per_rank_at_load(tmp_path: Path) -> None:
    parameters = build_student(tmp_path / "student")
    size_mib = parameters * 4 / 2**20
    print(f"\nstudent: {parameters / 1e6:.0f} M parameters, {size_mib:.0f} MiB in fp32; 2 processes (gloo)")
    header = (
        f"{'ZeRO-3, the student loaded':<28} {'rank':>4} {'imports':>8} {'+ load':>8} {'+ initialize':>13}"
    )
    print(f"{header}  (peak RSS, MiB)")
    for label, how in (("whole, then partitioned", "whole"), ("partitioned at load", "partitioned")):
        for line in peak_per_rank(tmp_path / "student", how):
            figures = f"{line['before']:>8.0f} {line['loaded']:>8.0f} {line['ready']:>13.0f}"
            print(f"{label:<28} {line['rank']:>4} {figures}")
