"""Similar past incidents reach a new run (#22), on SQLite and PostgreSQL: a resolved incident's
knowledge entry is in the next similar alert's run event when the dispatcher submits it (never
one judged wrong, never the run's own incident), the agent's first prompt shows it, and the
Slack report of the run names it ("Seen before")."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from punchingfist.api import OperatorConfig
from punchingfist.runs import dispatching
from punchingfist.runs.dispatching import RunSubmission, dispatch_pending
from punchingfist.runtime.agent.runner import run_agent_step
from punchingfist.server import ServerState
from tests.agent_support import agent_spec
from tests.builders import make_sink, make_workflow
from tests.fakes.openai_server import fake_openai
from tests.fakes.saas import FakeSlack
from tests.integration.test_memory_remember import (
    answer,
    finish,
    incident_of,
    new_run,
    report,
    served,  # noqa: F401 (the fixture)
)
from tests.integration.test_server import payload
from tests.sink_support import run as run_task
from tests.sink_support import task_env

TOKEN = "xoxb-test-token-never-printed"


class Recording:
    """An executor that starts nothing: it keeps what it was given."""

    name = "recording"

    def __init__(self) -> None:
        self.runs: dict[str, RunSubmission] = {}

    def submit(self, run: RunSubmission) -> None:
        self.runs[run.name] = run

    def resume(self, name: str, namespace: str, gate: str, **answer: Any) -> None:
        raise AssertionError("no gate in these tests")


def dispatched(state: ServerState, run: str) -> dict[str, Any]:
    """The event `run` is submitted with."""
    executor = Recording()
    assert dispatch_pending(state.sessions, executor) >= 1
    event: dict[str, Any] = executor.runs[run].parameters["event"]
    return event


def staging_run(http: TestClient, n: int) -> str:
    """A crash-looping pod alert of the same workload in another namespace (another incident)."""
    body = payload("pod-crashlooping.json")
    body["groupKey"] = '{}/{severity="critical"}:{namespace="staging"}'
    alert = body["alerts"][0]
    alert["labels"]["namespace"] = "staging"
    alert["startsAt"] = f"2026-11-27T12:{n:02d}:00Z"
    alert["fingerprint"] = f"staging{n:08d}"
    (name,) = http.post("/webhook/alerts", json=body).json()["runs"]
    return str(name)


def test_a_confirmed_past_incident_reaches_the_next_run_its_model_and_its_report(
    served: tuple[TestClient, ServerState],  # noqa: F811
    example_config: OperatorConfig,
    tmp_path: Path,
) -> None:
    http, state = served
    first = new_run(http)
    assert "similar_incidents" not in dispatched(state, first)  # nothing remembered yet
    report(http, first, "agent-investigation", answer())
    finish(state, first)
    past = incident_of(state, first)
    again = new_run(http, 1)  # joins the open incident: its own findings are no past incident
    assert incident_of(state, again).id == past.id
    assert "similar_incidents" not in dispatched(state, again)
    resolved = http.post(
        f"/api/v1/incidents/{past.id}/resolve", json={"verdict": "right", "note": "raised it"}
    )
    assert resolved.status_code == 200, resolved.text

    later = new_run(http, 2)  # the incident resolved: a new one
    assert incident_of(state, later).id != past.id
    event = dispatched(state, later)
    (match,) = event["similar_incidents"]
    assert match["id"] == str(past.id)
    assert (match["title"], match["alertname"]) == (
        "PodCrashLooping in production",
        "PodCrashLooping",
    )
    assert (match["confirmed"], match["outcome"]) == (True, "not_fixed")
    assert match["root_cause"] == "memory limit 128Mi is below the working set after v2.3"
    assert match["fix"].endswith("--limits=memory=512Mi")
    assert match["summary"] == "my-app is OOMKilled"
    assert match["when"] == past.created_at.date().isoformat()
    assert 0.4 <= match["score"] <= 1 and "same alertname" in " ".join(match["reasons"])

    # The agent step is shown the match, and its answer names it.
    relied = {
        "thought": "same OOM as before",
        "action": {
            "kind": "final_answer",
            "summary": "my-app is OOMKilled again",
            "problem_summary": "OOMKilled",
            "root_cause": "the memory limit is too low",
            "can_auto_fix": False,
            "confidence": 0.8,
            "escalation_notes": "",
            "relied_on": match["id"],
        },
    }
    step = {"goal": "Investigate the alert.", "tools": []}
    with fake_openai([relied]) as model:
        spec = agent_spec(step, {"provider": "local", "endpoint": model.url, "model": "m"})
        result = run_agent_step(spec, {"PF_EVENT": json.dumps(event)})
        (request,) = model.requests
    assert result["success"] and result["result"]["relied_on"] == match["id"]
    system, first_prompt = request["messages"][0]["content"], request["messages"][1]["content"]
    assert "relied_on" in system and "similar_past_incidents" in system
    shown = json.loads(first_prompt.split("```json\n", 1)[1].rsplit("\n```", 1)[0])
    assert shown["similar_past_incidents"] == event["similar_incidents"]

    # The Slack report names it.
    workflow = make_workflow(
        [{"name": "investigate", "type": "agent", **step}],
        runtime={"llmConfig": {"provider": "local", "model": "m"}},
        sinks=[{"name": "ops"}],
    )
    sink = make_sink("ops", "slack", {"channel": "#ops-alerts"})
    with FakeSlack(TOKEN, {"C0OPSALERTS": "ops-alerts"}) as slack:
        assert isinstance(slack, FakeSlack)
        env = task_env(
            workflow,
            {"ops": sink},
            "sink-ops",
            config=example_config.spec,
            event=event,
            results={"investigate": result},
            secrets={"SLACK_BOT_TOKEN": TOKEN},
            extra={"SLACK_API_URL": slack.url + "/api/"},
        )
        code, record = run_task("sink", env, tmp_path)
        assert code == 0, record
        (message,) = slack.messages
    texts = [b["text"]["text"] for b in message["blocks"] if b["type"] == "section" and "text" in b]
    (seen,) = [t for t in texts if t.startswith("*Seen before*")]
    assert seen == (
        f"*Seen before*: PodCrashLooping in production, {match['when']}, fixed by "
        "kubectl -n production set resources deploy/my-app --limits=memory=512Mi "
        "(confirmed; the answer relies on it)"
    )


def test_a_past_incident_judged_wrong_is_never_offered(
    served: tuple[TestClient, ServerState],  # noqa: F811
) -> None:
    http, state = served
    first = new_run(http)
    report(http, first, "agent-investigation", answer())
    finish(state, first)
    past = incident_of(state, first)
    elsewhere = staging_run(http, 0)
    assert incident_of(state, elsewhere).id != past.id
    (offered,) = dispatched(state, elsewhere)["similar_incidents"]  # not judged yet: offered
    assert (offered["id"], offered["confirmed"]) == (str(past.id), False)
    judged = http.post(f"/api/v1/incidents/{past.id}/resolve", json={"verdict": "wrong"})
    assert judged.status_code == 200, judged.text
    later = staging_run(http, 1)
    assert "similar_incidents" not in dispatched(state, later)


def test_a_failed_lookup_never_stops_a_run(
    served: tuple[TestClient, ServerState],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    http, state = served
    first = new_run(http)
    report(http, first, "agent-investigation", answer())
    finish(state, first)
    http.post(f"/api/v1/incidents/{incident_of(state, first).id}/resolve", json={"note": "x"})

    def broken(session: Any, alert: Any, **options: Any) -> Any:
        session.execute(text("SELECT * FROM no_such_table"))  # aborts PostgreSQL's transaction

    monkeypatch.setattr(dispatching, "similar", broken)
    later = new_run(http, 1)
    with caplog.at_level(logging.ERROR, "punchingfist.outbox"):
        event = dispatched(state, later)
    assert "similar_incidents" not in event and event["alert"]["alertname"] == "PodCrashLooping"
    assert f"run {later}: similar past incidents not found" in caplog.text
    assert http.get(f"/api/v1/runs/{later}").json()["status"] == "submitted"
