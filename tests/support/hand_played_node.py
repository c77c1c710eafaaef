"""A node whose kubelet the test plays, so that the test can make it fall silent as a crashed or cut-off
machine does. kwok's nodes keep reporting until kwok stops, and kwok serves every test at once; this node
is the test's own. Everything that reacts to the silence is the real control plane's: the node lifecycle
controller marks the node and its pods, the scheduler places pods on it, the pod garbage collector fails
the pods of a deleted node."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.waiting import wait_for

LEASE_NAMESPACE = "kube-node-lease"
POOL_LABEL = "reasoning.dev/pool"
RENEW_EVERY_SECONDS = 5.0


def _micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class HandPlayedNode:
    """A CPU node in a pool of its own (its name is the pool's label value): it reports Ready and renews its
    Lease as a kubelet does until `fall_silent`; `start` runs a pod bound to it, as its kubelet would."""

    def __init__(self, api: client.ApiClient, name: str) -> None:
        self.name = name
        self.core = client.CoreV1Api(api)
        self.leases = client.CoordinationV1Api(api)
        self._silent = threading.Event()
        self._renewer = threading.Thread(target=self._renew, name=f"kubelet-{name}", daemon=True)

    @property
    def pool(self) -> dict[str, Any]:
        return {"name": "cpu", "nodeSelector": {POOL_LABEL: self.name}}

    def register(self) -> None:
        self.core.create_node(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": self.name,
                    "labels": {
                        "kubernetes.io/hostname": self.name,
                        "kubernetes.io/os": "linux",
                        POOL_LABEL: self.name,
                    },
                },
            }
        )
        self.leases.create_namespaced_lease(
            LEASE_NAMESPACE,
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name},
                "spec": {"holderIdentity": self.name, "leaseDurationSeconds": 40, "renewTime": _micro_time()},
            },
        )
        now = datetime.now(UTC).isoformat()
        resources = {"cpu": "32", "memory": "128Gi", "ephemeral-storage": "1Ti", "pods": "110"}
        self.core.patch_node_status(
            self.name,
            {
                "status": {
                    "capacity": resources,
                    "allocatable": resources,
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "KubeletReady",
                            "message": "kubelet is posting ready status (played by the test)",
                            "lastHeartbeatTime": now,
                            "lastTransitionTime": now,
                        }
                    ],
                    "addresses": [{"type": "Hostname", "address": self.name}],
                }
            },
        )
        self._renewer.start()

        def schedulable() -> bool:
            # the API server registers a node tainted not-ready; the node lifecycle controller lifts the taint
            # once it has seen the node Ready
            return not (self.core.read_node(self.name).spec.taints or [])

        wait_for(schedulable, timeout=60, what=f"node {self.name} to be Ready and untainted")

    def _renew(self) -> None:
        while not self._silent.wait(RENEW_EVERY_SECONDS):
            with suppress(ApiException):
                self.leases.patch_namespaced_lease(
                    self.name, LEASE_NAMESPACE, {"spec": {"renewTime": _micro_time()}}
                )

    def bound_pod(self, namespace: str, selector: str) -> client.V1Pod:
        """The first pod matching the selector that the scheduler bound to this node."""

        def bound() -> client.V1Pod | None:
            pods = self.core.list_namespaced_pod(namespace, label_selector=selector).items
            return next((p for p in pods if p.spec.node_name == self.name), None)

        found: client.V1Pod = wait_for(bound, timeout=60, what=f"a pod ({selector}) bound to {self.name}")
        return found

    def start(self, pod: client.V1Pod) -> None:
        """Report the pod's containers running and ready, as the kubelet does once it started them."""
        now = datetime.now(UTC).isoformat()
        conditions = [
            {"type": kind, "status": "True", "lastTransitionTime": now}
            for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
        ]
        containers = [
            {
                "name": container.name,
                "image": container.image,
                "imageID": "",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": now}},
            }
            for container in pod.spec.containers
        ]
        initialized = [
            {
                "name": container.name,
                "image": container.image,
                "imageID": "",
                "ready": True,
                "restartCount": 0,
                "state": {
                    "terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}
                },
            }
            for container in pod.spec.init_containers or []
        ]
        self.core.patch_namespaced_pod_status(
            pod.metadata.name,
            pod.metadata.namespace,
            {
                "status": {
                    "phase": "Running",
                    "conditions": conditions,
                    "containerStatuses": containers,
                    "initContainerStatuses": initialized,
                    "hostIP": "10.254.0.1",
                    "podIP": "10.254.0.2",
                    "startTime": now,
                }
            },
        )

    def fall_silent(self) -> None:
        """The kubelet stops: no more Lease renewals, no more status."""
        self._silent.set()
        self._renewer.join()

    def remove(self) -> None:
        """Delete the Node, as an administrator (or a cloud's node controller) does for a machine gone."""
        if self._renewer.is_alive():
            self.fall_silent()
        with suppress(ApiException):
            self.core.delete_node(self.name)
        with suppress(ApiException):
            self.leases.delete_namespaced_lease(self.name, LEASE_NAMESPACE)


@contextmanager
def hand_played_node(api: client.ApiClient, name: str) -> Iterator[HandPlayedNode]:
    node = HandPlayedNode(api, name)
    try:
        node.register()
        yield node
    finally:
        node.remove()
