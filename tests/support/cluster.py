"""Which Kubernetes API server the integration tests talk to, and the embedded one they may start.

REASONING_TEST_KUBECONFIG, then KUBECONFIG, name a cluster someone else runs (kind, a cloud cluster):
the tests use it and leave it running. Otherwise the tests start the embedded local cluster
(hack/cluster.sh) and stop it when the session ends, unless it was already running before.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = REPO_ROOT / "hack" / "cluster.sh"


def local_cluster_dir(environ: Mapping[str, str]) -> Path:
    default = Path(environ.get("HOME", "~")).expanduser() / ".cache" / "reasoning-operator" / "cluster"
    return Path(environ.get("REASONING_CLUSTER_DIR", str(default)))


@dataclass(frozen=True)
class ClusterTarget:
    kubeconfig: str
    """A kubeconfig path (or a KUBECONFIG-style list of paths)."""
    embedded: bool
    """True when this is the embedded local cluster, whose kwok pools and training operator we know."""


def choose_target(environ: Mapping[str, str]) -> ClusterTarget:
    local_kubeconfig = local_cluster_dir(environ) / "kubeconfig"
    for variable in ("REASONING_TEST_KUBECONFIG", "KUBECONFIG"):
        given = environ.get(variable, "").strip()
        if given:
            # `export KUBECONFIG=<the embedded cluster's kubeconfig>`, as cluster-up suggests, is no
            # reason to treat the embedded cluster as someone else's.
            embedded = Path(given).expanduser().resolve() == local_kubeconfig.resolve()
            return ClusterTarget(kubeconfig=given, embedded=embedded)
    return ClusterTarget(kubeconfig=str(local_kubeconfig), embedded=True)


class EmbeddedCluster:
    """Starts hack/cluster.sh for a test session; stops it afterwards only if this session started it."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = dict(environ)
        self.started_here = False

    def _run(self, command: str, *, check: bool) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(CLUSTER_SCRIPT), command],
            env=self._environ,
            check=check,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def is_running(self) -> bool:
        return self._run("status", check=False).returncode == 0

    def up(self) -> None:
        if self.is_running():
            return
        result = self._run("up", check=False)
        if result.returncode != 0:
            raise RuntimeError(f"the embedded cluster did not start:\n{result.stdout}")
        self.started_here = True

    def down_if_started_here(self) -> None:
        if self.started_here:
            self._run("down", check=True)


def processes_mentioning(text: str) -> list[str]:
    """Command lines of the running processes that mention `text` (a cluster's state directory)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended while we looked
            continue
        if text in command:
            found.append(command)
    return found


def cached_tool(binary_function: str) -> str:
    """The path of a tool `make setup` built, by its hack/lib.sh accessor (bin_helm, bin_etcd, ...)."""
    return subprocess.run(
        ["bash", "-c", f'source "{REPO_ROOT}/hack/lib.sh" && {binary_function}'],
        check=True,
        text=True,
        capture_output=True,
    ).stdout.strip()
