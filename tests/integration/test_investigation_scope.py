"""One investigation per problem (#21): a webhook Source's `investigation` scope, coalescing
window and cooldown, on SQLite and on PostgreSQL (fast and plain paths), through the real app.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from punchingfist.api import load_resources
from punchingfist.cli.inputs import read_resources
from punchingfist.errors import PunchingFistError
from punchingfist.runs.dispatching import with_joined
from punchingfist.server import ServerState, create_app
from punchingfist.server.state import SecretStore
from punchingfist.store import Alert, OutboxEntry, WorkflowRun, upgrade
from tests.integration.intake_support import example, post, source, webhook

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _notification(
    group: str, *pods: str, status: str = "firing", starts: datetime = START
) -> dict[str, Any]:
    """One Alertmanager notification of group `group` with one alert per pod (alerts that
    started at `starts`: the same alerts each time unless it changes)."""
    payload = example()
    template = payload["alerts"][0]
    when = starts.isoformat()
    payload["groupKey"] = f'{{}}:{{alertname="{group}"}}'
    payload["status"] = status
    payload["alerts"] = []
    for pod in pods:
        alert = {
            **template,
            "status": status,
            "labels": {**template["labels"], "alertname": group, "pod": pod},
            "fingerprint": f"{group}-{pod}"[:60],
            "startsAt": when,
        }
        if status == "resolved":
            alert["endsAt"] = datetime.now(UTC).isoformat()
        payload["alerts"].append(alert)
    return payload


def _rows(state: Any) -> tuple[list[WorkflowRun], list[Alert], list[OutboxEntry]]:
    with state.sessions() as session:
        return (
            list(session.scalars(select(WorkflowRun).order_by(WorkflowRun.created_at))),
            list(session.scalars(select(Alert).order_by(Alert.received_at))),
            list(session.scalars(select(OutboxEntry))),
        )


def test_per_group_with_a_window_and_a_cooldown_is_the_default(intake_database_url: str) -> None:
    group = f"D{uuid.uuid4().hex[:8]}"
    with webhook(intake_database_url) as (client, state):
        before = datetime.now(UTC)
        answer = post(client, _notification(group, "a", "b", "c")).json()
        assert len(answer["runs"]) == 1 and answer["covered"] == 2, answer
        runs, alerts, (entry,) = _rows(state)
        assert len(runs) == 1 and {a.covered_by_run for a in alerts} == {None, runs[0].name}
        due = entry.next_attempt_at
        assert due is not None  # the 2 s window
        due = due.replace(tzinfo=due.tzinfo or UTC)
        assert before + timedelta(seconds=1.5) <= due <= datetime.now(UTC) + timedelta(seconds=3)
        # The 30 min cooldown: the group resolves and fires again, and starts nothing.
        post(client, _notification(group, "a", "b", "c", status="resolved"))
        later = START + timedelta(minutes=5)
        again = post(client, _notification(group, "a", starts=later)).json()
        assert again["runs"] == [] and again["covered"] == 1, again


def test_per_alert_starts_a_run_per_alert(intake_database_url: str) -> None:
    config = "investigation: {scope: perAlert}"
    with webhook(intake_database_url, config) as (client, state):
        answer = post(client, _notification("Storm", "a", "b", "c")).json()
        assert len(answer["runs"]) == 3 and answer["covered"] == 0
        runs, alerts, _ = _rows(state)
        assert len(runs) == 3 and {a.covered_by_run for a in alerts} == {None}


def test_why_alerts_start_no_run_is_counted_by_reason(intake_database_url: str) -> None:
    group = f"M{uuid.uuid4().hex[:8]}"
    with webhook(intake_database_url) as (client, _):
        metric = "punchingfist_investigations_suppressed_total"
        assert f'{metric}{{reason="cooldown"}} 0.0' in client.get("/metrics").text
        post(client, _notification(group, "a", "b"))
        post(client, _notification(group, "a", "b", status="resolved"))
        post(client, _notification(group, "a", starts=START + timedelta(minutes=1)))
        text = client.get("/metrics").text
        assert f'{metric}{{reason="scope"}} 1.0' in text
        assert f'{metric}{{reason="cooldown"}} 1.0' in text
        assert f'{metric}{{reason="run_limit"}} 0.0' in text


def test_alerts_that_join_a_waiting_run_are_in_its_event_when_it_starts(
    intake_database_url: str,
) -> None:
    group = f"J{uuid.uuid4().hex[:8]}"
    with webhook(intake_database_url, "investigation: {window: 30s}") as (client, state):
        (run,) = post(client, _notification(group, "a")).json()["runs"]
        post(client, _notification(group, "a", "b", "c"))
        with state.sessions() as session:
            record = WorkflowRun.named(session, run)
            assert record is not None
            event = with_joined(session, record)["event"]
        assert event["alert"]["labels"]["pod"] == "a"
        assert [a["fingerprint"] for a in event["alerts"]] == [f"{group}-{p}" for p in "abc"]
        assert {a["status"] for a in event["alerts"]} == {"firing"}


@pytest.mark.parametrize(
    ("path", "workflow"),
    [
        ("/webhook/alerts", "agent-alert-investigation"),
        ("/webhook/triage", "alert-triage"),
        ("/webhook/triage-workflow", "alert-triage-workflow"),
    ],
)
def test_one_alert_at_an_example_path_starts_one_investigation(
    intake_database_url: str, path: str, workflow: str
) -> None:
    """The example Sources each have a path: a critical PodCrashLooping alert (which every one
    of them matches) starts one run, of the Workflow of the Source at that path."""
    upgrade(intake_database_url)
    state = ServerState.from_resources(
        list(read_resources([str(EXAMPLES / "sources")])),
        intake_database_url,
        secrets=SecretStore(values={("webhook-secret", "token"): "t0ken"}),
    )
    payload = _notification("PodCrashLooping", "a", "b")
    payload["groupKey"] += f':{{run="{uuid.uuid4().hex}"}}'  # a group of its own
    try:
        with TestClient(create_app(state), raise_server_exceptions=False) as client:
            headers = {"Authorization": "Bearer t0ken"}
            assert client.post(path, json=payload).status_code == 401
            answer = client.post(path, json=payload, headers=headers).json()
    finally:
        state.engine.dispose()
    (run,) = answer["runs"]
    assert run.startswith(f"{workflow}-") and answer["covered"] == 1, answer


def test_per_group_starts_one_run_that_later_alerts_of_the_group_join(
    intake_database_url: str,
) -> None:
    group = f"G{uuid.uuid4().hex[:8]}"
    with webhook(intake_database_url, "investigation: {scope: perGroup}") as (client, state):
        first = post(client, _notification(group, "a", "b", "c")).json()
        (run,) = first["runs"]
        assert first["new"] == 3 and first["covered"] == 2, first
        # Alertmanager's next notification of the group: the group's alerts so far plus one.
        later = post(client, _notification(group, "a", "b", "c", "d")).json()
        assert later["runs"] == [] and later["new"] == 1 and later["covered"] == 1, later
        # Its retry changes nothing.
        assert post(client, _notification(group, "a", "b", "c", "d")).json()["new"] == 0
        # Another group is another investigation.
        other = post(client, _notification(f"{group}x", "a")).json()
        assert len(other["runs"]) == 1 and other["runs"] != [run]

        runs, alerts, _ = _rows(state)
        assert [r.name for r in runs][:1] == [run] and len(runs) == 2
        mine = [a for a in alerts if a.alert_name == group]
        assert sorted(a.status for a in mine) == ["received"] + ["suppressed"] * 3
        assert {a.covered_by_run for a in mine if a.status == "suppressed"} == {run}


def test_per_incident_joins_alerts_of_other_groups_with_the_same_title(
    intake_database_url: str,
) -> None:
    name = f"I{uuid.uuid4().hex[:8]}"
    with webhook(intake_database_url, "investigation: {scope: perIncident}") as (client, state):
        one = _notification(name, "a")
        other = _notification(name, "b")
        other["groupKey"] += ':{pod="b"}'  # another Alertmanager group, the same title
        (run,) = post(client, one).json()["runs"]
        answer = post(client, other).json()
        assert answer["runs"] == [] and answer["covered"] == 1, answer
        _, alerts, _ = _rows(state)
        assert [a.covered_by_run for a in alerts] == [None, run]


def test_a_group_that_fires_again_within_the_cooldown_starts_no_run(
    intake_database_url: str,
) -> None:
    group = f"C{uuid.uuid4().hex[:8]}"
    config = "investigation: {scope: perGroup, cooldown: 30m}"
    with webhook(intake_database_url, config) as (client, state):
        (run,) = post(client, _notification(group, "a")).json()["runs"]
        resolved = post(client, _notification(group, "a", status="resolved")).json()
        assert resolved["resolved"] == 1
        # The group fires again (a new firing: a later start): a new incident, but the group
        # was investigated within the cooldown.
        later = START + timedelta(minutes=1)
        again = post(client, _notification(group, "a", starts=later)).json()
        assert again["runs"] == [] and again["covered"] == 1, again
        runs, alerts, _ = _rows(state)
        assert [r.name for r in runs] == [run]
        assert alerts[-1].status == "suppressed" and alerts[-1].covered_by_run == run


def test_without_a_cooldown_a_refiring_group_starts_a_new_run(intake_database_url: str) -> None:
    group = f"R{uuid.uuid4().hex[:8]}"
    config = "investigation: {scope: perGroup, cooldown: 0s}"
    with webhook(intake_database_url, config) as (client, _):
        (run,) = post(client, _notification(group, "a")).json()["runs"]
        post(client, _notification(group, "a", status="resolved"))
        later = START + timedelta(minutes=1)
        (second,) = post(client, _notification(group, "a", starts=later)).json()["runs"]
        assert second != run


def test_a_window_delays_the_runs_start(intake_database_url: str) -> None:
    config = "investigation: {scope: perGroup, window: 20s}"
    with webhook(intake_database_url, config) as (client, state):
        before = datetime.now(UTC)
        post(client, _notification(f"W{uuid.uuid4().hex[:8]}", "a", "b"))
        _, _, (entry,) = _rows(state)
        assert entry.next_attempt_at is not None
        due = entry.next_attempt_at.replace(tzinfo=entry.next_attempt_at.tzinfo or UTC)
        assert before + timedelta(seconds=19) <= due <= datetime.now(UTC) + timedelta(seconds=21)


@pytest.mark.parametrize(
    ("setting", "field"),
    [
        ("{window: 10m}", "window"),
        ("{cooldown: 8d}", "cooldown"),
        ("{window: soon}", "window"),
        ("{scope: perPod}", "scope"),
    ],
)
def test_invalid_investigation_settings_name_the_field(setting: str, field: str) -> None:
    with pytest.raises(PunchingFistError) as raised:
        load_resources(source(f"investigation: {setting}"))
    assert f"investigation.{field}" in str(raised.value), str(raised.value)
