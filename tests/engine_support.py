"""Helpers for engine tests: small manifests whose containers are `python -c` processes."""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from punchingfist.engine import (
    ApprovalDecision,
    ApprovalRequest,
    NodeStatus,
    RunInfo,
    RunResult,
    SilentObserver,
)


def python(name: str, code: str, **extra: Any) -> dict[str, Any]:
    """A container template that runs `python -c code` (plus any template fields)."""
    template: dict[str, Any] = {
        "name": name,
        "container": {"image": "python:3.11", "command": [sys.executable, "-c", code]},
    }
    env = extra.pop("env", None)
    if env is not None:
        template["container"]["env"] = env
    template.update(extra)
    return template


def result_output(default: str | None = "{}", global_name: str | None = None) -> dict[str, Any]:
    """Outputs: `result` read from /tmp/out/result.txt (the attempt dir's result.txt)."""
    value_from: dict[str, Any] = {"path": "/tmp/out/result.txt"}
    if default is not None:
        value_from["default"] = default
    parameter: dict[str, Any] = {"name": "result", "valueFrom": value_from}
    if global_name:
        parameter["globalName"] = global_name
    return {"parameters": [parameter]}


WRITE = "import sys; open('result.txt', 'w').write(sys.argv[1] if len(sys.argv) > 1 else 'ok')"


def dag(tasks: list[dict[str, Any]], name: str = "main", **extra: Any) -> dict[str, Any]:
    return {"name": name, "dag": {"tasks": tasks}, **extra}


def manifest(
    templates: list[dict[str, Any]], *, entrypoint: str = "main", **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": {"name": "test"},
        "spec": {"entrypoint": entrypoint, "templates": templates, **spec},
    }


@dataclass
class Recorder(SilentObserver):
    """Records every event with the time it happened; thread-safe enough for one loop."""

    events: list[tuple[str, str, datetime]] = field(default_factory=list)
    requests: list[ApprovalRequest] = field(default_factory=list)
    decisions: list[ApprovalDecision | None] = field(default_factory=list)
    retries: list[tuple[str, float]] = field(default_factory=list)
    result: RunResult | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _add(self, kind: str, name: str) -> None:
        with self._lock:
            self.events.append((kind, name, datetime.now()))

    def on_run_started(self, run: RunInfo) -> None:
        self._add("run-started", run.name)

    def on_node_started(self, run: RunInfo, node: NodeStatus) -> None:
        self._add("started", node.display_name)

    def on_node_retrying(self, run: RunInfo, node: NodeStatus, delay: float) -> None:
        self.retries.append((node.display_name, delay))

    def on_node_finished(self, run: RunInfo, node: NodeStatus) -> None:
        self._add(f"finished:{node.phase}", node.display_name)

    def on_approval_requested(self, run: RunInfo, request: ApprovalRequest) -> None:
        self.requests.append(request)

    def on_approval_decided(
        self, run: RunInfo, request: ApprovalRequest, decision: ApprovalDecision | None
    ) -> None:
        self.decisions.append(decision)

    def on_run_finished(self, run: RunInfo, result: RunResult) -> None:
        self.result = result

    def index(self, kind: str, name: str) -> int:
        """Position of the first `kind` event of node `name` (kind `finished` matches any phase)."""
        for position, (event, node, _) in enumerate(self.events):
            if node == name and (event == kind or event.startswith(kind + ":")):
                return position
        raise AssertionError(f"no {kind} event for {name}: {self.events}")
