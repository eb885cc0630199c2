"""Runs that cannot go on: a step pod that cannot start is given a deadline, then its run stops.

Argo leaves a pod whose image cannot be pulled (or whose Secret is missing) Pending for ever,
and the run Running with it. `stalled(workflow, now, grace)` finds such nodes in an Argo
Workflow: Pending with a reason the kubelet does not get past by itself, for longer than
`grace` seconds since the node started. The tracker then stops the run (`Stop`, so the exit
handler's sinks can still tell someone; `Terminate` when an exit-handler pod is the one stuck)
and says why in an annotation the run record repeats. Before the deadline it asks to be called
again when the oldest stuck node reaches it, since nothing else may change to wake it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from punchingfist.compiler.naming import EXIT_HANDLER
from punchingfist.errors import PunchingFistError
from punchingfist.runs.recording import stuck_reason

log = logging.getLogger("punchingfist.stalls")

IMMEDIATE = ("InvalidImageName", "ErrImageNeverPull")
"""Reasons that no wait can fix: the run stops without a grace period."""


@dataclass(frozen=True)
class Stall:
    """A run to stop now (`strategy`, `reason`) or to look at again in `recheck` seconds."""

    strategy: str | None = None
    reason: str = ""
    recheck: float | None = None


def stalled(workflow: dict[str, Any], now: datetime, grace: float) -> Stall | None:
    """What to do about `workflow` (an Argo Workflow object); None: nothing is stuck."""
    status = workflow.get("status") or {}
    if status.get("phase") not in (None, "", "Pending", "Running"):
        return None
    if (workflow.get("spec") or {}).get("shutdown") == "Terminate":
        return None
    nodes = status.get("nodes") or {}
    exit_ids = _exit_handler_nodes(nodes)
    stopping = (workflow.get("spec") or {}).get("shutdown") == "Stop"
    soonest: float | None = None
    for node_id, node in sorted(nodes.items()):
        if node.get("type") != "Pod" or node.get("phase") != "Pending":
            continue
        message = str(node.get("message") or "")
        reason = stuck_reason(message)
        started = argo_time(node.get("startedAt"))
        if reason is None or started is None:
            continue
        in_exit_handler = node_id in exit_ids
        if stopping and not in_exit_handler:
            continue  # already stopped for it; Argo is taking it down
        waited = (now - started).total_seconds()
        limit = 0.0 if reason in IMMEDIATE else grace
        if waited >= limit:
            step = node.get("displayName") or node_id
            return Stall(
                strategy="Terminate" if in_exit_handler else "Stop",
                reason=f"step '{step}' could not start for {waited:.0f} s: {message}",
            )
        left = limit - waited
        soonest = left if soonest is None else min(soonest, left)
    return Stall(recheck=soonest) if soonest is not None else None


def _exit_handler_nodes(nodes: dict[str, Any]) -> set[str]:
    """Ids of the nodes below the exit handler's DAG node."""
    roots = [
        i
        for i, n in nodes.items()
        if str(n.get("displayName")) == EXIT_HANDLER or str(n.get("name", "")).endswith(".onExit")
    ]
    found: set[str] = set()
    pending = list(roots)
    while pending:
        node_id = pending.pop()
        if node_id in found:
            continue
        found.add(node_id)
        pending += list((nodes.get(node_id) or {}).get("children") or [])
    return found


def argo_time(text: Any) -> datetime | None:
    """A time as Argo writes it (`2026-12-02T10:00:00Z`), timezone-aware; None when absent."""
    if not isinstance(text, str) or not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Watchdog:
    """Applies `stalled` to every event of our runs, and again when a deadline comes due.

    `get(name, namespace)` reads a run, `stop(name, namespace, strategy=, reason=)` shuts one
    down (the Argo executor's methods). Re-checks are timers, one per run, kept in memory: after
    a restart the watch lists every run again and the deadlines are found anew.
    """

    def __init__(
        self,
        get: Callable[[str, str], dict[str, Any]],
        stop: Callable[..., None],
        grace: float,
    ) -> None:
        self.get, self.stop, self.grace = get, stop, grace
        self._timers: dict[tuple[str, str], threading.Timer] = {}
        self._lock = threading.Lock()

    def check(self, workflow: dict[str, Any]) -> Stall | None:
        meta = workflow.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        stall = stalled(workflow, datetime.now(UTC), self.grace)
        if stall is None:
            return None
        if stall.strategy is not None:
            log.warning("run %s/%s: %s; stopping it (%s)", *key, stall.reason, stall.strategy)
            try:
                self.stop(key[1], key[0], strategy=stall.strategy, reason=stall.reason)
            except PunchingFistError as error:
                log.warning("run %s/%s: %s", *key, error)
                self._later(key, 10.0)
        elif stall.recheck is not None:
            self._later(key, stall.recheck + 1.0)
        return stall

    def _later(self, key: tuple[str, str], seconds: float) -> None:
        with self._lock:
            if key in self._timers:
                return
            timer = threading.Timer(seconds, self._recheck, args=(key,))
            timer.daemon = True
            self._timers[key] = timer
        timer.start()

    def _recheck(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._timers.pop(key, None)
        try:
            workflow = self.get(key[1], key[0])
        except PunchingFistError:
            return  # deleted meanwhile (or the API is down: its next event brings it back)
        self.check(workflow)

    def close(self) -> None:
        with self._lock:
            timers, self._timers = list(self._timers.values()), {}
        for timer in timers:
            timer.cancel()
