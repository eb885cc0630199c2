"""Tables. The design document's `alerts`, `incidents` and `alert_relationships` (every column
and index), plus what the rest of the system records."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

JSONType = JSON().with_variant(JSONB(), "postgresql")
StoredJSON = JSON()
"""`json` on PostgreSQL (text, checked on the way in) for documents that are only stored and
read back whole, never queried into: no conversion to `jsonb` on every insert."""


def now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONType, list[Any]: JSONType}


def _id() -> Mapped[uuid.UUID]:
    return mapped_column(primary_key=True, default=uuid.uuid4)


def _created() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), default=now, server_default=func.now())


def _updated() -> Mapped[datetime]:
    return mapped_column(
        DateTime(timezone=True), default=now, onupdate=now, server_default=func.now()
    )


class SourceRecord(Base):
    """A Source resource as the server knows it."""

    __tablename__ = "sources"
    __table_args__ = (UniqueConstraint("namespace", "name"),)
    id: Mapped[uuid.UUID] = _id()
    namespace: Mapped[str] = mapped_column(String(253), default="default")
    name: Mapped[str] = mapped_column(String(253))
    type: Mapped[str] = mapped_column(String(50))
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class WorkflowRecord(Base):
    """A Workflow resource and the WorkflowTemplate compiled from it."""

    __tablename__ = "workflows"
    __table_args__ = (UniqueConstraint("namespace", "name"),)
    id: Mapped[uuid.UUID] = _id()
    namespace: Mapped[str] = mapped_column(String(253), default="default")
    name: Mapped[str] = mapped_column(String(253))
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    template_name: Mapped[str | None] = mapped_column(String(253))
    spec_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class Incident(Base):
    __tablename__ = "incidents"
    id: Mapped[uuid.UUID] = _id()
    title: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(50))  # open, investigating, resolved
    severity: Mapped[str] = mapped_column(String(20))
    incident_commander: Mapped[str | None] = mapped_column(String(255))
    group_key: Mapped[str | None] = mapped_column(String(1024), index=True)
    """Alertmanager groupKey (or alertname + namespace/service) the alerts were grouped by."""
    alerts_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    first_alert_id: Mapped[uuid.UUID | None] = mapped_column()
    """The alert that opened the incident; later alerts relate to it. No foreign key: the
    incident row is written before its alerts."""
    mttr_seconds: Mapped[int | None] = mapped_column(Integer)
    ai_summary: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    root_cause_analysis: Mapped[str | None] = mapped_column(Text)
    lessons_learned: Mapped[str | None] = mapped_column(Text)
    resolution_notes: Mapped[str | None] = mapped_column(Text)
    """What the human who resolved it wrote."""
    remediations: Mapped[list[Any] | None] = mapped_column(JSONType)
    """What the fixes of its runs did (#25), one object per remediation step of a run, oldest
    first: `run`, `step`, `action`, `target`, `outcome`, `applied`, `rolled_back`,
    `rollback_verified`, `dry_run`, `detail`, `approver`, `at` (runs.recording)."""
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=now, server_default=func.now(), index=True
    )
    """Indexed: intake looks up the open incidents of the correlation window."""
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = _updated()


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("fingerprint", "starts_at", name="uq_alerts_fingerprint_starts_at"),
        Index("idx_alerts_status", "status"),
        Index("idx_alerts_severity", "severity"),
        Index("idx_alerts_fingerprint", "fingerprint"),
        Index("idx_alerts_received_at", "received_at"),
        Index("idx_alerts_incident_id", "incident_id"),
        # Only the alerts that joined another run: the dispatcher looks them up by run.
        Index(
            "idx_alerts_covered_by_run",
            "covered_by_run",
            postgresql_where=text("covered_by_run IS NOT NULL"),
            sqlite_where=text("covered_by_run IS NOT NULL"),
        ),
    )
    id: Mapped[uuid.UUID] = _id()
    external_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    fingerprint: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(50))  # received, triaging, resolved, escalated
    severity: Mapped[str] = mapped_column(String(20))  # critical, warning, info
    alert_name: Mapped[str] = mapped_column(String(255))
    summary: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    labels: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    annotations: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    starts_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    source_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sources.id"))
    workflow_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("workflows.id"))
    ai_analysis: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    ai_confidence: Mapped[float | None] = mapped_column(Float)
    auto_resolved: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    triage_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    triage_completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    escalated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    escalated_to: Mapped[str | None] = mapped_column(String(255))
    human_actions: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    resolution_notes: Mapped[str | None] = mapped_column(Text)
    incident_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("incidents.id"))
    parent_alert_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("alerts.id"))
    covered_by_run: Mapped[str | None] = mapped_column(String(253))
    """The run that investigates this alert when it started none of its own (status
    `suppressed`: it joined its group's or incident's run, or fired within a cooldown)."""
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class AlertRelationship(Base):
    __tablename__ = "alert_relationships"
    id: Mapped[uuid.UUID] = _id()
    parent_alert_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("alerts.id"))
    child_alert_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("alerts.id"))
    relationship_type: Mapped[str | None] = mapped_column(String(50))  # duplicate, related, ...
    confidence: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = _created()


class Notification(Base):
    """An Alertmanager notification (one webhook payload) that started runs: what the events
    of its alerts share, stored once. A run's own parameters hold its alert and its Source's
    context; `WorkflowRun.arguments` puts the two together."""

    __tablename__ = "notifications"
    id: Mapped[uuid.UUID] = _id()
    group_key: Mapped[str | None] = mapped_column(String(1024))
    event: Mapped[dict[str, Any]] = mapped_column(StoredJSON, default=dict)
    """The event's group part: `alerts` (by identity), `groupKey`, `receiver`, `status`,
    `externalURL`, `groupLabels`, `commonLabels`, `commonAnnotations`, `truncatedAlerts`."""
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class WorkflowRun(Base):
    """One investigation: an Argo Workflow (or a local-engine run) of a compiled template."""

    __tablename__ = "workflow_runs"
    __table_args__ = {"postgresql_with": {"toast_tuple_target": 8160}}
    """Run rows (a few kB of parameters each) stay inline and uncompressed: see migration 0004."""
    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(253), unique=True)
    """Deterministic run name (D7): the Argo Workflow's name."""
    namespace: Mapped[str] = mapped_column(String(253), default="default")
    workflow_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("workflows.id"))
    workflow_name: Mapped[str] = mapped_column(String(253))
    alert_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("alerts.id"), index=True)
    incident_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("incidents.id"), index=True)
    source_name: Mapped[str | None] = mapped_column(String(253))
    fingerprint: Mapped[str | None] = mapped_column(String(255))
    executor: Mapped[str] = mapped_column(String(20), default="argo")  # argo, local
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    parameters: Mapped[dict[str, Any]] = mapped_column(StoredJSON, default=dict)
    """The run's arguments (the event, source, fingerprint): written once per alert at intake,
    read back whole by the dispatcher, so `json` rather than `jsonb` (see migration 0004). A
    run started by a webhook keeps the part of its event that the notification's alerts share
    in its `notification` (migration 0005): read `arguments` for the whole."""
    notification_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("notifications.id"))
    notification: Mapped[Notification | None] = relationship()
    outputs: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text)
    tokens_total: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cost_usd: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()

    @property
    def arguments(self) -> dict[str, Any]:
        """The run's parameters with its whole event: the alert's own part, and the part its
        notification's alerts share, in the order `event_from_payload` gives them."""
        if self.notification is None:
            return self.parameters
        own = dict(self.parameters.get("event") or {})
        event = {"alert": own.pop("alert", None), **self.notification.event, **own}  # + context
        return {**self.parameters, "event": event}

    @classmethod
    def named(cls, session: Session, name: str) -> WorkflowRun | None:
        """The run with this (unique) name, or None."""
        return session.scalars(select(cls).where(cls.name == name)).one_or_none()


