"""Input the stores cannot hold is a 4xx naming the field, the same on SQLite and PostgreSQL;
a 503 means the database is unavailable, and is logged; a notification's alerts and runs are
bounded by its Source (issue #18, section 3)."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from punchingfist.api import load_resources
from punchingfist.api.storable import problems
from punchingfist.server import ServerState, create_app
from punchingfist.server.state import SecretStore
from punchingfist.store import Alert, upgrade
from tests.e2e.controlplane import free_port
from tests.integration.intake_support import TOKEN, counts, example, post, source, webhook

NOTHING = {
    "alerts": 0,
    "incidents": 0,
    "runs": 0,
    "outbox": 0,
    "notifications": 0,
    "relationships": 0,
}


@pytest.fixture
def client(intake_database_url: str) -> Iterator[tuple[TestClient, ServerState]]:
    with webhook(intake_database_url) as served:
        yield served


def on_alert(**fields: Any) -> dict[str, Any]:
    body = example()
    body["alerts"][0].update(fields)
    return body


def on_payload(**fields: Any) -> dict[str, Any]:
    return {**example(), **fields}


def resolved(ends_at: str) -> dict[str, Any]:
    body = on_alert(status="resolved", endsAt=ends_at)
    body["status"] = "resolved"
    return body


CASES = {
    "nul-fingerprint": (on_alert(fingerprint="a\x00b"), "body.alerts[0].fingerprint"),
    "nul-generator-url": (on_alert(generatorURL="http://x/\x00"), "body.alerts[0].generatorURL"),
    "nul-label-value": (
        on_alert(labels={"alertname": "A", "pod": "p\x00"}),
        "body.alerts[0].labels",
    ),
    "nul-label-name": (on_alert(labels={"alertname": "A", "p\x00": "p"}), "body.alerts[0].labels"),
    "nul-annotation": (on_alert(annotations={"summary": "\x00"}), "body.alerts[0].annotations"),
    "nul-group-key": (on_payload(groupKey="{}:{a=\x00}"), "body.groupKey"),
    "nul-receiver": (on_payload(receiver="r\x00"), "body.receiver"),
    "nul-external-url": (on_payload(externalURL="http://am\x00"), "body.externalURL"),
    "nul-common-labels": (on_payload(commonLabels={"a": "\x00"}), "body.commonLabels"),
    "nul-group-labels": (on_payload(groupLabels={"\x00": "a"}), "body.groupLabels"),
    "nul-common-annotations": (
        on_payload(commonAnnotations={"a": "b\x00"}),
        "body.commonAnnotations",
    ),
    "ends-in-year-10000": (resolved("9999-12-31T23:59:59-01:00"), "body.alerts[0].endsAt"),
    "starts-before-year-1": (
        on_alert(startsAt="0001-01-01T00:00:00+01:00"),
        "body.alerts[0].startsAt",
    ),
    "starts-at-go-zero": (on_alert(startsAt="0001-01-01T00:00:00Z"), "body.alerts[0].startsAt"),
    "starts-at-nan": (on_alert(startsAt=float("nan")), "body.alerts[0].startsAt"),
    "starts-at-infinity": (on_alert(startsAt=float("inf")), "body.alerts[0].startsAt"),
    "label-is-nan": (
        on_alert(labels={"alertname": "A", "x": float("nan")}),
        "body.alerts[0].labels.x",
    ),
    "truncated-above-2^64": (on_payload(truncatedAlerts=2**64 + 1), "body.truncatedAlerts"),
    "truncated-at-2^63": (on_payload(truncatedAlerts=2**63), "body.truncatedAlerts"),
    "truncated-is-infinity": (on_payload(truncatedAlerts=float("inf")), "body.truncatedAlerts"),
}


@pytest.mark.parametrize(("body", "field"), list(CASES.values()), ids=list(CASES))
def test_unstorable_input_is_a_422_naming_the_field_and_stores_nothing(
    client: tuple[TestClient, ServerState], body: dict[str, Any], field: str
) -> None:
    """Each of these failed every retry with 503 (or 500) on PostgreSQL and was stored on
    SQLite; now both answer 422 before any transaction, and the sender can go on."""
    http, state = client
    response = post(http, body)
    assert response.status_code == 422, response.text
    assert field in {p["field"] for p in response.json()["problems"]}, response.text
    assert counts(state) == NOTHING
    valid = post(http, example())  # the same fingerprint, as it should have been
    assert valid.status_code == 200 and valid.json()["new"] == 1, valid.text
    assert counts(state)["runs"] == 1


def test_a_time_with_any_rfc3339_offset_is_kept_in_utc(
    client: tuple[TestClient, ServerState],
) -> None:
    """`+23:59` is a valid RFC 3339 offset that PostgreSQL refused (its limit is ±15:59):
    times are converted to UTC first, so both stores keep the same instant."""
    http, state = client
    body = on_alert(startsAt="2026-11-26T23:59:00+23:59")
    response = post(http, body)
    assert response.status_code == 200 and response.json()["new"] == 1, response.text
    again = post(http, on_alert(startsAt="2026-11-26T00:00:00.000Z")).json()  # the same instant
    assert again["updated"] == 1 and again["new"] == 0
    with state.sessions() as session:
        (starts_at,) = session.scalars(select(Alert.starts_at)).all()
    assert starts_at.replace(tzinfo=None).isoformat() == "2026-11-26T00:00:00"


def test_the_latest_storable_end_is_stored_and_read_back(
    client: tuple[TestClient, ServerState],
) -> None:
    http, state = client
    assert post(http, example()).status_code == 200
    response = post(http, resolved("9999-12-29T23:59:59Z"))
    assert response.status_code == 200 and response.json()["resolved"] == 1, response.text
    with state.sessions() as session:  # the read the year-10000 row broke
        (alert,) = session.scalars(select(Alert)).all()
        assert alert.ends_at is not None and alert.ends_at.year == 9999
    assert post(http, example()).json()["updated"] == 1  # later posts of it still work


def test_alertmanager_zero_end_time_means_not_ended(client: tuple[TestClient, ServerState]) -> None:
    http, state = client
    assert post(http, on_alert(endsAt="0001-01-01T00:00:00Z")).status_code == 200
    with state.sessions() as session:
        (alert,) = session.scalars(select(Alert)).all()
        assert alert.ends_at is None and alert.status == "received"


def test_a_lone_surrogate_is_a_400_and_stores_nothing(
    client: tuple[TestClient, ServerState],
) -> None:
    http, state = client
    body = example()
    body["alerts"][0]["labels"]["pod"] = "\ud800"
    response = post(http, body)
    assert response.status_code == 400 and "not JSON" in response.text
    assert counts(state) == NOTHING


REFUSE = {
    "postgresql": [
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.fingerprint = 'refused' THEN RAISE EXCEPTION 'refused' USING ERRCODE = '22023'; "
        "END IF; RETURN NEW; END $$",
        "CREATE TRIGGER refuse BEFORE INSERT ON workflow_runs FOR EACH ROW "
        "EXECUTE FUNCTION refuse()",
    ],
    "sqlite": [
        "CREATE TRIGGER refuse BEFORE INSERT ON workflow_runs FOR EACH ROW "
        "WHEN NEW.fingerprint = 'refused' BEGIN SELECT RAISE(ABORT, 'refused'); END",
    ],
}


def test_values_the_database_refuses_are_a_logged_422_not_a_503(
    client: tuple[TestClient, ServerState], caplog: pytest.LogCaptureFixture
) -> None:
    """A value the payload checks missed, refused by the database (here by a trigger: a
    DataError on PostgreSQL, an IntegrityError on SQLite) would be refused on every retry:
    it is a 422 that Alertmanager does not retry, logged with the error class only."""
    http, state = client
    with state.engine.begin() as connection:
        for statement in REFUSE[state.engine.dialect.name]:
            connection.exec_driver_sql(statement)
    body = on_alert(fingerprint="refused", labels={"alertname": "A", "pod": "secret-pod-name"})
    with caplog.at_level(logging.WARNING, logger="punchingfist"):
        response = post(http, body)
    assert response.status_code == 422 and "refused" in response.json()["error"], response.text
    assert counts(state) == NOTHING
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("refused" in w and ("DataError" in w or "IntegrityError" in w) for w in warnings)
    assert "secret-pod-name" not in caplog.text  # the payload is never logged
    assert post(http, example()).status_code == 200


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_an_unavailable_database_is_a_logged_503(
    store: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 503 means the database is really unavailable (Alertmanager retries): here a
    PostgreSQL port nothing listens on, or a SQLite file whose directory is gone."""
    if store == "postgresql":
        url, folder = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/postgres", None
    else:
        folder = tmp_path / "gone"
        url = f"sqlite:///{folder / 'pf.db'}"
    with _unreachable(url, folder) as http, caplog.at_level(logging.WARNING):
        response = post(http, on_alert(labels={"alertname": "A", "pod": "secret-pod-name"}))
    assert response.status_code == 503, response.text
    assert "retry later" in response.json()["error"]
    assert any(
        "unavailable" in r.getMessage() and "OperationalError" in r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING
    ), caplog.text
    assert "secret-pod-name" not in caplog.text


