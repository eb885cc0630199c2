"""Recording: what a run did becomes run, step, delivery, approval and alert records.

The one writer of those records. Every executor describes a run the same way, as a
`RunObservation` (the run's phase and times, one `NodeObservation` per task with its typed
`StepResult`), and `observe` brings the store up to date from it:

- Argo runs: `controller/tracking.py` turns each watch event of an Argo Workflow into one.
- Local runs (embedded mode): `executors/local.py` turns the engine's node statuses into one
  on every change.
- A step pod's own report (`POST /api/v1/runs/{run}/steps/{step}`, before Argo sees the pod
  finish) is one node: `report_step`, `report_delivery`.

Observing is idempotent: a replayed or repeated observation changes nothing and counts nothing
twice, and a finished run or step never goes back. The alert's lifecycle follows from the run:
triage started when the run starts, triaged by the first (live) agent answer, escalated when an
escalating sink delivered, resolved when the run auto-fixed it. A finished run's findings are
remembered (`memory.remember`: one knowledge entry per run, the incident's AI summary). When a
remediation step's fix (or rollback) task reports, the run's incident records what the fix did
(`incidents.remediations`, one entry per run and step, replaced as the outcome moves on).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from punchingfist.api.actions import Preview
from punchingfist.api.runspec import StepResult
from punchingfist.compiler.naming import (
    OUTPUTS_PARAM,
    OUTPUTS_TASK,
    RESULT_PARAM,
    approval_task,
    preview_task,
    rollback_task,
)
from punchingfist.memory.remember import live_answer, remember
from punchingfist.runs.metrics import Metrics
from punchingfist.runtime.sinks.fixes import fix_outcome
from punchingfist.runtime.sinks.previews import parse_preview
from punchingfist.store import Alert, Approval, Incident, RunStep, SinkDelivery, WorkflowRun

log = logging.getLogger("punchingfist.recording")

RUN_STATUS = {
    "Pending": "submitted",
    "Running": "running",
    "Succeeded": "succeeded",
    "Failed": "failed",
    "Error": "error",
}
"""A run's phase (Argo's words, which the local engine uses too) -> `workflow_runs.status`."""
FINISHED = frozenset({"Succeeded", "Failed", "Error", "Skipped", "Omitted"})
ESCALATING_SINKS = frozenset({"pagerduty", "workflow"})
"""A delivered sink of these types means the alert went to humans (or another workflow)."""
OUTCOMES = frozenset({"delivered", "skipped", "failed"})
STUCK_REASONS = (
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "Unschedulable",
)
"""The waiting reasons Argo copies into a Pending node's message that need someone to act."""
MODEL_LABEL_LENGTH = 100
"""Longest model name in metric labels (a step's report names its model)."""


def stuck_reason(message: str) -> str | None:
    """The stuck reason a node message starts with (`ErrImagePull: ...`), if any."""
    head = message.split(":", 1)[0].strip()
    return head if head in STUCK_REASONS else None


@dataclass(frozen=True)
class NodeObservation:
    """One task of a run as its executor sees it."""

    name: str
    """The DAG task: a step, `<step>-approval`, `sink-<name>`, `pf-outputs`, ..."""
    type: str
    """Argo's node type: Pod, Suspend, Skipped, Retry, ..."""
    phase: str
    message: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    """Output parameters (`result`, an approval's `approved`/`approver`/`comment`, ...)."""

    @property
    def data(self) -> dict[str, Any] | None:
        """The task's result.json as it wrote it; None when it wrote none (or not an object)."""
        return _json_object(self.parameters.get(RESULT_PARAM))


@dataclass(frozen=True)
class RunObservation:
    """A run as its executor sees it: enough to record it, also one started elsewhere."""

    name: str
    namespace: str
    workflow: str
    executor: str
    """`argo` or `local`: the executor, and the channel of approvals answered in it."""
    phase: str
    message: str | None = None
    """Why it did not succeed, in the executor's words (or the operator's, when it stopped it)."""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    nodes: Sequence[NodeObservation] = ()
    source: str | None = None
    fingerprint: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    """The run's parameters, for a run the store has not seen (started outside the server)."""


