"""What the operator's watches have seen: every run and, per run, its children, as plain dicts.

Reconciling reads only this (no list requests per reconcile): the watches keep it current, and what
the operator writes itself goes in at once, so the next reconcile does not wait for the watch to echo it.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping
from typing import Any

from reasoning_operator.naming import LABEL_RUN

RunKey = tuple[str, str]  # namespace, name


def _key(body: Mapping[str, Any]) -> tuple[str, str]:
    metadata = body.get("metadata") or {}
    return metadata.get("namespace", ""), metadata.get("name", "")


def _newer(incoming: Mapping[str, Any], held: Mapping[str, Any] | None) -> bool:
    """resourceVersions are opaque, but etcd's are increasing integers; a watch event older than what
    the operator itself just wrote must not replace it."""
    if held is None:
        return True
    new, old = (b.get("metadata", {}).get("resourceVersion", "") for b in (incoming, held))
    if new.isdigit() and old.isdigit():
        return int(new) >= int(old)
    return True


class Cache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[RunKey, dict[str, Any]] = {}
        self._children: dict[RunKey, dict[tuple[str, str], dict[str, Any]]] = {}

    def put_run(self, body: Mapping[str, Any]) -> None:
        with self._lock:
            key = _key(body)
            if _newer(body, self._runs.get(key)):
                self._runs[key] = copy.deepcopy(dict(body))

    def drop_run(self, body: Mapping[str, Any]) -> None:
        with self._lock:
            self._runs.pop(_key(body), None)

    def run(self, key: RunKey) -> dict[str, Any] | None:
        with self._lock:
            held = self._runs.get(key)
            return copy.deepcopy(held) if held is not None else None

    def runs(self) -> list[RunKey]:
        with self._lock:
            return list(self._runs)

    @staticmethod
    def owner_of(body: Mapping[str, Any]) -> RunKey | None:
        metadata = body.get("metadata") or {}
        run = (metadata.get("labels") or {}).get(LABEL_RUN)
        return (metadata.get("namespace", ""), run) if run else None

    def put_child(self, body: Mapping[str, Any]) -> RunKey | None:
        owner = self.owner_of(body)
        if owner is None:
            return None
        with self._lock:
            children = self._children.setdefault(owner, {})
            key = (body.get("kind", ""), body["metadata"]["name"])
            if _newer(body, children.get(key)):
                children[key] = copy.deepcopy(dict(body))
        return owner

    def drop_child(self, body: Mapping[str, Any]) -> RunKey | None:
        owner = self.owner_of(body)
        if owner is not None:
            with self._lock:
                self._children.get(owner, {}).pop((body.get("kind", ""), body["metadata"]["name"]), None)
        return owner

    def forget_child(self, owner: RunKey, kind: str, name: str) -> None:
        """A child the operator just deleted: not to be deleted again before the watch says it is gone."""
        with self._lock:
            self._children.get(owner, {}).pop((kind, name), None)

    def children(self, key: RunKey) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._children.get(key, {}).values())
