"""A real Alertmanager (Debian) posts to the real server over HTTP, with bearer auth."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

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
  triggerWorkflow: agent-alert-investigation
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, ServerState]]:
    url = f"sqlite:///{tmp_path / 'pf.db'}"
    upgrade(url)
    state = ServerState.from_resources(
        load_resources(SOURCE), url, secrets=SecretStore(values={("webhook-secret", "token"): "s3"})
    )
    with servers.uvicorn_app(create_app(state)) as base:
        yield base, state
    state.engine.dispose()


@pytest.fixture
def alertmanager(server: tuple[str, ServerState], tmp_path: Path) -> Iterator[str]:
    (tmp_path / "token").write_text("s3")
    config = {
        "route": {"receiver": "punchingfist", "group_by": ["alertname"], "group_wait": "1s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "punchingfist", "webhook_configs": [{
            "url": f"{server[0]}/webhook/alerts", "send_resolved": True,
            "http_config": {"authorization": {"type": "Bearer",
                                              "credentials_file": str(tmp_path / "token")}}}]}],
    }  # fmt: skip
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


def test_alertmanager_notifications_arrive_grouped_repeat_and_resolve(
    server: tuple[str, ServerState], alertmanager: str
) -> None:
    _, state = server
    starts = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)

    def alert(pod: str, **extra: Any) -> dict[str, Any]:
        return {"labels": {"alertname": "PodCrashLooping", "severity": "critical",
                           "namespace": "production", "pod": pod},
                "annotations": {"summary": f"{pod} is crash looping"},
                "startsAt": starts.isoformat(), **extra}  # fmt: skip

    post_alerts(alertmanager, [alert("a-1"), alert("a-2")])

    def rows() -> list[Alert]:
        with state.sessions() as session:
            return list(session.scalars(select(Alert)))

    wait_until(lambda: len(rows()) == 2, "two alerts from Alertmanager")
    post_alerts(alertmanager, [alert("a-1"), alert("a-2")])  # Alertmanager repeats them
    time.sleep(2.5)
    assert len(rows()) == 2
    with state.sessions() as session:
        incidents = list(session.scalars(select(Incident)))
        runs = list(session.scalars(select(WorkflowRun)))
    assert len(incidents) == 1 and incidents[0].alerts_count == 2
    assert len(runs) == 2
    ended = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    post_alerts(alertmanager, [alert("a-1", endsAt=ended), alert("a-2", endsAt=ended)])
    wait_until(lambda: all(a.status == "resolved" for a in rows()), "the resolved notification")
    with state.sessions() as session:
        (incident,) = session.scalars(select(Incident))
    assert incident.status == "resolved"