@dataclass
class Recorded:
    """What one observation changed (for logs and tests)."""

    run: str
    status: str
    created: bool = False
    steps: list[str] = field(default_factory=list)
    """Steps whose record changed."""


def step_result(data: Any, step: str) -> StepResult | None:
    """`data` (a result.json object) as a `StepResult`; None when it is not one."""
    if not isinstance(data, dict):
        return None
    try:
        return StepResult.model_validate({"step": step, **data})
    except ValidationError as error:
        log.warning("step %s: its result is not a step result: %s", step, error)
        return None


def observe(
    sessions: sessionmaker[Session],
    observation: RunObservation,
    metrics: Metrics | None,
    report: dict[str, Any] | None = None,
) -> Recorded:
    """Record what `observation` says, in one transaction (retried once when a concurrent
    first sight of the run wrote its row first). A local run's terminal `report` goes in the
    same transaction, so nobody sees the run finished without it."""
    for attempt in (1, 2):
        try:
            with sessions.begin() as session:
                recorded = Recorder(session, metrics).observe(observation, report)
            break
        except IntegrityError:
            if attempt == 2:
                raise
    if metrics is not None:
        with sessions() as session:
            active = session.scalar(
                select(func.count())
                .select_from(WorkflowRun)
                .where(WorkflowRun.status.in_(("submitted", "running")))
            )
        metrics.active_tasks.set(active or 0)
    return recorded


