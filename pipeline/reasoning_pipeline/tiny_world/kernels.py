"""The CPU kernels a tiny-world build runs on, pinned so that every machine of this kind computes the same
bits, and the machine facts its manifest records.

Measured here (AMD EPYC, AVX2; 30 teacher training steps, the weights hashed, one setting changed at a
time): torch's own kernel set, which it picks per process from the CPU's instruction set, changes the
weights (`ATEN_CPU_CAPABILITY`: `default` ≠ `avx2`; a machine with AVX-512 picks `avx512` unless told),
and so does MKL's `MKL_CBWR=COMPATIBLE` path. MKL's other branches (AUTO, AVX, AVX2, `AVX2,STRICT`) gave
one and the same hash, as did 1 or 2 threads, `ONEDNN_MAX_CPU_ISA` and `MKL_ENABLE_INSTRUCTIONS`. So a
build runs in a process of its own whose environment pins torch to its AVX2 kernels (every machine of
this kind has AVX2; AVX-512 machines run them too), MKL to its AVX2 branch (on Intel CPUs MKL promises
the same bits for the same branch and thread count) and the thread count to 2. `COMPATIBLE`, MKL's path
that is the same on any x86-64, trains 2.6 times slower here, so only a CPU without AVX2 gets it.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

THREADS = 2
PINNED_CAPABILITY = "avx2"
# What the environment of a build process says; the same names set outside are overridden there.
PINNED_ENVIRONMENT = {
    "ATEN_CPU_CAPABILITY": PINNED_CAPABILITY,
    "MKL_CBWR": "AVX2",
    "OMP_NUM_THREADS": str(THREADS),
    "MKL_NUM_THREADS": str(THREADS),
    # waiting threads sleep instead of spinning: beside other work on two cores (image builds, tests)
    # spinning threads made a training step 7 times slower; how threads wait changes no result
    "OMP_WAIT_POLICY": "PASSIVE",
}
# For measuring how much a recipe hinges on the kernels: a build under other kernels on purpose.
OVERRIDE_VARIABLE = "REASONING_TINY_WORLD_CPU_CAPABILITY"
CPU_FLAGS_THAT_MATTER = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "amx_tile")


def _cpuinfo_value(key: str, cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The first core's `key` line of /proc/cpuinfo."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return None


def cpu_flags() -> frozenset[str]:
    return frozenset((_cpuinfo_value("flags") or "").split())


def build_environment(base: Mapping[str, str], flags: frozenset[str]) -> dict[str, str]:
    """The environment of a build process: `base` with the kernels pinned.

    A CPU without AVX2 (not of this kind) falls back to torch's portable kernels: its world is built, but
    with other bits, and its manifest says which capability it used.
    """
    environment = {**base, **PINNED_ENVIRONMENT}
    if "avx2" not in flags:
        environment["ATEN_CPU_CAPABILITY"] = "default"
        environment["MKL_CBWR"] = "COMPATIBLE"
    override = base.get(OVERRIDE_VARIABLE)
    if override:
        environment["ATEN_CPU_CAPABILITY"] = override
    return environment


def machine_facts() -> dict[str, Any]:
    """What decides the bits a build computes, as the running process sees it (torch imported)."""
    import torch

    flags = cpu_flags()
    return {
        "cpu": _cpuinfo_value("model name") or platform.processor(),
        "machine": platform.machine(),
        "cpu_flags": sorted(flag for flag in CPU_FLAGS_THAT_MATTER if flag in flags),
        "cpu_capability_used": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "environment": {name: os.environ.get(name) for name in PINNED_ENVIRONMENT},
    }
