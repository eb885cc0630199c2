"""Paging once per incident, and the page resolves when the incident does (#21).

Through the server: Alertmanager notifications reach the webhook, the runs' PagerDuty sink
tasks run in-process the way Argo starts them (`pf-runtime sink`) against the fake PagerDuty,
and their records reach the store through `POST /api/v1/runs/{run}/sinks/{sink}` (what the
exit handler's report does). The resolved notification then makes the server resolve the page
in the background (`punchingfist.server.pages`)."""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from punchingfist.api import Sink, load_resources
from punchingfist.server import ServerState, create_app
from punchingfist.server.state import SecretStore
from punchingfist.store import Incident, SinkDelivery, WorkflowRun, upgrade
from tests.builders import make_sink, make_workflow
from tests.fakes.saas import FakePagerDuty
from tests.sink_support import EXAMPLES, run, task_env

ROUTING_KEY = "R0UT1NGKEYpages0123456789abcdef"
SOURCE = """
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: am}
spec:
  type: webhook
  config: {path: /webhook/alerts, investigation: {scope: perAlert}}
  triggerWorkflow: wf
"""


def notification(status: str, pods: tuple[str, ...]) -> dict[str, Any]:
    """The example notification with one alert per pod, all of one Alertmanager group."""
    base = json.loads((EXAMPLES / "alerts" / "pod-crashlooping.json").read_text())
    template = base["alerts"][0]
    base["alerts"] = []
    for index, pod in enumerate(pods):
        alert = copy.deepcopy(template)
        alert["labels"]["pod"] = pod
        alert["fingerprint"] = f"{index + 1:016x}"
        alert["status"] = status
        if status == "resolved":
            alert["endsAt"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        base["alerts"].append(alert)
    base["status"] = status
    return base


@pytest.fixture
def pagerduty() -> Iterator[FakePagerDuty]:
    with FakePagerDuty(ROUTING_KEY) as fake:
        yield fake  # type: ignore[misc]


def pd_sink(pagerduty: FakePagerDuty) -> Sink:
    """A PagerDuty Sink whose routing key is in Secret `pd-routing` (key `token`)."""
    secret = {"secretRef": "pd-routing", "key": "token"}
    return make_sink("pd", "pagerduty", {"routingKeySecret": secret, "endpoint": pagerduty.url})


def serve(database_url: str, sink: Sink, secrets: dict[tuple[str, str], str]) -> ServerState:
    upgrade(database_url)
    workflow = make_workflow(
        [{"name": "look", "type": "cli", "command": "true"}], sinks=[{"name": sink.name}]
    )
    resources = [*load_resources(SOURCE), workflow, sink]
    return ServerState.from_resources(resources, database_url, secrets=SecretStore(values=secrets))


def page(client: TestClient, state: ServerState, tmp_path: Path) -> list[str]:
    """Run the PagerDuty sink task of every run, as the exit handler does, and report it."""
    with state.sessions() as session:
        runs = session.scalars(select(WorkflowRun).order_by(WorkflowRun.created_at)).all()
        found = [(r.name, r.arguments["event"]) for r in runs]
    sink = state.sinks["pd"]
    for name, event in found:
        env = task_env(
            state.workflows["wf"],
            {"pd": sink},
            "sink-pd",
            event=event,
            secrets={"PAGERDUTY_ROUTING_KEY": ROUTING_KEY},
        )
        code, record = run("sink", env, tmp_path / name)
        assert code == 0, record
        answer = client.post(f"/api/v1/runs/{name}/sinks/pd", json=record)
        assert answer.status_code == 200, answer.text
    return [name for name, _ in found]


def resolves(state: ServerState, timeout: float = 15) -> list[SinkDelivery]:
    deadline = time.monotonic() + timeout
    while True:
        with state.sessions() as session:
            rows = [
                d
                for d in session.scalars(select(SinkDelivery)).all()
                if (d.detail or {}).get("result", {}).get("event_action") == "resolve"
            ]
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_an_incident_pages_once_and_its_page_resolves_with_it(
    database_url: str, pagerduty: FakePagerDuty, tmp_path: Path
) -> None:
    sink = pd_sink(pagerduty)
    state = serve(database_url, sink, {("pd-routing", "token"): ROUTING_KEY})
    with TestClient(create_app(state), headers=state.access.headers()) as client:
        pods = ("web-1", "web-2")
        answer = client.post("/webhook/alerts", json=notification("firing", pods))
        assert answer.status_code == 200, answer.text
        names = page(client, state, tmp_path)
        assert len(names) == 2  # perAlert: one run per alert, both of one group
        group = notification("firing", pods)["groupKey"]
        assert [(e["event_action"], e["dedup_key"]) for e in pagerduty.events] == [
            ("trigger", group),
            ("trigger", group),
        ]  # one PagerDuty alert: the second trigger dedups into the first
        assert resolves(state, timeout=0.3) == []

        answer = client.post("/webhook/alerts", json=notification("resolved", pods[:1]))
        assert answer.status_code == 200
        assert resolves(state, timeout=0.5) == []  # web-2 still fires: the incident is open

        answer = client.post("/webhook/alerts", json=notification("resolved", pods))
        assert answer.status_code == 200
        (resolved,) = resolves(state)
        with state.sessions() as session:
            (incident,) = session.scalars(select(Incident)).all()
            assert incident.status == "resolved"
            last = session.scalars(select(WorkflowRun).where(WorkflowRun.name == names[-1])).one()
        assert resolved.outcome == "delivered" and resolved.sink_name == "pd"
        assert resolved.run_id == last.id and resolved.delivered_at is not None
        assert resolved.detail is not None and resolved.detail["external_id"] == group
        assert resolved.detail["result"]["incident"] == str(incident.id)
        assert pagerduty.events[2:] == [
            {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": group}
        ]
        detail = client.get(f"/api/v1/runs/{names[-1]}").json()
        assert [d["outcome"] for d in detail["sink_deliveries"]] == ["delivered", "delivered"]

        # The same resolved notification again (Alertmanager repeats): nothing more is sent.
        client.post("/webhook/alerts", json=notification("resolved", pods))
        time.sleep(0.5)
        assert len(pagerduty.events) == 3 and len(resolves(state)) == 1
        counted = {
            (sample.labels["sink"], sample.labels["outcome"]): sample.value
            for family in text_string_to_metric_families(client.get("/metrics").text)
            for sample in family.samples
            if sample.name == "punchingfist_sink_deliveries_total"
        }
        assert counted == {
            ("pd", "delivered"): 3
        }  # the two triggers the runs reported, the resolve
    state.engine.dispose()


def test_without_the_routing_key_the_resolve_fails_and_says_what_to_mount(
    database_url: str,
    pagerduty: FakePagerDuty,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = pd_sink(pagerduty)
    state = serve(database_url, sink, {})  # the server cannot read the Secret
    caplog.set_level(logging.WARNING, logger="punchingfist.pages")
    with TestClient(create_app(state), headers=state.access.headers()) as client:
        client.post("/webhook/alerts", json=notification("firing", ("web-1",)))
        page(client, state, tmp_path)
        client.post("/webhook/alerts", json=notification("resolved", ("web-1",)))
        (failed,) = resolves(state)
    assert failed.outcome == "failed" and failed.delivered_at is None
    assert failed.detail is not None and "pd-routing/token" in failed.detail["error"]
    assert [e["event_action"] for e in pagerduty.events] == ["trigger"]
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "pd-routing/token" in warning and "secrets" in warning
    assert ROUTING_KEY not in warning
    state.engine.dispose()


def test_a_page_sent_after_its_incident_resolved_is_resolved_at_once(
    database_url: str, pagerduty: FakePagerDuty, tmp_path: Path
) -> None:
    """The alert resolves while its run still investigates: the page the run's sink sends
    afterwards is resolved as soon as its delivery is reported, not left open."""
    sink = pd_sink(pagerduty)
    state = serve(database_url, sink, {("pd-routing", "token"): ROUTING_KEY})
    with TestClient(create_app(state), headers=state.access.headers()) as client:
        client.post("/webhook/alerts", json=notification("firing", ("web-1",)))
        client.post("/webhook/alerts", json=notification("resolved", ("web-1",)))
        assert resolves(state, timeout=0.3) == []  # nothing paged yet, nothing to resolve
        page(client, state, tmp_path)
        (resolved,) = resolves(state)
    group = notification("firing", ("web-1",))["groupKey"]
    assert resolved.outcome == "delivered"
    assert [(e["event_action"], e["dedup_key"]) for e in pagerduty.events] == [
        ("trigger", group),
        ("resolve", group),
    ]
    state.engine.dispose()
