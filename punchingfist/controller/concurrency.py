"""The ConfigMap `punchingfist-concurrency` that sizes the semaphores of compiled templates.

With `OperatorConfig.spec.concurrency` set, each namespace's ConfigMap holds `global` and one
`workflow.<name>` key per Workflow of the namespace (docs/operations.md, "Concurrency"). The
controller writes it, whole, before it applies a template that names it: Argo fails a run whose
semaphore key is missing. Written under a per-namespace lock from the live index of Workflows,
so two Workflows reconciled at once cannot drop each other's key; written again only when its
data changes (the operator owns it: no Workflow is its owner, so it outlives them).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from punchingfist.api import OperatorConfig, parse_resource
from punchingfist.api.limits import ConcurrencyConfig
from punchingfist.compiler.concurrency import configmap
from punchingfist.controller.reconciling import as_resource
from punchingfist.errors import PunchingFistError
from punchingfist.kube import Body, Kube


def concurrency_of(config: Body | None) -> ConcurrencyConfig | None:
    """The limits an OperatorConfig body sets; None when unset or invalid (its Workflows then
    fail to compile, saying why)."""
    if config is None or not (config.get("spec") or {}).get("concurrency"):
        return None
    try:
        parsed = parse_resource(as_resource(config))
    except PunchingFistError:
        return None
    return parsed.spec.concurrency if isinstance(parsed, OperatorConfig) else None


@dataclass
class LimitsConfigMaps:
    """Keeps each namespace's ConfigMap in line with its OperatorConfig and Workflows."""

    kube: Kube
    _written: dict[str, dict[str, str]] = field(default_factory=dict)
    _locks: dict[str, threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def ensure(
        self, namespace: str, config: Body | None, workflows: Callable[[], Iterable[str]]
    ) -> None:
        """Apply the namespace's ConfigMap if its data changed; `workflows` lists the names
        (read under the lock, so the newest index counts). KubeError goes to the caller."""
        limits = concurrency_of(config)
        if limits is None:
            return
        with self._guard:
            lock = self._locks.setdefault(namespace, threading.Lock())
        with lock:
            document = configmap(limits, workflows(), namespace)
            if self._written.get(namespace) == document["data"]:
                return
            self.kube.apply(document)
            self._written[namespace] = document["data"]
