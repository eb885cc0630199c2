"""What is remembered (#22), on SQLite and PostgreSQL: a run recorded through the server's report
endpoints and the executors' finish path (`recording.observe`) leaves one knowledge entry with
its findings, outcome and evidence, and the incident its AI summary; a human resolves the
incident by REST and by `punchingfist incidents` against a served app, which confirms or rejects
the entries, under the API's access rules."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from punchingfist.api import load_resources
from punchingfist.runs.recording import NodeObservation, RunObservation, observe
from punchingfist.server import ServerState, create_app
from punchingfist.server.access import Caller, Permission
from punchingfist.store import Incident, KnowledgeEntry, WorkflowRun, upgrade
from tests.integration.servers import uvicorn_app
from tests.integration.test_server import EXAMPLES, SOURCES, payload

TOKENS = {"alice-token": "alice", "viewer-token": "viewer", "api-token": "punchingfist:api-token"}
"""Bearer tokens the test access knows; the viewer may only read."""
ALICE = {"Authorization": "Bearer alice-token"}
VIEWER = {"Authorization": "Bearer viewer-token"}
ROBOT = {"Authorization": "Bearer api-token"}


class TestAccess:
    description = "tokens of the test"

    def authenticate(self, headers: Mapping[str, str]) -> Caller | None:
        token = headers.get("authorization", "").removeprefix("Bearer ")
        return Caller(TOKENS[token]) if token in TOKENS else None

    def authorize(self, caller: Caller, permission: Permission) -> bool:
        return caller.username != "viewer" or permission.verb in ("get", "list")


@pytest.fixture
def served(database_url: str) -> Iterator[tuple[TestClient, ServerState]]:
    upgrade(database_url)
    workflow = (EXAMPLES / "workflows" / "agent-alert-investigation.yaml").read_text()
    state = ServerState.from_resources(
        load_resources(SOURCES + "---\n" + workflow),
        database_url,
        access=TestAccess(),
        approver_tokens={"bob": "bob-approver-token-0123456789"},
    )
    with TestClient(create_app(state), headers=ALICE) as http:
        yield http, state
    state.engine.dispose()


def answer(**fields: Any) -> dict[str, Any]:
    """An agent step's report (result.json) whose answer cites call-2."""
    result = {
        "summary": "my-app is OOMKilled",
        "problem_summary": "the container exceeds its memory limit",
        "root_cause": "memory limit 128Mi is below the working set after v2.3",
        "can_auto_fix": True,
        "fix_command": "kubectl -n production set resources deploy/my-app --limits=memory=512Mi",
        "confidence": 0.85,
        "escalation_notes": "",
        "recommendations": ["raise the limit"],
        "evidence": ["call-2"],
    } | fields
    return {
        "kind": "agent",
        "success": True,
        "phase": "Succeeded",
        "result": result,
        "tool_calls": [
            {"id": "call-1", "tool": "promql", "call": {"query": "up"}, "status": "ok"},
            {
                "id": "call-2",
                "tool": "kubectl",
                "call": {"verb": "describe"},
                "argv": ["kubectl", "describe", "pod", "my-app-pod-xyz", "-n", "production"],
                "status": "ok",
            },
        ],
    }


def new_run(http: TestClient, n: int = 0) -> str:
    """The run of a crash-looping pod alert (`n`: the how-manieth time it fired)."""
    body = payload("pod-crashlooping.json")
    body["alerts"][0]["startsAt"] = f"2026-11-26T12:{n:02d}:00Z"
    (name,) = http.post("/webhook/alerts", json=body).json()["runs"]
    return str(name)


def report(http: TestClient, run: str, step: str, data: dict[str, Any]) -> None:
    kind = "sinks" if step.startswith("sink-") else "steps"
    url = f"/api/v1/runs/{run}/{kind}/{step.removeprefix('sink-')}"
    response = http.post(url, json=data, headers=ROBOT)
    assert response.status_code == 200, response.text