class Recorder:
    """Writes one transaction's records (`session`) and counts into `metrics`."""

    def __init__(self, session: Session, metrics: Metrics | None = None) -> None:
        self.session = session
        self._metrics = metrics

    @property
    def metrics(self) -> Metrics:
        """The server's metrics, or (without a server) ones nobody reads."""
        if self._metrics is None:
            self._metrics = Metrics(CollectorRegistry())
        return self._metrics

    # -- whole runs ---------------------------------------------------------------------

    def observe(
        self, observation: RunObservation, report: dict[str, Any] | None = None
    ) -> Recorded:
        """Record `observation` (and a finished local run's terminal `report`)."""
        run, created = self._run(observation)
        phase = observation.phase or "Pending"
        finished_before = run.finished_at is not None
        if not finished_before:  # a finished run never goes back (replayed older events)
            run.status = RUN_STATUS.get(phase, run.status)
            run.started_at = run.started_at or observation.started_at
            if phase in FINISHED:
                run.finished_at = observation.finished_at or datetime.now(UTC)
        recorded = Recorded(run=run.name, status=run.status, created=created)
        steps = self._steps(run)
        alert = self._alert_of(run)
        if alert is not None and run.started_at and alert.triage_started_at is None:
            alert.triage_started_at = run.started_at
            if alert.status == "received":
                alert.status = "triaging"
        outputs: dict[str, Any] | None = None
        for node in observation.nodes:
            if node.name == OUTPUTS_TASK:
                outputs = _json_object(node.parameters.get(OUTPUTS_PARAM))
            if self._step(run, steps, node):
                recorded.steps.append(node.name)
            if node.type == "Suspend":
                self._approval(run, node, observation.executor)
        if outputs is not None:
            run.outputs = {**(run.outputs or {}), **outputs}
        if report is not None:
            self.reported(run, report)
        self._previews(run, steps)
        self._fixes(run, steps)
        if not finished_before and run.finished_at is not None and phase != "Succeeded":
            run.error = _why(observation.message, steps)
        self._alert(run, alert, steps, outputs)
        if run.finished_at is not None and (not finished_before or recorded.steps):
            remember(self.session, run, steps, alert)
        return recorded

    def failed(self, run: WorkflowRun, message: str) -> None:
        """The executor could not run it at all (e.g. it could not be prepared)."""
        run.status, run.error = "error", message
        run.finished_at = run.finished_at or datetime.now(UTC)

    def reported(self, run: WorkflowRun, report: dict[str, Any]) -> None:
        """A local run's investigation as a terminal shows it (`runs.report`), kept beside the
        workflow's outputs (`outputs.report`)."""
        run.outputs = {**(run.outputs or {}), "report": report}

    def submitted(self, run: WorkflowRun, executor: str) -> None:
        run.status, run.executor = "submitted", executor

    def not_submitted(self, run: WorkflowRun, error: str) -> None:
        run.status, run.error = "error", error

    def refused(self, run: WorkflowRun | None, message: str, reason: str) -> None:
        """The dispatcher would not start the run (`reason`: the daily LLM budget is spent): it
        failed, `message` says why; counted in `punchingfist_runs_refused_total{reason}`."""
        if run is not None:
            run.status, run.error = "failed", message
            run.finished_at = run.finished_at or datetime.now(UTC)
        self.metrics.runs_refused.labels(reason).inc()

    # -- reports from step pods -----------------------------------------------------------

    def report_step(
        self, run: WorkflowRun, step: str, data: dict[str, Any], now: datetime
    ) -> StepResult | None:
        """A step's own report of its result.json (a retried report replaces the earlier
        one): the step's record, the run's tokens and cost, its status, the alert's triage."""
        if run.status in ("pending", "submitted"):
            run.status, run.started_at = "running", run.started_at or now
        node = NodeObservation(
            name=step,
            type="Pod",
            phase=str(data.get("phase") or "Succeeded"),
            finished_at=now,
            parameters={RESULT_PARAM: json.dumps(data)},
        )
        steps = self._steps(run)
        self._step(run, steps, node)
        self._previews(run, steps)
        self._fixes(run, steps)
        alert = self._alert_of(run)
        self._alert(run, alert, steps, None)
        if run.finished_at is not None:  # reported after its run finished: remembered too
            remember(self.session, run, steps, alert)
        return step_result(data, step)

    def report_delivery(
        self, run: WorkflowRun, sink: str, data: dict[str, Any], now: datetime
    ) -> None:
        """A sink's own record of its delivery."""
        self._delivery(run, sink, data, now)

    def decided(
        self,
        run: WorkflowRun,
        gate: str,
        *,
        approved: bool,
        approver: str,
        comment: str,
        channel: str,
    ) -> Approval:
        """A human answered gate `gate` (REST, Slack, the CLI) and the executor took it."""
        record = self._gate(run, gate)
        if record is None:
            record = Approval(run_id=run.id, gate=gate, step_name=gate.removesuffix("-approval"))
            self.session.add(record)
        shown = self.preview(run, record.step_name)
        if shown is not None:
            record.preview = shown.model_dump(mode="json")
        record.decision = "approved" if approved else "denied"
        record.approver, record.comment, record.channel = approver, comment, channel
        record.decided_at = datetime.now(UTC)
        if approved and shown is not None:
            record.approved_resource_version = shown.resource_version
        return record

    def preview(self, run: WorkflowRun, step: str) -> Preview | None:
        """The preview of remediation step `step`'s fix: its `<step>-preview` task's result,
        else what its gate recorded; None for a gate without one."""
        task = self.session.scalars(
            select(RunStep).where(RunStep.run_id == run.id, RunStep.name == preview_task(step))
        ).first()
        shown = parse_preview(task.result) if task is not None else None
        if shown is None:
            gate = self.session.scalars(
                select(Approval).where(Approval.run_id == run.id, Approval.step_name == step)
            ).first()
            shown = parse_preview(gate.preview) if gate is not None else None
        return shown

    # -- the parts ------------------------------------------------------------------------

    def _run(self, observation: RunObservation) -> tuple[WorkflowRun, bool]:
        run = WorkflowRun.named(self.session, observation.name)
        if run is not None:
            return run, False
        # Started without the server (`argo submit`, `punchingfist submit`, a CronWorkflow).
        run = WorkflowRun(
            name=observation.name,
            namespace=observation.namespace,
            workflow_name=observation.workflow,
            source_name=observation.source,
            fingerprint=observation.fingerprint or None,
            parameters=observation.parameters,
            executor=observation.executor,
            status="submitted",
        )
        self.session.add(run)
        self.session.flush()
        return run, True

    def _steps(self, run: WorkflowRun) -> dict[str, RunStep]:
        query = select(RunStep).where(RunStep.run_id == run.id)
        return {s.name: s for s in self.session.scalars(query)}

    def _alert_of(self, run: WorkflowRun) -> Alert | None:
        return self.session.get(Alert, run.alert_id) if run.alert_id else None

    def _step(self, run: WorkflowRun, steps: dict[str, RunStep], node: NodeObservation) -> bool:
        """Bring one step record up to date; True when it changed."""
        record = steps.get(node.name)
        data = node.data
        result = step_result(data, node.name)
        kind = data["kind"] if data and isinstance(data.get("kind"), str) else _kind(node)
        phase = node.phase or "Pending"
        started, finished = node.started_at, node.finished_at
        if record is None:
            record = RunStep(
                run_id=run.id,
                name=node.name,
                kind=kind,
                phase=phase,
                prompt_tokens=0,
                completion_tokens=0,
            )
            self.session.add(record)
            steps[node.name] = record
        elif record.finished_at is not None and phase not in FINISHED:
            return False  # an older event of a step already recorded as done
        before = (record.phase, record.kind, record.result, record.started_at, record.finished_at)
        was_finished = record.finished_at is not None
        record.phase, record.kind = phase, kind
        record.started_at = record.started_at or started
        message = node.message
        if phase == "Pending" and stuck_reason(message):
            record.error = message[:4000]  # why it cannot start, kept when it is stopped
        elif phase == "Running" and stuck_reason(record.error or ""):
            record.error = None  # it started after all
        if phase in FINISHED:
            record.finished_at = record.finished_at or finished or started
            if message and phase != "Succeeded":
                stuck = record.error if stuck_reason(record.error or "") else None
                text = f"{message} ({stuck})" if stuck and stuck != message else message
                record.error = text[:4000]
        if data is not None and data != record.result:
            self._result(run, record, result, data)
        if record.finished_at is not None and not was_finished and phase != "Skipped":
            seconds = result.seconds if result is not None else None
            if seconds is None and record.started_at:
                seconds = (_aware(record.finished_at) - _aware(record.started_at)).total_seconds()
            if seconds is not None:
                self.metrics.task_duration.labels(kind, phase).observe(max(0.0, seconds))
            if kind == "sink" and data is not None:
                self._delivery(run, node.name.removeprefix("sink-"), data, record.finished_at)
        return before != (
            record.phase,
            record.kind,
            record.result,
            record.started_at,
            record.finished_at,
        )

    def _result(
        self, run: WorkflowRun, record: RunStep, result: StepResult | None, data: dict[str, Any]
    ) -> None:
        """A step's result.json replaces the earlier one; token counts move by the difference
        (read from the typed `result`; an untyped one is kept, counting nothing)."""
        record.result = data
        record.tool_calls = result.tool_calls if result is not None else None
        if result is not None and result.error:
            record.error = result.error[:4000]
        usage = result.usage if result is not None else None
        before = (record.prompt_tokens, record.completion_tokens)
        record.prompt_tokens = usage.prompt_tokens if usage else 0
        record.completion_tokens = usage.completion_tokens if usage else 0
        run.tokens_total = (run.tokens_total or 0) + sum(
            (record.prompt_tokens - before[0], record.completion_tokens - before[1])
        )
        model = str(data.get("model") or "default")[:MODEL_LABEL_LENGTH]
        for direction, was, now in (
            ("input", before[0], record.prompt_tokens),
            ("output", before[1], record.completion_tokens),
        ):
            if now > was:
                self.metrics.llm_tokens.labels(run.workflow_name, model, direction).inc(now - was)
        old_cost = float(record.cost_usd) if record.cost_usd is not None else 0.0
        record.cost_usd = usage.cost_usd if usage else None
        if record.cost_usd is not None or old_cost:
            run.cost_usd = (run.cost_usd or 0.0) - old_cost + (record.cost_usd or 0.0)
        if (record.cost_usd or 0.0) > old_cost:
            cost = self.metrics.llm_cost_usd.labels(run.workflow_name, model)
            cost.inc((record.cost_usd or 0.0) - old_cost)

    def _delivery(
        self, run: WorkflowRun, sink: str, data: dict[str, Any], at: datetime | None
    ) -> None:
        """One delivery row per sink of a run: the first record (the sink's own report, else
        what the executor saw) stands."""
        outcome = data.get("outcome")
        if outcome not in OUTCOMES:
            return
        sink = str(data.get("sink") or sink)
        known = self.session.scalars(
            select(SinkDelivery.id).where(
                SinkDelivery.run_id == run.id, SinkDelivery.sink_name == sink
            )
        ).first()
        if known is not None:
            return
        attempts = data.get("attempts")
        self.session.add(
            SinkDelivery(
                run_id=run.id,
                sink_name=sink,
                sink_type=str(data.get("type") or "unknown")[:30],
                outcome=outcome,
                detail=data,
                attempts=attempts if isinstance(attempts, int) and attempts > 0 else 1,
                delivered_at=at if outcome == "delivered" else None,
            )
        )
        self.session.flush()
        self.metrics.sink_deliveries.labels(sink, outcome).inc()

    def _previews(self, run: WorkflowRun, steps: dict[str, RunStep]) -> None:
        """Pending gates of remediation steps get their preview once its task has reported."""
        query = select(Approval).where(Approval.run_id == run.id, Approval.decision == "pending")
        for gate in self.session.scalars(query):
            if gate.preview:
                continue
            task = steps.get(preview_task(gate.step_name))
            shown = parse_preview(task.result) if task is not None else None
            if shown is not None:
                gate.preview = shown.model_dump(mode="json")

    def _fixes(self, run: WorkflowRun, steps: dict[str, RunStep]) -> None:
        """The run's incident says what each remediation step's fix did: the rollback task's
        result when it reported (onFailure ask), else the fix task's, with who approved it."""
        reported = [
            (step, fix)
            for step in steps.values()
            if step.kind == "remediation" and (fix := fix_outcome(step.result)) is not None
        ]
        incident = self.session.get(Incident, run.incident_id) if run.incident_id else None
        if not reported or incident is None:
            return
        entries = {
            (entry.get("run"), entry.get("step")): entry
            for entry in incident.remediations or []
            if isinstance(entry, dict)
        }
        # The rollback task's result comes last: it is the step's final outcome.
        for step, fix in sorted(reported, key=lambda f: f[0].name == rollback_task(f[1].step)):
            gate = self._gate(run, approval_task(fix.step))
            approved = gate is not None and gate.decision == "approved"
            known = entries.get((run.name, fix.step)) or {}
            at = step.finished_at or step.started_at
            entries[(run.name, fix.step)] = {
                "run": run.name,
                **replace(
                    fix, approver=gate.approver if gate and approved else fix.approver
                ).as_dict(),
                # A task seen without its times: when the outcome was first recorded.
                "at": _aware(at).isoformat() if at else known.get("at") or _now_text(),
            }
        ordered = sorted(entries.values(), key=lambda entry: str(entry.get("at") or ""))
        if ordered != (incident.remediations or []):
            incident.remediations = ordered

    def _gate(self, run: WorkflowRun, gate: str) -> Approval | None:
        return self.session.scalars(
            select(Approval).where(Approval.run_id == run.id, Approval.gate == gate)
        ).first()

    def _approval(self, run: WorkflowRun, node: NodeObservation, executor: str) -> None:
        """A gate waiting is a pending approval; a gate passed records its answer, also when
        it was given outside the server (`argo node set`) or the deadline answered it."""
        record = self._gate(run, node.name)
        if record is None:
            record = Approval(
                run_id=run.id,
                gate=node.name,
                step_name=node.name.removesuffix("-approval"),
                decision="pending",
            )
            if node.started_at:
                record.requested_at = node.started_at
            self.session.add(record)
        if node.phase not in FINISHED or record.decision != "pending":
            return
        parameters = node.parameters
        approved = parameters.get("approved") == "true" and node.phase == "Succeeded"
        approver = (parameters.get("approver") or "").strip()
        record.decision = "approved" if approved else "denied"
        record.approver = approver[:255] or None
        record.comment = parameters.get("comment") or (
            None if approver else "no answer before the deadline"
        )
        record.channel = executor if approver else "timeout"
        record.decided_at = node.finished_at or datetime.now(UTC)
        shown = self.preview(run, record.step_name) if approved else None
        if shown is not None:  # answered outside the server (`argo node set`, the local engine)
            record.preview = record.preview or shown.model_dump(mode="json")
            record.approved_resource_version = shown.resource_version

    def _alert(
        self,
        run: WorkflowRun,
        alert: Alert | None,
        steps: dict[str, RunStep],
        outputs: dict[str, Any] | None,
    ) -> None:
        if alert is None:
            return
        answered = sorted(
            (s for s in steps.values() if live_answer(s) is not None),
            key=lambda s: _aware(s.finished_at or datetime.max),
        )
        if answered:
            first = answered[0]
            at = _aware(first.finished_at) if first.finished_at else datetime.now(UTC)
            seconds = _triage(alert, live_answer(first) or {}, at)
            if seconds is not None:
                self.metrics.triage_seconds.observe(max(0.0, seconds))
        if run.finished_at is None or alert.status == "resolved":
            return
        if run.status == "succeeded" and _true((outputs or run.outputs or {}).get("auto_fixed")):
            alert.auto_resolved = True
            alert.status = "resolved"
            alert.resolved_at = alert.resolved_at or _aware(run.finished_at)
            received = _aware(alert.received_at)
            self.metrics.resolution_seconds.observe(
                max(0.0, (alert.resolved_at - received).total_seconds())
            )
            return
        if alert.escalated_at is not None:
            return
        for step in steps.values():
            result = step.result or {}
            if (
                step.kind == "sink"
                and result.get("outcome") == "delivered"
                and result.get("type") in ESCALATING_SINKS
            ):
                alert.escalated_at = step.finished_at or run.finished_at
                alert.escalated_to = f"{result['type']}:{result.get('sink') or step.name}"[:255]
                alert.status = "escalated"
                return


