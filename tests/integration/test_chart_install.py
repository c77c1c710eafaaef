"""The Helm chart installs on a real API server; its ServiceAccount may do what the operator does, no more.

`kubectl auth can-i --as` asks the API server's RBAC authorizer itself (a SubjectAccessReview), and a
server-side dry run of the operator's pod in a namespace that enforces the restricted Pod Security
Standard asks the PodSecurity admission plugin. The operator image does not have to exist: nothing here
waits for the Deployment to become Available.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.cluster import REPO_ROOT, ClusterTarget, cached_tool

CHART = REPO_ROOT / "charts" / "reasoning-operator"
CRD_NAME = "reasoningruns.reasoning.dev"

# (verb, resource[, subresource]) the operator's ServiceAccount must be allowed in a watched namespace
ALLOWED = [
    ("create", "jobs.batch"),
    ("delete", "jobs.batch"),
    ("create", "pytorchjobs.kubeflow.org"),
    ("create", "deployments.apps"),
    ("create", "services"),
    ("create", "persistentvolumeclaims"),
    ("watch", "reasoningruns.reasoning.dev"),
    ("patch", "reasoningruns.reasoning.dev", "status"),
    ("patch", "jobs.batch"),
    ("list", "pods"),
    ("create", "events"),
]
# ... and must not be: no Secrets (pods get the API key by secretKeyRef), no storage deletion, no pods
DENIED = [
    ("get", "secrets"),
    ("list", "secrets"),
    ("delete", "persistentvolumeclaims"),
    ("create", "pods"),
    ("delete", "pods"),
    ("create", "pods", "exec"),
    ("delete", "reasoningruns.reasoning.dev"),
    ("patch", "reasoningruns.reasoning.dev"),  # only its status is the operator's
    ("create", "roles.rbac.authorization.k8s.io"),
]


class Release:
    """One install of the chart into the test's namespace, with helm and kubectl pointed at the cluster."""

    def __init__(self, cluster: ClusterTarget, namespace: str) -> None:
        self.kubeconfig = cluster.kubeconfig
        self.namespace = namespace
        self.name = f"ro-{namespace.rsplit('-', 1)[-1]}"  # the ClusterRole is cluster-wide: one per test
        self.fullname = f"{self.name}-reasoning-operator"
        self.service_account = f"system:serviceaccount:{namespace}:{self.fullname}"
        self.helm_binary = cached_tool("bin_helm")
        self.kubectl_binary = cached_tool("bin_kubernetes kubectl")

    def helm(self, *args: str, check: bool = True) -> str:
        command = [self.helm_binary, "--kubeconfig", self.kubeconfig, "--namespace", self.namespace, *args]
        result = subprocess.run(command, text=True, capture_output=True, check=False, timeout=180)
        if check:
            assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}{result.stderr}"
        return result.stdout

    def can(self, verb: str, resource: str, subresource: str = "", *, namespace: str | None = None) -> bool:
        command = [self.kubectl_binary, "--kubeconfig", self.kubeconfig, "auth", "can-i", verb, resource]
        command += [f"--as={self.service_account}", f"--namespace={namespace or self.namespace}"]
        if subresource:
            command.append(f"--subresource={subresource}")
        result = subprocess.run(command, text=True, capture_output=True, check=False, timeout=60)
        answer = result.stdout.strip()
        assert answer in ("yes", "no"), f"{' '.join(command)}: {result.stdout}{result.stderr}"
        return answer == "yes"


@pytest.fixture
def release(cluster: ClusterTarget, namespace: str) -> Iterator[Release]:
    installed = Release(cluster, namespace)
    try:
        yield installed
    finally:
        # the namespace's deletion takes the namespaced objects, but not the cluster-wide ones
        installed.helm("uninstall", installed.name, "--ignore-not-found", "--wait", check=False)


def exists(read: Callable[[str], object], name: str) -> bool:
    """Whether `read(name)` (a read_* call of the client) finds the object."""
    try:
        read(name)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def test_chart_installs_an_operator_with_exactly_the_rights_it_needs(
    api: client.ApiClient, core: client.CoreV1Api, apps: client.AppsV1Api, release: Release
) -> None:
    extensions = client.ApiextensionsV1Api(api)
    rbac = client.RbacAuthorizationV1Api(api)
    # the operator's pod must pass the restricted Pod Security Standard where that is enforced
    core.patch_namespace(
        release.namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )

    # The CRD is cluster-wide: another test (or an earlier install) may have created it already, and Helm
    # neither upgrades nor deletes CRDs, so install it only where it is missing.
    skip_crds = ["--skip-crds"] if exists(extensions.read_custom_resource_definition, CRD_NAME) else []
    notes = release.helm("install", release.name, str(CHART), *skip_crds)
    assert "examples/tiny.yaml" in notes
    assert "kubectl get rr" in notes
    assert exists(extensions.read_custom_resource_definition, CRD_NAME)

    core.read_namespaced_service_account(release.fullname, release.namespace)
    binding = rbac.read_cluster_role_binding(release.fullname)
    assert binding.role_ref.name == release.fullname
    assert [(s.kind, s.name, s.namespace) for s in binding.subjects] == [
        ("ServiceAccount", release.fullname, release.namespace)
    ]
    assert exists(rbac.read_cluster_role, release.fullname)

    for check in ALLOWED:
        assert release.can(*check), f"the operator may not {' '.join(check)}"
    for check in DENIED:
        assert not release.can(*check), f"the operator may {' '.join(check)}"
    assert release.can("create", "jobs.batch", namespace="default"), "all namespaces are watched by default"

    template = apps.read_namespaced_deployment(release.fullname, release.namespace).spec.template
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="restricted-probe"), spec=template.spec)
    core.create_namespaced_pod(release.namespace, pod, dry_run="All")  # 403 if it violated "restricted"

    # Narrowing to watched namespaces takes the cluster-wide rights back.
    release.helm(
        "upgrade",
        release.name,
        str(CHART),
        "--skip-crds",
        "--set",
        f"watchNamespaces={{{release.namespace}}}",
    )
    assert release.can("create", "pytorchjobs.kubeflow.org")
    assert release.can("patch", "reasoningruns.reasoning.dev", "status")
    assert not release.can("create", "jobs.batch", namespace="default")
    assert not release.can("list", "pods", namespace="default")
    assert release.can("list", "namespaces"), "kopf still discovers namespaces"
    rbac.read_namespaced_role(release.fullname, release.namespace)

    release.helm("uninstall", release.name, "--wait")
    assert not exists(rbac.read_cluster_role, release.fullname)
    assert not rbac.list_cluster_role_binding(field_selector=f"metadata.name={release.fullname}").items
    assert not rbac.list_namespaced_role(release.namespace).items
    assert exists(extensions.read_custom_resource_definition, CRD_NAME), (
        "Helm keeps CRDs: runs (and their data) survive an uninstall"
    )
