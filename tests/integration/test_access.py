"""The control surface is closed by default (D13), on SQLite and PostgreSQL: reads, reports and
triggers need credentials; reports are typed, name steps of the run's workflow, and cannot
inflate metrics; an api Source is served at its own `config.endpoint`."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from punchingfist.api import load_resources
from punchingfist.server import ServerState, add_source_routes
from punchingfist.store import OutboxEntry, WorkflowRun
from punchingfist.store.models import RunStep, SinkDelivery
from tests.integration.conftest import API_SOURCE

NO_CREDENTIALS = {"Authorization": ""}


def rows(state: ServerState, model: Any) -> int:
    with state.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/alerts",
        "/api/v1/incidents",
        "/api/v1/runs",
        "/api/v1/approvals",
        "/api/v1/runs/RUN",
        "/api/v1/alerts/00000000-0000-0000-0000-000000000000",
    ],
)
def test_every_read_needs_credentials(
    api_server: tuple[TestClient, ServerState, str], path: str
) -> None:
    http, _, run = api_server
    path = path.replace("RUN", run)
    for headers in (
        NO_CREDENTIALS,
        {"Authorization": "Bearer wrong-token-of-some-length"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ):
        answer = http.get(path, headers=headers)
        assert answer.status_code == 401, (path, headers)
        assert answer.headers["www-authenticate"] == "Bearer"
        assert set(answer.json()) == {"error"}
    assert http.get(path).status_code in (200, 404)


STEP = {
    "kind": "agent",
    "phase": "Succeeded",
    "success": True,
    "seconds": 3.0,
    "usage": {"prompt_tokens": 100, "completion_tokens": 20},
}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (STEP | {"usage": {"prompt_tokens": 1_000_000_000}}, "body.usage.prompt_tokens"),
        (STEP | {"usage": {"prompt_tokens": "many"}}, "body.usage.prompt_tokens"),
        (STEP | {"usage": {"cost_usd": -1}}, "body.usage.cost_usd"),
        (STEP | {"usage": "lots"}, "body.usage"),
        (STEP | {"success": "yes"}, "body.success"),
        (STEP | {"seconds": "soon"}, "body.seconds"),
        (STEP | {"kind": "evil-kind"}, "body.kind"),
        (STEP | {"phase": ["Succeeded"]}, "body.phase"),
        (STEP | {"error": {"nested": True}}, "body.error"),
        (STEP | {"tool_calls": "none"}, "body.tool_calls"),
        (STEP | {"result": {"summary": "a\u0000b"}}, "body.result.summary"),
        (STEP | {"result": {"n": 2**70}}, "body.result.n"),
        ({k: v for k, v in STEP.items() if k != "phase"}, "body.phase"),
    ],
)
def test_step_reports_are_typed(
    api_server: tuple[TestClient, ServerState, str], body: dict[str, Any], field: str
) -> None:
    http, state, run = api_server
    answer = http.post(f"/api/v1/runs/{run}/steps/agent-investigation", json=body)
    assert answer.status_code == 422, answer.text
    assert field in [p["field"] for p in answer.json()["problems"]], answer.text
    assert rows(state, RunStep) == 0
    assert "punchingfist_llm_tokens_total{" not in http.get("/metrics").text


def test_non_finite_numbers_are_not_json(api_server: tuple[TestClient, ServerState, str]) -> None:
    http, state, run = api_server
    for number in (b"NaN", b"Infinity", b"-Infinity"):
        body = b'{"kind": "agent", "phase": "Succeeded", "success": true, "seconds": %s}' % number
        answer = http.post(
            f"/api/v1/runs/{run}/steps/agent-investigation",
            content=body,
            headers={"Content-Type": "application/json"},
        )
        assert answer.status_code == 400 and "not JSON" in answer.text
    assert rows(state, RunStep) == 0


def test_only_the_runs_own_steps_and_sinks_become_rows_and_labels(
    api_server: tuple[TestClient, ServerState, str],
) -> None:
    http, state, run = api_server
    for name in ("made-up", "x" * 60):
        answer = http.post(f"/api/v1/runs/{run}/steps/{name}", json=STEP)
        assert answer.status_code == 422 and "not one of the steps" in answer.text
        sent = {"type": "slack", "outcome": "delivered"}
        answer = http.post(f"/api/v1/runs/{run}/sinks/{name}", json=sent)
        assert answer.status_code == 422 and "not one of the sinks" in answer.text
    assert rows(state, RunStep) == rows(state, SinkDelivery) == 0
    assert "made-up" not in http.get("/metrics").text
    good = http.post(f"/api/v1/runs/{run}/steps/agent-investigation", json=STEP)
    assert good.status_code == 200
    sent = http.post(
        f"/api/v1/runs/{run}/sinks/slack-investigation-results",
        json={"type": "slack", "outcome": "delivered"},
    )
    assert sent.status_code == 200
    assert rows(state, RunStep) == rows(state, SinkDelivery) == 1
    refused = http.post(
        f"/api/v1/runs/{run}/steps/agent-investigation", json=STEP, headers=NO_CREDENTIALS
    )
    assert refused.status_code == 401


def test_an_api_source_is_served_at_its_endpoint(
    api_server: tuple[TestClient, ServerState, str],
) -> None:
    http, state, _ = api_server
    event = {"alert": {"alertname": "Deploy"}}
    assert (
        http.post("/hooks/deploys/deploys", json=event, headers=NO_CREDENTIALS).status_code == 401
    )
    assert http.post("/api/v1/trigger/deploys", json=event).status_code == 404
    started = http.post("/hooks/deploys/deploys", json=event, headers={"Idempotency-Key": "d-1"})
    assert started.status_code == 202 and started.json()["created"] is True
    for bad in ({"alert": "\u0000"}, {"n": 2**64}):
        answer = http.post("/hooks/deploys/deploys", json=bad)
        assert answer.status_code == 422, answer.text
    answer = http.post("/hooks/deploys/deploys", json=event, headers={"Idempotency-Key": "x" * 300})
    assert answer.status_code == 422
    with state.sessions() as session:
        names = session.scalars(select(WorkflowRun.source_name)).all()
    assert sorted(names) == ["alertmanager-critical", "deploys"]
    assert rows(state, OutboxEntry) == 2
    # A Source that appears at run time (the controller's catalog) gets its endpoint served.
    later = API_SOURCE.replace("deploys", "restores")
    assert http.post("/hooks/restores/restores", json=event).status_code == 404
    state.sources = [*state.sources, *load_resources(later)]
    assert add_source_routes(http.app) == ["/hooks/restores/{source_name}"]  # type: ignore[arg-type]
    assert http.post("/hooks/restores/restores", json=event).status_code == 202


def test_an_endpoint_cannot_take_the_servers_own_paths() -> None:
    from punchingfist.errors import PunchingFistError

    for endpoint in (
        "/api/v1/runs",
        "/api/v1/approvals/x",
        "/slack",
        "/metrics",
        "trigger",
        "/a b",
        "/{x}",
    ):
        text = API_SOURCE.replace("/hooks/deploys", f"'{endpoint}'")
        with pytest.raises(PunchingFistError, match="endpoint"):
            load_resources(text)
