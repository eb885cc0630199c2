"""Watching a run: the `RunObserver` protocol and an observer that prints progress."""

from __future__ import annotations

import sys
from typing import Protocol, TextIO

from punchingfist.engine.approvals import ApprovalDecision, ApprovalRequest
from punchingfist.engine.phases import FAILED, SUCCEEDED
from punchingfist.engine.results import NodeStatus, RunInfo, RunResult


class RunObserver(Protocol):
    """Callbacks from the engine, called on its event loop in the order things happen.

    They should return quickly (record, print, enqueue). An exception raised here is logged
    and does not stop the run.
    """

    def on_run_started(self, run: RunInfo) -> None: ...

    def on_node_started(self, run: RunInfo, node: NodeStatus) -> None:
        """A node is Running (for Pods: an attempt's process has started)."""
        ...

    def on_node_retrying(self, run: RunInfo, node: NodeStatus, delay: float) -> None:
        """An attempt ended unsuccessfully; the next starts after `delay` seconds."""
        ...

    def on_node_finished(self, run: RunInfo, node: NodeStatus) -> None:
        """The node reached its final phase (also for Skipped and Omitted nodes)."""
        ...

    def on_approval_requested(self, run: RunInfo, request: ApprovalRequest) -> None: ...

    def on_approval_decided(
        self, run: RunInfo, request: ApprovalRequest, decision: ApprovalDecision | None
    ) -> None:
        """`decision` None: the deadline passed without an answer, which means denied."""
        ...

    def on_run_finished(self, run: RunInfo, result: RunResult) -> None: ...


class SilentObserver:
    """Observes nothing; a base class for observers that want only some callbacks."""

    def on_run_started(self, run: RunInfo) -> None:
        return None

    def on_node_started(self, run: RunInfo, node: NodeStatus) -> None:
        return None

    def on_node_retrying(self, run: RunInfo, node: NodeStatus, delay: float) -> None:
        return None

    def on_node_finished(self, run: RunInfo, node: NodeStatus) -> None:
        return None

    def on_approval_requested(self, run: RunInfo, request: ApprovalRequest) -> None:
        return None

    def on_approval_decided(
        self, run: RunInfo, request: ApprovalRequest, decision: ApprovalDecision | None
    ) -> None:
        return None

    def on_run_finished(self, run: RunInfo, result: RunResult) -> None:
        return None


class Observers:
    """Several observers as one, called in order (e.g. record to the store, then print)."""

    def __init__(self, *observers: RunObserver) -> None:
        self.observers = observers

    def on_run_started(self, run: RunInfo) -> None:
        for observer in self.observers:
            observer.on_run_started(run)

    def on_node_started(self, run: RunInfo, node: NodeStatus) -> None:
        for observer in self.observers:
            observer.on_node_started(run, node)

    def on_node_retrying(self, run: RunInfo, node: NodeStatus, delay: float) -> None:
        for observer in self.observers:
            observer.on_node_retrying(run, node, delay)

    def on_node_finished(self, run: RunInfo, node: NodeStatus) -> None:
        for observer in self.observers:
            observer.on_node_finished(run, node)

    def on_approval_requested(self, run: RunInfo, request: ApprovalRequest) -> None:
        for observer in self.observers:
            observer.on_approval_requested(run, request)

    def on_approval_decided(
        self, run: RunInfo, request: ApprovalRequest, decision: ApprovalDecision | None
    ) -> None:
        for observer in self.observers:
            observer.on_approval_decided(run, request, decision)

    def on_run_finished(self, run: RunInfo, result: RunResult) -> None:
        for observer in self.observers:
            observer.on_run_finished(run, result)


_MARKS = {SUCCEEDED: "✔", FAILED: "✖", "Error": "⚠", "Skipped": "○", "Omitted": "-"}


class PrintingObserver(SilentObserver):
    """One line per event, for a terminal (`punchingfist run`) or a log."""

    def __init__(self, stream: TextIO | None = None, *, tails: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.tails = tails

    def _say(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def on_run_started(self, run: RunInfo) -> None:
        self._say(f"▶ run {run.name} of {run.workflow} (workdir {run.workdir})")
        for warning in run.warnings:
            self._say(f"  warning: {warning}")

    def on_node_started(self, run: RunInfo, node: NodeStatus) -> None:
        if node.type == "DAG":
            return
        attempt = f" (attempt {node.attempts})" if node.attempts > 1 else ""
        self._say(f"  … {node.display_name}{attempt}")

    def on_node_retrying(self, run: RunInfo, node: NodeStatus, delay: float) -> None:
        self._say(f"  ↻ {node.display_name}: {node.message}; retrying in {delay:g} s")

    def on_node_finished(self, run: RunInfo, node: NodeStatus) -> None:
        if node.type == "DAG":
            return
        seconds = ""
        if node.started_at and node.finished_at:
            seconds = f" [{(node.finished_at - node.started_at).total_seconds():.1f} s]"
        message = f": {node.message}" if node.message else ""
        mark = _MARKS.get(node.phase, "?")
        self._say(f"  {mark} {node.display_name} {node.phase}{seconds}{message}")
        if self.tails and node.phase in (FAILED, "Error") and node.stderr_tail.strip():
            for line in node.stderr_tail.strip().splitlines()[-5:]:
                self._say(f"      {line}")

    def on_approval_requested(self, run: RunInfo, request: ApprovalRequest) -> None:
        until = f" until {request.deadline:%Y-%m-%d %H:%M:%S %Z}" if request.deadline else ""
        self._say(f"  ⏸ {request.display_name}: waiting for approval of {request.step!r}{until}")

    def on_approval_decided(
        self, run: RunInfo, request: ApprovalRequest, decision: ApprovalDecision | None
    ) -> None:
        if decision is None:
            self._say(f"  ⏵ {request.display_name}: no answer before the deadline: denied")
            return
        verdict = "approved" if decision.approved else "denied"
        comment = f" ({decision.comment})" if decision.comment else ""
        self._say(f"  ⏵ {request.display_name}: {verdict} by {decision.approver}{comment}")

    def on_run_finished(self, run: RunInfo, result: RunResult) -> None:
        message = f": {result.message}" if result.message else ""
        self._say(f"■ run {run.name} {result.phase}{message}")
