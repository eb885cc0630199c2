"""Dispatching: the `Executor` protocol and the outbox that submits queued runs to one.

`dispatch_pending` submits what the outbox holds; it runs after the intake transaction,
never inside a request. With a daily LLM budget (OperatorConfig `spec.llm.dailyBudgetUsd`) it
first adds up what today's runs cost (the runs queued since 00:00 UTC, as the recorder stored
their steps' costs): once that reaches the budget, due runs are refused instead of started,
each recorded as failed with the reason, until the day turns. Runs already running finish (each
agent step within its own budget), so the day's spend can pass the budget by what they take.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from punchingfist.errors import PunchingFistError
from punchingfist.runs.metrics import Metrics
from punchingfist.runs.recording import Recorder
from punchingfist.runs.rules import aware
from punchingfist.store import Alert, OutboxEntry, WorkflowRun


class SubmitError(PunchingFistError):
    """A run could not be submitted. `temporary` errors are retried with backoff."""

    def __init__(self, message: str, *, temporary: bool = True) -> None:
        self.temporary = temporary
        super().__init__(message)


@dataclass(frozen=True)
class RunSubmission:
    name: str
    namespace: str
    workflow: str
    parameters: dict[str, Any]
    """`event` (a mapping), `source`, `fingerprint`: the compiled template's parameters."""


class Executor(Protocol):
    name: str

    def submit(self, run: RunSubmission) -> None:
        """Start the run; a run that already exists under that name counts as started."""

    def resume(
        self,
        name: str,
        namespace: str,
        gate: str,
        *,
        approved: bool,
        approver: str,
        comment: str,
        channel: str,
    ) -> None:
        """Answer the approval gate `gate` the run waits at; `SubmitError` (not temporary) when
        it does not wait there."""


log = logging.getLogger("punchingfist.outbox")
MAX_ATTEMPTS = 8


DAILY_BUDGET_REASON = "daily_llm_budget"
"""`punchingfist_runs_refused_total{reason}` of a run refused for the daily LLM budget."""


def spent_today(session: Session, now: datetime) -> float:
    """What the runs queued since 00:00 UTC cost their models so far (USD, as recorded)."""
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    total = session.scalar(
        select(func.coalesce(func.sum(WorkflowRun.cost_usd), 0.0)).where(
            WorkflowRun.created_at >= midnight
        )
    )
    return float(total or 0.0)


def budget_refusal(budget_usd: float, spent_usd: float) -> str:
    """Why a run is not started while the daily LLM budget is spent."""
    return (
        f"refused: the daily LLM budget of ${budget_usd:g} is spent (${spent_usd:.2f} today); "
        "raise OperatorConfig spec.llm.dailyBudgetUsd or wait until 00:00 UTC"
    )


def with_joined(session: Session, record: WorkflowRun) -> dict[str, Any]:
    """The run's arguments, its event's `alerts` extended by the alerts that joined the run
    while it waited (`alerts.covered_by_run`: later alerts of its group or incident), so the
    run sees the group as it stands when it starts."""
    arguments = record.arguments
    event = arguments.get("event")
    if not isinstance(event, dict) or not isinstance(event.get("alerts"), list):
        return arguments
    joined = session.scalars(
        select(Alert).where(Alert.covered_by_run == record.name).order_by(Alert.received_at)
    ).all()
    if not joined:
        return arguments
    alerts = list(event["alerts"])
    seen = {(a.get("fingerprint"), a.get("startsAt")) for a in alerts if isinstance(a, dict)}
    for alert in joined:
        identity = joined_identity(alert)
        if (identity["fingerprint"], identity["startsAt"]) not in seen:
            seen.add((identity["fingerprint"], identity["startsAt"]))
            alerts.append(identity)
    return {**arguments, "event": {**event, "alerts": alerts}}


def joined_identity(alert: Alert) -> dict[str, Any]:
    """A stored alert as `event.alerts` lists it (`api.alerts.GROUP_KEYS`)."""
    labels = alert.labels or {}
    return {
        "fingerprint": alert.fingerprint,
        "alertname": labels.get("alertname", alert.alert_name),
        "severity": labels.get("severity", ""),
        "status": "resolved" if alert.status == "resolved" else "firing",
        "startsAt": aware(alert.starts_at).isoformat() if alert.starts_at else None,
    }


def dispatch_pending(
    sessions: sessionmaker[Session],
    executor: Executor,
    *,
    limit: int = 50,
    daily_budget_usd: float | None = None,
    metrics: Metrics | None = None,
) -> int:
    """Submit due outbox entries; return how many were submitted. With `daily_budget_usd`,
    refuse them instead once today's runs have spent it."""
    now = datetime.now(UTC)
    submitted = 0
    with sessions.begin() as session:
        refusal, remaining = None, float("inf")
        if daily_budget_usd is not None:
            spent = spent_today(session, now)
            remaining = max(0.0, daily_budget_usd - spent)
            if spent >= daily_budget_usd:
                refusal = budget_refusal(daily_budget_usd, spent)
        if metrics is not None:
            metrics.llm_budget_remaining_usd.set(remaining)
        query = (
            select(OutboxEntry)
            .where(OutboxEntry.status == "pending")
            .where(or_(OutboxEntry.next_attempt_at.is_(None), OutboxEntry.next_attempt_at <= now))
            .order_by(OutboxEntry.created_at)
            .limit(limit)
        )
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        for entry in session.scalars(query):
            payload = entry.payload
            record = WorkflowRun.named(session, entry.run_name)
            if refusal is not None:
                entry.status, entry.last_error = "failed", refusal
                Recorder(session, metrics).refused(record, refusal, DAILY_BUDGET_REASON)
                log.warning("run %s not started: %s", entry.run_name, refusal)
                continue
            run = RunSubmission(
                name=entry.run_name,
                namespace=payload["namespace"],
                workflow=payload["workflow"],
                parameters=with_joined(session, record) if record is not None else {},
            )
            try:
                executor.submit(run)
            except SubmitError as error:
                entry.attempts += 1
                entry.last_error = str(error)
                if not error.temporary or entry.attempts >= MAX_ATTEMPTS:
                    entry.status = "failed"
                    if record is not None:
                        Recorder(session).not_submitted(record, str(error))
                    log.error("run %s not submitted: %s", entry.run_name, error)
                else:
                    entry.next_attempt_at = now + timedelta(seconds=min(300, 2**entry.attempts))
                    log.warning(
                        "run %s: %s (attempt %d, retrying)", entry.run_name, error, entry.attempts
                    )
                continue
            entry.status = "done"
            entry.attempts += 1
            if record is not None:
                Recorder(session).submitted(record, executor.name)
            submitted += 1
            log.info("run %s submitted to %s", entry.run_name, executor.name)
    return submitted
