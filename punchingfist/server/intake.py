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
from typing import Any, cast

from sqlalchemy import Table, Update, bindparam, func, select, update
from sqlalchemy.orm import Session

from punchingfist.api import Source
from punchingfist.api.alerts import Alert as PayloadAlert
from punchingfist.api.alerts import (
    AlertmanagerPayload,
    alert_view,
    event_from_payload,
    group_identities,
)
from punchingfist.api.sources import WebhookSource
from punchingfist.store import Alert, AlertRelationship, Incident, OutboxEntry, WorkflowRun
from punchingfist.store.bulk import EncodedJSON, Ids, encode_json, insert_many, one_of
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
    """Store one notification (see `ingest_batch`)."""
    return ingest_batch(session, [(sources, payload)], namespace=namespace, now=now)[0]


def ingest_batch(
    session: Session,
    deliveries: Sequence[tuple[list[Source], AlertmanagerPayload]],
    *,
    namespace: str = "default",
    now: datetime | None = None,
    source_ids: dict[tuple[str, str], Any] | None = None,
) -> list[IntakeResult]:
    """Store several notifications in one transaction, with a fixed number of statements per
    batch rather than per alert: one lookup of known alerts, of sources, of open incidents, then
    one multi-row insert per table. Deliveries are applied in order, so a retry inside the same
    batch updates the row its first copy created."""
    batch = _Batch(session, namespace, now or datetime.now(UTC))
    results = [IntakeResult(received=len(payload.alerts)) for _, payload in deliveries]
    kept: list[_Kept] = []
    for result, (sources, payload) in zip(results, deliveries, strict=True):
        notification = _Notification(payload)
        for index, incoming in enumerate(payload.alerts):
            matched = [s for s in sources if matches(s, incoming.labels)]
            if matched:
                kept.append(_Kept(result, notification, index, incoming, matched))
            else:
                result.filtered += 1
                result.count("", "filtered")
    if not kept:
        return results
    batch.load(kept)
    for item in kept:
        batch.apply(item)
    batch.write()
    return results


class _Notification:
    """One payload, with what the events of its alerts share computed once: the alerts as
    templates see them, the group's identities, and per Source the encoded shared part."""

    def __init__(self, payload: AlertmanagerPayload) -> None:
        self.payload = payload
        self.views = [alert_view(alert) for alert in payload.alerts]
        self.identities = group_identities(self.views)
        self._shared: dict[str, str] = {}

    def parameters(self, index: int, source: Source) -> EncodedJSON:
        """A run's parameters. The event's group part is the same for every alert of the
        payload, so its JSON is encoded once per Source instead of once per run."""
        event = event_from_payload(self.payload, index, dict(source.spec.context),
                                   views=self.views, identities=self.identities)  # fmt: skip
        fingerprint = self.views[index]["fingerprint"]
        shared = self._shared.get(source.name)
        if shared is None:
            shared = encode_json({key: value for key, value in event.items() if key != "alert"})
            self._shared[source.name] = shared
        value = {"event": event, "source": source.name, "fingerprint": fingerprint}
        alert, name, print_ = (encode_json(v) for v in (event["alert"], source.name, fingerprint))
        text = f'{{"event":{{"alert":{alert},{shared[1:]},"source":{name},"fingerprint":{print_}}}'
        return EncodedJSON(value, text)


@dataclass
class _Kept:
    result: IntakeResult
    notification: _Notification
    index: int
    incoming: PayloadAlert
    matched: list[Source]

    @property
    def payload(self) -> AlertmanagerPayload:
        return self.notification.payload