def _triage(alert: Alert, answer: dict[str, Any], now: datetime) -> float | None:
    """The first agent answer about an alert is its triage; returns received -> triaged seconds."""
    if alert.triage_completed_at is not None:
        return None
    alert.triage_completed_at = now
    alert.ai_analysis = answer
    confidence = answer.get("confidence")
    alert.ai_confidence = float(confidence) if isinstance(confidence, (int, float)) else None
    return (now - _aware(alert.received_at)).total_seconds()


def _why(message: str | None, steps: dict[str, RunStep]) -> str | None:
    """Why a run did not succeed: the executor's (or operator's) message, then each failed
    step's own error (an OOM kill, a failed command)."""
    parts = [message]
    parts += [
        f"step '{name}': {step.error}"
        for name, step in sorted(steps.items())
        if step.phase in ("Failed", "Error") and step.error
    ]
    text = "; ".join(str(part) for part in parts if part)
    return text[:4000] or None


def _kind(node: NodeObservation) -> str:
    """The kind of a task without a result yet, from the compiler's naming."""
    if node.type == "Suspend":
        return "approval"
    if node.name == OUTPUTS_TASK:
        return "outputs"
    for suffix, kind in (("-approval-request", "approval-request"), ("-condition", "condition")):
        if node.name.endswith(suffix):
            return kind
    return "sink" if node.name.startswith("sink-") else "step"


def _json_object(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _now_text() -> str:
    return datetime.now(UTC).isoformat()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")
