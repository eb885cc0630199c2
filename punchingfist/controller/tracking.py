"""Run tracking: the Argo Workflows we start become run, step, approval and alert records.

`track(workflow, sessions, metrics)` reads one Argo Workflow object (as the API server returns
it) and brings the store up to date; it is idempotent, so a replayed or repeated watch event
changes nothing and counts nothing twice. `register(registry, sessions=..., metrics=...)` adds
the Kopf event handler that calls it for every Workflow labelled `punchingfist.io/workflow`;
the operator calls it while it builds its registry.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypedDict

import kopf
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from punchingfist.compiler.naming import (
    ANNOTATION_STOPPED,
    LABEL_FINGERPRINT,
    LABEL_SOURCE,
    LABEL_WORKFLOW,
    OUTPUTS_PARAM,
    OUTPUTS_TASK,
    RESULT_PARAM,
)
from punchingfist.controller.stalls import Watchdog, argo_time, stuck_reason
from punchingfist.runs.metrics import Metrics
from punchingfist.store import Alert, Approval, RunStep, SinkDelivery, WorkflowRun
from punchingfist.store.recording import record_triage

log = logging.getLogger("punchingfist.tracking")

RUN_STATUS = {
    "Pending": "submitted",
    "Running": "running",
    "Succeeded": "succeeded",
    "Failed": "failed",
    "Error": "error",
}
"""Argo's workflow phase -> `workflow_runs.status`."""
FINISHED = frozenset({"Succeeded", "Failed", "Error", "Skipped", "Omitted"})
ESCALATING_SINKS = frozenset({"pagerduty", "workflow"})
"""A delivered sink of these types means the alert went to humans (or another workflow)."""
TASK_NODES = frozenset({"Pod", "Suspend", "Skipped", "Retry", "Container", "Plugin"})


class ArgoNode(TypedDict, total=False):
    id: str
    displayName: str
    templateName: str
    type: str
    phase: str
    message: str
    startedAt: str | None
    finishedAt: str | None
    outputs: dict[str, Any]


class ArgoWorkflowStatus(TypedDict, total=False):
    phase: str
    message: str
    startedAt: str | None
    finishedAt: str | None
    nodes: dict[str, ArgoNode]


class ArgoWorkflow(TypedDict, total=False):
    metadata: dict[str, Any]
    spec: dict[str, Any]
    status: ArgoWorkflowStatus


@dataclass
class Tracked:
    """What one call of `track` found and changed (for logs and tests)."""

    run: str
    status: str
    created: bool = False
    steps: list[str] = field(default_factory=list)
    """Steps whose record changed."""


def track(
    workflow: ArgoWorkflow | dict[str, Any], sessions: sessionmaker[Session], metrics: Metrics
) -> Tracked | None:
    """Record what `workflow` (an Argo Workflow object) says; None when it is not ours."""
    metadata = workflow.get("metadata") or {}
    labels = metadata.get("labels") or {}
    if not labels.get(LABEL_WORKFLOW) or not metadata.get("name"):
        return None
    for attempt in (1, 2):
        try:
            with sessions.begin() as session:
                tracked = _Tracker(session, workflow, metrics).apply()
            break
        except IntegrityError:  # a row written concurrently (first sight of a run): read again
            if attempt == 2:
                raise
    with sessions() as session:
        active = session.scalar(
            select(func.count())
            .select_from(WorkflowRun)
            .where(WorkflowRun.status.in_(("submitted", "running")))
        )
    metrics.active_tasks.set(active or 0)
    return tracked


