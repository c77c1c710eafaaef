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


def test_the_sandbox_profile_is_the_runtimes_default_plus_user_namespaces_and_where_the_spec_looks() -> None:
    """hack/seccomp/sandbox.json (`make seccomp-profile` writes it from containerd's own default): every
    call not listed fails, and the four the sandbox adds are allowed whatever their arguments. The local
    node's kubelet (and kind's) hold it at the path the spec's default names."""
    import json

    from reasoning_pipeline.spec import SANDBOX_PROFILE, SandboxSpec

    profile = json.loads((REPO_ROOT / "hack" / "seccomp" / "sandbox.json").read_text())
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    unconditional = {
        name
        for rule in profile["syscalls"]
        if rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("args") and not rule.get("includes")
        for name in rule["names"]
    }
    assert {"unshare", "mount", "mount_setattr", "umount2"} <= unconditional
    # what stays closed to an unprivileged container with the profile
    assert not {"setns", "bpf", "keyctl", "open_by_handle_at", "kexec_load"} & unconditional
    assert SandboxSpec().seccomp_profile.localhost_profile == SANDBOX_PROFILE
    node = (REPO_ROOT / "hack" / "node.sh").read_text()
    assert 'install -m 0644 "$HACK_DIR/seccomp/sandbox.json" "$dir/sandbox.json"' in node
    assert "seccomp/reasoning-operator" in node
    assert f"/var/lib/kubelet/seccomp/{SANDBOX_PROFILE}" in (REPO_ROOT / "hack" / "kind.yaml").read_text()
