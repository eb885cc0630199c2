"""Live progress of a local run on a terminal: the step tree, and each step's own log lines
(the agent's thoughts and tool calls) as the step prints them."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TextIO

from punchingfist.engine import NodeStatus, PrintingObserver, RunInfo

SHOWN = ("🤖", "💭", "🔧", "✅", "❌", "⚠️", "$ ", "📬", "⏭️", "condition ", "│")
"""Lines of a step's log worth showing live; the rest stays in its stdout.log."""


class LiveObserver(PrintingObserver):
    def __init__(self, stream: TextIO | None = None, *, interval: float = 0.2) -> None:
        super().__init__(stream)
        self.interval = interval
        self._tails: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def on_node_started(self, run: RunInfo, node: NodeStatus) -> None:
        super().on_node_started(run, node)
        if node.type != "Pod":
            return
        attempt = max(node.attempts, 1)  # counted when the attempt starts
        log = Path(run.workdir) / node.id / f"attempt-{attempt}" / "stdout.log"
        stop = threading.Event()
        with self._lock:
            self._tails[node.id] = stop
        threading.Thread(target=self._follow, args=(log, stop), daemon=True).start()

    def on_node_finished(self, run: RunInfo, node: NodeStatus) -> None:
        with self._lock:
            stop = self._tails.pop(node.id, None)
        if stop is not None:
            stop.set()
            time.sleep(self.interval * 1.5)  # let the follower print the last lines first
        super().on_node_finished(run, node)

    def _follow(self, log: Path, stop: threading.Event) -> None:
        position = 0
        pending = ""
        while True:
            finishing = stop.is_set()
            try:
                with log.open("rb") as handle:
                    handle.seek(position)
                    chunk = handle.read()
                    position += len(chunk)
            except OSError:
                chunk = b""
            pending += chunk.decode(errors="replace")
            *lines, pending = pending.split("\n")
            for line in lines:
                if line.strip().startswith(SHOWN):
                    self._say(f"      {line.strip()[:240]}")
            if finishing:
                return
            stop.wait(self.interval)
