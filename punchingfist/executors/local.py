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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from punchingfist.compiler import CompiledWorkflow
from punchingfist.embedded.report import investigation, result_file
from punchingfist.embedded.setup import choose_model, gather_secrets
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
    run_workflow,
)
from punchingfist.runs.dispatching import RunSubmission, SubmitError
from punchingfist.store import WorkflowRun
from punchingfist.store.models import Approval
from punchingfist.store.recording import record_delivery, record_step

log = logging.getLogger("punchingfist.local")
STEP_LABEL, TASK_LABEL = "punchingfist.io/step", "punchingfist.io/task"
FINAL_STATUS = {"Succeeded": "succeeded", "Failed": "failed", "Error": "error"}


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
    """Runs executed at once; the others wait their turn (each step is a process)."""
    name: str = "local"
    approver: PollingApprover = field(default_factory=PollingApprover)
    _slots: threading.Semaphore = field(init=False)
    _submitted: set[str] = field(default_factory=set, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self._slots = threading.Semaphore(max(1, self.parallel_runs))

    def submit(self, run: RunSubmission) -> None:
        compiled = self.compiled.get(run.workflow)
        if compiled is None:
            raise SubmitError(f"no Workflow {run.workflow!r} is loaded", temporary=False)
        with self._lock:
            if run.name in self._submitted:
                return  # submitted already: same name, same run
            self._submitted.add(run.name)
        threading.Thread(
            target=self._execute, args=(run, compiled), daemon=True, name=f"run-{run.name}"
        ).start()

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

    def _execute(self, run: RunSubmission, compiled: CompiledWorkflow) -> None:
        self._dispatched(run.name)
        with self._slots:
            self._execute_now(run, compiled)

    def _execute_now(self, run: RunSubmission, compiled: CompiledWorkflow) -> None:
        event = run.parameters.get("event") or {}
        parameters = {
            "event": event if isinstance(event, str) else json.dumps(event, ensure_ascii=False),
            "source": str(run.parameters.get("source") or ""),
            "fingerprint": str(run.parameters.get("fingerprint") or ""),
        }
        observer = StoreObserver(self.sessions, run.name, self.metrics)
        watchers = Observers(observer, self.observer) if self.observer else observer
        try:
            event_data = event if isinstance(event, dict) else json.loads(event)
            choice = choose_model(
                compiled.manifest,
                event_data,
                self.environ,
                replay=self.replay,
                endpoint=self.endpoint,
                model=self.model,
                replay_fallback=self.replay_fallback,
            )
            secrets = gather_secrets(
                compiled.manifest, compiled.objects, self.environ, self.secrets_dir
            )
            say = log.warning if choice.replayed else log.info  # no model runs: say so loudly
            say("run %s: %s on the local engine, model: %s", run.name, run.workflow, choice.label)
            result = run_workflow(
                compiled.manifest,
                parameters,
                workdir=self.workdir,
                approver=self.approver,
                observer=watchers,
                secrets=secrets,
                environ={**self.environ, **choice.environ},
                name=run.name,
                namespace=run.namespace,
            )
        except Exception as error:  # the run is marked failed; the server goes on
            log.exception("run %s could not run locally", run.name)
            observer.failed(f"{type(error).__name__}: {error}")
            return
        observer.finished(
            result, investigation(result, model=choice.label, replayed=choice.replayed)
        )


class StoreObserver(SilentObserver):
    """Writes a local run's progress to the store as it happens."""

    def __init__(self, sessions: sessionmaker[Session], run_name: str, metrics: Any = None):
        self.sessions, self.run_name, self.metrics = sessions, run_name, metrics

    def _run(self, session: Session) -> WorkflowRun:
        run = WorkflowRun.named(session, self.run_name)
        if run is None:
            raise LookupError(f"run {self.run_name} is not in the store")
        return run

    def _write(self, action: Any) -> None:
        try:
            with self.sessions.begin() as session:
                action(session, self._run(session))
        except (SQLAlchemyError, LookupError) as error:
            log.warning("run %s: could not record progress: %s", self.run_name, error)

    def on_run_started(self, run: RunInfo) -> None:
        def start(session: Session, record: WorkflowRun) -> None:
            record.status, record.started_at = "running", datetime.now(UTC)

        self._write(start)

    def on_node_finished(self, run: RunInfo, node: NodeStatus) -> None:
        task = node.labels.get(TASK_LABEL, "")
        step = node.labels.get(STEP_LABEL)
        if task.startswith("sink-"):
            self._write(lambda s, r: self._delivery(s, r, task.removeprefix("sink-"), node))
        elif step and task == step and node.type == "Pod":
            self._write(lambda s, r: self._step(s, r, step, node))

    def _step(self, session: Session, record: WorkflowRun, step: str, node: NodeStatus) -> None:
        data = result_file(node)
        if data is None:
            data = {
                "kind": "unknown",
                "phase": node.phase,
                "success": False,
                "error": node.message or f"no result ({node.phase})",
            }
        data.setdefault("phase", node.phase)
        data.setdefault("kind", "unknown")
        recorded = record_step(session, record, step, data, datetime.now(UTC))
        if self.metrics is not None:
            if recorded.tokens_added > 0:
                self.metrics.llm_tokens.labels(record.workflow_name).inc(recorded.tokens_added)
            if recorded.triage_seconds is not None:
                self.metrics.triage_seconds.observe(recorded.triage_seconds)

    def _delivery(self, session: Session, record: WorkflowRun, sink: str, node: NodeStatus) -> None:
        data = result_file(node) or {}
        delivery = {
            "type": data.get("type") or "unknown",
            "outcome": data.get("outcome") or "failed",
            "error": data.get("error") or (node.message or None),
        } | {k: data[k] for k in ("http_status", "external_id", "link", "attempts") if k in data}
        record_delivery(session, record, sink, delivery, datetime.now(UTC))
        if self.metrics is not None:
            self.metrics.sink_deliveries.labels(sink, delivery["outcome"]).inc()

    def on_approval_requested(self, run: RunInfo, request: ApprovalRequest) -> None:
        def pending(session: Session, record: WorkflowRun) -> None:
            if self._gate(session, record, request.display_name) is None:
                session.add(
                    Approval(
                        run_id=record.id,
                        gate=request.display_name,
                        step_name=request.step,
                        decision="pending",
                    )
                )

        self._write(pending)

    def on_approval_decided(
        self, run: RunInfo, request: ApprovalRequest, decision: ApprovalDecision | None
    ) -> None:
        def decided(session: Session, record: WorkflowRun) -> None:
            gate = self._gate(session, record, request.display_name)
            if gate is None:
                gate = Approval(run_id=record.id, gate=request.display_name, step_name=request.step)
                session.add(gate)
            if decision is None:
                gate.decision, gate.channel = "denied", "timeout"
                gate.comment = "no answer before the deadline"
            elif gate.decision == "pending":  # the server records the API/Slack decision too:
                gate.decision = "approved" if decision.approved else "denied"  # the same one
                gate.approver, gate.comment = decision.approver, decision.comment
                gate.channel = decision.channel
            gate.decided_at = gate.decided_at or datetime.now(UTC)

        self._write(decided)

    @staticmethod
    def _gate(session: Session, record: WorkflowRun, gate: str) -> Approval | None:
        return session.scalars(
            select(Approval).where(Approval.run_id == record.id, Approval.gate == gate)
        ).first()

    def finished(self, result: RunResult, report: dict[str, Any]) -> None:
        def finish(session: Session, record: WorkflowRun) -> None:
            record.status = FINAL_STATUS.get(result.phase, "error")
            record.finished_at = datetime.now(UTC)
            record.outputs = {"report": report, "outputs": dict(result.outputs)}
            if result.phase != "Succeeded":
                record.error = result.message or None

        self._write(finish)

    def failed(self, message: str) -> None:
        def fail(session: Session, record: WorkflowRun) -> None:
            record.status, record.error = "error", message
            record.finished_at = datetime.now(UTC)

        self._write(fail)
