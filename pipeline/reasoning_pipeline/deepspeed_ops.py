"""DeepSpeed's host-side ops, which the trainer image compiles in (images/trainer/Dockerfile) so that no
job compiles anything when it starts: `cpu_adam` (DeepSpeedCPUAdam, ZeRO-Offload's optimizer) and, on CPU
nodes, `deepspeed_shm_comm` (the CPU collectives). DeepSpeed uses a compiled op only where the
accelerator it runs on is the one it was built for; anywhere else it compiles the op just in time, which
needs a C++ compiler and ninja in the container, and fails late (after every rank loaded the model) where
there are none. `python -m reasoning_pipeline.deepspeed_ops` reports and loads them; the image build runs it
with --require-compiled.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass

from reasoning_pipeline.errors import StageError

# op name (as DeepSpeed's installed_ops spells it) -> builder class; the collectives only on CPU
OPTIMIZER_OP = ("cpu_adam", "CPUAdamBuilder")
CPU_COLLECTIVES_OP = ("deepspeed_shm_comm", "ShareMemCommBuilder")


@dataclass(frozen=True)
class HostOp:
    name: str
    builder: str
    compiled: bool
    """Compiled into this installation for the accelerator it runs on (so loaded without a compiler)."""


def host_ops() -> tuple[str, str, list[HostOp]]:
    """(accelerator now, accelerator the installation was built for, the host ops it needs)."""
    from deepspeed.accelerator import get_accelerator
    from deepspeed.git_version_info import accelerator_name, installed_ops

    here = str(get_accelerator()._name)
    wanted = [OPTIMIZER_OP, *([CPU_COLLECTIVES_OP] if here == "cpu" else [])]
    ops = [
        HostOp(name, builder, bool(installed_ops.get(name)) and accelerator_name == here)
        for name, builder in wanted
    ]
    return here, str(accelerator_name), ops


def compiler_available() -> bool:
    return any(shutil.which(compiler) for compiler in ("c++", "g++", "clang++"))


def require_loadable(*op_names: str) -> None:
    """Fails, naming the image to rebuild, when DeepSpeed would have to compile one of `op_names` (those
    this accelerator uses) and cannot: the train stage checks before any process joins, instead of meeting
    DeepSpeed's build error after every rank has loaded the model."""
    here, built_for, ops = host_ops()
    missing = [op.name for op in ops if op.name in op_names and not op.compiled]
    if not missing or compiler_available():
        return
    raise StageError(
        f"DeepSpeed's {', '.join(missing)} not compiled for the {here!r} accelerator in this image (it was "
        f"built for {built_for!r}) and the image has no C++ compiler to build it at run time: rebuild "
        f"images/trainer with --build-arg DS_ACCELERATOR={here}"
    )


def load(op: HostOp) -> str:
    """Loads the op as DeepSpeed will; returns the module's file."""
    from deepspeed.accelerator import get_accelerator

    module = get_accelerator().create_op_builder(op.builder).load()
    return str(getattr(module, "__file__", module))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reasoning_pipeline.deepspeed_ops")
    parser.add_argument(
        "--require-compiled", action="store_true", help="fail unless every host op is compiled in"
    )
    args = parser.parse_args(argv)
    here, built_for, ops = host_ops()
    missing = [op.name for op in ops if not op.compiled]
    report = {"accelerator": here, "builtFor": built_for, "compiled": {op.name: op.compiled for op in ops}}
    if args.require_compiled and missing:
        print(json.dumps(report), file=sys.stderr)
        print(f"not compiled in for {here!r}: {', '.join(missing)}", file=sys.stderr)
        return 1
    report["loaded"] = {op.name: load(op) for op in ops if op.compiled}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