class _Tracker:
    def __init__(self, session: Session, workflow: Any, metrics: Metrics) -> None:
        self.session, self.workflow, self.metrics = session, workflow, metrics
        self.metadata: dict[str, Any] = workflow.get("metadata") or {}
        self.status: dict[str, Any] = workflow.get("status") or {}
        self.nodes: list[dict[str, Any]] = list((self.status.get("nodes") or {}).values())

    def apply(self) -> Tracked:
        run, created = self._run()
        phase = self.status.get("phase") or "Pending"
        finished_before = run.finished_at is not None
        if not finished_before:  # a finished run never goes back (replayed older events)
            run.status = RUN_STATUS.get(phase, run.status)
            run.started_at = run.started_at or argo_time(self.status.get("startedAt"))
            if phase in FINISHED:
                run.finished_at = argo_time(self.status.get("finishedAt")) or datetime.now(UTC)
        tracked = Tracked(run=run.name, status=run.status, created=created)
        steps = {
            s.name: s for s in self.session.scalars(select(RunStep).where(RunStep.run_id == run.id))
        }
        alert = self.session.get(Alert, run.alert_id) if run.alert_id else None
        if alert is not None and run.started_at and alert.triage_started_at is None:
            alert.triage_started_at = run.started_at
            if alert.status == "received":
                alert.status = "triaging"
        outputs: dict[str, Any] | None = None
        for node in self.nodes:
            name = _task_name(node)
            if name is None:
                continue
            result = _parameter(node, RESULT_PARAM)
            if name == OUTPUTS_TASK:
                outputs = _json_object(_parameter(node, OUTPUTS_PARAM))
            if self._step(run, steps, name, node, _json_object(result)):
                tracked.steps.append(name)
            if node.get("type") == "Suspend":
                self._approval(run, name, node)
        if outputs is not None:
            run.outputs = outputs
        if not finished_before and run.finished_at is not None and phase != "Succeeded":
            run.error = self._why(steps)
        self._alert(run, alert, steps, outputs)
        return tracked

    def _why(self, steps: dict[str, RunStep]) -> str | None:
        """Why a run did not succeed: the operator's reason for stopping it, else Argo's
        message, then each failed step's own error (an OOM kill, a failed command)."""
        annotations = self.metadata.get("annotations") or {}
        parts = [annotations.get(ANNOTATION_STOPPED) or self.status.get("message")]
        parts += [
            f"step '{name}': {step.error}"
            for name, step in sorted(steps.items())
            if step.phase in ("Failed", "Error") and step.error
        ]
        text = "; ".join(str(part) for part in parts if part)
        return text[:4000] or None

    def _run(self) -> tuple[WorkflowRun, bool]:
        name = self.metadata["name"]
        run = WorkflowRun.named(self.session, name)
        if run is not None:
            return run, False
        # Started without the server (`argo submit`, `punchingfist submit`, a CronWorkflow).
        labels = self.metadata.get("labels") or {}
        arguments = (self.workflow.get("spec") or {}).get("arguments") or {}
        parameters: dict[str, Any] = {
            p["name"]: p.get("value") for p in arguments.get("parameters") or [] if "name" in p
        }
        if isinstance(parameters.get("event"), str):
            parameters["event"] = _json_object(parameters["event"]) or {}
        run = WorkflowRun(
            name=name,
            namespace=self.metadata.get("namespace") or "default",
            workflow_name=labels[LABEL_WORKFLOW],
            source_name=labels.get(LABEL_SOURCE),
            fingerprint=labels.get(LABEL_FINGERPRINT) or None,
            parameters=parameters,
            executor="argo",
            status="submitted",
        )
        self.session.add(run)
        self.session.flush()
        return run, True

    def _step(
        self,
        run: WorkflowRun,
        steps: dict[str, RunStep],
        name: str,
        node: dict[str, Any],
        result: dict[str, Any] | None,
    ) -> bool:
        """Bring one step record up to date; True when it changed."""
        record = steps.get(name)
        kind = str((result or {}).get("kind") or _kind(name, node))
        phase = str(node.get("phase") or "Pending")
        started, finished = argo_time(node.get("startedAt")), argo_time(node.get("finishedAt"))
        if record is None:
            record = RunStep(
                run_id=run.id,
                name=name,
                kind=kind,
                phase=phase,
                prompt_tokens=0,
                completion_tokens=0,
            )
            self.session.add(record)
            steps[name] = record
        elif record.finished_at is not None and phase not in FINISHED:
            return False  # an older event of a step already recorded as done
        before = (record.phase, record.kind, record.result, record.started_at, record.finished_at)
        was_finished = record.finished_at is not None
        record.phase, record.kind = phase, kind
        record.started_at = record.started_at or started
        message = str(node.get("message") or "")
        if phase == "Pending" and stuck_reason(message):
            record.error = message[:4000]  # why it cannot start, kept when it is stopped
        elif phase == "Running" and stuck_reason(record.error or ""):
            record.error = None  # it started after all
        if phase in FINISHED:
            record.finished_at = record.finished_at or finished or started
            if message and phase != "Succeeded":
                stuck = record.error if stuck_reason(record.error or "") else None
                record.error = (f"{message} ({stuck})" if stuck and stuck != message else message)[
                    :4000
                ]
        if result is not None and result != record.result:
            self._result(run, record, result)
        if record.finished_at is not None and not was_finished and phase != "Skipped":
            seconds = result.get("seconds") if result else None
            if not isinstance(seconds, (int, float)) and record.started_at:
                seconds = (_aware(record.finished_at) - _aware(record.started_at)).total_seconds()
            if isinstance(seconds, (int, float)):
                self.metrics.task_duration.labels(kind, phase).observe(max(0.0, seconds))
            if kind == "sink" and result is not None:
                self._delivery(run, name, result, record.finished_at)
        return before != (
            record.phase,
            record.kind,
            record.result,
            record.started_at,
            record.finished_at,
        )

    def _result(self, run: WorkflowRun, record: RunStep, result: dict[str, Any]) -> None:
        """A step's result.json replaces the earlier one; token counts move by the difference."""
        record.result = result
        record.tool_calls = (
            result.get("tool_calls") if isinstance(result.get("tool_calls"), list) else None
        )
        if result.get("error"):
            record.error = str(result["error"])[:4000]
        given = result.get("usage")
        usage: dict[str, Any] = given if isinstance(given, dict) else {}
        previous = record.prompt_tokens + record.completion_tokens
        record.prompt_tokens = _int(usage.get("prompt_tokens"))
        record.completion_tokens = _int(usage.get("completion_tokens"))
        delta = record.prompt_tokens + record.completion_tokens - previous
        run.tokens_total = (run.tokens_total or 0) + delta
        if delta > 0:
            self.metrics.llm_tokens.labels(run.workflow_name).inc(delta)
        cost = usage.get("cost_usd")
        old_cost = float(record.cost_usd) if record.cost_usd is not None else 0.0
        record.cost_usd = float(cost) if isinstance(cost, (int, float)) else None
        if record.cost_usd is not None or old_cost:
            run.cost_usd = (run.cost_usd or 0.0) - old_cost + (record.cost_usd or 0.0)

    def _delivery(
        self, run: WorkflowRun, task: str, result: dict[str, Any], at: datetime | None
    ) -> None:
        outcome = result.get("outcome")
        if outcome not in ("delivered", "skipped", "failed"):
            return
        sink = str(result.get("sink") or task.removeprefix("sink-"))
        known = self.session.scalars(
            select(SinkDelivery.id).where(
                SinkDelivery.run_id == run.id, SinkDelivery.sink_name == sink
            )
        ).first()
        if known is not None:  # reported by the sink already
            return
        self.session.add(
            SinkDelivery(
                run_id=run.id,
                sink_name=sink,
                sink_type=str(result.get("type") or "unknown")[:30],
                outcome=outcome,
                detail=result,
                attempts=_int(result.get("attempts")) or 1,
                delivered_at=at if outcome == "delivered" else None,
            )
        )
        self.metrics.sink_deliveries.labels(sink, outcome).inc()

    def _approval(self, run: WorkflowRun, gate: str, node: dict[str, Any]) -> None:
        """A gate waiting is a pending approval; a gate passed records its answer, also when
        it was given outside the server (`argo node set`) or the deadline answered it."""
        record = self.session.scalars(
            select(Approval).where(Approval.run_id == run.id, Approval.gate == gate)
        ).first()
        phase = node.get("phase")
        if record is None:
            record = Approval(
                run_id=run.id,
                gate=gate,
                step_name=gate.removesuffix("-approval"),
                decision="pending",
            )
            if node.get("startedAt"):
                record.requested_at = argo_time(node.get("startedAt")) or datetime.now(UTC)
            self.session.add(record)
        if phase not in FINISHED or record.decision != "pending":
            return
        approved = _parameter(node, "approved") == "true" and phase == "Succeeded"
        approver = (_parameter(node, "approver") or "").strip()
        record.decision = "approved" if approved else "denied"
        record.approver = approver[:255] or None
        record.comment = _parameter(node, "comment") or None
        record.channel = "argo" if approver else "timeout"
        record.decided_at = argo_time(node.get("finishedAt")) or datetime.now(UTC)

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
            (
                s
                for s in steps.values()
                if s.kind == "agent"
                and s.phase == "Succeeded"
                and isinstance((s.result or {}).get("result"), dict)
            ),
            key=lambda s: s.finished_at or datetime.max.replace(tzinfo=UTC),
        )
        if answered:
            first = answered[0]
            at = _aware(first.finished_at) if first.finished_at else datetime.now(UTC)
            seconds = record_triage(alert, (first.result or {})["result"], at)
            if seconds is not None:
                self.metrics.triage_seconds.observe(max(0.0, seconds))
        if run.finished_at is None or alert.status == "resolved":
            return
        if run.status == "succeeded" and _true((outputs or {}).get("auto_fixed")):
            alert.auto_resolved = True
            alert.status = "resolved"
            alert.resolved_at = alert.resolved_at or run.finished_at
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


