"""The Helm chart renders a least-privilege, restricted operator; its GitOps health checks read run status.

No cluster: `helm lint` and `helm template` with the helm `make setup` builds, the Argo CD Lua run by a
real Lua interpreter (lupa, Lua 5.1 like Argo CD's gopher-lua) and the Flux CEL by a CEL evaluator
(cel-python), both over the same ReasoningRun statuses.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Mapping
from typing import Any

import celpy
import pytest
import yaml
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError
from lupa import lua51  # type: ignore[import-untyped]

from tests.support.cluster import REPO_ROOT, cached_tool

CHART = REPO_ROOT / "charts" / "reasoning-operator"
RELEASE, RELEASE_NAMESPACE = "rr", "reasoning-system"
FULLNAME = "rr-reasoning-operator"

READ = frozenset({"get", "list", "watch"})
CREATE_DELETE = READ | {"create", "delete"}
MANAGE = CREATE_DELETE | {"patch"}  # workloads: patched to suspend and resume
# (API group, resource) → verbs: what the operator does in the namespaces it watches, nothing more
NAMESPACED_PERMISSIONS: dict[tuple[str, str], frozenset[str]] = {
    ("reasoning.dev", "reasoningruns"): READ,
    ("reasoning.dev", "reasoningruns/status"): frozenset({"get", "patch"}),
    ("batch", "jobs"): MANAGE,
    ("apps", "deployments"): CREATE_DELETE,
    ("", "services"): CREATE_DELETE,
    ("", "configmaps"): MANAGE,  # the run file, patched when the spec changes
    ("", "persistentvolumeclaims"): READ | {"create"},  # storage outlives its run: never deleted
    ("", "pods"): READ,
    ("", "pods/log"): frozenset({"get"}),  # a running stage's progress line
    ("", "events"): frozenset({"create", "patch"}),
    ("kubeflow.org", "pytorchjobs"): MANAGE,
    ("networking.k8s.io", "networkpolicies"): CREATE_DELETE,
    # Kueue's, for queued workloads: read for their place in the queue, deactivated to suspend a run
    ("kueue.x-k8s.io", "workloads"): frozenset({"get", "list", "patch"}),
}
CLUSTER_PERMISSIONS: dict[tuple[str, str], frozenset[str]] = {
    ("apiextensions.k8s.io", "customresourcedefinitions"): READ,
    ("", "namespaces"): READ,
}

Manifest = dict[str, Any]


# ------------------------------------------------------------------------------------------------ helm
@functools.cache
def helm_binary() -> str:
    return cached_tool("bin_helm")


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm_binary(), *args], text=True, capture_output=True, check=False, timeout=120)


def helm_template(*options: str) -> subprocess.CompletedProcess[str]:
    return helm("template", RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE, *options)


def render(*options: str) -> list[Manifest]:
    result = helm_template(*options)
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


@pytest.fixture(scope="module")
def default_manifests() -> list[Manifest]:
    return render()


def only(manifests: list[Manifest], kind: str, namespace: str | None = None) -> Manifest:
    found = of_kind(manifests, kind, namespace)
    assert len(found) == 1, f"expected one {kind}, found {[m['metadata']['name'] for m in found]}"
    return found[0]


def of_kind(manifests: list[Manifest], kind: str, namespace: str | None = None) -> list[Manifest]:
    return [
        m
        for m in manifests
        if m["kind"] == kind and (namespace is None or m["metadata"].get("namespace") == namespace)
    ]


def permissions(role: Manifest) -> dict[tuple[str, str], frozenset[str]]:
    granted: dict[tuple[str, str], frozenset[str]] = {}
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, f"unexpected rule fields: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted[group, resource] = granted.get((group, resource), frozenset()) | set(rule["verbs"])
    return granted


def operator_container(manifests: list[Manifest]) -> Manifest:
    containers = only(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["operator"]
    container: Manifest = containers[0]
    return container


# ---------------------------------------------------------------------------------------- lint, schema
@pytest.mark.parametrize(
    "options",
    [
        pytest.param([], id="defaults"),
        pytest.param(
            ["--set", "watchNamespaces={a,b}", "--set", "metrics.serviceMonitor.enabled=true"], id="all-on"
        ),
    ],
)
def test_helm_lint_is_clean_in_strict_mode(options: list[str]) -> None:
    result = helm("lint", "--strict", str(CHART), *options)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("option", "named"),
    [
        pytest.param("replicaCount=x", "replicaCount", id="wrong-type"),
        pytest.param("replicaCount=9", "replicaCount", id="more-replicas-than-an-election-needs"),
        pytest.param("replicaCnt=1", "replicaCnt", id="unknown-top-level-key"),
        pytest.param("image.pullPolicy=Sometimes", "pullPolicy", id="not-a-pull-policy"),
        pytest.param("metrics.port=metrics", "port", id="port-not-a-number"),
        pytest.param("watchNamespaces={Not_A_Namespace}", "watchNamespaces", id="not-a-namespace-name"),
        pytest.param("serviceAccount.nmae=x", "nmae", id="unknown-nested-key"),
    ],
)
def test_schema_refuses_bad_values_naming_them(option: str, named: str) -> None:
    result = helm_template("--set", option)
    assert result.returncode != 0, f"--set {option} rendered"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert named in result.stderr, result.stderr


def test_chart_ships_the_generated_crd(default_manifests: list[Manifest]) -> None:
    assert not of_kind(default_manifests, "CustomResourceDefinition"), "CRDs belong in crds/, not templates/"
    shipped = only(render("--include-crds"), "CustomResourceDefinition")
    generated = yaml.safe_load((REPO_ROOT / "crds" / "reasoning.dev_reasoningruns.yaml").read_text())
    assert shipped == generated


# ------------------------------------------------------------------------------------------------- RBAC
def test_cluster_role_grants_exactly_what_the_operator_uses(default_manifests: list[Manifest]) -> None:
    role = only(default_manifests, "ClusterRole")
    granted = permissions(role)
    assert granted == NAMESPACED_PERMISSIONS | CLUSTER_PERMISSIONS
    assert "*" not in str(role["rules"])
    assert not [key for key in granted if key[1].startswith("secrets")]
    # the one namespaced grant: the Lease the replicas elect their active one with, in its own namespace
    (election,) = of_kind(default_manifests, "Role")
    assert election["metadata"]["namespace"] == RELEASE_NAMESPACE
    assert permissions(election) == {
        ("coordination.k8s.io", "leases"): frozenset({"get", "create", "update"})
    }
    election_binding = only(default_manifests, "RoleBinding", RELEASE_NAMESPACE)
    assert election_binding["roleRef"]["name"] == election["metadata"]["name"]

    binding = only(default_manifests, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": FULLNAME,
    }
    service_account = only(default_manifests, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": FULLNAME, "namespace": RELEASE_NAMESPACE}
    ]
    assert service_account["metadata"]["name"] == FULLNAME


def test_watch_namespaces_get_roles_and_flags_instead_of_cluster_rights() -> None:
    manifests = render("--set", "watchNamespaces={a,b}")
    for namespace in ("a", "b"):
        assert permissions(only(manifests, "Role", namespace)) == NAMESPACED_PERMISSIONS
        binding = only(manifests, "RoleBinding", namespace)
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"][0]["namespace"] == RELEASE_NAMESPACE
    # what a Role cannot grant stays cluster-wide, and only that
    assert permissions(only(manifests, "ClusterRole")) == CLUSTER_PERMISSIONS
    command = operator_container(manifests)["command"]
    assert command[-4:] == ["--namespace", "a", "--namespace", "b"]
    assert "--all-namespaces" not in command


def test_rbac_and_service_account_can_be_brought_along() -> None:
    manifests = render(
        "--set", "rbac.create=false", "--set", "serviceAccount.create=false,serviceAccount.name=ops"
    )
    kinds = {m["kind"] for m in manifests}
    assert kinds.isdisjoint({"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"})
    assert only(manifests, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops"
    # with no name the operator would silently run as `default`
    result = helm_template("--set", "serviceAccount.create=false")
    assert result.returncode != 0
    assert "serviceAccount.name is required" in result.stderr


# ------------------------------------------------------------------------------------------- Deployment
def test_operator_runs_the_cli_the_chart_promises(default_manifests: list[Manifest]) -> None:
    deployment = only(default_manifests, "Deployment")
    assert deployment["spec"]["replicas"] == 2  # one active, one standing by
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == FULLNAME
    assert pod["automountServiceAccountToken"] is True
    container = operator_container(default_manifests)
    assert container["image"] == "ghcr.io/reasoning-operator/operator:0.1.0"  # the chart's appVersion
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["command"] == [
        "python",
        "-m",
        "reasoning_operator",
        "--liveness",
        "http://0.0.0.0:8080/healthz",
        "--leader-election-namespace",
        RELEASE_NAMESPACE,
        "--leader-election-id",
        FULLNAME,
        "--all-namespaces",
    ]
    assert container["env"] == [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "REASONING_METRICS_PORT", "value": "9090"},
    ]
    assert container["ports"] == [
        {"name": "http-health", "containerPort": 8080, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
    ]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http-health"}
    assert container["resources"]["limits"] == {"memory": "512Mi"}


def test_operator_pod_meets_the_restricted_pod_security_standard(default_manifests: list[Manifest]) -> None:
    pod = only(default_manifests, "Deployment")["spec"]["template"]["spec"]
    assert not {"hostNetwork", "hostPID", "hostIPC"} & set(pod)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = operator_container(default_manifests)
    context = container["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == 65532
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not [port for port in container["ports"] if "hostPort" in port]
    # the only writable place is an emptyDir at /tmp; no host paths
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]


def test_values_reach_the_pod() -> None:
    manifests = render(
        "--set",
        "image.tag=dev",
        "--set",
        "image.repository=registry.local/operator",
        "--set",
        "health.port=8181",
        "--set",
        "metrics.port=9191",
        "--set",
        "nodeSelector.reasoning\\.dev/pool=cpu",
        "--set",
        "tolerations[0].key=dedicated,tolerations[0].operator=Exists",
        "--set",
        "priorityClassName=system-cluster-critical",
        "--set",
        "extraEnv[0].name=KOPF_LOG,extraEnv[0].value=debug",
        "--set",
        "replicaCount=0",
    )
    deployment = only(manifests, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = operator_container(manifests)
    assert deployment["spec"]["replicas"] == 0
    assert container["image"] == "registry.local/operator:dev"
    assert "http://0.0.0.0:8181/healthz" in container["command"]
    assert container["env"] == [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "REASONING_METRICS_PORT", "value": "9191"},
        {"name": "KOPF_LOG", "value": "debug"},
    ]
    assert [p["containerPort"] for p in container["ports"]] == [8181, 9191]
    assert pod["nodeSelector"] == {"reasoning.dev/pool": "cpu"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert only(manifests, "Service")["spec"]["ports"][0]["port"] == 9191


def test_metrics_service_and_optional_service_monitor(default_manifests: list[Manifest]) -> None:
    service = only(default_manifests, "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    pod_labels = only(default_manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert not of_kind(default_manifests, "ServiceMonitor")

    manifests = render("--set", "metrics.serviceMonitor.enabled=true")
    monitor = only(manifests, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()


# ------------------------------------------------------------------------------------ GitOps health checks
def reasoning_run(generation: int = 1, status: Manifest | None = None, *, suspend: bool = False) -> Manifest:
    run: Manifest = {
        "apiVersion": "reasoning.dev/v1alpha1",
        "kind": "ReasoningRun",
        "metadata": {"name": "tiny", "namespace": "default", "generation": generation, "uid": "0f1e2d3c"},
        "spec": {"suspend": suspend, "storage": {"size": "2Gi"}},
    }
    if status is not None:
        run["status"] = status
    return run


def condition(kind: str, status: str, reason: str, message: str = "") -> Manifest:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": 1,
        "lastTransitionTime": "2026-11-25T10:00:00Z",
    }


def run_status(
    phase: str, *conditions: Manifest, stage: str | None = None, progress: str | None = None
) -> Manifest:
    status: Manifest = {"phase": phase, "observedGeneration": 1, "conditions": list(conditions)}
    if stage is not None:
        status["currentStage"] = stage
        status["stages"] = [{"name": stage, "phase": phase, "attempts": 1}]
    if progress is not None:
        status["progress"] = progress
    return status


RECONCILING = condition("Reconciling", "True", "StageRunning", "running the stage")
NOT_READY = condition("Ready", "False", "StageRunning", "running the stage")
TRAIN_FAILED = "stage train failed 3 times: PyTorchJob tiny-train-3 BackoffLimitExceeded"

# (id, run, Argo CD status, Argo CD message, Flux status)
HEALTH_CASES: list[tuple[str, Manifest, str, str, str]] = [
    # No status at all. cel-python's has() is false on a missing `status`; cel-go (Flux) fails to evaluate
    # instead, which kstatus reports as Unknown. Either way Flux keeps polling: never current, never failed.
    (
        "no-status",
        reasoning_run(),
        "Progressing",
        "waiting for the operator to pick up the run",
        "InProgress",
    ),
    (
        "stale-observed-generation",
        reasoning_run(2, run_status("Running", RECONCILING, NOT_READY, stage="filter", progress="120/400")),
        "Progressing",
        "waiting for the operator to observe generation 2",
        "InProgress",
    ),
    (
        "status-without-observed-generation",
        reasoning_run(1, {"phase": "Pending"}),
        "Progressing",
        "waiting for the operator to observe generation 1",
        "InProgress",
    ),
    (
        "pending-before-a-stage",
        reasoning_run(
            1, run_status("Pending", condition("Reconciling", "True", "Creating", "creating storage"))
        ),
        "Progressing",
        "creating storage",
        "InProgress",
    ),
    (
        "running-with-progress",
        reasoning_run(1, run_status("Running", RECONCILING, NOT_READY, stage="filter", progress="120/400")),
        "Progressing",
        "stage filter: 120/400",
        "InProgress",
    ),
    (
        "running-without-progress",
        reasoning_run(1, run_status("Running", RECONCILING, NOT_READY, stage="train")),
        "Progressing",
        "stage train",
        "InProgress",
    ),
    (
        "failed-with-stalled",
        reasoning_run(
            1,
            run_status(
                "Failed",
                condition("Stalled", "True", "BackoffLimitExceeded", TRAIN_FAILED),
                condition("Ready", "False", "BackoffLimitExceeded", TRAIN_FAILED),
                stage="train",
            ),
        ),
        "Degraded",
        TRAIN_FAILED,
        "Failed",
    ),
    (
        "stalled-while-running",
        reasoning_run(
            1,
            run_status(
                "Running",
                condition("Stalled", "True", "ImagePullBackOff", "teacher image cannot be pulled"),
                stage="generate",
            ),
        ),
        "Degraded",
        "teacher image cannot be pulled",
        "Failed",
    ),
    (
        "failed-without-stalled",
        reasoning_run(1, run_status("Failed", condition("Ready", "False", "StageFailed", "format failed"))),
        "Degraded",
        "format failed",
        "Failed",
    ),
    (
        "suspended",
        reasoning_run(
            2, {**run_status("Suspended", stage="generate"), "observedGeneration": 2}, suspend=True
        ),
        "Suspended",
        "suspended at stage generate",
        "InProgress",
    ),
    (
        "suspend-requested-and-observed",
        reasoning_run(1, run_status("Running", RECONCILING, stage="rewrite"), suspend=True),
        "Suspended",
        "suspended at stage rewrite",
        "InProgress",
    ),
    (
        "succeeded",
        reasoning_run(
            1,
            run_status(
                "Succeeded",
                condition("Ready", "True", "Succeeded", "all 7 stages succeeded"),
                condition("Reconciling", "False", "Succeeded"),
                condition("Stalled", "False", "Succeeded"),
                stage="evaluate",
                progress="4/4",
            ),
        ),
        "Healthy",
        "all 7 stages succeeded",
        "Current",
    ),
    (
        "succeeded-before-ready",
        reasoning_run(1, run_status("Succeeded", NOT_READY, stage="evaluate", progress="4/4")),
        "Progressing",
        "stage evaluate: 4/4",
        "InProgress",
    ),
]
HEALTH_PARAMS = [
    pytest.param(run, argo, message, flux, id=case) for case, run, argo, message, flux in HEALTH_CASES
]


@functools.cache
def argocd_health_check() -> Any:
    # Argo CD runs its checks in gopher-lua, a Lua 5.1; its script is the body of a function of `obj`
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    script = (CHART / "health" / "argocd.lua").read_text()
    return runtime, runtime.execute(f"return function(obj)\n{script}\nend")


def argocd_health(run: Manifest) -> tuple[str, str]:
    runtime, check = argocd_health_check()
    result = check(runtime.table_from(run, recursive=True))
    return str(result["status"]), str(result["message"])


@functools.cache
def flux_programs() -> dict[str, Any]:
    (entry,) = yaml.safe_load((CHART / "health" / "flux.yaml").read_text())
    assert (entry["apiVersion"], entry["kind"]) == ("reasoning.dev/v1alpha1", "ReasoningRun")
    environment = celpy.Environment()
    return {
        key: environment.program(environment.compile(entry[key]))
        for key in ("inProgress", "failed", "current")
    }


def flux_health(run: Manifest) -> str:
    """kustomize-controller's order (fluxcd/pkg runtime/cel StatusEvaluator): generation, then the three."""
    status: Mapping[str, Any] = run.get("status", {})
    if "observedGeneration" in status and status["observedGeneration"] != run["metadata"]["generation"]:
        return "InProgress"
    activation = {key: json_to_cel(value) for key, value in run.items()}
    for key, verdict in (("inProgress", "InProgress"), ("failed", "Failed"), ("current", "Current")):
        try:
            result = flux_programs()[key].evaluate(activation)
        except CELEvalError:
            return "Unknown"  # an evaluation error: kstatus reports Unknown and Flux polls again
        if isinstance(result, CELEvalError):
            return "Unknown"
        assert isinstance(result, celtypes.BoolType), f"{key} gave {result!r}, not a bool"
        if result:
            return verdict
    return "InProgress"


@pytest.mark.parametrize(("run", "argo_status", "argo_message", "flux_status"), HEALTH_PARAMS)
def test_argocd_health_check_reads_the_run_status(
    run: Manifest, argo_status: str, argo_message: str, flux_status: str
) -> None:
    assert argocd_health(run) == (argo_status, argo_message)


@pytest.mark.parametrize(("run", "argo_status", "argo_message", "flux_status"), HEALTH_PARAMS)
def test_flux_health_check_reads_the_run_status(
    run: Manifest, argo_status: str, argo_message: str, flux_status: str
) -> None:
    assert flux_health(run) == flux_status
