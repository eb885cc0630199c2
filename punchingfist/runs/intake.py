"""Alertmanager notifications in: dedup, correlate into incidents, queue runs (D7).

One transaction per notification: the alert rows, their incident, relationships, the run and
its outbox entry are committed together or not at all, so a crash between commit and
submission loses nothing (the outbox is read again) and a retried post creates nothing twice.

What the rows become is decided by the rules of `runs.rules` (pure functions); this module
reads what they need from the store and writes what they decided, a batch of notifications
at a time, through `store.batches` (which takes the PostgreSQL fast path where it can).
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Select, Table, Update, bindparam, case, func, or_, select, update
from sqlalchemy.orm import Session

from punchingfist.api import Source
from punchingfist.api.alerts import Alert as PayloadAlert
from punchingfist.api.alerts import (
    AlertmanagerPayload,
    alert_view,
    event_group,
    group_identities,
)
from punchingfist.errors import PunchingFistError
from punchingfist.runs import rules
from punchingfist.runs.queueing import alert_run_name, queued_rows, run_name, run_parameters
from punchingfist.runs.rules import SEVERITIES, aware
from punchingfist.store import (
    Alert,
    AlertRelationship,
    Incident,
    Notification,
    OutboxEntry,
    WorkflowRun,
)
from punchingfist.store.batches import read_many, row_ids, within, write_many
from punchingfist.store.models import SourceRecord

log = logging.getLogger("punchingfist.runs.intake")


class IntakeRefused(PunchingFistError):
    """A notification intake will not store (a 4xx: Alertmanager does not retry it), decided
    before its transaction or after the database refused its values. Nothing of it is stored."""

    def __init__(
        self, status: int, message: str, problems: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.problems = status, message, problems or []


def admit(sources: list[Source], payload: AlertmanagerPayload) -> None:
    """Refuse a notification with more alerts than a Source it was sent to takes (its
    `maxAlerts`), before anything is queued or stored."""
    over = rules.over_alert_limit(sources, len(payload.alerts))
    if over is None:
        return
    limit, name = over
    log.warning(
        "refused a notification of %d alerts: Source %r takes at most %d (maxAlerts)",
        len(payload.alerts),
        name,
        limit,
    )
    raise IntakeRefused(
        413,
        f"the notification holds {len(payload.alerts)} alerts; Source {name!r} takes at most "
        f"{limit} per notification (spec.config.maxAlerts): raise it, or set max_alerts on the "
        "Alertmanager receiver so that Alertmanager sends fewer (nothing was stored)",
        [{"field": "body.alerts", "message": f"more than {limit} alerts"}],
    )


@dataclass
class IntakeResult:
    received: int = 0
    new: int = 0
    updated: int = 0
    resolved: int = 0
    filtered: int = 0
    suppressed: int = 0
    """New firing alerts stored without their run: their Source's `maxRunsPerNotification`
    was reached (status `suppressed`)."""
    covered: int = 0
    """New firing alerts stored without a run of their own because another run covers them:
    their group's or incident's (the Source's `investigation.scope`), or one within its
    `investigation.cooldown` (status `suppressed`, `covered_by_run` naming it)."""
    note: str = ""
    """Why alerts were suppressed, when some were."""
    runs: list[str] = field(default_factory=list)
    suppressed_reasons: dict[str, int] = field(default_factory=dict)
    """New firing alerts without a run of their own, by why (`rules.SUPPRESSED_REASONS`)."""
    joined: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(run, alert) of each new firing alert that joined another run: the run covering it and
    the alert as templates see it (`alert_view`)."""
    starts_in: float = 0.0
    """Seconds until the last of its new runs is due (their Sources' `investigation.window`)."""
    resolved_incidents: list[str] = field(default_factory=list)
    """The incidents this notification resolved (its last open alert resolved)."""
    by_source: dict[tuple[str, str], int] = field(default_factory=dict)
    resolution_seconds: list[float] = field(default_factory=list)
    batch_size: int = 1
    """How many notifications were stored in the same transaction as this one."""

    def count(self, source: str, status: str) -> None:
        self.by_source[(source, status)] = self.by_source.get((source, status), 0) + 1

    def suppress(self, reason: str) -> None:
        self.suppressed_reasons[reason] = self.suppressed_reasons.get(reason, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        counts = {
            "received": self.received,
            "new": self.new,
            "updated": self.updated,
            "resolved": self.resolved,
            "filtered": self.filtered,
            "suppressed": self.suppressed,
            "covered": self.covered,
        }
        return {**counts, "runs": self.runs} | ({"note": self.note} if self.note else {})


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
    batch rather than per alert: the lookups of known alerts, sources, open incidents and taken
    run names (one round trip on the store's fast path), then one multi-row insert per table
    and the updates (one more). Deliveries are applied in order, so a retry inside the same
    batch updates the row its first copy created."""
    batch = _Batch(session, namespace, now or datetime.now(UTC), source_ids)
    results = [IntakeResult(received=len(payload.alerts)) for _, payload in deliveries]
    kept: list[_Kept] = []
    for result, (sources, payload) in zip(results, deliveries, strict=True):
        notification = _Notification(payload)
        for index, incoming in enumerate(payload.alerts):
            matched = [s for s in sources if rules.matches(s, incoming.labels)]
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
    templates see them, and the group part of their events, stored once in a `notifications`
    row that each of its runs refers to (`WorkflowRun.arguments` puts an event together)."""

    def __init__(self, payload: AlertmanagerPayload) -> None:
        self.payload = payload
        self.views = [alert_view(alert) for alert in payload.alerts]
        self.row: dict[str, Any] | None = None
        """Its `notifications` row, once a run of this batch needs it."""

    def record(self, row_id: Any, now: datetime) -> dict[str, Any]:
        group = event_group(self.payload, group_identities(self.views))
        self.row = {
            "id": row_id,
            "group_key": self.payload.group_key,
            "event": group,
            "received_at": now,
        }
        return self.row

    def parameters(self, index: int, source: Source) -> dict[str, Any]:
        """A run's own parameters: its alert and its Source's context (the rest of the event
        is the notification's)."""
        view = self.views[index]
        event = {"alert": view, "context": dict(source.spec.context)}
        return run_parameters(source, event, view["fingerprint"])


@dataclass
class _Kept:
    result: IntakeResult
    notification: _Notification
    index: int
    incoming: PayloadAlert
    matched: list[Source]
    run_names: list[str] = field(default_factory=list)
    """Per matched Source, the run a new firing alert gets (D7); empty for a resolved one."""
    title: str = ""
    """The incident title it correlates on (`rules.incident_title`), which is also one of its
    lock keys."""

    def __post_init__(self) -> None:
        self.title = rules.incident_title(self.incoming.labels)
        if self.incoming.status != "resolved":
            fingerprint, starts_at = self.incoming.fingerprint, aware(self.incoming.starts_at)
            self.run_names = [alert_run_name(s, fingerprint, starts_at) for s in self.matched]

    @property
    def payload(self) -> AlertmanagerPayload:
        return self.notification.payload


class _Batch:
    """The rows one batch reads and writes, all plain dicts: what `load` read (known alerts,
    open incidents), what `apply` decided, and what `write` sends, one multi-row insert per
    table and one executemany per update (`write_many`: one round trip on the fast path)."""

    def __init__(
        self,
        session: Session,
        namespace: str,
        now: datetime,
        known_sources: dict[tuple[str, str], Any] | None = None,
    ) -> None:
        self.session, self.namespace, self.now = session, namespace, now
        self.known_sources = known_sources if known_sources is not None else {}
        self.statements = _statements(session.get_bind().dialect.name)
        self.by_key: dict[tuple[str, datetime], dict[str, Any]] = {}
        self.known_alerts: list[dict[str, Any]] = []
        """Alerts that existed before the batch; those it saw again are written back."""
        self.earlier: dict[str, Any] = {}
        self.source_ids: dict[str, Any] = {}
        self.by_group: dict[str, dict[str, Any]] = {}
        self.by_title: dict[str, dict[str, Any]] = {}
        self.open_incidents: dict[Any, tuple[dict[str, Any], dict[str, Any]]] = {}
        """Incidents read from the store: id -> (row as read, row as this batch leaves it)."""
        self.first_alert: dict[Any, Any] = {}
        self.taken: set[str] = set()
        self.recent: list[dict[str, Any]] = []
        """Runs of Sources with a cooldown created within it (`_read_scoped`)."""
        self.new_alerts: list[dict[str, Any]] = []
        self.new_incidents: list[dict[str, Any]] = []
        self.relationships: list[dict[str, Any]] = []
        self.runs: list[tuple[_Kept, dict[str, Any]]] = []
        self.touched_incidents: dict[Any, list[IntakeResult]] = {}
        """Incidents an alert of the batch resolved in, and the notifications that did."""
        self.new_id = row_ids(session)

    def load(self, kept: list[_Kept]) -> None:
        """Everything the batch needs to know, in one round trip on the fast path."""
        group_keys = sorted({item.payload.group_key for item in kept})
        window_start = self.now - rules.CORRELATION_WINDOW
        sources = {item.matched[0].name: item.matched[0] for item in kept}
        unknown = sorted(n for n in sources if (self.namespace, n) not in self.known_sources)
        reads = self.statements
        queries: list[tuple[Select[Any], dict[str, Any]]] = [
            (reads.alerts, {"fingerprints": sorted({item.incoming.fingerprint for item in kept})}),
            (reads.incidents, {"group_keys": group_keys, "window_start": window_start}),
            (reads.taken, {"run_names": sorted({n for item in kept for n in item.run_names})}),
        ]
        if unknown:  # only the first batches of a Source (the rows are kept: `known_sources`)
            queries.append((reads.sources, {"namespace": self.namespace, "source_names": unknown}))
        alerts, incidents, taken, *found = read_many(self.session, queries, locks=_locks(kept))
        for alert in sorted(alerts, key=lambda row: aware(row["received_at"])):
            if alert["starts_at"] is not None and alert["fingerprint"] is not None:
                self.by_key[rules.dedup_key(alert["fingerprint"], alert["starts_at"])] = alert
                self.known_alerts.append(alert)
                self.earlier.setdefault(alert["fingerprint"], alert["id"])
        for incident in incidents:
            self.open_incidents[incident["id"]] = (dict(incident), incident)
            self.first_alert[incident["id"]] = incident["first_alert_id"]
            if incident["group_key"] in group_keys:
                self.by_group.setdefault(incident["group_key"], incident)
            if rules.in_window(incident["created_at"], self.now):
                self.by_title.setdefault(incident["title"], incident)
        self.taken = {row["run_name"] for row in taken}
        for row in found[0] if found else []:
            self.known_sources[(self.namespace, row["name"])] = row["id"]
        self.source_ids = self._source_ids(sources)

    def _source_ids(self, sources: dict[str, Source]) -> dict[str, Any]:
        """The row id of each Source, adding the rows of Sources seen for the first time."""
        ids: dict[str, Any] = {}
        for name, source in sources.items():
            key = (self.namespace, name)
            if key not in self.known_sources:
                record = SourceRecord(
                    id=uuid.uuid4(),
                    namespace=self.namespace,
                    name=name,
                    type=source.spec.type,
                    spec=source.spec.dump(),
                )
                self.session.add(record)
                self.known_sources[key] = self.new_id.of(record.id)
            ids[name] = self.known_sources[key]
        return ids

    def apply(self, item: _Kept) -> None:
        incoming, result, source = item.incoming, item.result, item.matched[0]
        key = rules.dedup_key(incoming.fingerprint, incoming.starts_at)
        row = self.by_key.get(key)
        if row is None:
            row = self._new_alert(incoming, self.source_ids[source.name])
            self.by_key[key] = row
            result.new += 1
            result.count(source.name, "new")
            self._correlate(row, item.payload, item.title)
            if row["status"] != "resolved":
                self.runs.append((item, row))
            return
        row["labels"] = dict(incoming.labels)
        row["annotations"] = dict(incoming.annotations)
        outcome = rules.repeat_outcome(row["status"], incoming.status)
        if outcome == "resolved":
            result.resolved += 1
        else:
            result.updated += 1
        result.count(source.name, outcome)
        if incoming.status == "resolved":
            if row["resolved_at"] is None:
                row["resolved_at"] = self.now
                received = aware(row["received_at"])
                result.resolution_seconds.append((self.now - received).total_seconds())
            row["status"] = "resolved"
            row["ends_at"] = incoming.ends_at
            if row["incident_id"] is not None:
                self.touched_incidents.setdefault(row["incident_id"], []).append(result)

    def _new_alert(self, incoming: PayloadAlert, source_id: Any) -> dict[str, Any]:
        labels, annotations = dict(incoming.labels), dict(incoming.annotations)
        firing = incoming.status == "firing"
        row: dict[str, Any] = {
            "id": self.new_id(),
            "fingerprint": incoming.fingerprint,
            "starts_at": incoming.starts_at,
            "ends_at": None if firing else incoming.ends_at,
            "status": "received" if firing else "resolved",
            "severity": rules.severity(labels),
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
            "covered_by_run": None,
        }
        self.new_alerts.append(row)
        return row

    def _correlate(self, row: dict[str, Any], payload: AlertmanagerPayload, title: str) -> None:
        """Attach a new alert to an incident (`rules.correlate`) and relate it to other alerts
        (`rules.relations`)."""
        incident, confidence = rules.correlate(
            self.by_group.get(payload.group_key), self.by_title.get(title)
        )
        if incident is None:
            incident = {
                "id": self.new_id(),
                "title": title,
                "status": "open",
                "severity": row["severity"],
                "group_key": payload.group_key,
                "description": row["summary"],
                "alerts_count": 0,
                "first_alert_id": None,
                "created_at": self.now,
            }
            self.new_incidents.append(incident)
            self.first_alert[incident["id"]] = None
            self.by_group[payload.group_key] = incident  # the rest of the group joins it
        self.by_title.setdefault(title, incident)
        incident_id = incident["id"]
        before = self.earlier.get(row["fingerprint"])
        parent = self.first_alert.get(incident_id)
        for related, kind, sure in rules.relations(parent, before, confidence):
            self.relationships.append(
                {
                    "id": self.new_id(),
                    "parent_alert_id": related,
                    "child_alert_id": row["id"],
                    "relationship_type": kind,
                    "confidence": sure,
                }
            )
        if parent is None:
            self.first_alert[incident_id] = row["id"]
            incident["first_alert_id"] = row["id"]
        if before is not None:
            row["parent_alert_id"] = before
        else:
            self.earlier[row["fingerprint"]] = row["id"]
        row["incident_id"] = incident_id
        incident["alerts_count"] = (incident["alerts_count"] or 0) + 1
        incident["severity"] = rules.worse(incident["severity"], row["severity"])

    def write(self) -> None:
        session = self.session
        if session.new:
            session.flush()  # the row of a Source seen for the first time
        notifications, runs, outbox = self._plan_runs()
        write_many(
            session,
            [
                (Incident, self.new_incidents),
                (Alert, self.new_alerts),
                (AlertRelationship, self.relationships),
                (Notification, notifications),
                (WorkflowRun, runs),
                (OutboxEntry, outbox),
            ],
            [
                (self.statements.alert_update, self._alert_changes()),
                (self.statements.incident_update, self._incident_changes()),
            ],
            commit=not self.touched_incidents,
        )
        if self.touched_incidents:
            touched = {_as_uuid(key): results for key, results in self.touched_incidents.items()}
            for incident in _resolve_incidents(session, set(touched), self.now):
                for result in touched[incident]:
                    result.resolved_incidents.append(str(incident))

    def _alert_changes(self) -> list[dict[str, Any]]:
        """The alerts that existed and that this batch saw again, as it leaves them. Updates go
        in id order, as every writer's do, so two writers never wait on each other in a
        circle."""
        changes = [
            {
                "a_id": row["id"],
                "a_labels": row["labels"],
                "a_annotations": row["annotations"],
                "a_status": row["status"],
                "a_resolved_at": row["resolved_at"],
                "a_ends_at": row["ends_at"],
                "a_now": self.now,
            }
            for row in self.known_alerts
            if "labels" in row
        ]
        return sorted(changes, key=lambda change: str(change["a_id"]))

    def _incident_changes(self) -> list[dict[str, Any]]:
        """The incidents this batch added alerts to. The count grows by what was added (not
        set to what was read), so a concurrent writer's alerts still count."""
        changes = [
            {
                "b_id": key,
                "b_added": after["alerts_count"] - (before["alerts_count"] or 0),
                "b_severity": after["severity"],
                "b_first": after["first_alert_id"],
                "b_now": self.now,
            }
            for key, (before, after) in self.open_incidents.items()
            if after != before
        ]
        return sorted(changes, key=lambda change: str(change["b_id"]))

    def _plan_runs(self) -> tuple[list[dict[str, Any]], ...]:
        """The notification, run and outbox rows of the new alerts, skipping runs that exist
        already."""
        notifications: list[dict[str, Any]] = []
        runs: list[dict[str, Any]] = []
        outbox: list[dict[str, Any]] = []
        named = [
            list(zip(self._run_names(item, row), item.matched, strict=True))
            for item, row in self.runs
        ]
        self._read_scoped(named)
        plans = rules.plan_runs(
            (
                (id(item.notification), names)
                for (item, _), names in zip(self.runs, named, strict=True)
            ),
            self.taken,
        )
        for (item, row), plan in zip(self.runs, plans, strict=True):
            covered = [c for c in (self._cooled(item, row, s) for _, s in plan.start) if c]
            reason = "scope"
            if covered and len(covered) == len(plan.start):  # every run it would start cools down
                plan = rules.RunPlan([], False, [*plan.joined, *covered])
                reason = "scope" if plan.joined[0] not in covered else "cooldown"
            if plan.joined and not plan.start:
                row["status"], row["covered_by_run"] = "suppressed", plan.joined[0]
                item.result.covered += 1
                item.result.suppress(reason)
                item.result.joined.append((plan.joined[0], item.notification.views[item.index]))
            for name, source in plan.start:
                notification = item.notification.row
                if notification is None:
                    notification = item.notification.record(self.new_id(), self.now)
                    notifications.append(notification)
                parameters = item.notification.parameters(item.index, source)
                run, entry = queued_rows(
                    name, source, self.namespace, parameters, row["fingerprint"]
                )
                window = rules.window_seconds(source)
                if window:  # the rest of its group or incident joins it meanwhile
                    entry["next_attempt_at"] = self.now + timedelta(seconds=window)
                    item.result.starts_in = max(item.result.starts_in, window)
                run["id"], entry["id"] = self.new_id(), self.new_id()
                run["alert_id"], run["incident_id"] = row["id"], row["incident_id"]
                run["notification_id"] = notification["id"]
                runs.append(run)
                outbox.append(entry)
                item.result.runs.append(name)
            if plan.suppressed:  # no Source started its run
                row["status"] = "suppressed"
                item.result.suppressed += 1
                item.result.suppress("run_limit")
                item.result.note = rules.suppressed_note(item.result.suppressed, item.matched)
        return notifications, runs, outbox

    def _run_names(self, item: _Kept, row: dict[str, Any]) -> list[str]:
        """Per matched Source, the run this new firing alert starts or joins under the
        Source's scope (perAlert names were known before the lookups: `_Kept.run_names`)."""
        names = []
        for index, source in enumerate(item.matched):
            if rules.investigation(source).scope == "perAlert":
                names.append(item.run_names[index])
                continue
            key = rules.run_key(
                source,
                row["fingerprint"],
                row["starts_at"],
                item.payload.group_key,
                str(row["incident_id"]),
            )
            names.append(run_name(source.spec.trigger_workflow, source.name, *key))
        return names

    def _read_scoped(self, named: list[list[tuple[str, Source]]]) -> None:
        """The runs of groups and incidents queued before this batch (`taken`), and the recent
        runs a cooldown counts (`recent`): one more lookup, only for Sources that need it."""
        scoped = sorted(
            {
                n
                for names in named
                for n, s in names
                if n not in self.taken and rules.investigation(s).scope != "perAlert"
            }
        )
        cooling = sorted({s.name for names in named for _, s in names if rules.cooldown_seconds(s)})
        if not scoped and not cooling:
            return
        queries: list[tuple[Select[Any], dict[str, Any]]] = [
            (self.statements.taken, {"run_names": scoped})
        ]
        if cooling:
            longest = max(rules.cooldown_seconds(s) for names in named for _, s in names)
            since = self.now - timedelta(seconds=longest)
            queries.append((self.statements.recent, {"source_names": cooling, "since": since}))
        taken, *recent = read_many(self.session, queries)
        self.taken |= {row["run_name"] for row in taken}
        for row in recent[0] if recent else []:
            self.recent.append(dict(row))

    def _cooled(self, item: _Kept, row: dict[str, Any], source: Source) -> str | None:
        """The run that covers this alert's Source within its cooldown, if one does."""
        seconds = rules.cooldown_seconds(source)
        if not seconds:
            return None
        since = self.now - timedelta(seconds=seconds)
        key = rules.cooldown_key(source, row["fingerprint"], item.payload.group_key, item.title)
        for earlier in sorted(self.recent, key=lambda r: aware(r["created_at"]), reverse=True):
            if earlier["source_name"] != source.name or aware(earlier["created_at"]) < since:
                continue
            found = rules.cooldown_key(
                source,
                earlier["fingerprint"] or "",
                earlier["group_key"] or "",
                earlier["title"] or "",
            )
            if found == key:
                return str(earlier["name"])
        return None


_ALERT_COLUMNS = (
    "id",
    "fingerprint",
    "starts_at",
    "received_at",
    "status",
    "resolved_at",
    "ends_at",
    "incident_id",
)
_INCIDENT_COLUMNS = (
    "id",
    "title",
    "group_key",
    "severity",
    "alerts_count",
    "first_alert_id",
    "created_at",
)


@dataclass(frozen=True)
class _Statements:
    """What every batch runs, built once per kind of store: the same statement objects each
    time, so they compile once (on the fast path the inserts and updates are then prepared on
    each connection; the lookups go out as one statement, planned every time: `read_many`)."""

    alerts: Select[Any]
    incidents: Select[Any]
    taken: Select[Any]
    recent: Select[Any]
    sources: Select[Any]
    alert_update: Update
    incident_update: Update


@functools.cache
def _statements(dialect: str) -> _Statements:
    alerts = cast(Table, Alert.__table__)
    incidents = cast(Table, Incident.__table__)
    outbox = cast(Table, OutboxEntry.__table__)
    sources = cast(Table, SourceRecord.__table__)
    runs = cast(Table, WorkflowRun.__table__)
    notifications = cast(Table, Notification.__table__)
    window_start = bindparam("window_start", type_=incidents.c.created_at.type)
    severity = bindparam("b_severity", type_=incidents.c.severity.type)
    return _Statements(
        alerts=select(*(alerts.c[n] for n in _ALERT_COLUMNS)).where(
            within(alerts.c.fingerprint, "fingerprints", dialect)
        ),
        incidents=select(*(incidents.c[n] for n in _INCIDENT_COLUMNS))
        .where(incidents.c.status != "resolved")
        .where(
            within(incidents.c.group_key, "group_keys", dialect)
            | (incidents.c.created_at >= window_start)
        )
        .order_by(incidents.c.created_at),
        taken=select(outbox.c.run_name).where(within(outbox.c.run_name, "run_names", dialect)),
        recent=select(
            runs.c.name,
            runs.c.source_name,
            runs.c.fingerprint,
            runs.c.created_at,
            notifications.c.group_key,
            incidents.c.title,
        )
        .select_from(
            runs.outerjoin(notifications, notifications.c.id == runs.c.notification_id).outerjoin(
                incidents, incidents.c.id == runs.c.incident_id
            )
        )
        .where(
            within(runs.c.source_name, "source_names", dialect),
            runs.c.created_at >= bindparam("since", type_=runs.c.created_at.type),
        ),
        sources=select(sources.c.name, sources.c.id).where(
            sources.c.namespace == bindparam("namespace"),
            within(sources.c.name, "source_names", dialect),
        ),
        alert_update=update(alerts)
        .where(alerts.c.id == bindparam("a_id", type_=alerts.c.id.type))
        .values(
            labels=bindparam("a_labels", type_=alerts.c.labels.type),
            annotations=bindparam("a_annotations", type_=alerts.c.annotations.type),
            status=bindparam("a_status"),
            resolved_at=bindparam("a_resolved_at", type_=alerts.c.resolved_at.type),
            ends_at=bindparam("a_ends_at", type_=alerts.c.ends_at.type),
            updated_at=bindparam("a_now", type_=alerts.c.updated_at.type),
        ),
        incident_update=update(incidents)
        .where(incidents.c.id == bindparam("b_id", type_=incidents.c.id.type))
        .values(
            alerts_count=func.coalesce(incidents.c.alerts_count, 0) + bindparam("b_added"),
            # The worse of the stored severity and this batch's: another writer may have
            # raised it since this batch read it.
            severity=case(
                *((or_(incidents.c.severity == s, severity == s), s) for s in SEVERITIES[:-1]),
                else_=severity,
            ),
            first_alert_id=func.coalesce(
                incidents.c.first_alert_id,
                bindparam("b_first", type_=incidents.c.first_alert_id.type),
            ),
            updated_at=bindparam("b_now", type_=incidents.c.updated_at.type),
        ),
    )


def _as_uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _resolve_incidents(session: Session, incident_ids: set[Any], now: datetime) -> list[uuid.UUID]:
    """Resolve those of the incidents that have no open alert left; return which."""
    incident_ids = {_as_uuid(i) for i in incident_ids}
    resolved = []
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
            incident.mttr_seconds = int((now - aware(incident.created_at)).total_seconds())
            resolved.append(incident.id)
    return resolved


def _locks(kept: list[_Kept]) -> dict[str, bool]:
    """The advisory locks a batch takes before it reads anything (name -> shared?), so that
    writers running side by side (threads of one server, or replicas) give the result of
    running one after the other.

    What a batch decides from its lookups depends on a few keys: the fingerprints it stores
    (dedup, duplicates, run names), the Alertmanager group keys and titles it correlates on.
    Two batches that share none of them do not see each other's rows and run in parallel;
    two that share one wait for each other. Resolving an alert can close its incident, which
    another batch may be joining under another key, so a batch that resolves holds the
    incidents lock exclusively and the others hold it shared. (Two batches adding the row of
    the same new Source are not kept apart: the second fails on its unique key and its
    notifications are written again, finding the row.)"""
    names = {f"fingerprint\x00{item.incoming.fingerprint}" for item in kept}
    names |= {f"group\x00{item.payload.group_key}" for item in kept}
    names |= {f"title\x00{item.title}" for item in kept}
    locks = dict.fromkeys(names, False)
    resolving = any(item.incoming.status == "resolved" for item in kept)
    locks["incidents"] = not resolving
    return locks
