"""Recorded tools for offline scenarios, and what every tool answered (for evidence checks).

A model's call is answered by the scenario's recording whose `call` fields it has (see
docs/evals.md, Recordings); a call nothing matches gets the error a real tool would give for an
object that is not there.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel

from punchingfist.evals.scenarios import Recording
from punchingfist.runtime.agent.toolbox import Executor, Toolbox
from punchingfist.runtime.tools import kubectl, kubectl_calls
from punchingfist.runtime.tools.base import ToolResult, refused

_KINDS = {
    "po": "pod",
    "pods": "pod",
    "deploy": "deployment",
    "deployments": "deployment",
    "svc": "service",
    "services": "service",
    "cm": "configmap",
    "configmaps": "configmap",
    "ep": "endpoints",
    "rs": "replicaset",
    "replicasets": "replicaset",
    "sts": "statefulset",
    "statefulsets": "statefulset",
    "ds": "daemonset",
    "daemonsets": "daemonset",
    "no": "node",
    "nodes": "node",
    "ns": "namespace",
    "namespaces": "namespace",
    "pvc": "persistentvolumeclaim",
    "persistentvolumeclaims": "persistentvolumeclaim",
    "pv": "persistentvolume",
    "persistentvolumes": "persistentvolume",
    "hpa": "horizontalpodautoscaler",
    "horizontalpodautoscalers": "horizontalpodautoscaler",
    "ing": "ingress",
    "ingresses": "ingress",
    "quota": "resourcequota",
    "resourcequotas": "resourcequota",
    "ev": "event",
    "events": "event",
    "jobs": "job",
    "cronjobs": "cronjob",
    "cj": "cronjob",
    "secrets": "secret",
}
"""kubectl's short names and plurals, to their kind."""
_NOT_FOUND = {
    "kubectl": "Error from server (NotFound): the server has no object or output for this call",
    "promql": "the query returned no data",
    "curl": "curl: (7) Failed to connect: connection refused",
}


def kind(resource: str) -> str:
    """A resource type as its singular kind (`pods`, `po` -> `pod`)."""
    name = resource.lower().split(".")[0]
    return _KINDS.get(name, name)


def _same(field_name: str, wanted: Any, given: Any) -> bool:
    if isinstance(wanted, str) and wanted.startswith("~"):
        return isinstance(given, str) and wanted[1:].lower() in given.lower()
    if field_name == "resource" and isinstance(wanted, str) and isinstance(given, str):
        return kind(wanted) == kind(given)
    return bool(wanted == given)


def matches(recorded: Mapping[str, Any], call: Mapping[str, Any]) -> bool:
    """The call has every field of the recording, each equal (see `_same`)."""
    return all(k in call and _same(k, v, call[k]) for k, v in recorded.items())


def answer(recordings: Sequence[Recording], call: Mapping[str, Any]) -> Recording | None:
    """The most specific recording the call matches, or None."""
    fitting = [r for r in recordings if matches(r.call, call)]
    return max(fitting, key=lambda r: len(r.call)) if fitting else None


def _key(call: Mapping[str, Any]) -> str:
    return json.dumps(dict(call), sort_keys=True, default=str)


@dataclass
class Outputs:
    """What each call answered, by the call's arguments: the Toolbox refuses a repeated call
    before it reaches an executor, so one call is answered once."""

    by_call: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def keep(self, call: Mapping[str, Any], result: ToolResult) -> None:
        with self._lock:
            self.by_call[_key(call)] = result.output or result.error or ""

    def of(self, call: Mapping[str, Any]) -> str:
        return self.by_call.get(_key(call), "")

    def watching(self, executor: Executor) -> Executor:
        def execute(call: BaseModel) -> ToolResult:
            result = executor(call)
            self.keep(call.model_dump(exclude_none=True), result)
            return result

        return execute


def recorded(
    recordings: Sequence[Recording], tool: str, policy: kubectl.KubectlPolicy | None = None
) -> Executor:
    """Answers from `recordings`; kubectl's calls are checked against the read-only `policy`
    first, as the real tool checks them."""
    policy = policy or kubectl.KubectlPolicy(approved=False)

    def execute(call: BaseModel) -> ToolResult:
        arguments = call.model_dump(exclude_none=True)
        details: dict[str, Any] = {}
        if isinstance(call, kubectl_calls.KubectlCall):
            details["argv"] = ["kubectl", *kubectl.argv(call)]
            reason = kubectl.check(call, policy)
            if reason is not None:
                return replace(refused(reason), details=details)
        found = answer(recordings, arguments)
        if found is None:
            error = _NOT_FOUND.get(tool, "no output recorded")
            return ToolResult(status="error", error=error, details=details)
        return ToolResult(
            status=found.status, output=found.output, error=found.error, details=details
        )

    return execute


def recorded_toolbox(
    recordings: Sequence[Recording], tools: Sequence[str], namespaces: Sequence[str] | None = None
) -> Toolbox:
    """The step's tools, answered from recordings. Write verbs can be expressed (a model that
    would change the cluster is caught by the scoring) and are refused, as in a read-only
    step; so are namespaces outside the step's `allowedNamespaces`."""
    policy = kubectl.KubectlPolicy(
        approved=False, allowed_namespaces=frozenset(namespaces) if namespaces else None
    )
    executors = {name: recorded(recordings, name, policy) for name in tools}
    return Toolbox(executors=executors, writes=True)
