"""Generated bodies against the trigger API and the step and sink reports, on SQLite and a real
PostgreSQL: whatever arrives, the answer is never a 5xx, a 4xx stores nothing, and a 2xx stores
exactly the one row it says it did."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from punchingfist.server import ServerState
from punchingfist.store import OutboxEntry, WorkflowRun
from punchingfist.store.models import RunStep, SinkDelivery

EXAMPLES_PER_ENDPOINT = 700
TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=40) | st.sampled_from(
    ["\x00", "a\x00b", "\ud800", "{{ 7*7 }}", "$(touch /tmp/x)", "", " " * 3, "é" * 30]
)
NUMBER = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0, -1, 2**63, 2**64, 10**9, 1e400, -0.0])
)
JSON = st.recursive(
    st.none() | st.booleans() | NUMBER | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
STEP_FIELDS = {
    "kind": st.sampled_from(["agent", "cli", "sink", "approval", "outputs", "Agent", ""]) | JSON,
    "phase": st.sampled_from(["Succeeded", "Failed", "Skipped", "Error", "Omitted"]) | JSON,
    "success": st.booleans() | JSON,
    "seconds": NUMBER | JSON,
    "error": TEXT | JSON,
    "usage": st.fixed_dictionaries(
        {}, optional={"prompt_tokens": NUMBER, "completion_tokens": NUMBER, "cost_usd": NUMBER}
    )
    | JSON,
    "tool_calls": st.lists(st.dictionaries(TEXT, JSON, max_size=3), max_size=3) | JSON,
    "result": st.dictionaries(TEXT, JSON, max_size=4) | JSON,
}
VALID_STEP = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["agent", "cli", "sink", "approval", "outputs"]),
        "phase": st.sampled_from(["Succeeded", "Failed", "Skipped", "Error", "Omitted"]),
        "success": st.booleans(),
    },
    optional={"error": st.text(max_size=20), "result": st.dictionaries(TEXT, JSON, max_size=4)},
)
"""Bodies that are stored (as VALID_DELIVERY), so that every run of the fuzzer stores some, not
by luck of its seed."""
STEP = VALID_STEP | st.fixed_dictionaries({}, optional=STEP_FIELDS) | JSON
VALID_DELIVERY = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["slack", "pagerduty", "jira"]),
        "outcome": st.sampled_from(["delivered", "skipped", "failed"]),
    },
    optional={"attempts": st.integers(min_value=1, max_value=5), "detail": JSON},
)
DELIVERY = (
    VALID_DELIVERY
    | st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["slack", "pagerduty", "Slack!", ""]) | JSON,
            "outcome": st.sampled_from(["delivered", "skipped", "failed", "lost"]) | JSON,
            "attempts": NUMBER | JSON,
            "detail": JSON,
        },
    )
    | JSON
)
STEP_NAME = st.sampled_from(["agent-investigation", "initial-context", "made-up", "x" * 63])
SINK_NAME = st.sampled_from(["slack-investigation-results", "pagerduty-escalation", "made-up"])


def encode(body: Any) -> bytes:
    """JSON as a careless client writes it: NaN and Infinity literals, lone surrogates escaped."""
    return json.dumps(body, allow_nan=True).encode()


def counts(state: ServerState) -> dict[str, int]:
    with state.sessions() as session:
        return {
            model.__name__: int(session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (WorkflowRun, OutboxEntry, RunStep, SinkDelivery)
        }


def deliveries(state: ServerState, sink: str) -> int:
    with state.sessions() as session:
        query = select(func.count()).select_from(SinkDelivery)
        return int(session.scalar(query.where(SinkDelivery.sink_name == sink)) or 0)


def post(http: TestClient, path: str, body: bytes) -> Any:
    return http.post(path, content=body, headers={"Content-Type": "application/json"})


FUZZ = settings(
    max_examples=EXAMPLES_PER_ENDPOINT,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.timeout(600)
def test_the_trigger_api_never_fails_on_what_it_is_sent(
    api_server: tuple[TestClient, ServerState, str],
) -> None:
    http, state, _ = api_server
    seen: set[int] = set()

    @FUZZ
    @given(body=st.dictionaries(TEXT, JSON, max_size=5) | JSON)
    def check(body: Any) -> None:
        before = counts(state)
        answer = post(http, "/hooks/deploys/deploys", encode(body))
        after = counts(state)
        seen.add(answer.status_code)
        assert answer.status_code < 500, answer.text
        if answer.status_code == 202:
            assert after["WorkflowRun"] == before["WorkflowRun"] + 1
            assert after["OutboxEntry"] == before["OutboxEntry"] + 1
        else:
            assert 400 <= answer.status_code < 500 and after == before, answer.text
            assert set(answer.json()) <= {"error", "problems"}

    check()
    assert {202, 400, 422} <= seen, seen  # both stored and refused bodies were generated


@pytest.mark.timeout(600)
def test_step_and_sink_reports_never_fail_on_what_they_are_sent(
    api_server: tuple[TestClient, ServerState, str],
) -> None:
    http, state, run = api_server
    seen: set[tuple[str, int]] = set()

    @FUZZ
    @given(step=STEP_NAME, body=STEP, sink=SINK_NAME, delivery=DELIVERY)
    def check(step: str, body: Any, sink: str, delivery: Any) -> None:
        before = counts(state)
        answer = post(http, f"/api/v1/runs/{run}/steps/{step}", encode(body))
        seen.add(("step", answer.status_code))
        assert answer.status_code < 500, answer.text
        after = counts(state)
        if answer.status_code == 200:
            assert after["RunStep"] in (
                before["RunStep"],
                before["RunStep"] + 1,
            )  # a retry replaces
        else:
            assert 400 <= answer.status_code < 500 and after == before, answer.text
        before = after
        answer = post(http, f"/api/v1/runs/{run}/sinks/{sink}", encode(delivery))
        seen.add(("sink", answer.status_code))
        assert answer.status_code < 500, answer.text
        after = counts(state)
        if answer.status_code == 200:  # the first record of a sink in a run stands
            name = delivery.get("sink") if isinstance(delivery.get("sink"), str) else None
            assert deliveries(state, name or sink) == 1
            assert after["SinkDelivery"] - before["SinkDelivery"] in (0, 1)
        else:
            assert 400 <= answer.status_code < 500 and after == before, answer.text
        # every row written can be read back through the API
        assert http.get(f"/api/v1/runs/{run}").status_code == 200

    check()
    assert {("step", 200), ("step", 422), ("sink", 200), ("sink", 422)} <= seen, seen
    metrics = http.get("/metrics").text
    assert "made-up" not in metrics
