"""Alerts that join a run after its Slack report was posted are told in the report's thread
(#21): the real app, the real Slack sink's delivery recorded through the step report endpoint,
the fake Slack."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from punchingfist.api import Sink, Workflow, load_resources
from punchingfist.server import ServerState, create_app
from punchingfist.server.also_firing import drain
from punchingfist.server.state import SecretStore
from punchingfist.store import Alert, SinkDelivery, WorkflowRun, upgrade
from tests.fakes.saas import FakeSlack
from tests.integration.intake_support import TOKEN, post, source
from tests.integration.test_investigation_scope import _notification
from tests.sink_support import RUN, run, task_env

SLACK_TOKEN = "xoxb-also-firing-never-logged"
CHANNELS = {"C0OPSALERTS": "ops-alerts"}
RESOURCES = """
---
apiVersion: punchingfist.io/v1alpha1
kind: Workflow
metadata: {name: investigate-alert}
spec:
  steps: [{name: look, type: cli, command: "true"}]
  sinks: [{name: report}]
---
apiVersion: punchingfist.io/v1alpha1
kind: Sink
metadata: {name: report}
spec:
  type: slack
  config: {channel: "#ops-alerts", botTokenSecret: {secretRef: slack, key: bot-token}}
"""


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSlack]:
    """The fake Slack, and the server's environment pointing at it (without a bot token)."""
    with FakeSlack(SLACK_TOKEN, CHANNELS) as fake:
        assert isinstance(fake, FakeSlack)
        monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
        monkeypatch.setenv("SLACK_API_URL", fake.url + "/api/")
        yield fake


@contextmanager
def server(
    database_url: str, slack_secret: bool = True
) -> Iterator[tuple[TestClient, ServerState]]:
    """The real app: a perGroup webhook Source whose workflow reports to Slack; the server
    reads the Sink's bot token Secret when `slack_secret`."""
    upgrade(database_url)
    resources = load_resources(source("investigation: {scope: perGroup}") + RESOURCES)
    values = {("hook", "token"): TOKEN}
    if slack_secret:
        values[("slack", "bot-token")] = SLACK_TOKEN
    state = ServerState.from_resources(resources, database_url, secrets=SecretStore(values=values))
    try:
        with TestClient(create_app(state), headers=state.access.headers()) as client:
            yield client, state
    finally:
        drain()
        state.engine.dispose()


def report_to_slack(
    client: TestClient, state: ServerState, run_name: str, slack: FakeSlack, tmp_path: Path
) -> dict[str, Any]:
    """Run the workflow's Slack sink for `run_name` (pf-runtime, as Argo starts it) and report
    its result.json to the server as a step pod does; the message it posted."""
    with state.sessions() as session:
        record = session.scalars(select(WorkflowRun).where(WorkflowRun.name == run_name)).one()
        event = record.arguments["event"]
    workflow, sink = state.workflows["investigate-alert"], load_resources(RESOURCES)[1]
    assert isinstance(workflow, Workflow) and isinstance(sink, Sink)
    env = task_env(
        workflow,
        {"report": sink},
        "sink-report",
        event=event,
        extra={"SLACK_BOT_TOKEN": SLACK_TOKEN, "SLACK_API_URL": slack.url + "/api/"},
    )
    env = {key: value.replace(RUN, run_name) for key, value in env.items()}
    code, result = run("sink", env, tmp_path)
    assert code == 0 and result["outcome"] == "delivered", result
    answer = client.post(f"/api/v1/runs/{run_name}/steps/report", json=result)
    assert answer.status_code == 200, answer.text
    with state.sessions() as session:
        (delivery,) = session.scalars(select(SinkDelivery)).all()
        assert delivery.sink_type == "slack" and delivery.outcome == "delivered"
    (message,) = slack.messages
    return message


def test_an_alert_that_joins_a_reported_run_is_told_in_the_reports_thread(
    intake_database_url: str, slack: FakeSlack, tmp_path: Path
) -> None:
    group = f"G{uuid.uuid4().hex[:8]}"
    with server(intake_database_url) as (client, state):
        (run_name,) = post(client, _notification(group, "web-1")).json()["runs"]
        report = report_to_slack(client, state, run_name, slack, tmp_path)

        later = post(client, _notification(group, "web-1", "<!channel>", "web-3")).json()
        assert later["runs"] == [] and later["covered"] == 2, later
        assert drain()
        (reply,) = slack.messages[1:]
        assert reply["channel"] == report["channel"] and reply["thread_ts"] == report["ts"]
        assert reply["text"] == (
            f"also firing: {group} (&lt;!channel&gt;), {group} (web-3) "
            f"(covered by run `{run_name}`)"
        )
        # Alertmanager's retry of that notification: nothing new joined, nothing said again.
        post(client, _notification(group, "web-1", "<!channel>", "web-3"))
        assert drain() and len(slack.messages) == 2
        with state.sessions() as session:
            joined = session.scalars(select(Alert).where(Alert.covered_by_run == run_name)).all()
        assert len(joined) == 2


def test_a_run_without_a_slack_report_gets_no_reply(
    intake_database_url: str, slack: FakeSlack
) -> None:
    group = f"N{uuid.uuid4().hex[:8]}"
    with server(intake_database_url) as (client, _):
        (run_name,) = post(client, _notification(group, "web-1")).json()["runs"]
        later = post(client, _notification(group, "web-1", "web-2")).json()
        assert later["runs"] == [] and later["covered"] == 1, later
        assert drain()
    assert slack.messages == [] and slack.requests == []
    assert run_name


def test_without_a_token_or_with_slack_failing_intake_still_answers_and_says_why(
    intake_database_url: str,
    slack: FakeSlack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    group = f"F{uuid.uuid4().hex[:8]}"
    with server(intake_database_url, slack_secret=False) as (client, state):
        (run_name,) = post(client, _notification(group, "web-1")).json()["runs"]
        report_to_slack(client, state, run_name, slack, tmp_path)
        sent = len(slack.requests)
        with caplog.at_level("WARNING", logger="punchingfist.also_firing"):
            answer = post(client, _notification(group, "web-1", "web-2"))
            assert answer.status_code == 200 and answer.json()["covered"] == 1
            assert drain()
        assert len(slack.requests) == sent  # nothing tried without a token
        assert "SLACK_BOT_TOKEN is not set in the server's environment" in caplog.text
        assert run_name in caplog.text
        caplog.clear()

        monkeypatch.setenv("SLACK_BOT_TOKEN", SLACK_TOKEN)
        slack.fail_next(403)  # Slack refuses (not retried)
        with caplog.at_level("WARNING", logger="punchingfist.also_firing"):
            answer = post(client, _notification(group, "web-1", "web-2", "web-3"))
            assert answer.status_code == 200 and answer.json()["covered"] == 1
            assert drain()
        assert len(slack.messages) == 1  # the report only
        assert f"Slack reply in the thread of run {run_name}: Slack chat.post" in caplog.text
        assert SLACK_TOKEN not in caplog.text

        post(client, _notification(group, "web-1", "web-2", "web-3", "web-4"))
        assert drain()
        (reply,) = slack.messages[1:]  # Slack is back: the next one is told
        assert reply["text"].startswith(f"also firing: {group} (web-4) ")
