"""hack/cluster.sh on bad ground: ports taken, stale state, a failing test session.

Each test runs a second cluster on its own ports and state directory; the session's cluster is untouched.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cluster import CLUSTER_SCRIPT, REPO_ROOT, processes_mentioning

SPARE_PORT_BASE = 19400


@pytest.fixture
def spare_cluster_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    environ = {
        **os.environ,
        "REASONING_CLUSTER_DIR": str(tmp_path / "cluster"),
        "REASONING_CLUSTER_PORT_BASE": str(SPARE_PORT_BASE),
        # one real node per machine (one containerd, one pod bridge): the session's cluster has it
        "REASONING_LOCAL_NODE": "0",
    }
    environ.pop("KUBECONFIG", None)
    environ.pop("REASONING_TEST_KUBECONFIG", None)
    yield environ
    subprocess.run(["bash", str(CLUSTER_SCRIPT), "down"], env=environ, capture_output=True, check=False)
    assert not processes_mentioning(str(tmp_path / "cluster"))


def cluster_script(command: str, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(CLUSTER_SCRIPT), command], env=environ, text=True, capture_output=True, check=False
    )


def test_a_port_in_use_is_named_and_nothing_is_started(spare_cluster_env: dict[str, str]) -> None:
    apiserver_port = SPARE_PORT_BASE + 3
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", apiserver_port))
        squatter.listen()
        result = cluster_script("up", spare_cluster_env)
    assert result.returncode != 0
    assert f"port {apiserver_port} (for kube-apiserver) is already in use" in result.stderr
    assert "REASONING_CLUSTER_PORT_BASE" in result.stderr
    assert not processes_mentioning(spare_cluster_env["REASONING_CLUSTER_DIR"])


def test_etcd_answers_only_the_api_servers_certificate(spare_cluster_env: dict[str, str]) -> None:
    """Over plain HTTP, or to any certificate of the cluster's CA (the admin's), etcd would be every
    object, Secrets included, to any local process; it has a CA of its own, as kubeadm's has."""
    assert cluster_script("up", spare_cluster_env).returncode == 0
    pki = Path(spare_cluster_env["REASONING_CLUSTER_DIR"]) / "pki"
    health = f"127.0.0.1:{SPARE_PORT_BASE + 1}/health"

    def curl(*arguments: str) -> subprocess.CompletedProcess[str]:
        command = ["curl", "-s", "--max-time", "5", *arguments]
        return subprocess.run(command, text=True, capture_output=True, check=False)

    assert curl(f"http://{health}").returncode != 0  # no plain HTTP at all
    tls = ["--cacert", str(pki / "etcd-ca.crt"), f"https://{health}"]
    assert curl(*tls).returncode != 0  # no client certificate
    admin = ["--cert", str(pki / "admin.crt"), "--key", str(pki / "admin.key")]
    assert curl(*admin, *tls).returncode != 0  # cluster-admin's, but not etcd's CA
    apiserver = [
        "--cert",
        str(pki / "apiserver-etcd-client.crt"),
        "--key",
        str(pki / "apiserver-etcd-client.key"),
    ]
    answered = curl(*apiserver, *tls)
    assert answered.returncode == 0
    assert '"health":"true"' in answered.stdout
    assert cluster_script("status", spare_cluster_env).returncode == 0  # the API server itself gets in


def test_stale_state_is_cleaned_without_touching_a_recycled_pid(spare_cluster_env: dict[str, str]) -> None:
    state = Path(spare_cluster_env["REASONING_CLUSTER_DIR"])
    (state / "pids").mkdir(parents=True)
    (state / "etcd").mkdir()
    # a PID file left by a crashed cluster, now naming an unrelated live process: this test's own
    (state / "pids" / "kube-apiserver.pid").write_text(str(os.getpid()))

    result = cluster_script("up", spare_cluster_env)

    assert result.returncode == 0, result.stderr
    assert "stale or half-started cluster" in result.stderr
    assert cluster_script("status", spare_cluster_env).returncode == 0
    assert cluster_script("up", spare_cluster_env).stderr.count("already running") == 1
    assert cluster_script("down", spare_cluster_env).returncode == 0
    assert not state.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="making a mount needs root")
def test_mounts_left_by_a_killed_node_are_undone_before_the_state_goes(
    spare_cluster_env: dict[str, str],
) -> None:
    """A kubelet killed with its pods (a killed session) leaves their token mounts in the state folder."""
    state = Path(spare_cluster_env["REASONING_CLUSTER_DIR"])
    token = state / "kubelet" / "pods" / "a-pod" / "volumes" / "kubernetes.io~projected" / "token"
    token.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(token)], check=True)
    (token / "token").write_text("left behind")
    try:
        result = cluster_script("down", spare_cluster_env)
    finally:
        subprocess.run(["umount", "-l", str(token)], capture_output=True, check=False)

    assert result.returncode == 0, result.stderr
    assert not state.exists()
    assert str(state) not in Path("/proc/mounts").read_text()


def test_a_failing_test_session_leaves_no_cluster_running(
    spare_cluster_env: dict[str, str], tmp_path: Path
) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text(
        "from tests.integration.conftest import api, cluster, core  # noqa: F401\n"
    )
    (suite / "test_fails.py").write_text(
        textwrap.dedent(
            """
            def test_sees_nodes_then_fails(core):
                assert len(core.list_node().items) >= 2
                raise AssertionError("this test fails on purpose")
            """
        )
    )
    environ = {**spare_cluster_env, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite)],
        env=environ,
        cwd=tmp_path,
        text=True,
        capture_output=True,
        check=False,
    )
    assert result.returncode == 1, result.stdout
    assert "1 failed" in result.stdout
    assert "this test fails on purpose" in result.stdout
    assert not processes_mentioning(spare_cluster_env["REASONING_CLUSTER_DIR"])
    assert not Path(spare_cluster_env["REASONING_CLUSTER_DIR"]).exists()
