"""The reads of the record that the JSON API (`server.app`, `server.approvals`) and the web
page (`server.web`) both answer: the same queries, as views of stored rows (`views.row`)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from punchingfist.server.views import row
from punchingfist.store import Alert, Incident, WorkflowRun
from punchingfist.store.models import Approval, RunStep, SinkDelivery

MAX_LIMIT = 500


def limited(limit: int) -> int:
    """`limit` within 1..MAX_LIMIT."""
    return max(1, min(limit, MAX_LIMIT))


def as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def run_view(run: WorkflowRun) -> dict[str, Any]:
    """A run with its whole parameters (the event's shared part is its notification's)."""
    return row(run) | {"parameters": run.arguments}


def incidents(
    session: Session, status: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The newest incidents first."""
    query = select(Incident).order_by(Incident.created_at.desc()).limit(limited(limit))
    if status:
        query = query.where(Incident.status == status)
    return [row(i) for i in session.scalars(query)]


def incident(session: Session, incident_id: str) -> dict[str, Any] | None:
    """An incident with its alerts (in the order they came), or None."""
    key = as_uuid(incident_id)
    found = session.get(Incident, key) if key else None
    if found is None:
        return None
    view = row(found)
    members = select(Alert).where(Alert.incident_id == found.id)
    view["alerts"] = [row(a) for a in session.scalars(members.order_by(Alert.received_at))]
    return view


def runs(
    session: Session,
    status: str | None = None,
    limit: int = 100,
    *,
    incident_id: str | None = None,
) -> list[dict[str, Any]]:
    """The newest runs first (without their parameters); those of one incident when given."""
    query = select(WorkflowRun).order_by(WorkflowRun.created_at.desc()).limit(limited(limit))
    if status:
        query = query.where(WorkflowRun.status == status)
    if incident_id is not None:
        query = query.where(WorkflowRun.incident_id == as_uuid(incident_id))
    return [row(r, skip=("parameters",)) for r in session.scalars(query)]


def run(session: Session, run_id: str) -> dict[str, Any] | None:
    """A run (by id or name) with its steps, sink deliveries and approvals, or None."""
    key = as_uuid(run_id)
    found = session.get(WorkflowRun, key) if key else WorkflowRun.named(session, run_id)
    if found is None:
        return None
    view = run_view(found)
    for name, model in (
        ("steps", RunStep),
        ("sink_deliveries", SinkDelivery),
        ("approvals", Approval),
    ):
        view[name] = [
            row(r) for r in session.scalars(select(model).where(model.run_id == found.id))
        ]
    return view


def approvals(session: Session, decision: str | None = "pending") -> list[dict[str, Any]]:
    """Approval gates with their run's name (`run`); only those with `decision` when given."""
    query = select(Approval, WorkflowRun.name).join(WorkflowRun, WorkflowRun.id == Approval.run_id)
    if decision:
        query = query.where(Approval.decision == decision)
    return [row(a) | {"run": name} for a, name in session.execute(query)]
