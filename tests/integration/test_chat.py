"""Slack Events API intake (`POST /slack/events`) on SQLite and PostgreSQL: signed mentions
queue runs of chat Sources; the text stays data. Also: the Slack approver is matched by id."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from punchingfist.api import load_resources
from punchingfist.errors import NotSupportedYet
from punchingfist.server import ServerState, create_app
from punchingfist.store import OutboxEntry, WorkflowRun, upgrade
from tests.fakes.saas import FakeSlack
from tests.integration.test_approvals_api import ResumingExecutor, button, slack_request

SECRET = "e2f1c0ffee5ecret"
SOURCES = """
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: chat-ops}
spec:
  type: chat
  config: {platform: slack, trigger: mention, channel: C0OPS1234}
  triggerWorkflow: investigate-alert
  context: {team: sre}
---
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: chat-debug}
spec:
  type: chat
  config: {platform: slack, trigger: command, command: debug, channel: "#ops"}
  triggerWorkflow: debug-workflow
"""


def signed(payload: dict[str, Any] | bytes, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    timestamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
    return body, {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": "v0=" + digest.hexdigest(),
        "Content-Type": "application/json",
    }


def mention(
    text: str, *, channel: str = "C0OPS1234", event_id: str = "Ev01", **extra: Any
) -> dict[str, Any]:
    return {
        "type": "event_callback",
        "team_id": "T0001",
        "event_id": event_id,
        "event": {
            "type": "app_mention",
            "user": "U0ALICE",
            "text": text,
            "channel": channel,
            "ts": "1716000000.000100",
            "event_ts": "1716000000.000100",
            **extra,
        },
    }


@pytest.fixture
def http(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    upgrade(database_url)
    slack = FakeSlack("xoxb-test", {"C0OPS1234": "ops", "C0DEV5678": "dev"})
    with slack:
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
        monkeypatch.setenv("SLACK_API_URL", slack.url + "/api/")
        monkeypatch.delenv("SLACK_APP_TOKEN", raising=False)
        state = ServerState.from_resources(
            load_resources(SOURCES), database_url, slack_signing_secret=SECRET
        )
        with TestClient(create_app(state), headers=state.access.headers()) as client:
            client.app_state = state  # type: ignore[attr-defined]
            yield client
        state.engine.dispose()


def runs(http: TestClient) -> dict[str, WorkflowRun]:
    state: ServerState = http.app_state  # type: ignore[attr-defined]
    with state.sessions() as session:
        queued = set(session.scalars(select(OutboxEntry.run_name)))
        return {r.name: r for r in session.scalars(select(WorkflowRun)) if r.name in queued}


def test_url_verification_echoes_the_challenge(http: TestClient) -> None:
    body, headers = signed({"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV"})
    response = http.post("/slack/events", content=body, headers=headers)
    assert response.status_code == 200 and response.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV"}


def test_a_signed_mention_queues_one_run_with_the_text_as_data(http: TestClient) -> None:
    hostile = "<@U0BOT> why is {{ .env.LLM_API_KEY }} $(rm -rf /) crashing?"
    body, headers = signed(mention(hostile))
    response = http.post("/slack/events", content=body, headers=headers)
    assert response.status_code == 200, response.text
    (name,) = response.json()["runs"]
    run = runs(http)[name]
    assert (run.workflow_name, run.source_name, run.status) == (
        "investigate-alert",
        "chat-ops",
        "pending",
    )
    event = run.parameters["event"]
    assert event["chat"]["text"] == "why is {{ .env.LLM_API_KEY }} $(rm -rf /) crashing?"
    assert (event["chat"]["user"], event["chat"]["channel"]) == ("U0ALICE", "C0OPS1234")
    assert event["context"] == {"team": "sre"}
    # Slack retries an event it thinks was lost (same event id): no second run.
    body, headers = signed(mention(hostile))
    headers["X-Slack-Retry-Num"] = "1"
    assert http.post("/slack/events", content=body, headers=headers).json()["runs"] == []
    assert list(runs(http)) == [name]


def test_command_trigger_and_channel_by_name(http: TestClient) -> None:
    body, headers = signed(mention("<@U0BOT> debug pod web-1 -n prod", event_id="Ev02"))
    names = http.post("/slack/events", content=body, headers=headers).json()["runs"]
    by_source = {runs(http)[n].source_name: runs(http)[n] for n in names}
    assert set(by_source) == {"chat-ops", "chat-debug"}  # #ops is C0OPS1234, via the Slack API
    chat = by_source["chat-debug"].parameters["event"]["chat"]
    assert (chat["command"], chat["text"]) == ("debug", "pod web-1 -n prod")
    # Another channel, or no command word: the chat-debug Source does not fire.
    body, headers = signed(mention("<@U0BOT> debug x", channel="C0DEV5678", event_id="Ev03"))
    assert http.post("/slack/events", content=body, headers=headers).json()["runs"] == []
    body, headers = signed(mention("<@U0BOT> hello", event_id="Ev04"))
    (only,) = http.post("/slack/events", content=body, headers=headers).json()["runs"]
    assert runs(http)[only].source_name == "chat-ops"


@pytest.mark.parametrize("problem", ["bad-signature", "wrong-secret", "stale", "no-headers"])
def test_unsigned_events_are_refused(http: TestClient, problem: str) -> None:
    body, headers = signed(mention("<@U0BOT> hi"), "other" if problem == "wrong-secret" else SECRET)
    if problem == "bad-signature":
        headers["X-Slack-Signature"] = "v0=" + "0" * 64
    if problem == "stale":
        old = str(int(time.time()) - 600)
        digest = hmac.new(SECRET.encode(), f"v0:{old}:".encode() + body, hashlib.sha256)
        headers |= {
            "X-Slack-Request-Timestamp": old,
            "X-Slack-Signature": "v0=" + digest.hexdigest(),
        }
    if problem == "no-headers":
        headers = {"Content-Type": "application/json"}
    response = http.post("/slack/events", content=body, headers=headers)
    assert response.status_code == 401
    assert runs(http) == {}


def test_bots_and_other_events_start_nothing(http: TestClient) -> None:
    for payload in (
        mention("<@U0BOT> loop", bot_id="B0SELF", event_id="Ev05"),
        mention("<@U0BOT> edited", subtype="message_changed", event_id="Ev06"),
        {
            "type": "event_callback",
            "event_id": "Ev07",
            "event": {"type": "message", "text": "hi", "channel": "C0OPS1234"},
        },
        {"type": "app_rate_limited"},
    ):
        body, headers = signed(payload)
        response = http.post("/slack/events", content=body, headers=headers)
        assert response.status_code == 200 and response.json()["runs"] == []
    body, headers = signed(b"not json")
    assert http.post("/slack/events", content=body, headers=headers).status_code == 400
    assert runs(http) == {}


def test_socket_mode_is_refused_with_a_clear_message(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1-A0-1-abc")
    state = ServerState.from_resources([], database_url, slack_signing_secret=SECRET)
    with pytest.raises(NotSupportedYet, match=r"Socket Mode.*/slack/events"):
        create_app(state)
    state.engine.dispose()


def test_slack_approver_is_matched_by_id_not_by_username(database_url: str) -> None:
    """A Slack user who renames themselves `alice` is not the allow-listed `alice`."""
    upgrade(database_url)
    executor = ResumingExecutor()
    state = ServerState.from_resources(
        [],
        database_url,
        executor=executor,
        approvers=frozenset({"alice", "U123"}),
        slack_signing_secret="8f742231b10e8888abcd99yyyzzz85a5",
    )
    with state.sessions.begin() as session:
        session.add(WorkflowRun(name="run-1", workflow_name="agent-alert-investigation"))
    impostor = button("U999", "approve") | {"user": {"id": "U999", "username": "alice"}}
    with TestClient(create_app(state), headers=state.access.headers()) as client:
        body, headers = slack_request(impostor)
        response = client.post("/slack/interactions", content=body, headers=headers)
        assert response.status_code == 200 and "may not answer" in response.json()["text"]
        assert executor.resumed == []
        body, headers = slack_request(button("U123", "approve"))
        response = client.post("/slack/interactions", content=body, headers=headers)
        assert response.json()["text"].startswith("Approved by bob")
    assert [r[:3] for r in executor.resumed] == [("run-1", "resolution-attempt-approval", True)]
    state.engine.dispose()
