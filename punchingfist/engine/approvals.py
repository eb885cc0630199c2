"""Approval gates (D5): who answers a suspend node, and how the engine asks.

The engine polls `Approver.poll(request)` until it returns a decision or the suspend
`duration` runs out; no answer by then means denied (the outputs keep their defaults).
`poll` must not block: it is called from the engine's event loop every `poll_interval`.
"""

from __future__ import annotations

import getpass
import queue
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO


@dataclass(frozen=True)
class ApprovalRequest:
    run: str
    run_uid: str
    node: str
    """The suspend node's id (`<run>.<task>`)."""
    display_name: str
    """The task name, e.g. `remediation-approval` (what `argo node set` selects on)."""
    step: str
    """The Workflow step the gate guards."""
    requested_at: datetime
    deadline: datetime | None
    """When no answer means denied; None waits until the workflow deadline."""
    preview: Mapping[str, Any] | None = None
    """What the gate approves, when its step is a remediation: the step's preview task's output
    `preview` (the fix, its target, the server-side dry run's diff, RBAC's verdict) as JSON.
    None for any other gate."""


@dataclass(frozen=True)
class ApprovalDecision:
    approved: bool
    approver: str
    comment: str = ""
    channel: str = "local"
    """Where the answer came from (api, slack, local): the run's record says so."""

    def outputs(self) -> dict[str, str]:
        """The suspend node's output parameters, as `argo node set` would supply them."""
        return {
            "approved": "true" if self.approved else "false",
            "approver": self.approver,
            "comment": self.comment,
        }


class Approver(Protocol):
    def poll(self, request: ApprovalRequest) -> ApprovalDecision | None:
        """The decision on `request`, or None while there is none. Must return at once."""
        ...


class AutoApprover:
    """Answers every gate the same way at once (`--approve` / `--deny`)."""

    def __init__(self, approved: bool, approver: str = "punchingfist-cli", comment: str = ""):
        self.decision = ApprovalDecision(approved, approver, comment)

    def poll(self, request: ApprovalRequest) -> ApprovalDecision | None:
        return self.decision


class PollingApprover:
    """Decisions fed from elsewhere (the server's REST/Slack handlers), by run and node.

    Thread-safe: `decide` may be called from any thread while the engine polls.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._decisions: dict[tuple[str, str], ApprovalDecision] = {}
        self._open: dict[tuple[str, str], ApprovalRequest] = {}

    def decide(self, run: str, display_name: str, decision: ApprovalDecision) -> None:
        with self._lock:
            self._decisions[(run, display_name)] = decision

    def pending(self) -> list[ApprovalRequest]:
        """The requests the engine is waiting on now (past their deadline: denied, not listed)."""
        now = datetime.now(UTC)
        with self._lock:
            return [r for r in self._open.values() if r.deadline is None or r.deadline > now]

    def poll(self, request: ApprovalRequest) -> ApprovalDecision | None:
        key = (request.run, request.display_name)
        with self._lock:
            decision = self._decisions.pop(key, None)
            if decision is None:
                self._open[key] = request
            else:
                self._open.pop(key, None)
            return decision


class PromptApprover:
    """Asks a person on a terminal: `y`/`yes` approves, anything else denies.

    A line may carry a comment after the answer (`y raise the limit`). Lines are read by a
    daemon thread, so a person who never answers does not keep the process alive; the gate's
    deadline still decides.
    """

    def __init__(
        self,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        approver: str = "",
        explain: Callable[[ApprovalRequest], str | None] | None = None,
    ) -> None:
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stderr
        self.approver = approver or _user()
        self.explain = explain
        """What to show before the question (e.g. a remediation's preview), None: nothing."""
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader: threading.Thread | None = None
        self._waiting: list[ApprovalRequest] = []
        """Requests in the order they came; the first one is the question on screen."""

    def poll(self, request: ApprovalRequest) -> ApprovalDecision | None:
        self._drop_expired()
        if all(r.node != request.node or r.run != request.run for r in self._waiting):
            self._waiting.append(request)
            if len(self._waiting) == 1:
                self._ask(request)
        head = self._waiting[0]
        if (head.run, head.node) != (request.run, request.node):
            return None
        if self._reader is None:
            self._reader = threading.Thread(target=self._read, daemon=True, name="pf-approver")
            self._reader.start()
        try:
            line = self._lines.get_nowait()
        except queue.Empty:
            return None
        self._waiting.pop(0)
        if self._waiting:
            self._ask(self._waiting[0])
        if line is None:
            self._lines.put(None)
            return ApprovalDecision(False, self.approver, "no answer: end of input")
        answer, _, comment = line.strip().partition(" ")
        return ApprovalDecision(answer.lower() in ("y", "yes"), self.approver, comment.strip())

    def _drop_expired(self) -> None:
        """Gates whose deadline passed were denied by the engine: stop asking about them."""
        head = self._waiting[0] if self._waiting else None
        now = datetime.now(UTC)
        self._waiting = [r for r in self._waiting if r.deadline is None or r.deadline > now]
        if self._waiting and self._waiting[0] is not head:
            self._ask(self._waiting[0])

    def _ask(self, request: ApprovalRequest) -> None:
        shown = self.explain(request) if self.explain is not None else None
        if shown:
            self.stdout.write(f"\n{shown}\n")
        until = f" (until {request.deadline:%H:%M:%S}, then denied)" if request.deadline else ""
        self.stdout.write(f"approve step {request.step!r} of run {request.run}? [y/N]{until} ")
        self.stdout.flush()

    def _read(self) -> None:
        for line in self.stdin:
            self._lines.put(line)
        self._lines.put(None)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
