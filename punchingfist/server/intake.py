"""Alertmanager notifications in: dedup, correlate into incidents, queue runs (D7).

One transaction per notification: the alert rows, their incident, relationships, the run and
its outbox entry are committed together or not at all, so a crash between commit and
submission loses nothing (the outbox is read again) and a retried post creates nothing twice.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
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
    """Store one notification with a few statements per payload, not per alert."""
    now = now or datetime.now(UTC)
    result = IntakeResult(received=len(payload.alerts))
    kept: list[tuple[int, PayloadAlert, list[Source]]] = []
    for index, incoming in enumerate(payload.alerts):
        matched = [s for s in sources if matches(s, incoming.labels)]
        if matched:
            kept.append((index, incoming, matched))
        else:
            result.filtered += 1
            result.count("", "filtered")
    if not kept:
        return result
    fingerprints = {incoming.fingerprint for _, incoming, _ in kept}
    known = session.scalars(select(Alert).where(Alert.fingerprint.in_(fingerprints))).all()
    by_key = {(a.fingerprint, _aware(a.starts_at)): a for a in known if a.starts_at}
    source_ids = {s.name: _source_id(session, s, namespace) for _, _, m in kept for s in m[:1]}
    created: list[tuple[int, Alert, list[Source]]] = []
    touched_incidents: set[Any] = set()
    for index, incoming, matched in kept:
        source = matched[0]
        row = by_key.get((incoming.fingerprint, _aware(incoming.starts_at)))
        if row is None:
            row = _new_alert(incoming, source_ids[source.name], now)
            by_key[(incoming.fingerprint, _aware(incoming.starts_at))] = row
            created.append((index, row, matched))
            result.new += 1
            result.count(source.name, "new")
        else:
            row.labels, row.annotations = dict(incoming.labels), dict(incoming.annotations)
            if incoming.status == "resolved" and row.status != "resolved":
                result.resolved += 1
                result.count(source.name, "resolved")
            else:
                result.updated += 1
                result.count(source.name, "updated")
        if incoming.status == "resolved":
            if row.resolved_at is None:
                row.resolved_at = now
                result.resolution_seconds.append((now - _aware(row.received_at)).total_seconds())
            row.status = "resolved"
            row.ends_at = incoming.ends_at
            if row.incident_id is not None:
                touched_incidents.add(row.incident_id)
    if created:
        _correlate(session, [row for _, row, _ in created], known, payload, now)
        session.add_all(row for _, row, _ in created)
        session.flush()
        result.runs = _queue_runs(session, created, payload, namespace)
    if touched_incidents:
        session.flush()
        _resolve_incidents(session, touched_incidents, now)
    return result


def _new_alert(incoming: PayloadAlert, source_id: Any, now: datetime) -> Alert:
    labels, annotations = dict(incoming.labels), dict(incoming.annotations)
    severity = labels.get("severity", "warning")
    firing = incoming.status == "firing"
    return Alert(
        id=uuid.uuid4(),
        fingerprint=incoming.fingerprint,
        starts_at=incoming.starts_at,
        status="received" if firing else "resolved",
        severity=severity if severity in SEVERITIES else "warning",
        alert_name=labels.get("alertname", "unnamed"),
        summary=annotations.get("summary"),
        description=annotations.get("description"),
        labels=labels,
        annotations=annotations,
        source_id=source_id,
        received_at=now,
        resolved_at=None if firing else now,
        auto_resolved=False,
    )


def _source_id(session: Session, source: Source, namespace: str) -> Any:
    record = session.scalars(
        select(SourceRecord.id).where(
            SourceRecord.namespace == namespace, SourceRecord.name == source.name
        )
    ).one_or_none()
    if record is not None:
        return record
    new = SourceRecord(id=uuid.uuid4(), namespace=namespace, name=source.name,
                       type=source.spec.type, spec=source.spec.dump())  # fmt: skip
    session.add(new)
    session.flush()
    return new.id


def _correlate(
    session: Session,
    rows: list[Alert],
    known: Sequence[Alert],
    payload: AlertmanagerPayload,
    now: datetime,
) -> None:
    """Attach new alerts to incidents: the notification's Alertmanager group, else the same
    alertname and namespace/service inside the window; relate each to the incident's first
    alert, and to an earlier firing of the same fingerprint as a duplicate."""
    by_group = session.scalars(
        select(Incident)
        .where(Incident.group_key == payload.group_key, Incident.status != "resolved")
        .limit(1)
    ).first()
    incidents: dict[str, Incident] = {}
    first_alert: dict[Any, Any] = {}
    earlier: dict[str, Alert] = {}
    for alert in sorted(known, key=lambda a: _aware(a.received_at)):
        if alert.fingerprint is not None:
            earlier.setdefault(alert.fingerprint, alert)
    relationships: list[AlertRelationship] = []
    for row in rows:
        labels = row.labels or {}
        title = _title(row.alert_name, labels.get("namespace") or labels.get("service") or "")
        incident, confidence = by_group, 0.9
        if incident is None:
            incident = incidents.get(title) or session.scalars(
                select(Incident)
                .where(Incident.status != "resolved", Incident.title == title,
                       Incident.created_at >= now - CORRELATION_WINDOW)
                .limit(1)
            ).first()  # fmt: skip
            confidence = 0.6
        if incident is None:
            incident = Incident(id=uuid.uuid4(), title=title, status="open",
                                severity=row.severity, group_key=payload.group_key,
                                description=row.summary, alerts_count=0)  # fmt: skip
            session.add(incident)
            first_alert[incident.id] = None
            by_group = incident  # the rest of this notification's group joins it
        incidents[title] = incident
        if incident.id not in first_alert:
            first_alert[incident.id] = session.scalars(
                select(Alert.id)
                .where(Alert.incident_id == incident.id)
                .order_by(Alert.received_at)
                .limit(1)
            ).first()
        before = earlier.get(row.fingerprint or "")
        parent = first_alert[incident.id]
        if parent is not None and (before is None or parent != before.id):
            relationships.append(AlertRelationship(parent_alert_id=parent, child_alert_id=row.id,
                                                   relationship_type="related",
                                                   confidence=confidence))  # fmt: skip
        if parent is None:
            first_alert[incident.id] = row.id
        if before is not None:
            relationships.append(AlertRelationship(parent_alert_id=before.id,
                                                   child_alert_id=row.id,
                                                   relationship_type="duplicate",
                                                   confidence=1.0))  # fmt: skip
            row.parent_alert_id = before.id
        row.incident_id = incident.id
        incident.alerts_count = (incident.alerts_count or 0) + 1
        if SEVERITIES.index(row.severity) < SEVERITIES.index(incident.severity or "info"):
            incident.severity = row.severity
    session.flush()  # incidents before the alerts that point at them
    session.add_all(relationships)


def _resolve_incidents(session: Session, incident_ids: set[Any], now: datetime) -> None:
    still_open = set(
        session.scalars(
            select(Alert.incident_id).where(
                Alert.incident_id.in_(incident_ids), Alert.status != "resolved"
            )
        )
    )
    for incident in session.scalars(select(Incident).where(Incident.id.in_(incident_ids))):
        if incident.id not in still_open and incident.status != "resolved":
            incident.status = "resolved"
            incident.resolved_at = now
            incident.mttr_seconds = int((now - _aware(incident.created_at)).total_seconds())


def _queue_runs(
    session: Session,
    created: list[tuple[int, Alert, list[Source]]],
    payload: AlertmanagerPayload,
    namespace: str,
) -> list[str]:
    planned: list[tuple[str, int, Alert, Source]] = []
    for index, row, matched in created:
        if row.status == "resolved":
            continue
        assert row.fingerprint is not None and row.starts_at is not None
        for source in matched:
            name = run_name(source.spec.trigger_workflow, source.name, row.fingerprint,
                            _aware(row.starts_at))  # fmt: skip
            planned.append((name, index, row, source))
    if not planned:
        return []
    taken = set(session.scalars(
        select(OutboxEntry.run_name).where(OutboxEntry.run_name.in_([p[0] for p in planned]))
    ))  # fmt: skip
    names: list[str] = []
    for name, index, row, source in planned:
        if name in taken:
            continue
        taken.add(name)
        workflow = source.spec.trigger_workflow
        event = event_from_payload(payload, index, context=dict(source.spec.context))
        parameters = {"event": event, "source": source.name, "fingerprint": row.fingerprint}
        session.add(WorkflowRun(name=name, namespace=namespace, workflow_name=workflow,
                                alert_id=row.id, incident_id=row.incident_id,
                                source_name=source.name, fingerprint=row.fingerprint,
                                parameters=parameters))  # fmt: skip
        # The parameters live on the run row; the outbox only says what to submit.
        session.add(OutboxEntry(run_name=name, payload={"workflow": workflow,
                                                        "namespace": namespace}))  # fmt: skip
        names.append(name)
    return names


def _title(alert_name: str, place: str) -> str:
    return f"{alert_name} in {place}" if place else alert_name


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
