"""The operator as the chart deploys it, but run as a local process: `helm install` makes its
ServiceAccount and RBAC, and the process authenticates with a token of that ServiceAccount, so a rule
missing from the chart fails the test that needs it.

    with installed_chart(cluster, namespace) as release, operator_process(cluster, release) as operator:
        ...; operator.restart(); ...
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from kubernetes import client, config

from tests.support.cluster import REPO_ROOT, ClusterTarget, cached_tool
from tests.support.waiting import wait_for

CHART = REPO_ROOT / "charts" / "reasoning-operator"
TOKEN_SECONDS = 3600


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    service_account: str
    watch_namespaces: tuple[str, ...]


def helm(cluster: ClusterTarget, *args: str) -> str:
    command = [cached_tool("bin_helm"), "--kubeconfig", cluster.kubeconfig, *args]
    finished = subprocess.run(command, text=True, capture_output=True, check=False)
    if finished.returncode != 0:
        namespace = args[args.index("--namespace") + 1] if "--namespace" in args else None
        report = namespace_report(cluster, namespace) if namespace else ""
        raise AssertionError(f"helm {' '.join(args)} failed:\n{finished.stderr}{report}")
    return finished.stdout


def namespace_report(cluster: ClusterTarget, namespace: str) -> str:
    """What a `--wait` that timed out was waiting for: each pod's phase and container states, then the
    namespace's events (an image the node lacks, a crash, a probe that never passed)."""
    core = client.CoreV1Api(config.new_client_from_config(config_file=cluster.kubeconfig))
    lines = [f"\npods in {namespace}:"]
    for pod in core.list_namespaced_pod(namespace).items:
        lines.append(f"  {pod.metadata.name} {pod.status.phase} on {pod.spec.node_name}")
        for status in pod.status.container_statuses or []:
            lines.append(f"    {status.name}: ready={status.ready} restarts={status.restart_count}")
            lines.append(f"      state={status.state.to_dict()} last={status.last_state.to_dict()}")
            if status.restart_count or status.state.terminated:
                log = core.read_namespaced_pod_log(
                    pod.metadata.name,
                    namespace,
                    container=status.name,
                    previous=bool(status.restart_count),
                    tail_lines=30,
                )
                lines += [f"      | {line}" for line in log.splitlines()]
    lines.append(f"events in {namespace}:")
    for event in core.list_namespaced_event(namespace).items[-40:]:
        involved = event.involved_object
        lines.append(f"  {involved.kind}/{involved.name} {event.reason}: {event.message}")
    return "\n".join(lines)


@contextlib.contextmanager
def installed_chart(
    cluster: ClusterTarget, namespace: str, *, watch: Sequence[str] = (), values: Sequence[str] = ()
) -> Iterator[Release]:
    """The chart installed in `namespace`, watching `watch` (every namespace when empty); uninstalled
    afterwards. The Deployment's own pod is scaled to zero: the process under test replaces it."""
    name = f"ro-{uuid.uuid4().hex[:6]}"
    settings = [
        "--set",
        "replicaCount=0",
        *[f"--set=watchNamespaces[{i}]={ns}" for i, ns in enumerate(watch)],
    ]
    for value in values:
        settings += ["--set", value]
    helm(
        cluster,
        "install",
        name,
        str(CHART),
        "--namespace",
        namespace,
        "--wait",
        "--timeout",
        "60s",
        *settings,
    )
    try:
        manifest = yaml.safe_load_all(helm(cluster, "get", "manifest", name, "--namespace", namespace))
        accounts = [d["metadata"]["name"] for d in manifest if d and d.get("kind") == "ServiceAccount"]
        assert len(accounts) == 1, accounts
        yield Release(name, namespace, accounts[0], tuple(watch))
    finally:
        helm(cluster, "uninstall", name, "--namespace", namespace, "--wait")


def service_account_kubeconfig(api: client.ApiClient, release: Release, directory: Path) -> Path:
    """A kubeconfig that authenticates as the release's ServiceAccount (a TokenRequest, as a pod gets)."""
    token = (
        client.CoreV1Api(api)
        .create_namespaced_service_account_token(
            release.service_account,
            release.namespace,
            client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=TOKEN_SECONDS)
            ),
        )
        .status.token
    )
    configuration = api.configuration
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {"server": configuration.host, "certificate-authority": configuration.ssl_ca_cert},
            }
        ],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "c", "user": "operator"}}],
        "current-context": "operator",
    }
    path = directory / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(document))
    return path


@dataclass
class OperatorProcess:
    kubeconfig: Path
    watch: tuple[str, ...]
    log_path: Path
    resync_seconds: float = 2.0
    # as the chart runs its replicas: one active, elected through a Lease in this namespace
    leader_election: str | None = None
    lease_seconds: float = 15.0
    health_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        scope = [arg for ns in self.watch for arg in ("--namespace", ns)] or ["--all-namespaces"]
        return [
            sys.executable,
            "-m",
            "reasoning_operator",
            *scope,
            "--liveness",
            f"http://127.0.0.1:{self.health_port}/healthz",
            *(["--leader-election-namespace", self.leader_election] if self.leader_election else []),
        ]

    def start(self) -> None:
        environment = {
            **{k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
            "KUBECONFIG": str(self.kubeconfig),
            "REASONING_METRICS_PORT": str(self.metrics_port),
            "REASONING_RESYNC_SECONDS": str(self.resync_seconds),
            "REASONING_LEASE_SECONDS": str(self.lease_seconds),
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True
            )
        wait_for(self.healthy, timeout=60, what=f"the operator's liveness endpoint; log:\n{self.log_tail()}")

    def healthy(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise AssertionError(f"the operator exited:\n{self.log_tail()}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def identity(self) -> str:
        """Its name in the Lease (the host's name and its pid, as it has no pod name here)."""
        import socket

        assert self.process is not None
        return f"{socket.gethostname()}-{self.process.pid}"

    def stop(self) -> None:
        """SIGTERM, as a rolling update or a drained node would: kopf shuts down cleanly."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)

    def kill(self) -> None:
        """SIGKILL, as a node failure or an OOM kill would: no clean shutdown."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def restart(self) -> None:
        self.kill()
        self.start()

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text

    def log_tail(self, size: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-size:] if self.log_path.exists() else ""


@contextlib.contextmanager
def operator_process(
    api: client.ApiClient, release: Release, *, name: str = "operator", **settings: Any
) -> Iterator[OperatorProcess]:
    with tempfile.TemporaryDirectory(prefix="operator-") as scratch:
        directory = Path(scratch)
        operator = OperatorProcess(
            kubeconfig=service_account_kubeconfig(api, release, directory),
            watch=release.watch_namespaces,
            log_path=directory / f"{name}.log",
            **settings,
        )
        operator.start()
        try:
            yield operator
        finally:
            operator.kill()
            print(f"--- {name} log (tail) ---\n{operator.log_tail()}")
