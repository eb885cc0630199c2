"""Group commit: the writer stores what is queued together, and a bad notification fails alone."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from punchingfist.api import load_resources
from punchingfist.api.alerts import AlertmanagerPayload
from punchingfist.runs import batching
from punchingfist.runs.batching import IntakeWriter, _Job
from punchingfist.runs.intake import ingest_batch
from punchingfist.store import Alert, WorkflowRun, _bulk, make_engine, session_factory, upgrade

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "alerts" / "pod-crashlooping.json"
SOURCE = """
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: am}
spec:
  type: webhook
  triggerWorkflow: investigate-alert
  # The writer's tests count a run per alert.
  config: {path: /webhook/alerts, investigation: {scope: perAlert, window: 0s, cooldown: 0s}}
"""


def notification(fingerprint: str) -> AlertmanagerPayload:
    data: dict[str, Any] = json.loads(EXAMPLE.read_text())
    data["alerts"][0]["fingerprint"] = fingerprint
    return AlertmanagerPayload.model_validate(data)


POSTGRESQL = ["postgresql", "postgresql-plain"]
"""Both paths of the store on PostgreSQL (see `intake_database_url`)."""


@pytest.fixture
def writer(intake_database_url: str) -> Any:
    upgrade(intake_database_url)
    engine = make_engine(intake_database_url)
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


def test_a_batch_waits_briefly_for_the_connections_that_are_busy(
    writer: IntakeWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two kept-alive connections that post again as soon as they are answered share
    batches: a batch waits (up to `linger`) for the one that is due. A connection's first
    post (one connection per post, a lone sender starting) never waits."""
    monkeypatch.setattr(batching, "RECENT_SECONDS", 60.0)  # posts in a row throughout
    writer.linger = 10.0
    sources = load_resources(SOURCE)
    a, b = ("10.0.0.1", 40001), ("10.0.0.2", 40002)
    started = time.monotonic()
    for name, client in (("a1", a), ("b1", b), ("a2", a)):  # at most one busy: none due
        assert writer.put(sources, notification(name), client).result(timeout=30).new == 1
    assert time.monotonic() - started < 5
    assert writer.batches == 3

    b2 = writer.put(sources, notification("b2"), b)  # `a` is busy too: the batch waits for it
    time.sleep(0.5)
    assert not b2.done()
    a3 = writer.put(sources, notification("a3"), a)
    assert b2.result(timeout=30).new == a3.result(timeout=30).new == 1
    assert writer.batches == 4  # b2 and a3 together


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


@pytest.mark.parametrize("intake_database_url", POSTGRESQL, indirect=True)
def test_a_write_the_database_refuses_leaves_nothing_of_its_batch(
    writer: IntakeWriter, intake_database_url: str
) -> None:
    """The writer begins a batch's transaction with its lookups and commits it with its writes
    (no round trip of their own). A write PostgreSQL refuses, after the batch's other rows went
    in, rolls all of them back; its notification fails alone, the connection goes on."""
    import psycopg

    with psycopg.connect(
        intake_database_url.replace("postgresql+psycopg", "postgresql"), autocommit=True
    ) as admin:
        admin.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.fingerprint = 'refused' THEN RAISE EXCEPTION 'refused by a trigger'; END IF; "
            "RETURN NEW; END $$"
        )  # the runs are written after the alerts, in the same statement
        admin.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON workflow_runs "
            "FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
    sources = load_resources(SOURCE)
    jobs = [_Job(sources, notification(f)) for f in ("before", "refused", "after")]
    for job in jobs:
        writer._queue.put(job)
    writer._ensure_started()
    assert jobs[0].future.result(timeout=30).new == 1
    assert jobs[2].future.result(timeout=30).new == 1
    with pytest.raises(Exception, match="refused by a trigger"):
        jobs[1].future.result(timeout=30)
    with writer.sessions() as session:
        kept = set(session.scalars(select(Alert.fingerprint)))
        runs = set(session.scalars(select(WorkflowRun.fingerprint)))
    assert kept == runs == {"before", "after"}
    assert writer.put(sources, notification("later")).result(timeout=30).new == 1
    with writer.sessions() as session:  # the writer's connection ended its transactions
        idle = session.scalar(
            select(func.count())
            .select_from(text("pg_stat_activity"))
            .where(text("state = 'idle in transaction'"))
        )
    assert idle == 0


@pytest.mark.parametrize("intake_database_url", POSTGRESQL, indirect=True)
def test_a_dropped_database_connection_fails_no_request(
    writer: IntakeWriter, intake_database_url: str
) -> None:
    """The writer keeps its connection between batches. When PostgreSQL drops it (a restart,
    a failover), the next batch is written again on a new one instead of answering 503."""
    import psycopg

    sources = load_resources(SOURCE)
    assert writer.put(sources, notification("before")).result(timeout=30).new == 1
    connections = [lane.connection for lane in writer._lanes if lane.connection is not None]
    assert connections
    plain = intake_database_url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(plain, autocommit=True) as admin:
        for connection in connections:
            raw = connection.connection.driver_connection
            assert isinstance(raw, psycopg.Connection)
            admin.execute("SELECT pg_terminate_backend(%s)", [raw.info.backend_pid])
    assert writer.put(sources, notification("after")).result(timeout=30).new == 1
    assert stored(writer, Alert) == 2


