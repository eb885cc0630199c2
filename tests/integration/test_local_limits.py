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
from punchingfist.store import WorkflowRun, make_engine, session_factory, upgrade

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


BYPASS = """
apiVersion: punchingfist.io/v1alpha1
kind: OperatorConfig
metadata: {name: punchingfist-config}
spec:
  concurrency: {maxRunning: 1, perWorkflow: 1, criticalBypass: true}
---
apiVersion: punchingfist.io/v1alpha1
kind: Workflow
metadata: {name: triage}
spec:
  steps: [{name: wait, type: cli, command: "sleep 1"}]
"""


class Times(SilentObserver):
    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.finished: dict[str, float] = {}
        self.done = threading.Semaphore(0)

    def on_run_started(self, run: RunInfo) -> None:
        self.started[run.name] = time.monotonic()

    def on_run_finished(self, run: RunInfo, result: RunResult) -> None:
        self.finished[run.name] = time.monotonic()
        self.done.release()


@pytest.mark.timeout(120)
def test_a_critical_run_starts_while_the_limit_is_full_and_a_warning_run_waits(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'pf.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = session_factory(engine)
    times = Times()
    executor = LocalExecutor(
        {c.workflow.name: c for c in compile_resources(load_resources(BYPASS))},
        sessions,
        tmp_path / "runs",
        environ={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"},
        observer=times,
        parallel_runs=4,
    )

    def event(severity: str) -> dict[str, Any]:
        return {"alert": {"alertname": "Down", "severity": severity, "labels": {}}}

    order = [("warning-1", "warning"), ("warning-2", "warning"), ("critical-1", "critical")]
    for name, severity in order:
        executor.submit(RunSubmission(name, "default", "triage", {"event": event(severity)}))
    for _ in order:
        assert times.done.acquire(timeout=60), (times.started, times.finished)
    # warning-1 holds the only slot: warning-2 waits for it, critical-1 (submitted last)
    # starts at once and runs beside it.
    assert times.started["critical-1"] < times.finished["warning-1"] - 0.3, times.started
    assert times.started["warning-2"] >= times.finished["warning-1"] - 0.05, times.started
    assert times.started["warning-2"] > times.started["critical-1"]
    time.sleep(0.1)
    with sessions() as session:
        records = {name: WorkflowRun.named(session, name) for name, _ in order}
        # Recorded as runs of the Workflow, the critical one too.
        assert {r.workflow_name for r in records.values() if r is not None} == {"triage"}
        assert all(r is not None and r.status == "succeeded" for r in records.values())
    engine.dispose()