@contextmanager
def _unreachable(url: str, sqlite_folder: Path | None) -> Iterator[TestClient]:
    """The app on a database it cannot reach (a SQLite file is made, then its folder goes)."""
    if sqlite_folder is not None:
        upgrade(url)
    state = ServerState.from_resources(
        load_resources(source()), url, secrets=SecretStore(values={("hook", "token"): TOKEN})
    )
    if sqlite_folder is not None:
        state.engine.dispose()
        shutil.rmtree(sqlite_folder)
    try:
        with TestClient(create_app(state), raise_server_exceptions=False) as http:
            yield http
    finally:
        state.engine.dispose()


def test_a_notification_over_max_alerts_is_a_413_naming_the_limit(
    intake_database_url: str,
) -> None:
    with webhook(intake_database_url, "maxAlerts: 5") as (http, state):
        body = example()
        body["alerts"] = [{**body["alerts"][0], "fingerprint": f"f{n}"} for n in range(6)]
        response = post(http, body)
        assert response.status_code == 413, response.text
        assert "maxAlerts" in response.json()["error"] and "at most 5" in response.json()["error"]
        assert counts(state) == NOTHING
        body["alerts"] = body["alerts"][:5]
        assert post(http, body).json()["new"] == 5


def test_the_default_alert_cap_refuses_a_flood(client: tuple[TestClient, ServerState]) -> None:
    """One unauthenticated-looking post of thousands of alerts queued as many runs; the
    default `maxAlerts` (1000) refuses it whole."""
    http, state = client
    body = example()
    alert = body["alerts"][0]
    body["alerts"] = [
        {
            "status": "firing",
            "labels": {"alertname": "A"},
            "fingerprint": f"{n}",
            "startsAt": alert["startsAt"],
        }
        for n in range(1001)
    ]
    response = post(http, body)
    assert response.status_code == 413 and "at most 1000" in response.text, response.text
    assert counts(state) == NOTHING