def finish(state: ServerState, run: str, phase: str = "Succeeded", *nodes: NodeObservation) -> None:
    """The run's end, as Argo tracking and the local executor record it."""
    now = datetime.now(UTC)
    observation = RunObservation(
        name=run,
        namespace="default",
        workflow="agent-alert-investigation",
        executor="argo",
        phase=phase,
        started_at=now,
        finished_at=now,
        nodes=nodes,
    )
    observe(state.sessions, observation, state.metrics)


def entries(state: ServerState) -> list[KnowledgeEntry]:
    with state.sessions() as session:
        return list(session.scalars(select(KnowledgeEntry).order_by(KnowledgeEntry.created_at)))


def incident_of(state: ServerState, run: str) -> Incident:
    with state.sessions() as session:
        found = WorkflowRun.named(session, run)
        assert found is not None and found.incident_id is not None
        incident = session.get(Incident, found.incident_id)
        assert incident is not None
        return incident


def investigated(http: TestClient, state: ServerState) -> tuple[str, Incident]:
    """A run that answered and finished, and its incident."""
    run = new_run(http)
    report(http, run, "agent-investigation", answer())
    finish(state, run)
    return run, incident_of(state, run)


def test_a_finished_run_is_remembered_once_with_its_findings(
    served: tuple[TestClient, ServerState],
) -> None:
    http, state = served
    run = new_run(http)
    report(http, run, "agent-investigation", answer())
    assert entries(state) == []  # not before the run finished
    report(http, run, "sink-pagerduty-escalation", {"type": "pagerduty", "outcome": "delivered"})
    finish(state, run)
    finish(state, run)  # a repeated finish: the same row
    (entry,) = entries(state)
    with state.sessions() as session:
        record = WorkflowRun.named(session, run)
        assert record is not None
    assert entry.run_id == record.id and entry.incident_id == record.incident_id
    assert (entry.alert_name, entry.namespace, entry.service, entry.severity) == (
        "PodCrashLooping",
        "production",
        "my-app",
        "critical",
    )
    assert entry.fingerprint and entry.fingerprint == record.fingerprint
    assert entry.labels is not None and entry.labels["pod"] == "my-app-pod-xyz"
    assert entry.summary == "my-app is OOMKilled"
    assert entry.root_cause == "memory limit 128Mi is below the working set after v2.3"
    assert entry.fix is not None and entry.fix.endswith("--limits=memory=512Mi")
    assert entry.confidence == pytest.approx(0.85)
    assert entry.outcome == "escalated"  # the pagerduty sink delivered
    assert entry.evidence == [
        "call-2 kubectl: kubectl describe pod my-app-pod-xyz -n production -> ok"
    ]
    assert (entry.confirmed, entry.verdict) == (False, None)
    incident = incident_of(state, run)
    assert incident.root_cause_analysis == entry.root_cause
    assert incident.ai_summary is not None
    assert (incident.ai_summary["summary"], incident.ai_summary["run"]) == (entry.summary, run)
    assert incident.ai_summary["confidence"] == pytest.approx(0.85)
    # A step reported after its run finished brings the same entry up to date.
    report(http, run, "agent-investigation", answer(root_cause="a leak in the cache"))
    (again,) = entries(state)
    assert (again.id, again.root_cause) == (entry.id, "a leak in the cache")


def _at() -> dict[str, datetime]:
    now = datetime.now(UTC)
    return {"started_at": now, "finished_at": now}


def gate(approved: bool) -> NodeObservation:
    return NodeObservation(
        name="resolution-attempt-approval",
        type="Suspend",
        phase="Succeeded",
        **_at(),
        parameters={"approved": "true" if approved else "false", "approver": "alice"},
    )


