"""The store on SQLite and on a real PostgreSQL: migrations, schema, data kept verbatim."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError

from punchingfist.store import (
    Alert,
    Base,
    Incident,
    OutboxEntry,
    WorkflowRun,
    current_revision,
    make_engine,
    session_factory,
    upgrade,
)
from punchingfist.store.models import declared

HOSTILE = {
    "alertname": "PodCrashLooping",
    "pod": "$(touch /tmp/pwned)",
    "note": "{{ ''.__class__ }}",
    "quote": "'; DROP TABLE alerts; --",
}
DOC_COLUMNS = {
    "alerts": [
        "id",
        "external_id",
        "fingerprint",
        "status",
        "severity",
        "alert_name",
        "summary",
        "description",
        "labels",
        "annotations",
        "source_id",
        "workflow_id",
        "ai_analysis",
        "ai_confidence",
        "auto_resolved",
        "received_at",
        "triage_started_at",
        "triage_completed_at",
        "resolved_at",
        "escalated_at",
        "escalated_to",
        "human_actions",
        "resolution_notes",
        "incident_id",
        "parent_alert_id",
        "created_at",
        "updated_at",
    ],
    "incidents": [
        "id",
        "title",
        "description",
        "status",
        "severity",
        "incident_commander",
        "alerts_count",
        "mttr_seconds",
        "ai_summary",
        "root_cause_analysis",
        "lessons_learned",
        "created_at",
        "resolved_at",
        "updated_at",
    ],
    "alert_relationships": [
        "id",
        "parent_alert_id",
        "child_alert_id",
        "relationship_type",
        "confidence",
        "created_at",
    ],
}


def test_upgrade_creates_every_table_and_the_documents_columns(database_url: str) -> None:
    assert upgrade(database_url) == "0012"
    assert current_revision(database_url) == "0012"
    engine = make_engine(database_url)
    inspector = inspect(engine)
    tables = set(inspector.get_table_names())
    assert tables >= {
        "alerts",
        "incidents",
        "alert_relationships",
        "sources",
        "workflows",
        "workflow_runs",
        "run_steps",
        "sink_deliveries",
        "approvals",
        "knowledge_base",
        "outbox",
        "secret_accesses",
    }
    for table, columns in DOC_COLUMNS.items():
        present = {c["name"] for c in inspector.get_columns(table)}
        assert set(columns) <= present, set(columns) - present
    indexes = {i["name"] for i in inspector.get_indexes("alerts")}
    assert {
        "idx_alerts_status",
        "idx_alerts_severity",
        "idx_alerts_fingerprint",
        "idx_alerts_received_at",
        "idx_alerts_incident_id",
    } <= indexes
    engine.dispose()


def test_migrations_match_the_models(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_name": declared})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == [], "the models changed without a migration"


def test_upgrade_is_idempotent(database_url: str) -> None:
    assert upgrade(database_url) == upgrade(database_url) == "0012"


def test_alert_text_is_stored_verbatim_and_the_dedup_key_is_unique(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    sessions = session_factory(engine)
    starts = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    with sessions.begin() as session:
        incident = Incident(
            title="PodCrashLooping in production", status="open", severity="critical"
        )
        session.add(incident)
        session.flush()
        session.add(
            Alert(
                fingerprint="d4c3b2a1f0e9d8c7",
                starts_at=starts,
                status="received",
                severity="critical",
                alert_name="PodCrashLooping",
                labels=HOSTILE,
                incident_id=incident.id,
            )
        )
        session.add(
            WorkflowRun(
                name="agent-alert-investigation-d4c3b2a1", workflow_name="agent-alert-investigation"
            )
        )
        session.add(
            OutboxEntry(run_name="agent-alert-investigation-d4c3b2a1", payload={"labels": HOSTILE})
        )
    with sessions() as session:
        stored = session.scalars(select(Alert)).one()
        assert stored.labels == HOSTILE
        assert stored.auto_resolved is False
        assert isinstance(stored.id, uuid.UUID)
    with pytest.raises(IntegrityError), sessions.begin() as session:
        session.add(
            Alert(
                fingerprint="d4c3b2a1f0e9d8c7",
                starts_at=starts,
                status="received",
                severity="critical",
                alert_name="PodCrashLooping",
            )
        )
    with pytest.raises(IntegrityError), sessions.begin() as session:
        session.add(OutboxEntry(run_name="agent-alert-investigation-d4c3b2a1"))
    engine.dispose()


def test_db_upgrade_command(database_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "punchingfist.cli", "db", "upgrade", "--database-url", database_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "at revision 0012" in result.stdout
    assert "postgres@" not in result.stdout + result.stderr or "sqlite" in database_url


def test_db_upgrade_unreachable_database_is_a_clear_error() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "punchingfist.cli",
            "db",
            "upgrade",
            "--database-url",
            "postgresql://user:hunter2@127.0.0.1:9/nope",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot migrate postgresql+psycopg://***@127.0.0.1:9/")
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr
