"""Writing what a run reports: step results, sink deliveries, triage on the alert.

One place for the rules, used by the server's report endpoints (Argo runs' steps post their
result.json) and by the local executor (which reads the same files itself)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from punchingfist.store.models import Alert, RunStep, SinkDelivery, WorkflowRun


@dataclass
class StepRecorded:
    first_report: bool
    tokens_added: int
    triage_seconds: float | None


def record_step(
    session: Session, run: WorkflowRun, step: str, data: dict[str, Any], now: datetime
) -> StepRecorded:
    """Store a step's result (a retried report replaces the earlier one) and what follows from
    it: the run's tokens and cost, its status, and the alert's triage when an agent answered."""
    record = session.scalars(
        select(RunStep).where(RunStep.run_id == run.id, RunStep.name == step)
    ).first()
    usage = data.get("usage") or {}
    first_report = record is None
    previous = 0
    if record is None:
        record = RunStep(run_id=run.id, name=step, kind=data["kind"], phase=data["phase"])
        session.add(record)
    else:
        previous = record.prompt_tokens + record.completion_tokens
        run.tokens_total -= previous
        if record.cost_usd is not None and run.cost_usd is not None:
            run.cost_usd -= float(record.cost_usd)
    record.kind, record.phase = data["kind"], data["phase"]
    record.result = data
    record.tool_calls = data.get("tool_calls")
    record.error = data.get("error")
    record.prompt_tokens = int(usage.get("prompt_tokens") or 0)
    record.completion_tokens = int(usage.get("completion_tokens") or 0)
    record.cost_usd = usage.get("cost_usd")
    record.finished_at = now
    run.tokens_total += record.prompt_tokens + record.completion_tokens
    if record.cost_usd is not None:
        run.cost_usd = (run.cost_usd or 0.0) + float(record.cost_usd)
    if run.status in ("pending", "submitted"):
        run.status, run.started_at = "running", run.started_at or now
    triage = None
    answer = data.get("result")
    answered = data["kind"] == "agent" and data.get("success") and isinstance(answer, dict)
    # A replayed answer (recorded turns, no model ran) is no triage of this alert.
    if answered and isinstance(answer, dict) and data.get("replayed") is not True:
        alert = session.get(Alert, run.alert_id) if run.alert_id else None
        triage = record_triage(alert, answer, now)
    tokens = record.prompt_tokens + record.completion_tokens - previous
    return StepRecorded(first_report, tokens, triage)


def record_triage(alert: Alert | None, answer: dict[str, Any], now: datetime) -> float | None:
    """The first agent answer about an alert is its triage; returns received → triaged seconds."""
    if alert is None or alert.triage_completed_at is not None:
        return None
    alert.triage_completed_at = now
    alert.ai_analysis = answer
    confidence = answer.get("confidence")
    alert.ai_confidence = float(confidence) if isinstance(confidence, (int, float)) else None
    received = (
        alert.received_at if alert.received_at.tzinfo else alert.received_at.replace(tzinfo=UTC)
    )
    return (now - received).total_seconds()


def record_delivery(
    session: Session, run: WorkflowRun, sink: str, data: dict[str, Any], now: datetime
) -> None:
    outcome = data["outcome"]
    session.add(
        SinkDelivery(
            run_id=run.id,
            sink_name=sink,
            sink_type=data.get("type") or "unknown",
            outcome=outcome,
            detail=data,
            attempts=int(data.get("attempts") or 1),
            delivered_at=now if outcome == "delivered" else None,
        )
    )