def test_outcomes_follow_gates_and_the_run(served: tuple[TestClient, ServerState]) -> None:
    http, state = served
    outcomes: dict[str, str] = {}
    denied = new_run(http)
    report(http, denied, "agent-investigation", answer())
    finish(state, denied, "Succeeded", gate(approved=False))
    outcomes[denied] = "denied"
    fixed = new_run(http, 1)
    report(http, fixed, "agent-investigation", answer())
    report(http, fixed, "resolution-attempt", answer(summary="limit raised, pods ready"))
    finish(state, fixed, "Succeeded", gate(approved=True))
    outcomes[fixed] = "fixed"
    failed = new_run(http, 2)
    report(http, failed, "agent-investigation", answer())
    finish(state, failed, "Failed")
    outcomes[failed] = "escalated"
    quiet = new_run(http, 3)
    report(http, quiet, "agent-investigation", answer(can_auto_fix=False, fix_command=None))
    finish(state, quiet)
    outcomes[quiet] = "not_fixed"
    auto = new_run(http, 6)
    report(http, auto, "agent-investigation", answer())
    outputs = {"outputs": json.dumps({"auto_fixed": "true"})}
    finish(
        state,
        auto,
        "Succeeded",
        NodeObservation("pf-outputs", "Pod", "Succeeded", **_at(), parameters=outputs),
    )
    outcomes[auto] = "fixed"
    for nothing in (new_run(http, 4), new_run(http, 5)):  # a replayed answer; no answer
        if len(outcomes) == 5:
            report(http, nothing, "agent-investigation", answer() | {"replayed": True})
        finish(state, nothing)
        outcomes[nothing] = "-"
    with state.sessions() as session:
        names = {r.id: r.name for r in session.scalars(select(WorkflowRun))}
    found = {names[e.run_id]: e for e in entries(state) if e.run_id is not None}
    assert {run: e.outcome for run, e in found.items()} == {
        run: outcome for run, outcome in outcomes.items() if outcome != "-"
    }
    # The remediation's answer is the last; the investigation's fix command stays.
    assert found[fixed].summary == "limit raised, pods ready"
    assert found[fixed].fix is not None and "512Mi" in found[fixed].fix
    assert found[quiet].fix is None