def register(
    registry: kopf.OperatorRegistry,
    *,
    sessions: sessionmaker[Session],
    metrics: Metrics,
    watchdog: Watchdog | None = None,
) -> None:
    """Add the run-tracking handler to `registry` (id `punchingfist-run-tracking`); with a
    `watchdog`, runs whose step pods cannot start are stopped too (stalls.py)."""

    @kopf.on.event(
        "argoproj.io",
        "v1alpha1",
        "workflows",
        id="punchingfist-run-tracking",
        labels={LABEL_WORKFLOW: kopf.PRESENT},
        registry=registry,
    )
    def track_workflow(event: kopf.RawEvent, logger: Any, **_: Any) -> None:
        """Every change of one of our Argo Workflows updates its records (deletion keeps them)."""
        if event.get("type") == "DELETED":
            return
        if watchdog is not None:
            watchdog.check(dict(event["object"]))
        tracked = track(dict(event["object"]), sessions, metrics)
        if tracked is not None and (tracked.created or tracked.steps):
            logger.info(
                "run %s: %s; steps changed: %s",
                tracked.run,
                tracked.status,
                ", ".join(tracked.steps) or "none",
            )


def _task_name(node: dict[str, Any]) -> str | None:
    """The DAG task a node stands for, or None (DAG nodes, retry attempts `task(1)`)."""
    name = str(node.get("displayName") or "")
    if node.get("type") not in TASK_NODES or not name:
        return None
    if node.get("type") == "Pod" and name.endswith(")") and "(" in name:
        return None  # one attempt of a retried task: its Retry node speaks for it
    return name


def _kind(name: str, node: dict[str, Any]) -> str:
    """The kind of a task without a result yet, from the compiler's naming."""
    if node.get("type") == "Suspend":
        return "approval"
    if name == OUTPUTS_TASK:
        return "outputs"
    for suffix, kind in (("-approval-request", "approval-request"), ("-condition", "condition")):
        if name.endswith(suffix):
            return kind
    return "sink" if name.startswith("sink-") else "step"


def _parameter(node: dict[str, Any], name: str) -> str | None:
    for parameter in (node.get("outputs") or {}).get("parameters") or []:
        if parameter.get("name") == name:
            value = parameter.get("value")
            return None if value is None else str(value)
    return None


def _json_object(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")
