"""The benches that need the cluster borrow the integration tests' fixtures: the session's cluster and API
clients, a namespace per bench (deleted afterwards), and the operator installed by the chart and run as a
local process watching that namespace."""

from __future__ import annotations

from tests.integration.conftest import (  # noqa: F401
    api,
    batch,
    cluster,
    core,
    custom,
    namespace,
    operator,
    reasoning_crd,
    restricted,
)
