"""Fixtures for tests against a real API server: one cluster per session, one namespace per test."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client, config

from tests.support.cluster import ClusterTarget, EmbeddedCluster, choose_target
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