class _Batch:
    """The rows one batch reads and writes. New rows are plain dicts, inserted with one
    multi-row insert per table (`insert_many`: one round trip for all on PostgreSQL); alerts
    that already existed are ORM objects, updated in place; open incidents are read as plain
    rows and updated with one statement (`_update_incidents`)."""

    def __init__(
        self,
        session: Session,
        namespace: str,
        now: datetime,
        known_sources: dict[tuple[str, str], Any] | None = None,
    ) -> None:
        self.session, self.namespace, self.now = session, namespace, now
        self.known_sources = known_sources if known_sources is not None else {}
        self.by_key: dict[tuple[str, datetime], Alert | dict[str, Any]] = {}
        self.earlier: dict[str, Any] = {}
        self.source_ids: dict[str, Any] = {}
        self.by_group: dict[str, dict[str, Any]] = {}
        self.by_title: dict[str, dict[str, Any]] = {}
        self.open_incidents: dict[Any, tuple[dict[str, Any], dict[str, Any]]] = {}
        """Incidents read from the store: id -> (row as read, row as this batch leaves it)."""
        self.first_alert: dict[Any, Any] = {}
        self.new_alerts: list[dict[str, Any]] = []
        self.new_incidents: list[dict[str, Any]] = []
        self.relationships: list[dict[str, Any]] = []
        self.runs: list[tuple[_Kept, dict[str, Any], Source]] = []
        self.touched_incidents: set[Any] = set()
        self.new_id = Ids()

    def load(self, kept: list[_Kept]) -> None:
        fingerprints = {item.incoming.fingerprint for item in kept}
        known = self.session.scalars(
            select(Alert).where(one_of(self.session, Alert.fingerprint, fingerprints))
        )
        for alert in sorted(known, key=lambda a: _aware(a.received_at)):
            if alert.starts_at is not None and alert.fingerprint is not None:
                self.by_key[(alert.fingerprint, _aware(alert.starts_at))] = alert
                self.earlier.setdefault(alert.fingerprint, alert.id)
        self.source_ids = _source_ids(
            self.session,
            {item.matched[0].name: item.matched[0] for item in kept},
            self.namespace,
            self.known_sources,
        )
        group_keys = {item.payload.group_key for item in kept}
        window_start = self.now - CORRELATION_WINDOW
        incidents = self.session.execute(
            select(*_INCIDENT_COLUMNS)
            .where(Incident.status != "resolved")
            .where(Incident.group_key.in_(group_keys) | (Incident.created_at >= window_start))
            .order_by(Incident.created_at)
        ).mappings()
        for found in incidents:
            incident = dict(found)
            self.open_incidents[incident["id"]] = (dict(incident), incident)
            self.first_alert[incident["id"]] = incident["first_alert_id"]
            if incident["group_key"] in group_keys:
                self.by_group.setdefault(incident["group_key"], incident)
            if _aware(incident["created_at"]) >= window_start:
                self.by_title.setdefault(incident["title"], incident)

    def apply(self, item: _Kept) -> None:
        incoming, result, source = item.incoming, item.result, item.matched[0]
        key = (incoming.fingerprint, _aware(incoming.starts_at))
        row = self.by_key.get(key)
        if row is None:
            row = self._new_alert(incoming, self.source_ids[source.name])
            self.by_key[key] = row
            result.new += 1
            result.count(source.name, "new")
            self._correlate(row, item.payload)
            if row["status"] != "resolved":
                self.runs.extend((item, row, s) for s in item.matched)
            return
        _set(row, "labels", dict(incoming.labels))
        _set(row, "annotations", dict(incoming.annotations))
        if incoming.status == "resolved" and _get(row, "status") != "resolved":
            result.resolved += 1
            result.count(source.name, "resolved")
        else:
            result.updated += 1
            result.count(source.name, "updated")
        if incoming.status == "resolved":
            if _get(row, "resolved_at") is None:
                _set(row, "resolved_at", self.now)
                received = _aware(_get(row, "received_at"))
                result.resolution_seconds.append((self.now - received).total_seconds())
            _set(row, "status", "resolved")
            _set(row, "ends_at", incoming.ends_at)
            if _get(row, "incident_id") is not None:
                self.touched_incidents.add(_get(row, "incident_id"))

    def _new_alert(self, incoming: PayloadAlert, source_id: Any) -> dict[str, Any]:
        labels, annotations = dict(incoming.labels), dict(incoming.annotations)
        severity = labels.get("severity", "warning")
        firing = incoming.status == "firing"
        row: dict[str, Any] = {
            "id": self.new_id(),
            "fingerprint": incoming.fingerprint,
            "starts_at": incoming.starts_at,
            "ends_at": None if firing else incoming.ends_at,
            "status": "received" if firing else "resolved",
            "severity": severity if severity in SEVERITIES else "warning",
            "alert_name": labels.get("alertname", "unnamed"),
            "summary": annotations.get("summary"),
            "description": annotations.get("description"),
            "labels": labels,
            "annotations": annotations,
            "source_id": source_id,
            "received_at": self.now,
            "resolved_at": None if firing else self.now,
            "auto_resolved": False,
            "incident_id": None,
            "parent_alert_id": None,
        }
        self.new_alerts.append(row)
        return row

    def _correlate(self, row: dict[str, Any], payload: AlertmanagerPayload) -> None:
        """Attach a new alert to an incident: the notification's Alertmanager group, else the
        same alertname and namespace/service inside the window; relate it to the incident's
        first alert, and to an earlier firing of the same fingerprint as a duplicate."""
        labels = row["labels"]
        title = _title(row["alert_name"], labels.get("namespace") or labels.get("service") or "")
        incident, confidence = self.by_group.get(payload.group_key), 0.9
        if incident is None:
            incident, confidence = self.by_title.get(title), 0.6
        if incident is None:
            incident = {"id": self.new_id(), "title": title, "status": "open",
                        "severity": row["severity"], "group_key": payload.group_key,
                        "description": row["summary"], "alerts_count": 0,
                        "first_alert_id": None, "created_at": self.now}  # fmt: skip
            self.new_incidents.append(incident)
            self.first_alert[incident["id"]] = None
            self.by_group[payload.group_key] = incident  # the rest of the group joins it
        self.by_title.setdefault(title, incident)
        incident_id = incident["id"]
        before = self.earlier.get(row["fingerprint"])
        parent = self.first_alert.get(incident_id)
        if parent is not None and parent != before:
            self.relationships.append({"id": self.new_id(), "parent_alert_id": parent,
                                       "child_alert_id": row["id"],
                                       "relationship_type": "related",
                                       "confidence": confidence})  # fmt: skip
        if parent is None:
            self.first_alert[incident_id] = row["id"]
            incident["first_alert_id"] = row["id"]
        if before is not None:
            self.relationships.append({"id": self.new_id(), "parent_alert_id": before,
                                       "child_alert_id": row["id"],
                                       "relationship_type": "duplicate",
                                       "confidence": 1.0})  # fmt: skip
            row["parent_alert_id"] = before
        else:
            self.earlier[row["fingerprint"]] = row["id"]
        row["incident_id"] = incident_id
        incident["alerts_count"] = (incident["alerts_count"] or 0) + 1
        worst = incident["severity"] if incident["severity"] in SEVERITIES else "info"
        if SEVERITIES.index(row["severity"]) < SEVERITIES.index(worst):
            incident["severity"] = row["severity"]

    def write(self) -> None:
        session = self.session
        session.flush()  # updates of alerts that existed, a Source row seen for the first time
        runs, outbox = self._plan_runs()
        self._update_incidents()
        insert_many(session, [(Incident, self.new_incidents), (Alert, self.new_alerts),
                              (AlertRelationship, self.relationships), (WorkflowRun, runs),
                              (OutboxEntry, outbox)])  # fmt: skip
        if self.touched_incidents:
            session.flush()
            _resolve_incidents(session, self.touched_incidents, self.now)

    def _update_incidents(self) -> None:
        """One executemany for the incidents this batch added alerts to. The count grows by what
        was added (not set to what was read), so a concurrent writer's alerts still count."""
        changes = [
            {"b_id": key, "b_added": after["alerts_count"] - (before["alerts_count"] or 0),
             "b_severity": after["severity"], "b_first": after["first_alert_id"],
             "b_now": self.now}
            for key, (before, after) in self.open_incidents.items()
            if after != before
        ]  # fmt: skip
        if not changes:
            return
        self.session.connection().execute(_INCIDENT_UPDATE, changes)

    def _plan_runs(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The run and outbox rows of the new alerts, skipping runs that exist already."""
        planned: list[tuple[str, _Kept, dict[str, Any], Source]] = []
        for item, row, source in self.runs:
            name = run_name(source.spec.trigger_workflow, source.name, row["fingerprint"],
                            _aware(row["starts_at"]))  # fmt: skip
            planned.append((name, item, row, source))
        if not planned:
            return [], []
        taken = set(self.session.scalars(
            select(OutboxEntry.run_name).where(
                one_of(self.session, OutboxEntry.run_name, [p[0] for p in planned])
            )
        ))  # fmt: skip
        runs: list[dict[str, Any]] = []
        outbox: list[dict[str, Any]] = []
        for name, item, row, source in planned:
            if name in taken:
                continue
            taken.add(name)
            workflow = source.spec.trigger_workflow
            parameters = item.notification.parameters(item.index, source)
            runs.append({"id": self.new_id(), "name": name, "namespace": self.namespace,
                         "workflow_name": workflow, "alert_id": row["id"],
                         "incident_id": row["incident_id"], "source_name": source.name,
                         "fingerprint": row["fingerprint"], "parameters": parameters,
                         "status": "pending", "executor": "argo"})  # fmt: skip
            # The parameters live on the run row; the outbox only says what to submit.
            submit = {"workflow": workflow, "namespace": self.namespace}
            outbox.append({"id": self.new_id(), "run_name": name, "payload": submit})
            item.result.runs.append(name)
        return runs, outbox


def _get(row: Any, name: str) -> Any:
    return row[name] if isinstance(row, dict) else getattr(row, name)


def _set(row: Any, name: str, value: Any) -> None:
    if isinstance(row, dict):
        row[name] = value
    else:
        setattr(row, name, value)


_INCIDENT_COLUMNS = (
    Incident.id, Incident.title, Incident.group_key, Incident.severity,
    Incident.alerts_count, Incident.first_alert_id, Incident.created_at,
)  # fmt: skip


def _incident_update() -> Update:
    """Add a batch's alerts to an incident (built once: the same statement every batch)."""
    table = cast(Table, Incident.__table__)
    first = bindparam("b_first", type_=table.c.first_alert_id.type)
    return (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values(
            alerts_count=func.coalesce(table.c.alerts_count, 0) + bindparam("b_added"),
            severity=bindparam("b_severity"),
            first_alert_id=func.coalesce(table.c.first_alert_id, first),
            updated_at=bindparam("b_now", type_=table.c.updated_at.type),
        )
    )


_INCIDENT_UPDATE = _incident_update()


def _source_ids(
    session: Session,
    sources: dict[str, Source],
    namespace: str,
    known: dict[tuple[str, str], Any],
) -> dict[str, Any]:
    """The row id of each Source, creating the rows of Sources seen for the first time.
    `known` carries ids found by earlier batches."""
    found = {name: known[(namespace, name)] for name in sources if (namespace, name) in known}
    if len(found) == len(sources):
        return found
    rows = session.execute(
        select(SourceRecord.name, SourceRecord.id).where(
            SourceRecord.namespace == namespace, SourceRecord.name.in_(sources)
        )
    )
    found.update({name: record_id for name, record_id in rows})
    for name, source in sources.items():
        if name not in found:
            record = SourceRecord(id=uuid.uuid4(), namespace=namespace, name=name,
                                  type=source.spec.type, spec=source.spec.dump())  # fmt: skip
            session.add(record)
            found[name] = record.id
    known.update({(namespace, name): record_id for name, record_id in found.items()})
    return found


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


def _title(alert_name: str, place: str) -> str:
    return (f"{alert_name} in {place}" if place else alert_name)[:255]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
