"""The server's intake and read API on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from punchingfist.api import Resource, load_resources
from punchingfist.runs.dispatching import RunSubmission, SubmitError, dispatch_pending
from punchingfist.server import ServerState, create_app
from punchingfist.server.state import SecretStore
from punchingfist.store import Alert, AlertRelationship, Incident, OutboxEntry, WorkflowRun, upgrade

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SOURCES = """
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: alertmanager-critical}
spec:
  type: webhook
  config:
    path: /webhook/alerts
    filters: {severity: [critical, warning]}
    # These tests count a run per alert (intake's dedup, correlation and outbox).
    investigation: {scope: perAlert, window: 0s, cooldown: 0s}
  triggerWorkflow: agent-alert-investigation
  context: {runbookRepo: "https://github.com/company/runbooks"}
---
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: secured}
spec:
  type: webhook
  config:
    path: /webhook/secured
    authentication: {type: bearer, secretRef: webhook-secret}
  triggerWorkflow: agent-alert-investigation
"""


def payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / "alerts" / name).read_text())
    return data


@pytest.fixture
def client(intake_database_url: str) -> Iterator[tuple[TestClient, ServerState]]:
    upgrade(intake_database_url)
    resources: list[Resource[Any]] = load_resources(SOURCES)
    state = ServerState.from_resources(
        resources,
        intake_database_url,
        secrets=SecretStore(values={("webhook-secret", "token"): "t0ken"}),
    )
    with TestClient(create_app(state), headers=state.access.headers()) as test_client:
        yield test_client, state
    state.engine.dispose()


def count(state: ServerState, model: Any) -> int:
    with state.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_firing_alert_is_stored_correlated_and_queued(
    client: tuple[TestClient, ServerState],
) -> None:
    http, state = client
    response = http.post("/webhook/alerts", json=payload("pod-crashlooping.json"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["received"], body["new"]) == (1, 1)
    (run_name,) = body["runs"]
    assert run_name.startswith("agent-alert-investigation-")
    (alert,) = http.get("/api/v1/alerts").json()["items"]
    assert alert["fingerprint"] == payload("pod-crashlooping.json")["alerts"][0]["fingerprint"]
    assert (alert["status"], alert["severity"], alert["alert_name"]) == (
        "received",
        "critical",
        "PodCrashLooping",
    )
    assert alert["labels"]["namespace"] == "production" and alert["incident_id"]
    for field in ("annotations", "received_at", "summary", "description", "ai_confidence"):
        assert field in alert
    incident = http.get(f"/api/v1/incidents/{alert['incident_id']}").json()
    assert incident["title"] == "PodCrashLooping in production"
    assert [a["id"] for a in incident["alerts"]] == [alert["id"]]
    run = http.get(f"/api/v1/runs/{run_name}").json()
    assert run["status"] == "pending" and run["workflow_name"] == "agent-alert-investigation"
    event = run["parameters"]["event"]
    assert event["alert"]["alertname"] == "PodCrashLooping"
    assert event["context"] == {"runbookRepo": "https://github.com/company/runbooks"}
    assert count(state, OutboxEntry) == 1


def test_the_same_payload_five_times_is_one_alert_and_one_run(
    client: tuple[TestClient, ServerState],
) -> None:
    http, state = client
    for _ in range(5):
        assert (
            http.post("/webhook/alerts", json=payload("pod-crashlooping.json")).status_code == 200
        )
    assert count(state, Alert) == 1
    assert count(state, WorkflowRun) == 1 and count(state, OutboxEntry) == 1
    assert count(state, Incident) == 1
    metrics = http.get("/metrics").text  # one after the other: each in a transaction alone
    assert "punchingfist_webhook_batch_notifications_count 5.0" in metrics
    assert "punchingfist_webhook_batch_notifications_sum 5.0" in metrics


def test_resolved_marks_the_alert_and_closes_the_incident(
    client: tuple[TestClient, ServerState],
) -> None:
    http, _ = client
    firing = payload("high-cpu-resolved.json")
    firing["status"] = "firing"
    for alert in firing["alerts"]:
        alert["status"] = "firing"
        alert["endsAt"] = "0001-01-01T00:00:00Z"
    http.post("/webhook/alerts", json=firing)
    response = http.post("/webhook/alerts", json=payload("high-cpu-resolved.json")).json()
    assert response["resolved"] == 1 and response["runs"] == []
    (alert,) = http.get("/api/v1/alerts").json()["items"]
    assert alert["status"] == "resolved" and alert["resolved_at"]
    incident = http.get(f"/api/v1/incidents/{alert['incident_id']}").json()
    assert incident["status"] == "resolved" and incident["mttr_seconds"] is not None
    metrics = http.get("/metrics").text
    assert (
        'punchingfist_alerts_processed_total{source="alertmanager-critical",status="resolved"} 1.0'
        in metrics
    )


def test_a_group_becomes_one_incident_with_related_alerts(
    client: tuple[TestClient, ServerState],
) -> None:
    http, state = client
    body = http.post("/webhook/alerts", json=payload("grouped-two-alerts.json")).json()
    assert body["new"] == 2 and len(body["runs"]) == 2
    assert count(state, Incident) == 1
    with state.sessions() as session:
        (relation,) = session.scalars(select(AlertRelationship)).all()
        assert relation.relationship_type == "related" and relation.confidence == 0.9
        assert session.scalar(select(Incident.alerts_count)) == 2


def test_a_refiring_alert_is_a_duplicate_of_the_earlier_one(
    client: tuple[TestClient, ServerState],
) -> None:
    http, state = client
    first = payload("pod-crashlooping.json")
    again = copy.deepcopy(first)
    again["alerts"][0]["startsAt"] = "2026-11-26T12:00:00Z"
    http.post("/webhook/alerts", json=first)
    body = http.post("/webhook/alerts", json=again).json()
    assert body["new"] == 1 and len(body["runs"]) == 1  # a new firing: a new investigation
    with state.sessions() as session:
        kinds = sorted(
            r.relationship_type or "" for r in session.scalars(select(AlertRelationship))
        )
    assert kinds == ["duplicate"]


def with_labels(labels: dict[str, str]) -> dict[str, Any]:
    body = payload("pod-crashlooping.json")
    body["alerts"][0]["labels"] = {"severity": "critical", **labels}
    return body


def test_control_characters_and_quotes_survive_the_bulk_path(
    client: tuple[TestClient, ServerState],
) -> None:
    http, _ = client
    text = 'tab\there\nnew line\r\\N back\\slash "quoted" \\t ünï 👊 $(x) {{ y }}'
    sent = with_labels({"alertname": "Odd\tName", "pod": text})
    sent["alerts"][0]["annotations"] = {"summary": text, "description": "\\"}
    assert http.post("/webhook/alerts", json=sent).status_code == 200
    (alert,) = http.get("/api/v1/alerts").json()["items"]
    assert alert["labels"] == sent["alerts"][0]["labels"]
    assert alert["annotations"] == sent["alerts"][0]["annotations"]
    assert alert["alert_name"] == "Odd\tName" and alert["summary"] == text
    (run,) = http.get("/api/v1/runs").json()["items"]
    detail = http.get(f"/api/v1/runs/{run['id']}").json()
    assert detail["parameters"]["event"]["alert"]["labels"]["pod"] == text


def test_concurrent_notifications_are_written_together_and_counted_once(
    client: tuple[TestClient, ServerState],
) -> None:
    """Group commit: posts that arrive together share transactions; a retry of the same
    notification inside one batch still makes one alert and one run."""
    http, state = client
    bodies = []
    for n in range(12):
        body = with_labels({"alertname": "Burst", "namespace": "payments", "pod": f"p-{n % 6}"})
        body["alerts"][0]["fingerprint"] = f"burst{n % 6:04d}"  # every alert sent twice
        bodies.append(body)
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(
            pool.map(lambda b: http.post("/webhook/alerts", json=b).status_code, bodies)
        )
    assert statuses == [200] * 12
    assert count(state, Alert) == 6 and count(state, WorkflowRun) == 6
    assert count(state, OutboxEntry) == 6 and count(state, Incident) == 1
    with state.sessions() as session:
        assert session.scalar(select(Incident.alerts_count)) == 6
        relations = session.scalars(select(AlertRelationship)).all()
    assert len(relations) == 5 and {r.relationship_type for r in relations} == {"related"}


def test_hostile_label_text_is_stored_verbatim(client: tuple[TestClient, ServerState]) -> None:
    http, _ = client
    sent = payload("hostile-labels.json")
    assert http.post("/webhook/alerts", json=sent).status_code == 200
    (alert,) = http.get("/api/v1/alerts").json()["items"]
    assert alert["labels"] == sent["alerts"][0]["labels"]
    assert alert["annotations"] == sent["alerts"][0]["annotations"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "the body is not JSON"),
        (b'{"version": "4"}', 422, "body.groupKey"),
        (
            b'{"version": 4, "groupKey": "g", "status": "firing", "receiver": "r", "alerts": []}',
            422,
            "body.version",
        ),
        (
            json.dumps({**payload("pod-crashlooping.json"), "alerts": [{"labels": "x"}]}).encode(),
            422,
            "body.alerts[0].labels",
        ),
        (b"[]", 422, "body"),
        (b"x" * (2 * 1024 * 1024), 413, "larger than"),
        (json.dumps(with_labels({"alertname": "A", "pod": "p\x00"})).encode(), 422, "NUL"),
        (json.dumps(with_labels({"alertname": "A", "p\x00d": "p"})).encode(), 422, "NUL"),
        (json.dumps(with_labels({"alertname": "A" * 256})).encode(), 422, "longer than 255"),
        (json.dumps(with_labels({"alertname": "A", "pod": "p\ud800"})).encode(), 400, "not JSON"),
        (
            json.dumps(
                {**payload("pod-crashlooping.json"), "truncatedAlerts": float("nan")}
            ).encode(),
            422,
            "body.truncatedAlerts",
        ),
    ],
    ids=[
        "malformed",
        "missing-fields",
        "wrong-type",
        "bad-alert",
        "not-an-object",
        "oversized",
        "nul-character",
        "nul-in-a-name",
        "long-alertname",
        "lone-surrogate",
        "nan",
    ],
)
def test_bad_input_is_a_4xx_with_a_message_and_stores_nothing(
    client: tuple[TestClient, ServerState], body: bytes, status: int, message: str
) -> None:
    http, state = client
    response = http.post(
        "/webhook/alerts", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status
    assert message in response.text
    assert count(state, Alert) == 0 and count(state, Incident) == 0


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": "t0ken"}, 401),
        ({"Authorization": "Bearer t0ken"}, 200),
    ],
)
def test_webhook_authentication(
    client: tuple[TestClient, ServerState], headers: dict[str, str], status: int
) -> None:
    http, state = client
    response = http.post("/webhook/secured", json=payload("pod-crashlooping.json"), headers=headers)
    assert response.status_code == status
    assert count(state, Alert) == (1 if status == 200 else 0)
    if status == 401:  # the scheme it takes, as an HTTP header (RFC 9110)
        assert response.headers["www-authenticate"] == "Bearer"
        assert set(response.json()) == {"error"}


def test_health_metrics_and_unknown_routes(client: tuple[TestClient, ServerState]) -> None:
    http, _ = client
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").json() == {"status": "ready"}
    assert http.post("/webhook/nope", json={}).status_code in (404, 405)
    assert http.get("/api/v1/alerts/not-a-uuid").status_code == 404
    assert "punchingfist_outbox_pending" in http.get("/metrics").text
    assert "/webhook/alerts" in http.get("/openapi.json").text


class FlakyExecutor:
    name = "flaky"

    def __init__(self, failures: list[SubmitError]) -> None:
        self.failures = failures
        self.submitted: list[str] = []

    def submit(self, run: RunSubmission) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.submitted.append(run.name)


def test_outbox_retries_temporary_failures_and_gives_up_on_permanent_ones(
    client: tuple[TestClient, ServerState],
) -> None:
    http, state = client
    (name,) = http.post("/webhook/alerts", json=payload("pod-crashlooping.json")).json()["runs"]
    flaky = FlakyExecutor([SubmitError("API down")])
    assert dispatch_pending(state.sessions, flaky) == 0
    with state.sessions.begin() as session:
        entry = session.scalars(select(OutboxEntry)).one()
        assert (entry.status, entry.attempts, entry.last_error) == ("pending", 1, "API down")
        entry.next_attempt_at = None  # due again now
    assert dispatch_pending(state.sessions, flaky) == 1 and flaky.submitted == [name]
    assert http.get(f"/api/v1/runs/{name}").json()["status"] == "submitted"
    assert dispatch_pending(state.sessions, flaky) == 0  # nothing submitted twice

    other = payload("grouped-two-alerts.json")
    runs = http.post("/webhook/alerts", json=other).json()["runs"]
    refusing = FlakyExecutor([SubmitError("no such template", temporary=False)] * 2)
    dispatch_pending(state.sessions, refusing)
    statuses = {http.get(f"/api/v1/runs/{r}").json()["status"] for r in runs}
    assert statuses == {"error"}


API_SOURCE = """
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: api-trigger}
spec:
  type: api
  config: {authentication: {type: apikey, secretRef: api-key}}
  triggerWorkflow: investigate-alert
  context: {team: payments}