class RunStep(Base):
    __tablename__ = "run_steps"
    __table_args__ = (UniqueConstraint("run_id", "name"),)
    id: Mapped[uuid.UUID] = _id()
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workflow_runs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(253))
    kind: Mapped[str] = mapped_column(String(30))
    phase: Mapped[str] = mapped_column(String(20))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    tool_calls: Mapped[list[Any] | None] = mapped_column(JSONType)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cost_usd: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created()


class SinkDelivery(Base):
    __tablename__ = "sink_deliveries"
    id: Mapped[uuid.UUID] = _id()
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workflow_runs.id", ondelete="CASCADE"))
    sink_name: Mapped[str] = mapped_column(String(253))
    sink_type: Mapped[str] = mapped_column(String(30))
    outcome: Mapped[str] = mapped_column(String(20))  # delivered, skipped, failed
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    attempts: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created()


class Approval(Base):
    __tablename__ = "approvals"
    __table_args__ = (UniqueConstraint("run_id", "gate"),)
    id: Mapped[uuid.UUID] = _id()
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workflow_runs.id", ondelete="CASCADE"))
    step_name: Mapped[str] = mapped_column(String(253))
    gate: Mapped[str] = mapped_column(String(253))
    """The suspend node's task name, e.g. `resolution-attempt-approval`."""
    decision: Mapped[str] = mapped_column(String(20), default="pending")
    approver: Mapped[str | None] = mapped_column(String(255))
    comment: Mapped[str | None] = mapped_column(Text)
    channel: Mapped[str | None] = mapped_column(String(20))  # slack, api, cli, timeout
    requested_at: Mapped[datetime] = _created()
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    preview: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    """A remediation step's gate: the fix's preview as the approver saw it (api.actions.Preview)."""
    approved_resource_version: Mapped[str | None] = mapped_column(String(100))
    """The preview's resourceVersion when it was approved: the fix applies only to it."""


