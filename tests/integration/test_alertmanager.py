"""A real Alertmanager (Debian) posts to the real server over HTTP, with bearer auth.

The server counts the webhook posts Alertmanager really makes (`WebhookPosts`), so the test
asserts what Alertmanager does: one post per group per `group_interval` while something in
the group changed, the whole group in every post (a repeat of what was sent already), and the
resolved alerts once they end (`send_resolved`)."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from punchingfist.api import load_resources
from punchingfist.server import ServerState, create_app
from punchingfist.server.state import SecretStore
from punchingfist.store import Alert, Incident, WorkflowRun, upgrade
from tests.integration import servers
from tests.integration.conftest import _unavailable

SOURCE = """
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: alertmanager}
spec:
  type: webhook
  config:
    path: /webhook/alerts
    authentication: {type: bearer, secretRef: webhook-secret}
    # Each alert of a group is followed on its own here (perGroup: test_investigation_scope).
    investigation: {scope: perAlert, window: 0s, cooldown: 0s}
  triggerWorkflow: agent-alert-investigation
"""
WEBHOOK = "/webhook/alerts"


@dataclass
class WebhookPosts:
    """ASGI: the app, counting the posts to the webhook path it has answered (status and
    payload), in the order it answered them; answered means the intake has committed."""

    app: ASGIApp
    answered: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != WEBHOOK:
            await self.app(scope, receive, send)
            return
        body, status = bytearray(), 0

        async def receive_body() -> Message:
            message = await receive()
            body.extend(message.get("body", b""))
            return message

        async def send_status(message: Message) -> None:
            nonlocal status
            await send(message)
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                self.answered.append((status, json.loads(body)))

        await self.app(scope, receive_body, send_status)

    def wait_for(self, count: int, what: str) -> dict[str, Any]:
        """The `count`th post, once answered; there were no more than `count` by then."""
        wait_until(lambda: len(self.answered) >= count, what)
        assert len(self.answered) == count, f"{len(self.answered)} posts, {count} expected"
        status, payload = self.answered[-1]
        assert status == 200, (status, payload)
        return payload


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, ServerState, WebhookPosts]]:
    url = f"sqlite:///{tmp_path / 'pf.db'}"
    upgrade(url)
    state = ServerState.from_resources(
        load_resources(SOURCE), url, secrets=SecretStore(values={("webhook-secret", "token"): "s3"})
    )
    posts = WebhookPosts(create_app(state))
    with servers.uvicorn_app(posts) as base:
        yield base, state, posts
    state.engine.dispose()


@pytest.fixture
def alertmanager(server: tuple[str, ServerState, WebhookPosts], tmp_path: Path) -> Iterator[str]:
    (tmp_path / "token").write_text("s3")
    config = servers.webhook_config(f"{server[0]}{WEBHOOK}", tmp_path / "token", ["alertname"])
    try:
        with servers.alertmanager(config, tmp_path) as url:
            yield url
    except servers.Unavailable as error:
        _unavailable(str(error))


def post_alerts(url: str, alerts: list[dict[str, Any]]) -> None:
    request = urllib.request.Request(
        f"{url}/api/v2/alerts",
        data=json.dumps(alerts).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def wait_until(check: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def statuses(payload: dict[str, Any]) -> dict[str, str]:
    """pod -> status of the alerts in one Alertmanager post."""
    return {alert["labels"]["pod"]: alert["status"] for alert in payload["alerts"]}


def test_alertmanager_notifications_arrive_grouped_repeat_and_resolve(
    server: tuple[str, ServerState, WebhookPosts], alertmanager: str
) -> None:
    _, state, posts = server
    starts = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)

    def alert(pod: str, **extra: Any) -> dict[str, Any]:
        return {
            "labels": {
                "alertname": "PodCrashLooping",
                "severity": "critical",
                "namespace": "production",
                "pod": pod,
            },
            "annotations": {"summary": f"{pod} is crash looping"},
            "startsAt": starts.isoformat(),
            **extra,
        }

    def rows() -> list[tuple[str, str]]:
        """(pod, status) of every stored alert: a repeat stored twice shows twice."""
        with state.sessions() as session:
            return sorted((a.labels["pod"], a.status) for a in session.scalars(select(Alert)))

    def incident_and_runs() -> tuple[Incident, list[WorkflowRun]]:
        with state.sessions() as session:
            (incident,) = session.scalars(select(Incident))
            return incident, list(session.scalars(select(WorkflowRun)))

    # Grouped: both alerts in one post, after group_wait.
    post_alerts(alertmanager, [alert("a-1"), alert("a-2")])
    first = posts.wait_for(1, "the first notification")
    assert first["status"] == "firing" and first["groupLabels"] == {"alertname": "PodCrashLooping"}
    assert statuses(first) == {"a-1": "firing", "a-2": "firing"}
    assert rows() == [("a-1", "received"), ("a-2", "received")]
    incident, runs = incident_and_runs()
    assert incident.alerts_count == 2 and len(runs) == 2

    # Repeated: a new alert in the group makes Alertmanager send the whole group again at the
    # next group_interval (a-1 and a-2 unchanged, sent a second time); the server stores the
    # new one and nothing of the repeat twice.
    post_alerts(alertmanager, [alert("a-1"), alert("a-2"), alert("a-3")])
    second = posts.wait_for(2, "the group sent again with the new alert")
    assert statuses(second) == {"a-1": "firing", "a-2": "firing", "a-3": "firing"}
    assert rows() == [("a-1", "received"), ("a-2", "received"), ("a-3", "received")]
    incident, runs = incident_and_runs()
    assert incident.alerts_count == 3
    assert len(runs) == 3 and len({run.alert_id for run in runs}) == 3  # none for the repeat

    # Resolved: send_resolved posts the ended alerts, and the incident resolves with them.
    ended = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    post_alerts(alertmanager, [alert(pod, endsAt=ended) for pod in ("a-1", "a-2", "a-3")])
    third = posts.wait_for(3, "the resolved notification")
    assert third["status"] == "resolved"
    assert statuses(third) == {"a-1": "resolved", "a-2": "resolved", "a-3": "resolved"}
    assert rows() == [("a-1", "resolved"), ("a-2", "resolved"), ("a-3", "resolved")]
    incident, runs = incident_and_runs()
    assert incident.status == "resolved" and len(runs) == 3