"""


@pytest.fixture
def api_client(database_url: str) -> Iterator[tuple[TestClient, ServerState]]:
    upgrade(database_url)
    workflow = (EXAMPLES / "workflows" / "agent-alert-investigation.yaml").read_text()
    state = ServerState.from_resources(
        load_resources(SOURCES + "---" + API_SOURCE + "---\n" + workflow),
        database_url,
        secrets=SecretStore(values={("api-key", "token"): "k3y"}),
    )
    with TestClient(create_app(state), headers=state.access.headers()) as test_client:
        yield test_client, state
    state.engine.dispose()


def test_trigger_api(api_client: tuple[TestClient, ServerState]) -> None:
    http, state = api_client
    event = {"alert": {"alertname": "ManualCheck", "labels": {"service": "checkout"}}}
    assert http.post("/api/v1/trigger/api-trigger", json=event).status_code == 401
    key = {"X-API-Key": "k3y", "Idempotency-Key": "ticket-42"}
    first = http.post("/api/v1/trigger/api-trigger", json=event, headers=key)
    assert first.status_code == 202 and first.json()["created"] is True
    again = http.post("/api/v1/trigger/api-trigger", json=event, headers=key)
    assert again.status_code == 200 and again.json() == {
        "run": first.json()["run"],
        "created": False,
    }
    run = http.get(f"/api/v1/runs/{first.json()['run']}").json()
    assert run["parameters"]["event"]["context"] == {"team": "payments"}
    assert http.post("/api/v1/trigger/nope", json={}).status_code == 404
    bad = http.post("/api/v1/trigger/api-trigger", content=b"[1]", headers=key)
    assert bad.status_code == 422
    assert count(state, OutboxEntry) == 1


def test_step_reports_record_results_tokens_and_triage(
    api_client: tuple[TestClient, ServerState],
) -> None:
    http, _ = api_client
    (name,) = http.post("/webhook/alerts", json=payload("pod-crashlooping.json")).json()["runs"]
    report = {
        "step": "agent-investigation",
        "kind": "agent",
        "success": True,
        "phase": "Succeeded",
        "seconds": 42.0,
        "result": {"summary": "OOM", "confidence": 0.8, "can_auto_fix": False},
        "tool_calls": [{"id": "call-1", "tool": "kubectl", "status": "ok"}],
        "usage": {"prompt_tokens": 1200, "completion_tokens": 300, "cost_usd": 0.01},
    }
    url = f"/api/v1/runs/{name}/steps/agent-investigation"
    assert (
        http.post(url, json=report, headers={"Authorization": "Bearer r3port"}).status_code == 401
    )
    token: dict[str, str] = {}  # the client's API token
    assert http.post(url, json=report, headers=token).status_code == 200
    assert http.post(url, json=report, headers=token).status_code == 200  # a retry replaces
    run = http.get(f"/api/v1/runs/{name}").json()
    assert run["status"] == "running" and run["tokens_total"] == 1500
    (step,) = run["steps"]
    assert (step["name"], step["phase"], step["prompt_tokens"]) == (
        "agent-investigation",
        "Succeeded",
        1200,
    )
    (alert,) = http.get("/api/v1/alerts").json()["items"]
    assert alert["ai_confidence"] == 0.8 and alert["triage_completed_at"]
    assert alert["ai_analysis"]["summary"] == "OOM"
    metrics = http.get("/metrics").text
    spent = {
        (sample.name, sample.labels.get("direction")): sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.labels.get("workflow") == "agent-alert-investigation"
        and sample.labels.get("model") == "default"
    }
    assert spent[("punchingfist_llm_tokens_total", "input")] == 1200
    assert spent[("punchingfist_llm_tokens_total", "output")] == 300
    assert spent[("punchingfist_llm_cost_usd_total", None)] == pytest.approx(0.01)
    assert "punchingfist_llm_budget_remaining_usd +Inf" in metrics  # no daily budget
    assert "punchingfist_alert_triage_seconds_count 1.0" in metrics
    bad = http.post(url, json={"kind": "agent"}, headers=token)
    assert bad.status_code == 422 and "body.phase" in bad.text
    assert http.post("/api/v1/runs/nope/steps/x", json=report, headers=token).status_code == 404


def test_sink_deliveries_are_recorded_and_counted(
    api_client: tuple[TestClient, ServerState],
) -> None:
    http, _ = api_client
    (name,) = http.post("/webhook/alerts", json=payload("pod-crashlooping.json")).json()["runs"]
    token: dict[str, str] = {}  # the client's API token
    url = f"/api/v1/runs/{name}/sinks/slack-investigation-results"
    sent = {"type": "slack", "outcome": "delivered", "ts": "1764150000.000100"}
    assert http.post(url, json=sent, headers=token).status_code == 200
    assert (
        http.post(url, json={"type": "slack", "outcome": "lost"}, headers=token).status_code == 422
    )
    (delivery,) = http.get(f"/api/v1/runs/{name}").json()["sink_deliveries"]
    assert (delivery["sink_name"], delivery["outcome"]) == (
        "slack-investigation-results",
        "delivered",
    )
    metrics = http.get("/metrics").text
    assert (
        'punchingfist_sink_deliveries_total{outcome="delivered",'
        'sink="slack-investigation-results"} 1.0'
    ) in metrics
    assert "punchingfist_active_tasks 0.0" in metrics