@pytest.mark.parametrize("intake_database_url", ["postgresql"], indirect=True)
def test_the_writes_are_prepared_once_and_a_lost_statement_fails_no_request(
    writer: IntakeWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each connection prepares the batch's insert and update statements the first time it
    sends them and executes them by name after that. A database that loses them (a pooler in
    transaction mode; here DEALLOCATE ALL behind the writer's back) still stores the next
    batch, on a new connection, and preparing is off from then on. (The fast path's.)"""
    monkeypatch.setattr(_bulk._Prepared, "enabled", True)  # process-wide: put back afterwards
    sources = load_resources(SOURCE)

    def prepared() -> set[str]:
        (lane,) = (lane for lane in writer._lanes if lane.connection is not None)
        raw = lane.connection.connection.driver_connection  # idle between batches
        rows = raw.execute("SELECT name FROM pg_prepared_statements").fetchall()
        return {name for (name,) in rows if name.startswith("pf_")}

    for n in range(3):
        assert writer.put(sources, notification(f"first-{n}")).result(timeout=30).new == 1
    made = prepared()
    assert len(made) >= 2  # the insert (two shapes: with a new incident, without) and update
    for n in range(3):
        assert writer.put(sources, notification(f"again-{n}")).result(timeout=30).new == 1
    assert prepared() == made  # executed by name, nothing prepared again

    (lane,) = (lane for lane in writer._lanes if lane.connection is not None)
    lane.connection.connection.driver_connection.execute("DEALLOCATE ALL")
    assert writer.put(sources, notification("after")).result(timeout=30).new == 1
    assert _bulk._Prepared.enabled is False
    assert writer.put(sources, notification("later")).result(timeout=30).new == 1
    assert prepared() == set()
    assert stored(writer, Alert) == stored(writer, WorkflowRun) == 8


def test_repeats_resolve_and_the_lookups_are_planned_per_batch(
    writer: IntakeWriter, request: pytest.FixtureRequest
) -> None:
    """Repeats and resolutions go through the update path on every store. On the fast path
    the lookups are planned for each batch's values, never prepared: a lookup plan made while
    the tables were small would go on scanning them whole. The writes are prepared; the plain
    path prepares none of its own."""

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
    with writer.sessions.begin() as session:  # psycopg prepares what runs 5 times
        for n in range(8):
            assert ingest_batch(session, [(sources, notification(f"next{n}"))])[0].new == 1
            session.execute(text("SELECT 1 AS probe"))
        if session.get_bind().dialect.name == "postgresql":
            prepared = session.execute(text("SELECT statement FROM pg_prepared_statements"))
            statements = list(prepared.scalars())
            assert any("probe" in s for s in statements)  # the probe sees what is prepared
            assert not any("json_agg" in s for s in statements)
            made = any(s.startswith("PREPARE pf_") and "INSERT INTO" in s for s in statements)
            assert made == (_store(request) == "postgresql")


def _store(request: pytest.FixtureRequest) -> str:
    """The test's `intake_database_url`: sqlite, postgresql or postgresql-plain."""
    return str(request.node.callspec.params["intake_database_url"])


def test_each_store_takes_its_own_path(
    writer: IntakeWriter, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL takes the fast path (one round trip for the lookups, one for the writes)
    unless it is turned off; SQLite, and PostgreSQL with it off, the plain SQLAlchemy path."""
    calls: list[str] = []

    def spy(name: str, call: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return call(*args, **kwargs)

        return counted

    for name in ("read_many", "write_many"):
        monkeypatch.setattr(_bulk, name, spy(name, getattr(_bulk, name)))
    sources = load_resources(SOURCE)
    assert writer.put(sources, notification("one")).result(timeout=30).new == 1
    assert writer.put(sources, notification("one")).result(timeout=30).updated == 1
    fast = _store(request) == "postgresql"
    assert calls == (["read_many", "write_many"] * 2 if fast else [])
    assert stored(writer, Alert) == stored(writer, WorkflowRun) == 1


def alert_notification(
    fingerprint: str, group_key: str, namespace: str, status: str = "firing"
) -> AlertmanagerPayload:
    alert = {
        "status": status,
        "fingerprint": fingerprint,
        "labels": {
            "alertname": "PodCrashLooping",
            "namespace": namespace,
            "severity": "warning",
            "pod": fingerprint,
        },
        "annotations": {"summary": "crash looping"},
        "startsAt": "2026-11-26T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
    }
    return AlertmanagerPayload.model_validate(
        {
            "version": "4",
            "groupKey": group_key,
            "status": status,
            "receiver": "pf",
            "alerts": [alert],
        }
    )


CONCURRENT = {
    # second batch: (fingerprint, group key, namespace, status), whether it waits for the first
    "the same group": (("b", "g1", "other", "firing"), True),
    "the same title": (("b", "g2", "prod", "firing"), True),
    "the same alert": (("a", "g2", "other", "firing"), True),
    "a resolution": (("old", "g9", "old", "resolved"), True),
    "nothing in common": (("b", "g2", "other", "firing"), False),
}


@pytest.mark.parametrize("intake_database_url", POSTGRESQL, indirect=True)
@pytest.mark.parametrize("case", list(CONCURRENT))
def test_concurrent_batches_that_share_a_key_run_one_after_the_other(
    intake_database_url: str, case: str
) -> None:
    """Two writers (threads here, replicas in a cluster) store what one writer would have:
    a batch that shares a fingerprint, an Alertmanager group or an incident title with one
    still open waits for it to commit, then sees its rows; unrelated batches do not wait."""
    import threading

    from punchingfist.store import Incident

    (fingerprint, group, place, status), waits = CONCURRENT[case]
    upgrade(intake_database_url)
    engine = make_engine(intake_database_url)
    sessions = session_factory(engine)
    sources = load_resources(SOURCE)
    with sessions.begin() as session:
        ingest_batch(session, [(sources, alert_notification("old", "g9", "old"))])
    first = sessions()
    first.begin()
    ingest_batch(first, [(sources, alert_notification("a", "g1", "prod"))])
    results = []

    def second() -> None:
        with sessions.begin() as session:
            results.extend(
                ingest_batch(
                    session, [(sources, alert_notification(fingerprint, group, place, status))]
                )
            )

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(1.0)
    assert thread.is_alive() == waits
    first.commit()
    first.close()
    thread.join(30)
    assert not thread.is_alive() and len(results) == 1
    with sessions() as session:
        incidents = {i.title: i for i in session.scalars(select(Incident))}
        alerts = {a.fingerprint: a for a in session.scalars(select(Alert))}
    engine.dispose()
    if case in ("the same group", "the same title"):  # joined the first batch's incident
        assert len(incidents) == 2 and incidents["PodCrashLooping in prod"].alerts_count == 2
        assert alerts["b"].incident_id == alerts["a"].incident_id
    elif case == "the same alert":  # Alertmanager's retry, through another replica
        assert results[0].updated == 1 and results[0].runs == []
    elif case == "a resolution":
        assert results[0].resolved == 1 and alerts["old"].status == "resolved"
        assert incidents["PodCrashLooping in old"].status == "resolved"
    else:
        assert len(incidents) == 3 and alerts["b"].incident_id != alerts["a"].incident_id


@pytest.mark.parametrize("intake_database_url", POSTGRESQL, indirect=True)
def test_several_writers_store_what_one_would(intake_database_url: str) -> None:
    """Four writer threads on a burst of notifications that share groups, titles and alerts:
    one incident per group, counts that add up, one alert row and one run per alert."""
    from punchingfist.store import Incident

    upgrade(intake_database_url)
    engine = make_engine(intake_database_url)
    writer = IntakeWriter(session_factory(engine), writers=4)
    sources = load_resources(SOURCE)
    try:
        futures = [
            writer.put(sources, alert_notification(f"fp{n % 30}", f"g{n % 5}", f"ns{n % 3}"))
            for n in range(60)
        ]
        results = [future.result(timeout=60) for future in futures]
    finally:
        writer.stop()
    assert sum(r.new for r in results) == 30 and sum(r.updated for r in results) == 30
    assert sum(len(r.runs) for r in results) == 30
    with writer.sessions() as session:
        alerts = list(session.scalars(select(Alert)))
        incidents = list(session.scalars(select(Incident)))
        runs = session.scalar(select(func.count()).select_from(WorkflowRun))
    engine.dispose()
    assert len(alerts) == 30 and runs == 30
    per_incident: dict[Any, int] = {}
    for alert in alerts:
        per_incident[alert.incident_id] = per_incident.get(alert.incident_id, 0) + 1
    assert {i.id: i.alerts_count for i in incidents} == per_incident
    assert len({i.group_key for i in incidents}) == len(incidents)


@pytest.mark.parametrize(
    "fingerprint", ['a"b', "back\\slash", "x,y", "{braces}", " spaced ", "NULL", "ünï 🔥", "'q'"]
)
def test_hostile_fingerprints_and_group_keys_are_looked_up_verbatim(
    writer: IntakeWriter, fingerprint: str
) -> None:
    """Lookups send their lists as PostgreSQL array literals: what Alertmanager (or whoever
    holds the token) put in a fingerprint or group key comes back as the same text."""
    sources = load_resources(SOURCE)
    first = alert_notification(fingerprint, f"group {fingerprint}", "ns")
    assert writer.put(sources, first).result(timeout=30).new == 1
    again = writer.put(sources, alert_notification(fingerprint, f"group {fingerprint}", "other"))
    assert again.result(timeout=30).updated == 1
    with writer.sessions() as session:
        (alert,) = session.scalars(select(Alert)).all()
        assert alert.fingerprint == fingerprint
