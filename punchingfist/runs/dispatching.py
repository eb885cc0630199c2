"""Dispatching: the `Executor` protocol and the outbox that submits queued runs to one.

`dispatch_pending` submits what the outbox holds; it runs after the intake transaction,
never inside a request. With a daily LLM budget (OperatorConfig `spec.llm.dailyBudgetUsd`) it
first adds up what today's runs cost (the runs queued since 00:00 UTC, as the recorder stored
their steps' costs): once that reaches the budget, due runs are refused instead of started,
each recorded as failed with the reason, until the day turns. Runs already running finish (each
agent step within its own budget), so the day's spend can pass the budget by what they take.

A run about a stored alert starts with the past incidents most like it (#22): its event's
`similar_incidents`, at most `SIMILAR_LIMIT` of them, one per past incident, never its own
incident, each text cut to `SIMILAR_TEXT` characters (`with_similar`). One retrieval per run,
in a savepoint: when it fails, that is logged and the run starts without them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from punchingfist.errors import PunchingFistError
from punchingfist.memory.retrieval import Match, alert_of, similar
from punchingfist.runs.metrics import Metrics
from punchingfist.runs.recording import Recorder
from punchingfist.runs.rules import aware
from punchingfist.store import Alert, Incident, OutboxEntry, WorkflowRun


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


SIMILAR_LIMIT = 3
"""How many similar past incidents a run's event holds."""
SIMILAR_TEXT = 500
"""How many characters of a past incident's summary, root cause and fix a run is given."""
_SIMILAR_SCANNED = 50
"""How many matches are looked at to find `SIMILAR_LIMIT` other incidents (scoring them all
costs the same: `similar` scores every candidate)."""


def with_similar(
    session: Session, record: WorkflowRun, arguments: dict[str, Any]
) -> dict[str, Any]:
    """`arguments` with the event's `similar_incidents`: the past incidents most like the run's
    alert (`memory.retrieval.similar`, its threshold; entries judged wrong never), best first,
    one per incident, without the run's own; unchanged when there are none, when the run has
    no stored alert, and when the retrieval fails (logged: the run starts all the same)."""
    event = arguments.get("event")
    if record.alert_id is None or not isinstance(event, dict):
        return arguments
    try:
        with session.begin_nested():  # a failed statement must not end the outbox's transaction
            alert = session.get(Alert, record.alert_id)
            if alert is None:
                return arguments
            own = record.incident_id or alert.incident_id
            matches = similar(session, alert_of(alert), limit=_SIMILAR_SCANNED)
            chosen: dict[str, Match] = {}
            for match in matches:
                key = str(match.incident_id or match.entry_id)
                if (own is None or match.incident_id != own) and key not in chosen:
                    chosen[key] = match
                if len(chosen) == SIMILAR_LIMIT:
                    break
            ids = [m.incident_id for m in chosen.values() if m.incident_id is not None]
            titles: dict[Any, str] = {}
            if ids:
                query = select(Incident.id, Incident.title).where(Incident.id.in_(ids))
                titles = {id_: title for id_, title in session.execute(query)}
    except Exception:  # never a reason not to start the run
        log.exception("run %s: similar past incidents not found; it starts without", record.name)
        return arguments
    if not chosen:
        return arguments
    shown = [
        similar_incident(key, m, titles.get(m.incident_id) if m.incident_id else None)
        for key, m in chosen.items()
    ]
    return {**arguments, "event": {**event, "similar_incidents": shown}}


def similar_incident(key: str, match: Match, title: str | None) -> dict[str, Any]:
    """A past incident as a run's `event.similar_incidents` holds it: `id` is its incident's
    (the entry's when it has none), which the agent's answer names in `relied_on`."""
    return {
        "id": key,
        "title": _cut(title or match.alert_name),
        "alertname": match.alert_name,
        "when": aware(match.when).date().isoformat(),
        "score": match.score,
        "confirmed": match.confirmed,
        "outcome": match.outcome,
        "summary": _cut(match.summary),
        "root_cause": _cut(match.root_cause),
        "fix": _cut(match.fix),
        "reasons": [_cut(reason) for reason in match.reasons[:8]],
    }


def _cut(text: str | None) -> str | None:
    return text if text is None or len(text) <= SIMILAR_TEXT else text[: SIMILAR_TEXT - 1] + "…"


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
                parameters=with_similar(session, record, with_joined(session, record))
                if record is not None
                else {},
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