DOCUMENT_FIELDS = ("alert_name", "summary", "root_cause", "fix", "resolution_notes")


def _concatenated(fields: tuple[str, ...]) -> str:
    """`a || ' ' || b ...` with the parentheses PostgreSQL shows it with (so the migrations'
    index and the model's compare equal)."""
    parts = [f"coalesce({fields[0]}, '')"]
    for field in fields[1:]:
        parts += ["' '", f"coalesce({field}, '')"]
    text = parts[0]
    for part in parts[1:-1]:
        text = f"({text} || {part})"
    return f"{text} || {parts[-1]}"


DOCUMENT_TEXT = _concatenated(DOCUMENT_FIELDS)
"""The text a knowledge entry is searched by (migration 0009 indexes it)."""


class KnowledgeEntry(Base):
    """A resolved incident the agent can recall: what it was, what fixed it, how it went."""

    __tablename__ = "knowledge_base"
    __table_args__ = (
        UniqueConstraint("run_id", name="uq_knowledge_base_run_id"),
        Index("idx_knowledge_base_namespace", "namespace"),
        Index("idx_knowledge_base_service", "service"),
        # Full-text search of what the entry says (migration 0009; SQLite: the FTS5 table
        # knowledge_fts, kept by triggers, which the models do not declare).
        Index(
            "idx_knowledge_base_document",
            text(f"to_tsvector('english', {DOCUMENT_TEXT})"),
            postgresql_using="gin",
        ).ddl_if(dialect="postgresql"),
    )
    id: Mapped[uuid.UUID] = _id()
    incident_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("incidents.id"))
    alert_name: Mapped[str] = mapped_column(String(255), index=True)
    fingerprint: Mapped[str | None] = mapped_column(String(255))
    labels: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    root_cause: Mapped[str | None] = mapped_column(Text)
    fix: Mapped[str | None] = mapped_column(Text)
    """The fix command or change that was applied or proposed (as the run's answer gave it)."""
    outcome: Mapped[str] = mapped_column(String(20))
    """fixed, escalated, denied (the fix was refused at its gate) or not_fixed."""
    confidence: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = _created()
    run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workflow_runs.id", ondelete="SET NULL")
    )
    """The run whose findings these are (one entry per run); None for an entry a human wrote."""
    summary: Mapped[str | None] = mapped_column(Text)
    evidence: Mapped[list[Any] | None] = mapped_column(JSONType)
    """What the answer cited: tool calls and their results, as short texts."""
    severity: Mapped[str | None] = mapped_column(String(20))
    namespace: Mapped[str | None] = mapped_column(String(253))
    service: Mapped[str | None] = mapped_column(String(253))
    """The workload: the alert's service, deployment, job or pod label (in that order)."""
    confirmed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """A human confirmed the root cause (`verdict` right, or a confirmed root cause given)."""
    verdict: Mapped[str | None] = mapped_column(String(10))
    """right or wrong, as a human judged the findings; a wrong entry is never offered."""
    confirmed_by: Mapped[str | None] = mapped_column(String(255))
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolution_notes: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = _updated()


class OutboxEntry(Base):
    """A run to submit, written in the same transaction as the alert (nothing lost on a crash)."""

    __tablename__ = "outbox"
    id: Mapped[uuid.UUID] = _id()
    kind: Mapped[str] = mapped_column(String(30), default="submit_run")
    run_name: Mapped[str] = mapped_column(String(253), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class SecretAccessRecord(Base):
    """One audited read of a secret reference (punchingfist.secrets): who, which reference,
    when, from where (`manager`, `stale`) and the outcome. Never the value. Reads served from
    the resolver's 30 s cache are logged only (`punchingfist.secrets.audit`)."""

    __tablename__ = "secret_accesses"
    id: Mapped[uuid.UUID] = _id()
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now, index=True)
    reference: Mapped[str] = mapped_column(String(1024))
    who: Mapped[str] = mapped_column(String(300))
    """`server`, `operator`, or `run <name>`."""
    source: Mapped[str] = mapped_column(String(20))
    outcome: Mapped[str] = mapped_column(Text)
    """`ok`, or why the read failed (names the reference, never a value)."""


def declared(name: str | None, type_: str, parent_names: object) -> bool:
    """Whether Alembic compares this object with the models (`include_name`): not SQLite's
    FTS5 table of the knowledge base (migration 0009) and its shadow tables, which no model
    declares."""
    return not (type_ == "table" and (name or "").startswith("knowledge_fts"))
