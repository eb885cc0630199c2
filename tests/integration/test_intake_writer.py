"""Group commit: the writer stores what is queued together, and a bad notification fails alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from punchingfist.api import load_resources
from punchingfist.api.alerts import AlertmanagerPayload
from punchingfist.server.batching import IntakeWriter, _Job
from punchingfist.server.intake import ingest_batch
from punchingfist.store import Alert, WorkflowRun, make_engine, session_factory, upgrade

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "alerts" / "pod-crashlooping.json"
SOURCE = """
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: am}
spec: {type: webhook, config: {path: /webhook/alerts}, triggerWorkflow: investigate-alert}
"""


def notification(fingerprint: str) -> AlertmanagerPayload:
    data: dict[str, Any] = json.loads(EXAMPLE.read_text())
    data["alerts"][0]["fingerprint"] = fingerprint
    return AlertmanagerPayload.model_validate(data)


@pytest.fixture
def writer(database_url: str) -> Any:
    upgrade(database_url)
    engine = make_engine(database_url)
    writer = IntakeWriter(session_factory(engine))
    yield writer
    writer.stop()
    engine.dispose()


def stored(writer: IntakeWriter, model: Any) -> int:
    with writer.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_queued_notifications_share_one_transaction(writer: IntakeWriter) -> None:
    sources = load_resources(SOURCE)
    jobs = [_Job(sources, notification(f"fp{n}")) for n in range(5)]
    for job in jobs:  # queued before the thread starts: one batch
        writer._queue.put(job)
    writer._ensure_started()
    results = [job.future.result(timeout=30) for job in jobs]
    assert [r.new for r in results] == [1] * 5 and all(len(r.runs) == 1 for r in results)
    assert writer.batches == 1
    assert stored(writer, Alert) == 5 and stored(writer, WorkflowRun) == 5


def test_a_bad_notification_fails_alone(writer: IntakeWriter) -> None:
    sources = load_resources(SOURCE)
    good = notification("good")
    broken = notification("broken")
    # Past validation by construction: an alert without startsAt cannot be keyed.
    alert = broken.alerts[0].model_copy(update={"starts_at": None})
    broken = broken.model_copy(update={"alerts": [alert]})
    jobs = [_Job(sources, good), _Job(sources, broken), _Job(sources, notification("also"))]
    for job in jobs:
        writer._queue.put(job)
    writer._ensure_started()
    assert jobs[0].future.result(timeout=30).new == 1
    assert jobs[2].future.result(timeout=30).new == 1
    with pytest.raises(AttributeError):
        jobs[1].future.result(timeout=30)
    assert stored(writer, Alert) == 2 and stored(writer, WorkflowRun) == 2


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_dropped_database_connection_fails_no_request(
    writer: IntakeWriter, database_url: str
) -> None:
    """The writer keeps its connection between batches. When PostgreSQL drops it (a restart,
    a failover), the next batch is written again on a new one instead of answering 503."""
    import psycopg

    sources = load_resources(SOURCE)
    assert writer.put(sources, notification("before")).result(timeout=30).new == 1
    assert writer._connection is not None
    raw = writer._connection.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    plain = database_url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(plain, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [raw.info.backend_pid])
    assert writer.put(sources, notification("after")).result(timeout=30).new == 1
    assert stored(writer, Alert) == 2


def test_repeats_resolve_and_only_the_lookups_are_planned_per_batch(
    writer: IntakeWriter,
) -> None:
    """Repeats and resolutions go through the update path on both stores. On PostgreSQL the
    batch's lookups alone are planned per batch (`force_custom_plan`): the inserts after them
    in the same transaction keep the server's setting."""
    from sqlalchemy import text

    sources = load_resources(SOURCE)
    first = notification("kept")
    assert writer.put(sources, first).result(timeout=30).new == 1
    assert writer.put(sources, first).result(timeout=30).updated == 1
    data = first.model_dump(mode="json", by_alias=True)
    data["alerts"][0]["status"] = "resolved"
    resolved = AlertmanagerPayload.model_validate(data)
    assert writer.put(sources, resolved).result(timeout=30).resolved == 1
    with writer.sessions() as session:
        (alert,) = session.scalars(select(Alert)).all()
        assert alert.status == "resolved" and alert.resolved_at is not None
        assert alert.labels == dict(first.alerts[0].labels)
    with writer.sessions.begin() as session:  # inside the batch's own transaction
        assert ingest_batch(session, [(sources, notification("next"))])[0].new == 1
        if session.get_bind().dialect.name == "postgresql":
            assert session.execute(text("SHOW plan_cache_mode")).scalar() == "auto"
