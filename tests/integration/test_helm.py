"""The helm the project builds installs and removes a release on the cluster under test."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

from kubernetes import client

from tests.support.cluster import ClusterTarget, cached_tool


def test_helm_installs_upgrades_and_uninstalls_a_release(
    cluster: ClusterTarget, core: client.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("greeting: hello\n")
    (chart / "templates" / "configmap.yaml").write_text(
        textwrap.dedent(
            """
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: {{ .Release.Name }}-settings
            data:
              greeting: {{ .Values.greeting | quote }}
            """
        )
    )

    def helm(*args: str) -> str:
        command = [
            cached_tool("bin_helm"),
            "--kubeconfig",
            cluster.kubeconfig,
            "--namespace",
            namespace,
            *args,
        ]
        return subprocess.run(command, check=True, text=True, capture_output=True).stdout

    helm("install", "probe", str(chart))
    assert core.read_namespaced_config_map("probe-settings", namespace).data == {"greeting": "hello"}

    helm("upgrade", "probe", str(chart), "--set", "greeting=bonjour")
    assert core.read_namespaced_config_map("probe-settings", namespace).data == {"greeting": "bonjour"}
    assert "deployed" in helm("status", "probe")

    helm("uninstall", "probe", "--wait")
    assert not core.list_namespaced_config_map(namespace, field_selector="metadata.name=probe-settings").items
