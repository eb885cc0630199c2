"""The local executor honours OperatorConfig spec.concurrency: real runs (each step a process) of
two Workflows, submitted faster than the limits allow, never run above them and start in the
order they were submitted; the waiting gauge counts the runs held back."""

from __future__ import annotations

import itertools
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from punchingfist.api import load_resources
from punchingfist.compiler import compile_resources
from punchingfist.engine import RunInfo, RunResult, SilentObserver
from punchingfist.executors.local import LocalExecutor
from punchingfist.runs.dispatching import RunSubmission
from punchingfist.runs.metrics import Metrics
from punchingfist.store import make_engine, session_factory, upgrade

RESOURCES = """
apiVersion: punchingfist.io/v1alpha1
kind: OperatorConfig
metadata: {name: punchingfist-config}
spec:
  concurrency: {maxRunning: 2, perWorkflow: 1}
---
apiVersion: punchingfist.io/v1alpha1
kind: Workflow
metadata: {name: triage}
spec:
  steps: [{name: wait, type: cli, command: "sleep 0.4"}]
---
apiVersion: punchingfist.io/v1alpha1
kind: Workflow
metadata: {name: escalate}
spec:
  steps: [{name: wait, type: cli, command: "sleep 0.4"}]
"""


class Timeline(SilentObserver):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: dict[str, float] = {}
        self.running: dict[str, int] = {"all": 0, "triage": 0, "escalate": 0}
        self.most = dict(self.running)
        self.finished = threading.Event()
        self.count = 0

    def _keys(self, run: RunInfo) -> tuple[str, str]:
        return "all", run.name.rsplit("-", 1)[0]

    def on_run_started(self, run: RunInfo) -> None:
        with self.lock:
            self.started[run.name] = time.monotonic()
            for key in self._keys(run):
                self.running[key] += 1
                self.most[key] = max(self.most[key], self.running[key])

    def on_run_finished(self, run: RunInfo, result: RunResult) -> None:
        with self.lock:
            for key in self._keys(run):
                self.running[key] -= 1
            self.count += 1
            if self.count == 6:
                self.finished.set()


@pytest.mark.timeout(120)
def test_runs_above_the_limits_wait_and_start_in_order(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pf.db'}"
    upgrade(url)
    engine = make_engine(url)
    timeline = Timeline()
    metrics = Metrics(CollectorRegistry())
    executor = LocalExecutor(
        {c.workflow.name: c for c in compile_resources(load_resources(RESOURCES))},
        session_factory(engine),
        tmp_path / "runs",
        environ={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"},
        observer=timeline,
        metrics=metrics,
        parallel_runs=4,
    )
    order = ["triage-1", "triage-2", "escalate-1", "triage-3", "escalate-2", "escalate-3"]
    for name in order:
        workflow = name.rsplit("-", 1)[0]
        executor.submit(RunSubmission(name, "default", workflow, {"event": {}}))
    waiting: Any = metrics.runs_waiting
    assert waiting._value.get() >= 4  # at most two can have started yet
    assert timeline.finished.wait(90), timeline.started
    # Runs freed by the same release start together, in threads of their own: their engines
    # may say so in any order, but none starts a slot (a 0.4 s step) after a later one.
    starts = [timeline.started[name] for name in order]
    assert all(earlier <= later + 0.2 for earlier, later in itertools.pairwise(starts)), starts
    assert starts[-1] - starts[0] > 0.8  # three slots' worth: the runs did wait
    assert timeline.most == {"all": 2, "triage": 1, "escalate": 1}
    assert waiting._value.get() == 0
    time.sleep(0.1)
    engine.dispose()
