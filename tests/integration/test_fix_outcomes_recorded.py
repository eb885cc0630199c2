"""The incident says what its runs' fixes did (#25), on SQLite and PostgreSQL: when a
remediation step's fix task (or its rollback task) reports, the recorder writes the outcome onto
the run's incident (`incidents.remediations`) with who approved it, and the REST answer, the
web page and `punchingfist incidents show` show it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from punchingfist.compiler.naming import RESULT_PARAM
from punchingfist.runs.recording import NodeObservation, Recorder, RunObservation
from punchingfist.server import ServerState, create_app
from punchingfist.store import Incident, WorkflowRun
from tests.integration.test_approvals_api import (
    ResumingExecutor,
    served,  # noqa: F401 (a fixture)
    setup,  # noqa: F401 (a fixture)
)
from tests.integration.test_web_pages import browser, login
from tests.unit.test_fix_outcomes import ROLLED_BACK, SAID, dry_run_result, fix_result

WORSE = f"{SAID} — made worse, rolled back (verified) (approved by alice)"


def incident_of(state: ServerState, *runs: str) -> str:
    """A new incident that `runs` (created when new) are about; its id."""
    with state.sessions.begin() as session:
        incident = Incident(title="PodCrashLooping shop/web", status="open", severity="critical")
        session.add(incident)
        session.flush()
        for name in runs:
            run = WorkflowRun.named(session, name)
            if run is None:
                run = WorkflowRun(name=name, workflow_name="agent-alert-investigation")
                session.add(run)
            run.incident_id = incident.id
        return str(incident.id)


def task(name: str, result: dict[str, Any], phase: str = "Failed") -> NodeObservation:
    return NodeObservation(
        name=name, type="Pod", phase=phase, parameters={RESULT_PARAM: json.dumps(result)}
    )


def gate(name: str, approver: str) -> NodeObservation:
    answer = {"approved": "true", "approver": approver, "comment": ""}
    return NodeObservation(name=name, type="Suspend", phase="Succeeded", parameters=answer)


def track(state: ServerState, run: str, nodes: list[NodeObservation]) -> None:
    with state.sessions.begin() as session:
        observation = RunObservation(
            name=run,
            namespace="default",
            workflow="agent-alert-investigation",
            executor="argo",
            phase="Running",
            nodes=nodes,
        )
        Recorder(session).observe(observation)


def test_the_recorder_writes_the_fix_onto_the_incident_and_rest_shows_it(
    setup: tuple[TestClient, ServerState, ResumingExecutor],  # noqa: F811
) -> None:
    http, state, _ = setup
    incident = incident_of(state, "run-1", "run-2")
    # The fix task's node comes before its gate's: the approver is still found.
    track(state, "run-1", [task("fix", ROLLED_BACK), gate("fix-approval", "alice")])
    before = http.get(f"/api/v1/incidents/{incident}").json()["remediations"]
    track(state, "run-1", [task("fix", ROLLED_BACK), gate("fix-approval", "alice")])  # again
    answer = http.get(f"/api/v1/incidents/{incident}")
    assert answer.status_code == 200, answer.text
    (fix,) = answer.json()["remediations"]
    assert (fix["run"], fix["step"], fix["action"]) == ("run-1", "fix", SAID)
    assert fix["target"] == {"kind": "Deployment", "namespace": "shop", "name": "web"}
    assert fix["outcome"] == "made worse, rolled back" and fix["approver"] == "alice"
    assert (fix["applied"], fix["rolled_back"], fix["rollback_verified"]) == (True, True, True)
    assert fix["at"] and fix["dry_run"] is False and before == [fix]
    track(state, "run-2", [task("fix", dry_run_result(), phase="Succeeded")])
    listed = http.get("/api/v1/incidents").json()["items"]
    (shown,) = [i for i in listed if i["id"] == incident]
    first, dry = shown["remediations"]
    assert first == fix and (dry["run"], dry["outcome"]) == ("run-2", "previewed (dry run)")
    assert dry["dry_run"] is True and dry["approver"] is None and dry["applied"] is False


def test_a_rollback_approved_later_replaces_the_waiting_outcome(
    setup: tuple[TestClient, ServerState, ResumingExecutor],  # noqa: F811
) -> None:
    http, state, _ = setup
    incident = incident_of(state, "run-1")
    waiting = fix_result("made worse, rollback awaits approval", False, rollback_pending=True)
    track(state, "run-1", [gate("fix-approval", "alice"), task("fix", waiting)])
    (fix,) = http.get(f"/api/v1/incidents/{incident}").json()["remediations"]
    assert fix["outcome"] == "made worse, rollback awaits approval"
    with state.sessions.begin() as session:  # the rollback task's own report
        run = WorkflowRun.named(session, "run-1")
        assert run is not None
        Recorder(session).report_step(run, "fix-rollback", ROLLED_BACK, run.created_at)
    (fix,) = http.get(f"/api/v1/incidents/{incident}").json()["remediations"]
    assert fix["outcome"] == "made worse, rolled back" and fix["rollback_verified"] is True
    assert fix["approver"] == "alice"  # who approved the fix, not the rollback


def test_a_run_without_an_incident_or_a_fix_records_nothing(
    setup: tuple[TestClient, ServerState, ResumingExecutor],  # noqa: F811
) -> None:
    http, state, _ = setup
    track(state, "run-1", [task("fix", ROLLED_BACK)])  # run-1 has no incident
    incident = incident_of(state, "run-2")
    track(state, "run-2", [task("investigate", {"kind": "agent", "success": True})])
    assert http.get(f"/api/v1/incidents/{incident}").json()["remediations"] is None
    with state.sessions() as session:
        assert all(i.remediations is None for i in session.query(Incident))


def test_the_web_page_and_the_cli_show_the_fix(
    served: tuple[str, ServerState, ResumingExecutor],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from punchingfist.cli import main

    url, state, _ = served
    incident = incident_of(state, "run-1")
    hostile = fix_result(
        "made worse, rolled back",
        False,
        rolled_back=True,
        rollback_verified=True,
        preview={**ROLLED_BACK["result"]["preview"], "description": '<script>alert("x")</script>'},
    )
    hostile["step"] = "fix-2"
    nodes = [task("fix", ROLLED_BACK), gate("fix-approval", "alice"), task("fix-2", hostile)]
    track(state, "run-1", nodes)
    token = state.access.headers()["Authorization"].removeprefix("Bearer ")
    with browser(create_app(state)) as http:
        login(http, token)
        html = http.get(f"/ui/incidents/{incident}").text
    assert "<h2>Fixes</h2>" in html
    assert f"🔧 {WORSE}" in html and 'href="/ui/runs/run-1"' in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; — made worse" in html
    assert "<script>alert" not in html
    monkeypatch.setenv("PUNCHINGFIST_TOKEN", token)
    assert main(["incidents", "show", incident, "--server", url]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"PodCrashLooping shop/web  ({incident})")
    assert "  fix fix (run run-1, " in out and out.count(f"): {WORSE}\n") == 1
