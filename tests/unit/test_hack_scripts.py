"""The hack/ scripts fail early and say what is missing."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.cluster import CLUSTER_SCRIPT, REPO_ROOT


def test_setup_names_a_missing_prerequisite(tmp_path: Path) -> None:
    # a PATH with bash and coreutils but no Go toolchain
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "hack" / "setup.sh")],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        text=True,
        capture_output=True,
        check=False,
    )
    assert result.returncode != 0
    assert "'go' is not installed" in result.stderr
    assert "Install Go" in result.stderr
    assert not (tmp_path / ".cache").exists()


def test_cluster_up_without_built_programs_points_to_make_setup(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(CLUSTER_SCRIPT), "up"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "REASONING_CACHE_DIR": str(tmp_path / "empty")},
        text=True,
        capture_output=True,
        check=False,
    )
    assert result.returncode != 0
    assert "run 'make setup' first" in result.stderr