def test_resolve_by_rest_confirms_and_records_the_human(
    served: tuple[TestClient, ServerState],
) -> None:
    http, state = served
    run, incident = investigated(http, state)
    url = f"/api/v1/incidents/{incident.id}/resolve"
    body = {
        "root_cause": "memory limit 128Mi is below the working set after v2.3",
        "note": "raised the limit to 512Mi",
        "lessons_learned": "size limits from the load test",
        "verdict": "right",
    }
    assert http.post(url, json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    refused = http.post(url, json=body, headers=VIEWER)
    assert refused.status_code == 403 and "resolve incidents.punchingfist.io" in refused.text
    approver = {"Authorization": "Bearer bob-approver-token-0123456789"}
    assert http.post(url, json=body, headers=approver).status_code == 403  # approve only
    bad = http.post(url, json=body | {"verdict": "maybe"})
    assert bad.status_code == 422 and "body.verdict" in bad.text
    unknown = http.post(url, json=body | {"rootcause": "x"})
    assert unknown.status_code == 422 and "body.rootcause" in unknown.text
    assert http.post(url, json={"note": ""}).status_code == 422
    assert http.post(url, json={"note": "a\u0000b"}).status_code == 422
    assert http.post(url, content=b"[1]").status_code == 422
    as_other = http.post(url, json=body | {"by": "mallory"})
    assert as_other.status_code == 403 and "alice" in as_other.text
    missing = "/api/v1/incidents/00000000-0000-0000-0000-000000000000/resolve"
    assert http.post(missing, json=body).status_code == 404
    assert http.post("/api/v1/incidents/nope/resolve", json=body).status_code == 404
    assert entries(state)[0].confirmed is False  # nothing refused changed anything

    done = http.post(url, json=body)
    assert done.status_code == 200, done.text
    view = done.json()
    assert (view["status"], view["resolution_notes"], view["lessons_learned"]) == (
        "resolved",
        "raised the limit to 512Mi",
        "size limits from the load test",
    )
    assert view["resolved_at"] and view["mttr_seconds"] is not None
    (entry,) = view["knowledge"]
    assert (entry["verdict"], entry["confirmed"], entry["confirmed_by"]) == ("right", True, "alice")
    assert entry["confirmed_at"] and entry["resolution_notes"] == "raised the limit to 512Mi"
    (stored,) = http.get(f"/api/v1/incidents/{incident.id}/knowledge").json()["items"]
    judged = ("id", "verdict", "confirmed", "confirmed_by", "resolution_notes", "root_cause")
    assert {k: stored[k] for k in judged} == {k: entry[k] for k in judged}
    # A later run of the incident changes neither the confirmed entry's root cause nor the
    # incident's: a human confirmed it.
    report(http, run, "agent-investigation", answer(root_cause="cosmic rays"))
    assert entries(state)[0].root_cause == body["root_cause"]
    assert incident_of(state, run).root_cause_analysis == body["root_cause"]


def test_a_wrong_answer_and_a_human_root_cause(served: tuple[TestClient, ServerState]) -> None:
    http, state = served
    run, incident = investigated(http, state)
    url = f"/api/v1/incidents/{incident.id}/resolve"
    body = {"root_cause": "a bad node: kernel OOM killer", "verdict": "wrong", "by": "carol"}
    done = http.post(url, json=body, headers=ROBOT)  # the API token names who resolves
    assert done.status_code == 200, done.text
    ai, human = done.json()["knowledge"]
    assert (ai["verdict"], ai["confirmed"], ai["confirmed_by"]) == ("wrong", False, "carol")
    assert human["run_id"] is None and human["root_cause"] == "a bad node: kernel OOM killer"
    assert (human["confirmed"], human["verdict"], human["confirmed_by"]) == (True, "right", "carol")
    assert (human["alert_name"], human["namespace"], human["service"]) == (
        "PodCrashLooping",
        "production",
        "my-app",
    )
    again = http.post(url, json={"root_cause": "a bad node", "by": "carol"}, headers=ROBOT)
    assert [e["root_cause"] for e in again.json()["knowledge"]] == [
        "memory limit 128Mi is below the working set after v2.3",
        "a bad node",
    ]  # the human's entry was updated, not added
    assert incident_of(state, run).root_cause_analysis == "a bad node"


def test_the_cli_lists_shows_and_resolves(
    served: tuple[TestClient, ServerState],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from punchingfist.cli import main

    http, state = served
    _, found = investigated(http, state)
    incident = str(found.id)
    token = tmp_path / "token"
    token.write_text("alice-token\n")
    monkeypatch.delenv("PUNCHINGFIST_TOKEN", raising=False)
    with uvicorn_app(create_app(state)) as url:
        resolve = ["incidents", "resolve", incident, "--server", url]
        assert main([*resolve, "--note", "x"]) == 1
        assert "needs credentials" in capsys.readouterr().err
        monkeypatch.setenv("PUNCHINGFIST_TOKEN", "viewer-token")
        assert main([*resolve, "--note", "x"]) == 1
        assert "refused (403)" in capsys.readouterr().err
        assert main(["incidents", "list", "--server", url]) == 0
        listed = capsys.readouterr().out
        assert incident in listed and "open" in listed
        access = ["--token-file", str(token)]
        assert main(["incidents", "resolve", "nope", "--server", url, *access]) == 1
        assert "refused (404)" in capsys.readouterr().err
        assert main([*resolve, *access, "--note", ""]) == 1
        assert "body.note" in capsys.readouterr().err
        argv = [*resolve, *access, "--right", "--note", "raised the limit", "--lessons", "size"]
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert out.startswith("resolved: ") and "confirmed, right (alice)" in out
        assert main(["incidents", "show", incident, "--server", url, *access]) == 0
        shown = capsys.readouterr().out
        assert "status: resolved" in shown and "resolution notes: raised the limit" in shown
        assert "AI summary: my-app is OOMKilled" in shown
    (entry,) = entries(state)
    assert (entry.verdict, entry.confirmed, entry.confirmed_by) == ("right", True, "alice")
    with pytest.raises(SystemExit):
        main(["incidents", "resolve", incident, "--right", "--wrong"])
