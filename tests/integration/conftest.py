"""Fixtures for tests against a real API server: one cluster per session, one namespace per test."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from reasoning_operator.crd import custom_resource_definition

from tests.support.cluster import ClusterTarget, EmbeddedCluster, choose_target
from tests.support.invalid_runs import INVALID, run
from tests.support.operator import OperatorProcess, installed_chart, operator_process
from tests.support.waiting import wait_for


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def cluster() -> Iterator[ClusterTarget]:
    target = choose_target(os.environ)
    embedded = EmbeddedCluster(os.environ) if target.embedded else None
    if embedded is not None:
        embedded.up()
    try:
        yield target
    finally:
        # runs when tests fail too: a session that started the cluster leaves nothing running
        if embedded is not None:
            embedded.down_if_started_here()


@pytest.fixture(scope="session")
def api(cluster: ClusterTarget) -> client.ApiClient:
    return config.new_client_from_config(config_file=cluster.kubeconfig)


@pytest.fixture(scope="session")
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture(scope="session")
def batch(api: client.ApiClient) -> client.BatchV1Api:
    return client.BatchV1Api(api)


@pytest.fixture(scope="session")
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


@pytest.fixture(scope="session")
def custom(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


@pytest.fixture
def namespace(core: client.CoreV1Api, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test, deleted (with everything in it) afterwards."""
    stem = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem}-{uuid.uuid4().hex[:6]}"
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"reasoning.dev/test": "true"}))
    )
    # Pods cannot be created until the ServiceAccount controller has made the namespace's `default`.
    wait_for(
        lambda: core.list_namespaced_service_account(name, field_selector="metadata.name=default").items,
        timeout=30,
        what=f"the default ServiceAccount in {name}",
    )
    try:
        yield name
    finally:
        core.delete_namespace(name)


@pytest.fixture(scope="session")
def reasoning_crd(api: client.ApiClient) -> None:
    """The CRD as `make crds` generates it now: Helm installs a chart's CRDs only when they are absent."""
    extensions = client.ApiextensionsV1Api(api)
    crd = custom_resource_definition()
    name = crd["metadata"]["name"]
    try:
        existing = extensions.read_custom_resource_definition(name)
        crd["metadata"]["resourceVersion"] = existing.metadata.resource_version
        extensions.replace_custom_resource_definition(name, crd)
    except ApiException as error:
        if error.status != 404:
            raise
        extensions.create_custom_resource_definition(crd)

    def established() -> bool:
        conditions = extensions.read_custom_resource_definition(name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_for(established, timeout=30, what=f"CRD {name} Established")
    # An updated CRD's validation reaches the API server's handlers a moment after the update: probe with
    # server-side dry runs until every invalid example is refused.
    custom = client.CustomObjectsApi(api)

    def refused(spec: dict[str, Any]) -> bool:
        try:
            custom.create_namespaced_custom_object(
                "reasoning.dev", "v1alpha1", "default", "reasoningruns", run("probe", spec), dry_run="All"
            )
        except ApiException as error:
            return bool(error.status == 422)
        return False

    wait_for(
        lambda: all(refused(spec) for _, spec, _ in INVALID),
        timeout=30,
        what=f"CRD {name}'s current validation rules to be served",
    )


@pytest.fixture
def restricted(core: client.CoreV1Api, namespace: str) -> str:
    core.patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    return namespace


@pytest.fixture
def operator(
    cluster: ClusterTarget, api: client.ApiClient, restricted: str, reasoning_crd: None
) -> Iterator[OperatorProcess]:
    if not cluster.embedded:
        pytest.skip("pods finish on kwok's cues only on the embedded cluster")
    with (
        installed_chart(cluster, restricted, watch=[restricted]) as release,
        operator_process(api, release) as running,
    ):
        yield running
