"""How many CPUs this process may really use: a pod's CPU limit, not the node's core count.

`os.cpu_count()` inside a container reports every core of the node; a filter pod limited to 2 CPUs on
a 96-core node would start 96 sandbox workers and be throttled by the CFS quota into timeouts that
reject correct answers. The limit lives in cgroup v2's `cpu.max` ("<quota> <period>" or "max <period>").
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def quota_cpus(cpu_max: str) -> int | None:
    """The whole CPUs a cgroup v2 `cpu.max` line allows (rounded up), or None when it sets no limit."""
    fields = cpu_max.split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    quota, period = int(fields[0]), int(fields[1])
    return max(1, math.ceil(quota / period))


def usable_cpus(cpu_max_file: Path = CGROUP_CPU_MAX) -> int:
    """The CPUs this process is allowed to run on, bounded by its cgroup's CPU quota when one is set."""
    allowed = len(os.sched_getaffinity(0))
    try:
        limit = quota_cpus(cpu_max_file.read_text())
    except (OSError, ValueError):  # cgroup v1 or no cgroup filesystem: the affinity mask is all we know
        limit = None
    return min(allowed, limit) if limit is not None else allowed
