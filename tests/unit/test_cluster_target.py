"""Which cluster the integration tests pick from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cluster import ClusterTarget, choose_target
from tests.support.kwok import EXIT_CODE, OUTCOME, RUN_FOR, TERMINATION_MESSAGE, finish_on_cue


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param(
            {"HOME": "/h"},
            ClusterTarget("/h/.cache/reasoning-operator/cluster/kubeconfig", True),
            id="none-given",
        ),
        pytest.param(
            {"HOME": "/h", "REASONING_CLUSTER_DIR": "/state"},
            ClusterTarget("/state/kubeconfig", True),
            id="cluster-dir-moved",
        ),
        pytest.param(
            {"HOME": "/h", "KUBECONFIG": "/kind.yaml"}, ClusterTarget("/kind.yaml", False), id="kubeconfig"
        ),
        pytest.param(
            {"HOME": "/h", "KUBECONFIG": "/kind.yaml", "REASONING_TEST_KUBECONFIG": "/cloud.yaml"},
            ClusterTarget("/cloud.yaml", False),
            id="test-kubeconfig-wins",
        ),
        pytest.param(
            {"HOME": "/h", "KUBECONFIG": "/h/.cache/reasoning-operator/cluster/kubeconfig"},
            ClusterTarget("/h/.cache/reasoning-operator/cluster/kubeconfig", True),
            id="kubeconfig-of-the-embedded-cluster",
        ),
        pytest.param(
            {"HOME": "/h", "KUBECONFIG": "  "},
            ClusterTarget("/h/.cache/reasoning-operator/cluster/kubeconfig", True),
            id="blank",
        ),
    ],
)
def test_choose_target(environ: dict[str, str], expected: ClusterTarget) -> None:
    assert choose_target(environ) == expected


def test_finish_on_cue_annotations() -> None:
    assert finish_on_cue("Failed", termination_message="{}", exit_code=3, run_for="2s") == {
        OUTCOME: "Failed",
        TERMINATION_MESSAGE: "{}",
        EXIT_CODE: "3",
        RUN_FOR: "2s",
    }
    assert finish_on_cue("Succeeded") == {OUTCOME: "Succeeded"}


def test_finish_on_cue_rejects_an_unknown_outcome() -> None:
    with pytest.raises(ValueError, match="Succeeded or Failed"):
        finish_on_cue("Done")


def test_kwok_stage_annotations_match_the_cluster_config() -> None:
    stages = (Path(__file__).resolve().parents[2] / "hack" / "cluster" / "kwok-stages.yaml").read_text()
    for annotation in (OUTCOME, EXIT_CODE, TERMINATION_MESSAGE, RUN_FOR):
        assert f'"{annotation}"' in stages
