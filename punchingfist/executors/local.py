"""The local executor (embedded mode, D11): runs from the outbox on the local engine.

`punchingfist serve --executor local` starts each queued run as a thread that runs the
Workflow's compiled template with `punchingfist.engine`, and records it in the store the way
Argo runs are recorded: the run's status and times, one row per step with its result, sink
deliveries, and approval gates (pending until someone answers through the REST API or Slack,
which feed the engine through `resume`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from punchingfist.api.limits import CONFIGMAP, is_critical
from punchingfist.api.runspec import RunParameters
from punchingfist.compiler import CompiledWorkflow
from punchingfist.compiler.naming import RESULT_PARAM
from punchingfist.engine import (
    ApprovalDecision,
    ApprovalRequest,
    NodeStatus,
    Observers,
    PollingApprover,
    RunInfo,
    RunObserver,
    RunResult,
    SilentObserver,
    read_manifest,
    run_workflow,
)
from punchingfist.engine.synchronization import Semaphores, Ticket, UnknownSemaphore
from punchingfist.errors import PunchingFistError
from punchingfist.executors.setup import choose_model, gather_secrets
from punchingfist.runs.dispatching import RunSubmission, SubmitError
from punchingfist.runs.recording import NodeObservation, Recorder, RunObservation, observe
from punchingfist.runs.report import investigation, result_file
from punchingfist.secrets import SecretError, SecretResolver
from punchingfist.store import WorkflowRun

log = logging.getLogger("punchingfist.local")

_EXECUTOR_KEY = ":parallel-runs"
"""The executor's own semaphore (`parallel_runs`); no ConfigMap key has a colon."""


