"""kubectl (our own build) against the cluster, and the checks the waits poll."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hack.cluster.processes import run


def all_established(listing: dict[str, Any], names: Iterable[str]) -> bool:
    """True when `kubectl get crd NAMES -o json` shows every CRD Established."""
    found = {
        (item.get("metadata") or {}).get("name"): _condition(item, "Established")
        for item in _items(listing)
    }
    return all(found.get(name) == "True" for name in names)


def all_conditions(listing: dict[str, Any], kind: str) -> bool:
    """True when `kubectl get ... -o json` found objects and each has condition `kind` True
    (what `kubectl wait --for=condition=...` waits for, without its error while an object has
    no status yet)."""
    items = _items(listing)
    return bool(items) and all(_condition(item, kind) == "True" for item in items)


def _items(listing: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (
        listing.get("items", []) if listing.get("kind", "").endswith("List") else [listing]
    )
    return items


def _condition(item: dict[str, Any], kind: str) -> str | None:
    for condition in (item.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return str(condition.get("status"))
    return None


def deployment_ready(item: dict[str, Any]) -> bool:
    """Every replica of the newest generation is updated and available."""
    spec, status = item.get("spec") or {}, item.get("status") or {}
    wanted = spec.get("replicas", 1)
    return bool(
        status.get("observedGeneration", 0) >= (item.get("metadata") or {}).get("generation", 1)
        and status.get("updatedReplicas", 0) == wanted
        and status.get("availableReplicas", 0) == wanted
        and status.get("replicas", 0) == wanted
    )


def node_ready(item: dict[str, Any]) -> bool:
    return _condition(item, "Ready") == "True"


def pod_problems(pods: dict[str, Any]) -> list[str]:
    """Why pods are not running, in a line each (for the message of a wait that failed)."""
    lines = []
    for pod in pods.get("items") or []:
        name = (pod.get("metadata") or {}).get("name")
        status = pod.get("status") or {}
        reasons = [
            f"{c.get('name')}: {state.get('reason')} {state.get('message') or ''}".strip()
            for c in status.get("containerStatuses") or []
            for state in [(c.get("state") or {}).get("waiting") or {}]
            if state
        ]
        lines.append(f"{name}: {status.get('phase')} {'; '.join(reasons)}".rstrip())
    return lines


@dataclass(frozen=True)
class Kubectl:
    """kubectl with the cluster's admin kubeconfig."""

    binary: str
    kubeconfig: Path

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = 300) -> str:
        return run(
            [self.binary, "--kubeconfig", os.fspath(self.kubeconfig), *args],
            what=f"kubectl {args[0]}",
            stdin=stdin,
            timeout=timeout,
        )

    def json(self, *args: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self("get", "-o", "json", *args))
        return result

    def apply(
        self, documents: Sequence[dict[str, Any]] | str, *, server_side: bool = False
    ) -> None:
        text = (
            documents
            if isinstance(documents, str)
            else json.dumps({"apiVersion": "v1", "kind": "List", "items": list(documents)})
        )
        flags = ["--server-side", "--force-conflicts"] if server_side else []
        self("apply", *flags, "-f", "-", stdin=text)
