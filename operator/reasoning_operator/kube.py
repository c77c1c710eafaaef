"""The operator's few writes to the API server, over the kubernetes client's REST layer.

The operator creates a fixed set of kinds; a table of their paths keeps this free of API discovery (no
start-up requests, no RBAC for discovery beyond kopf's own). Every request is counted, for the metrics
and the benchmark's "API requests per run".
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from kubernetes import client
from kubernetes.client.rest import ApiException
from reasoning_pipeline.spec import API_GROUP, API_VERSION

from reasoning_operator.observe import WORKLOAD_KINDS, ChildRef
from reasoning_operator.status import Event

PLURALS = {
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Service"): "services",
    ("v1", "PersistentVolumeClaim"): "persistentvolumeclaims",
    ("v1", "Pod"): "pods",
    ("batch/v1", "Job"): "jobs",
    ("apps/v1", "Deployment"): "deployments",
    ("kubeflow.org/v1", "PyTorchJob"): "pytorchjobs",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networkpolicies",
    ("kueue.x-k8s.io/v1beta2", "Workload"): "workloads",
    (f"{API_GROUP}/{API_VERSION}", "ReasoningRun"): "reasoningruns",
}
MANAGER = "reasoning-operator"


def collection_path(api_version: str, kind: str, namespace: str) -> str:
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{prefix}/namespaces/{namespace}/{PLURALS[(api_version, kind)]}"


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _call(
        self, method: str, path: str, body: Any = None, content_type: str | None = None, *, text: bool = False
    ) -> Any:
        with self._lock:
            self.requests[method] += 1
        accept = "*/*" if text else "application/json"  # a log is served as text/plain
        headers = {"Accept": accept, "Content-Type": content_type or "application/json"}
        method, url, headers, body, _ = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=[("fieldManager", MANAGER)] if method in ("POST", "PATCH") else [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(method, url, header_params=headers, body=body)
        data = response.read()
        if not 200 <= response.status < 300:
            raise ApiException(http_resp=response, body=data.decode(errors="replace") if data else None)
        if text:
            return data.decode(errors="replace")
        return json.loads(data) if data else None

    def create(self, namespace: str, manifest: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """Create a child; None when it exists already (its deterministic name makes that a no-op)."""
        path = collection_path(manifest["apiVersion"], manifest["kind"], namespace)
        try:
            created: Mapping[str, Any] = self._call("POST", path, dict(manifest))
        except ApiException as error:
            if error.status == 409:
                return None
            raise
        return created

    def _get(self, path: str) -> Mapping[str, Any] | None:
        """A GET whose 404 is an answer: None."""
        try:
            found: Mapping[str, Any] = self._call("GET", path)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return found

    def read(self, namespace: str, manifest: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The object of `manifest`'s kind and name as it is now; None when there is none."""
        path = collection_path(manifest["apiVersion"], manifest["kind"], namespace)
        return self._get(f"{path}/{manifest['metadata']['name']}")

    def list(
        self, namespace: str, api_version: str, kind: str, label_selector: str
    ) -> list[Mapping[str, Any]] | None:
        """The objects of a kind that match the selector, each with its kind; None when the cluster does
        not serve the kind (a CRD that is not installed)."""
        path = collection_path(api_version, kind, namespace)
        found = self._get(f"{path}?labelSelector={quote(label_selector)}")
        if found is None:
            return None
        return [{"apiVersion": api_version, "kind": kind, **item} for item in found.get("items") or []]

    def pod_log(self, namespace: str, pod: str, container: str, *, lines: int, limit_bytes: int) -> str:
        """The last `lines` lines of a container's log (at most `limit_bytes`); empty when it cannot be
        read (the pod or its log gone, the container not started, the node's kubelet out of reach)."""
        path = (
            f"/api/v1/namespaces/{namespace}/pods/{pod}/log?container={quote(container)}"
            f"&tailLines={lines}&limitBytes={limit_bytes}"
        )
        try:
            log: str = self._call("GET", path, text=True)
        except ApiException:
            # a node whose kubelet cannot be reached (kwok's), a container gone: no progress to read,
            # which is no reason to fail a reconcile
            return ""
        return log

    def merge_patch(
        self, namespace: str, child: ChildRef, patch: Mapping[str, Any], *, subresource: str = ""
    ) -> Any:
        path = f"{collection_path(child.api_version, child.kind, namespace)}/{child.name}"
        if subresource:
            path += f"/{subresource}"
        return self._call("PATCH", path, dict(patch), "application/merge-patch+json")

    def delete(self, namespace: str, child: ChildRef) -> None:
        """A workload (Job, PyTorchJob) goes in the foreground: it stays, being deleted, until its pods
        are gone, so that no next attempt starts beside a pod of this one still writing the stage's
        folder; anything else goes at once, its dependents after it."""
        path = f"{collection_path(child.api_version, child.kind, namespace)}/{child.name}"
        propagation = "Foreground" if child.kind in WORKLOAD_KINDS else "Background"
        try:
            self._call("DELETE", path, {"propagationPolicy": propagation})
        except ApiException as error:
            if error.status != 404:
                raise

    def post_event(self, run: Mapping[str, Any], event: Event) -> None:
        """A core/v1 Event on the run (what `kubectl describe rr` lists)."""
        metadata = run["metadata"]
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{metadata['name']}.", "namespace": metadata["namespace"]},
            "involvedObject": {
                "apiVersion": run.get("apiVersion", f"{API_GROUP}/{API_VERSION}"),
                "kind": run.get("kind", "ReasoningRun"),
                "name": metadata["name"],
                "namespace": metadata["namespace"],
                "uid": metadata.get("uid"),
            },
            "type": event.type,
            "reason": event.reason,
            "message": event.message[:1024],
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "source": {"component": MANAGER},
            "reportingComponent": MANAGER,
        }
        self._call("POST", f"/api/v1/namespaces/{metadata['namespace']}/events", body)
