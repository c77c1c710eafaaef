"""Shared pytest configuration: say which cluster the integration tests use."""

from __future__ import annotations

import os

from tests.support.cluster import choose_target


def pytest_report_header() -> str:
    target = choose_target(os.environ)
    kind = (
        "embedded local cluster (hack/cluster.sh)"
        if target.embedded
        else "a cluster given by the environment"
    )
    return f"kubernetes: {kind}, kubeconfig {target.kubeconfig}"