def test_runs_beyond_max_runs_per_notification_are_suppressed(intake_database_url: str) -> None:
    """The first N new firing alerts start runs; the rest are stored and correlated with
    status `suppressed` and no run, and the answer says how many."""
    per_alert = "investigation: {scope: perAlert, window: 0s, cooldown: 0s}"
    with webhook(intake_database_url, f"maxRunsPerNotification: 3\n    {per_alert}") as (
        http,
        state,
    ):
        body = example()
        body["alerts"] = [{**body["alerts"][0], "fingerprint": f"f{n}"} for n in range(8)]
        answer = post(http, body).json()
        assert answer["new"] == 8 and answer["suppressed"] == 5 and len(answer["runs"]) == 3
        assert "maxRunsPerNotification" in answer["note"] and "'am' at most 3" in answer["note"]
        found = counts(state)
        assert found["alerts"] == 8 and found["runs"] == found["outbox"] == 3
        with state.sessions() as session:
            statuses = dict(session.execute(select(Alert.fingerprint, Alert.status)).all())
        assert statuses == {
            **{f"f{n}": "received" for n in range(3)},
            **{f"f{n}": "suppressed" for n in range(3, 8)},
        }
        retry = post(http, body).json()  # Alertmanager's retry starts nothing more
        assert retry["updated"] == 8 and retry["runs"] == [] and retry["suppressed"] == 0
        assert counts(state)["runs"] == 3
        other = example()  # the cap is per notification: the next one starts its runs
        other["alerts"] = [{**other["alerts"][0], "fingerprint": f"g{n}"} for n in range(2)]
        assert len(post(http, other).json()["runs"]) == 2


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"a": float("nan"), "b": [1, float("-inf")]}, ["body.a", "body.b[1]"]),
        ({"s": "x\x00"}, ["body.s"]),
        ({"k\x00": 1}, ["body.'k\\x00'"]),
        ({"s": "\ud800"}, ["body.s"]),
        ({"n": 2**63, "m": -(2**63) - 1, "ok": 2**63 - 1}, ["body.n", "body.m"]),
        ({"ok": ["é", 1.5, None, True, {"x": "y"}]}, []),
    ],
)
def test_storable_problems_name_each_field(value: Any, expected: list[str]) -> None:
    """The check the trigger and report endpoints run on their JSON before storing it."""
    assert [field for field, _ in problems(value)] == expected


def test_storable_problems_refuse_deep_nesting() -> None:
    deep: list[Any] = []
    inner = deep
    for _ in range(100):
        inner.append([])
        inner = inner[0]
    ((field, message),) = problems(deep, "result")
    assert field.startswith("result[0]") and "deeper than 32" in message
