"""The memory of the system (D10): alerts, incidents, runs, steps, approvals, deliveries, outbox.

SQLAlchemy 2.0 models and Alembic migrations; SQLite by default, PostgreSQL through psycopg 3.
"""

from punchingfist.store.migrating import current_revision, upgrade
from punchingfist.store.models import (
    Alert,
    AlertRelationship,
    Approval,
    Base,
    Incident,
    KnowledgeEntry,
    Notification,
    OutboxEntry,
    RunStep,
    SecretAccessRecord,
    SinkDelivery,
    SourceRecord,
    WorkflowRecord,
    WorkflowRun,
)
from punchingfist.store.sessions import DEFAULT_URL, database_url, make_engine, session_factory

__all__ = [
    "DEFAULT_URL",
    "Alert",
    "AlertRelationship",
    "Approval",
    "Base",
    "Incident",
    "KnowledgeEntry",
    "Notification",
    "OutboxEntry",
    "RunStep",
    "SecretAccessRecord",
    "SinkDelivery",
    "SourceRecord",
    "WorkflowRecord",
    "WorkflowRun",
    "current_revision",
    "database_url",
    "make_engine",
    "session_factory",
    "upgrade",
]
