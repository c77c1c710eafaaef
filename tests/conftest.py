"""Shared pytest configuration: say which cluster the integration tests use, and where vLLM is."""

from __future__ import annotations

import os
from pathlib import Path

from reasoning_pipeline.local_server import VLLM_PYTHON_VARIABLE

from tests.support.cluster import cached_tool, choose_target


def pytest_configure() -> None:
    # the stage tests and `reasoning-pipeline run` serve models with the vLLM `make setup` installed
    # (hack/vllm.sh venv): it pins its own torch and transformers, so it is not in this venv
    if not os.environ.get(VLLM_PYTHON_VARIABLE):
        python = cached_tool("bin_vllm_python")
        if Path(python).is_file():
            os.environ[VLLM_PYTHON_VARIABLE] = python


def pytest_report_header() -> str:
    target = choose_target(os.environ)
    kind = (
        "embedded local cluster (hack/cluster.sh)"
        if target.embedded
        else "a cluster given by the environment"
    )
    vllm = os.environ.get(VLLM_PYTHON_VARIABLE, "not installed (make setup)")
    return f"kubernetes: {kind}, kubeconfig {target.kubeconfig}; vLLM: {vllm}"
