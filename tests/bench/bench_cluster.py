"""How long the embedded cluster takes to start when its programs are already built (a warm machine).

Runs a second cluster on its own ports and state directory, so an already running one is untouched.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time

from tests.support.cluster import CLUSTER_SCRIPT


def bench_cluster_up_and_down() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as state:
        environ = {
            **os.environ,
            "REASONING_CLUSTER_DIR": state + "/cluster",
            "REASONING_CLUSTER_PORT_BASE": "17400",
        }
        timings = []
        for _ in range(2):
            started = time.monotonic()
            subprocess.run(["bash", str(CLUSTER_SCRIPT), "up"], env=environ, check=True, capture_output=True)
            up = time.monotonic() - started
            started = time.monotonic()
            subprocess.run(
                ["bash", str(CLUSTER_SCRIPT), "down"], env=environ, check=True, capture_output=True
            )
            timings.append((up, time.monotonic() - started))
    for up, down in timings:
        print(f"cluster up (all components healthy, nodes Ready): {up:6.1f} s   down: {down:5.1f} s")