@dataclass
class LocalExecutor:
    compiled: Mapping[str, CompiledWorkflow]
    """Compiled templates by Workflow name."""
    sessions: sessionmaker[Session]
    workdir: Path
    environ: Mapping[str, str] = field(default_factory=dict)
    secrets_dir: Path | None = None
    replay: str | None = None
    endpoint: str | None = None
    model: str | None = None
    replay_fallback: bool = False
    """With no model, replay a recorded scenario about the alert (the demo); else such runs
    fail, saying how to give a model."""
    metrics: Any = None
    """The server's metrics (optional): tokens, task durations, triage time."""
    observer: RunObserver | None = None
    """Also told about every run (e.g. live progress on a terminal), after the store."""
    parallel_runs: int = 4
    """Runs executed at once; the others wait their turn (each step is a process). The
    OperatorConfig's `spec.concurrency` limits (the templates' semaphores) apply as well,
    except to runs about a critical alert with `criticalBypass`: they run the critical
    template, which holds no semaphore, and wait for no queued run (only for a free parallel
    run)."""
    name: str = "local"
    resolver: SecretResolver | None = None
    """Resolves the runs' secret references (OperatorConfig `secretManager`); None: a resolver
    of `environ` and the managers' default settings."""
    approver: PollingApprover = field(default_factory=PollingApprover)
    _slots: Semaphores = field(init=False)
    _submitted: set[str] = field(default_factory=set, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        sizes = {_EXECUTOR_KEY: max(1, self.parallel_runs)}
        for workflow, compiled in self.compiled.items():
            if compiled.concurrency is not None:
                sizes |= {
                    f"{CONFIGMAP}/{key}": int(size)
                    for key, size in compiled.concurrency.sizes([workflow]).items()
                }
        waiting = getattr(self.metrics, "runs_waiting", None)
        self._slots = Semaphores(sizes, on_waiting=waiting.set if waiting is not None else None)

    def submit(self, run: RunSubmission) -> None:
        compiled = self.compiled.get(run.workflow)
        if compiled is None:
            raise SubmitError(f"no Workflow {run.workflow!r} is loaded", temporary=False)
        with self._lock:
            if run.name in self._submitted:
                return  # submitted already: same name, same run
            self._submitted.add(run.name)
        manifest = compiled.manifest_for(is_critical(RunParameters.of(run.parameters).event))
        bypass = manifest is not compiled.manifest  # its template holds no semaphore
        try:  # the run's turn is now, in the order runs are submitted
            ticket = self._slots.enqueue(run.name, self._keys(manifest), ahead=bypass)
        except UnknownSemaphore as error:
            with self._lock:
                self._submitted.discard(run.name)
            raise SubmitError(str(error), temporary=False) from error
        threading.Thread(
            target=self._execute,
            args=(run, compiled, manifest, ticket),
            daemon=True,
            name=f"run-{run.name}",
        ).start()

    def _keys(self, manifest: dict[str, Any]) -> list[str]:
        """The semaphores a run of this template holds: the executor's and the template's."""
        try:
            semaphores = read_manifest(manifest).semaphores
        except PunchingFistError:  # the run fails on the engine, saying why
            semaphores = ()
        return [_EXECUTOR_KEY, *(f"{s.configmap}/{s.key}" for s in semaphores)]

    def resume(
        self,
        run_name: str,
        namespace: str,
        gate: str,
        *,
        approved: bool,
        approver: str,
        comment: str = "",
        channel: str = "local",
    ) -> None:
        waiting = {(r.run, r.display_name) for r in self.approver.pending()}
        if (run_name, gate) not in waiting:
            raise SubmitError(f"run {run_name} is not waiting at gate {gate!r}", temporary=False)
        decision = ApprovalDecision(approved, approver, comment, channel)
        self.approver.decide(run_name, gate, decision)

    def _dispatched(self, run_name: str, timeout: float = 10.0) -> None:
        """Wait for the outbox transaction that submitted the run to commit its `submitted`
        status, so the run's own updates come after it instead of being overwritten."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.sessions() as session:
                record = WorkflowRun.named(session, run_name)
                if record is None or record.status != "pending":
                    return
            time.sleep(0.05)

    def _execute(
        self,
        run: RunSubmission,
        compiled: CompiledWorkflow,
        manifest: dict[str, Any],
        ticket: Ticket,
    ) -> None:
        self._dispatched(run.name)
        self._slots.acquire(ticket)
        try:
            self._execute_now(run, compiled, manifest)
        finally:
            self._slots.release(ticket)

    def _execute_now(
        self, run: RunSubmission, compiled: CompiledWorkflow, manifest: dict[str, Any]
    ) -> None:
        given = RunParameters.of(run.parameters)
        parameters = given.arguments()
        observer = StoreObserver(self.sessions, run, self.metrics)
        watchers = Observers(observer, self.observer) if self.observer else observer
        try:
            event_data = given.event
            choice = choose_model(
                manifest,
                event_data,
                self.environ,
                replay=self.replay,
                endpoint=self.endpoint,
                model=self.model,
                replay_fallback=self.replay_fallback,
            )
            secrets = gather_secrets(
                manifest,
                compiled.objects,
                self.environ,
                self.secrets_dir,
                self.resolver,
                who=f"run {run.name}",
            )
            say = log.warning if choice.replayed else log.info  # no model runs: say so loudly
            say("run %s: %s on the local engine, model: %s", run.name, run.workflow, choice.label)
            result = run_workflow(
                manifest,
                parameters,
                workdir=self.workdir,
                approver=self.approver,
                observer=watchers,
                secrets=secrets,
                environ={**self.environ, **choice.environ},
                name=run.name,
                namespace=run.namespace,
            )
        except SecretError as error:  # before any step: the reference is named, no traceback
            log.error("run %s: %s", run.name, error)
            observer.failed(str(error))
            return
        except Exception as error:  # the run is marked failed; the server goes on
            log.exception("run %s could not run locally", run.name)
            observer.failed(f"{type(error).__name__}: {error}")
            return
        observer.finished(
            result, investigation(result, model=choice.label, replayed=choice.replayed)
        )


class StoreObserver(SilentObserver):
    """Records a local run as it happens: on every change, the run as the engine sees it goes
    to `punchingfist.runs.recording`, which records Argo runs the same way."""

    def __init__(
        self, sessions: sessionmaker[Session], run: RunSubmission, metrics: Any = None
    ) -> None:
        self.sessions, self.run, self.metrics = sessions, run, metrics
        self._nodes: dict[str, NodeStatus] = {}
        self._started: datetime | None = None

    def _observe(
        self,
        phase: str,
        message: str | None = None,
        finished: datetime | None = None,
        report: dict[str, Any] | None = None,
    ) -> None:
        nodes = [_observed(node) for node in self._nodes.values()]
        given = RunParameters.of(self.run.parameters)
        observation = RunObservation(
            name=self.run.name,
            namespace=self.run.namespace,
            workflow=self.run.workflow,
            executor="local",
            phase=phase,
            message=message,
            started_at=self._started,
            finished_at=finished,
            nodes=[node for node in nodes if node is not None],
            source=given.source or None,
            fingerprint=given.fingerprint or None,
            parameters=given.stored(),
        )
        try:
            observe(self.sessions, observation, self.metrics, report)
        except SQLAlchemyError as error:
            log.warning("run %s: could not record progress: %s", self.run.name, error)

    def on_run_started(self, run: RunInfo) -> None:
        self._started = run.started_at
        self._observe("Running")

    def on_node_started(self, run: RunInfo, node: NodeStatus) -> None:
        self._nodes[node.id] = node
        if node.type == "Suspend":
            self._observe("Running")

    def on_node_finished(self, run: RunInfo, node: NodeStatus) -> None:
        self._nodes[node.id] = node
        self._observe("Running")

    def on_approval_decided(
        self, run: RunInfo, request: ApprovalRequest, decision: ApprovalDecision | None
    ) -> None:
        self._observe("Running")

    def finished(self, result: RunResult, report: dict[str, Any]) -> None:
        self._nodes.update(result.nodes)
        self._observe(result.phase, result.message or None, result.finished_at, report)

    def failed(self, message: str) -> None:
        try:
            with self.sessions.begin() as session:
                record = WorkflowRun.named(session, self.run.name)
                if record is not None:
                    Recorder(session, self.metrics).failed(record, message)
        except SQLAlchemyError as error:
            log.warning("run %s: could not record its failure: %s", self.run.name, error)


def _observed(node: NodeStatus) -> NodeObservation | None:
    """A task node of the local engine as the recorder reads it (DAG nodes are not tasks)."""
    if node.type not in ("Pod", "Suspend", "Skipped") or not node.display_name:
        return None
    parameters = dict(node.outputs)
    if RESULT_PARAM not in parameters and (data := result_file(node)) is not None:
        parameters[RESULT_PARAM] = json.dumps(data)
    return NodeObservation(
        name=node.display_name,
        type=node.type,
        phase=node.phase,
        message=node.message,
        started_at=node.started_at,
        finished_at=node.finished_at,
        parameters=parameters,
    )
