"""Alertmanager notifications in: dedup, correlate into incidents, queue runs (D7).

One transaction per notification: the alert rows, their incident, relationships, the run and
its outbox entry are committed together or not at all, so a crash between commit and
submission loses nothing (the outbox is read again) and a retried post creates nothing twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from punchingfist.api import Source
from punchingfist.api.alerts import Alert as PayloadAlert
from punchingfist.api.alerts import AlertmanagerPayload, event_from_payload
from punchingfist.api.sources import WebhookSource
from punchingfist.store import Alert, AlertRelationship, Incident, OutboxEntry, WorkflowRun
from punchingfist.store.models import SourceRecord

CORRELATION_WINDOW = timedelta(hours=1)
SEVERITIES = ("critical", "warning", "info")


@dataclass
class IntakeResult:
    received: int = 0
    new: int = 0
    updated: int = 0
    resolved: int = 0
    filtered: int = 0
    runs: list[str] = field(default_factory=list)
    by_source: dict[tuple[str, str], int] = field(default_factory=dict)
    resolution_seconds: list[float] = field(default_factory=list)

    def count(self, source: str, status: str) -> None:
        self.by_source[(source, status)] = self.by_source.get((source, status), 0) + 1

    def as_dict(self) -> dict[str, Any]:
        counts = {"received": self.received, "new": self.new, "updated": self.updated,
                  "resolved": self.resolved, "filtered": self.filtered}  # fmt: skip
        return {**counts, "runs": self.runs}


def matches(source: Source, labels: dict[str, str]) -> bool:
    """An alert matches a webhook Source when every filtered label has an accepted value."""
    assert isinstance(source.spec, WebhookSource)
    return all(labels.get(name) in values for name, values in source.spec.config.filters.items())


def run_name(workflow: str, source: str, fingerprint: str, starts_at: datetime) -> str:
    """Deterministic (D7): an Alertmanager retry maps to the same run, never a second one."""
    key = f"{source}\x00{fingerprint}\x00{starts_at.isoformat()}".encode()
    digest = hashlib.sha256(key).hexdigest()[:10]
    return f"{workflow[: 63 - 11]}-{digest}"


def ingest(
    session: Session,
    sources: list[Source],
    payload: AlertmanagerPayload,
    *,
    namespace: str = "default",
    now: datetime | None = None,
) -> IntakeResult:
    now = now or datetime.now(UTC)
    result = IntakeResult(received=len(payload.alerts))
    for index, incoming in enumerate(payload.alerts):
        matched = [s for s in sources if matches(s, incoming.labels)]
        if not matched:
            result.filtered += 1
            result.count("", "filtered")
            continue
        source = matched[0]
        row, created = _upsert_alert(session, source, incoming, namespace, now)
        if created:
            result.new += 1
            result.count(source.name, "new")
            _correlate(session, row, payload, now)
        elif incoming.status == "resolved" and row.status != "resolved":
            result.resolved += 1
            result.count(source.name, "resolved")
        else:
            result.updated += 1
            result.count(source.name, "updated")
        if incoming.status == "resolved":
            if row.resolved_at is None:
                row.resolved_at = now
                received = _aware(row.received_at)
                result.resolution_seconds.append((now - received).total_seconds())
            row.status = "resolved"
            _maybe_resolve_incident(session, row, now)
            continue
        if created:
            for chosen in matched:
                name = _queue_run(session, chosen, row, payload, index, namespace)
                if name:
                    result.runs.append(name)
    return result


def _source_id(session: Session, source: Source, namespace: str) -> Any:
    record = session.scalars(
        select(SourceRecord).where(
            SourceRecord.namespace == namespace, SourceRecord.name == source.name
        )
    ).one_or_none()
    if record is None:
        record = SourceRecord(namespace=namespace, name=source.name, type=source.spec.type,
                              spec=source.spec.dump())  # fmt: skip
        session.add(record)
        session.flush()
    return record.id


def _upsert_alert(
    session: Session, source: Source, incoming: PayloadAlert, namespace: str, now: datetime
) -> tuple[Alert, bool]:
    existing = session.scalars(
        select(Alert).where(
            Alert.fingerprint == incoming.fingerprint, Alert.starts_at == incoming.starts_at
        )
    ).one_or_none()
    labels, annotations = dict(incoming.labels), dict(incoming.annotations)
    if existing is not None:
        existing.labels, existing.annotations = labels, annotations
        existing.ends_at = (
            incoming.ends_at if incoming.ends_at and incoming.ends_at.year > 1 else None
        )
        return existing, False
    severity = labels.get("severity", "warning")
    row = Alert(
        fingerprint=incoming.fingerprint,
        starts_at=incoming.starts_at,
        ends_at=None,
        status="received",
        severity=severity if severity in SEVERITIES else "warning",
        alert_name=labels.get("alertname", "unnamed"),
        summary=annotations.get("summary"),
        description=annotations.get("description"),
        labels=labels,
        annotations=annotations,
        source_id=_source_id(session, source, namespace),
        received_at=now,
    )
    session.add(row)
    session.flush()
    return row, True


def _correlate(session: Session, row: Alert, payload: AlertmanagerPayload, now: datetime) -> None:
    """Attach the alert to an incident: same Alertmanager group, else same alertname and
    namespace/service inside the window; relate it to the first alert there."""
    labels = row.labels or {}
    place = labels.get("namespace") or labels.get("service") or ""
    incident = session.scalars(
        select(Incident).where(
            Incident.group_key == payload.group_key, Incident.status != "resolved"
        )
    ).first()
    relationship, confidence = "related", 0.9
    if incident is None:
        candidates = session.scalars(
            select(Incident).where(
                Incident.status != "resolved", Incident.created_at >= now - CORRELATION_WINDOW
            )
        ).all()
        incident = next((i for i in candidates if i.title == _title(row.alert_name, place)), None)
        relationship, confidence = "related", 0.6
    earlier = session.scalars(
        select(Alert).where(Alert.fingerprint == row.fingerprint, Alert.id != row.id)
        .order_by(Alert.received_at)
    ).first()  # fmt: skip
    if incident is None:
        incident = Incident(title=_title(row.alert_name, place), status="open",
                            severity=row.severity, group_key=payload.group_key,
                            description=row.summary)  # fmt: skip
        session.add(incident)
        session.flush()
    else:
        first = session.scalars(
            select(Alert).where(Alert.incident_id == incident.id).order_by(Alert.received_at)
        ).first()
        if first is not None and (earlier is None or first.id != earlier.id):
            session.add(AlertRelationship(parent_alert_id=first.id, child_alert_id=row.id,
                                          relationship_type=relationship,
                                          confidence=confidence))  # fmt: skip
    if earlier is not None:
        session.add(AlertRelationship(parent_alert_id=earlier.id, child_alert_id=row.id,
                                      relationship_type="duplicate", confidence=1.0))  # fmt: skip
        row.parent_alert_id = earlier.id
    row.incident_id = incident.id
    incident.alerts_count = (incident.alerts_count or 0) + 1
    if SEVERITIES.index(row.severity) < SEVERITIES.index(incident.severity or "info"):
        incident.severity = row.severity


def _maybe_resolve_incident(session: Session, row: Alert, now: datetime) -> None:
    if row.incident_id is None:
        return
    session.flush()
    open_alerts = session.scalars(
        select(Alert).where(Alert.incident_id == row.incident_id, Alert.status != "resolved")
    ).first()
    if open_alerts is None:
        incident = session.get(Incident, row.incident_id)
        if incident is not None and incident.status != "resolved":
            incident.status = "resolved"
            incident.resolved_at = now
            incident.mttr_seconds = int((now - _aware(incident.created_at)).total_seconds())


def _queue_run(
    session: Session,
    source: Source,
    row: Alert,
    payload: AlertmanagerPayload,
    index: int,
    namespace: str,
) -> str | None:
    workflow = source.spec.trigger_workflow
    assert row.fingerprint is not None and row.starts_at is not None
    name = run_name(workflow, source.name, row.fingerprint, _aware(row.starts_at))
    if session.scalars(select(OutboxEntry).where(OutboxEntry.run_name == name)).first():
        return None
    event = event_from_payload(payload, index, context=dict(source.spec.context))
    parameters = {"event": event, "source": source.name, "fingerprint": row.fingerprint}
    session.add(WorkflowRun(name=name, namespace=namespace, workflow_name=workflow,
                            alert_id=row.id, incident_id=row.incident_id,
                            source_name=source.name, fingerprint=row.fingerprint,
                            parameters=parameters))  # fmt: skip
    session.add(OutboxEntry(run_name=name, payload={"workflow": workflow, "namespace": namespace,
                                                    "parameters": parameters}))  # fmt: skip
    return name


def _title(alert_name: str, place: str) -> str:
    return f"{alert_name} in {place}" if place else alert_name


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
