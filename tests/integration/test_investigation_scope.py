"""One investigation per problem (#21): a webhook Source's `investigation` scope, coalescing
window and cooldown, on SQLite and on PostgreSQL (fast and plain paths), through the real app.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from punchingfist.api import load_resources
from punchingfist.errors import PunchingFistError
from punchingfist.store import Alert, OutboxEntry, WorkflowRun
from tests.integration.intake_support import example, post, source, webhook

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


def test_per_alert_is_the_default_and_starts_a_run_per_alert(intake_database_url: str) -> None:
    with webhook(intake_database_url) as (client, state):
        answer = post(client, _notification("Storm", "a", "b", "c")).json()
        assert len(answer["runs"]) == 3 and answer["covered"] == 0
        runs, alerts, _ = _rows(state)
        assert len(runs) == 3 and {a.covered_by_run for a in alerts} == {None}


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
    with webhook(intake_database_url, "investigation: {scope: perGroup}") as (client, _):
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
