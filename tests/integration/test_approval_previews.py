"""The preview of a fix at its approval gate (#25), on SQLite and PostgreSQL: the server learns
it from the run's `<step>-preview` task, stores it with the approval, returns it (REST), the
CLI prints it; approving records the previewed resourceVersion; a fix that is not offered
cannot be approved by REST, Slack or the CLI."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from punchingfist.api.actions import Preview
from punchingfist.compiler.naming import RESULT_PARAM
from punchingfist.runs.recording import NodeObservation, Recorder, RunObservation
from punchingfist.server import ServerState, create_app
from punchingfist.store import WorkflowRun
from punchingfist.store.models import Approval
from tests.integration.test_approvals_api import (
    TOKENS,
    ResumingExecutor,
    served,  # noqa: F401 (a fixture)
    setup,  # noqa: F401 (a fixture)
    slack_request,
)
from tests.integration.test_web_pages import browser, form_token, login

GATE = "fix-memory-approval"
URL = f"/api/v1/runs/run-1/approvals/{GATE}"
DIFF = "--- deployment shop/web\n+++ deployment shop/web (fixed)\n-  memory: 512Mi\n+  memory: 1Gi"


def preview(**given: Any) -> dict[str, Any]:
    """A Preview as the preview task writes it (every field)."""
    return Preview.model_validate(
        {
            "action": {
                "action": "set-resources",
                "target": {"kind": "Deployment", "namespace": "shop", "name": "web"},
                "container": "app",
                "limits": {"memory": "1Gi"},
            },
            "description": "set container app of deployment shop/web to limits memory=1Gi",
            "command": "kubectl set resources deployment/web -n shop -c app --limits=memory=1Gi",
            "target": "deployment shop/web",
            "resource_version": "4711",
            "diff": DIFF,
            "dry_run": "accepted",
            "rbac": {
                "allowed": True,
                "account": "system:serviceaccount:pf:remediator",
                "reason": "",
            },
            "offered": True,
        }
        | given
    ).model_dump(mode="json")


NOT_OFFERED = preview(
    dry_run="rejected", dry_run_error="memory: must be <= 4Gi", diff="", offered=False
)


def observe(state: ServerState, shown: dict[str, Any] | None, *, gate_first: bool = False) -> None:
    """The tracker sees run-1 wait at the gate of step `fix-memory`, after its preview task
    reported `shown` (or, with `gate_first`, the gate before the preview's result)."""
    result = {
        "step": "fix-memory-preview",
        "kind": "remediation-preview",
        "success": True,
        "result": {"preview": shown, "offered": bool(shown and shown["offered"])},
    }
    task = NodeObservation(
        name="fix-memory-preview",
        type="Pod",
        phase="Succeeded",
        parameters={RESULT_PARAM: json.dumps(result)},
    )
    suspended = NodeObservation(name=GATE, type="Suspend", phase="Running")
    track(state, [suspended] if gate_first else [task, suspended])
    if gate_first:
        with state.sessions.begin() as session:
            run = WorkflowRun.named(session, "run-1")
            assert run is not None
            assert session.query(Approval).one().preview is None  # not known yet
            Recorder(session).report_step(run, "fix-memory-preview", result, run.created_at)


def track(state: ServerState, nodes: list[NodeObservation]) -> None:
    """The run tracker observes run-1 (an Argo run) with these nodes."""
    with state.sessions.begin() as session:
        observation = RunObservation(
            name="run-1",
            namespace="default",
            workflow="agent-alert-investigation",
            executor="argo",
            phase="Running",
            nodes=nodes,
        )
        Recorder(session).observe(observation)


@pytest.mark.parametrize("gate_first", [False, True])
def test_the_gate_holds_and_returns_the_preview_and_approving_records_its_version(
    setup: tuple[TestClient, ServerState, ResumingExecutor],  # noqa: F811
    gate_first: bool,
) -> None:
    http, state, executor = setup
    observe(state, preview(), gate_first=gate_first)
    (pending,) = http.get("/api/v1/approvals").json()["items"]
    assert pending["gate"] == GATE and pending["preview"] == preview()
    one = http.get(URL)
    assert one.status_code == 200, one.text
    assert one.json()["preview"]["diff"] == DIFF and one.json()["run"] == "run-1"
    assert http.get("/api/v1/runs/run-1/approvals/no-such-approval").status_code == 404
    answer = http.post(URL, json={"decision": "approve", "approver": "alice"})
    assert answer.status_code == 200, answer.text
    record = answer.json()
    assert record["approved_resource_version"] == "4711" and record["preview"] == preview()
    assert executor.resumed == [("run-1", GATE, True, "alice", "")]
    with state.sessions() as session:
        stored = session.query(Approval).one()
        assert (stored.decision, stored.approved_resource_version) == ("approved", "4711")


def test_a_gate_without_a_preview_is_approved_as_before(
    setup: tuple[TestClient, ServerState, ResumingExecutor],  # noqa: F811
) -> None:
    http, state, _ = setup
    observe(state, None)
    assert http.get(URL).json()["preview"] is None
    record = http.post(URL, json={"decision": "approve", "approver": "alice"}).json()
    assert record["decision"] == "approved" and record["approved_resource_version"] is None


def test_a_fix_that_is_not_offered_cannot_be_approved_by_rest_or_slack(
    setup: tuple[TestClient, ServerState, ResumingExecutor],  # noqa: F811
) -> None:
    http, state, executor = setup
    observe(state, NOT_OFFERED)
    refused = http.post(URL, json={"decision": "approve", "approver": "alice"})
    assert refused.status_code == 409
    assert "not offered" in refused.text and "rejected the dry run: memory: must be" in refused.text
    value = json.dumps({"run": "run-1", "gate": GATE, "decision": "approve"})
    click = {
        "type": "block_actions",
        "user": {"id": "U123", "username": "bob"},
        "actions": [{"action_id": "pf_approve", "value": value}],
    }
    body, headers = slack_request(click)
    clicked = http.post("/slack/interactions", content=body, headers=headers)
    assert clicked.status_code == 200 and "Not recorded: the fix is not offered" in clicked.text
    assert executor.resumed == []
    denied = http.post(URL, json={"decision": "deny", "approver": "alice", "comment": "no"})
    assert denied.status_code == 200 and denied.json()["approved_resource_version"] is None
    assert executor.resumed == [("run-1", GATE, False, "alice", "no")]


def test_the_cli_prints_the_preview_and_refuses_what_is_not_offered(
    served: tuple[str, ServerState, ResumingExecutor],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from punchingfist.cli import main

    url, state, executor = served
    observe(state, preview())
    monkeypatch.setenv("PUNCHINGFIST_APPROVER_TOKEN", TOKENS["bob"])
    monkeypatch.delenv("PUNCHINGFIST_TOKEN", raising=False)
    argv = ["approve", "run-1", "--server", url]
    assert main([*argv, "--show"]) == 0
    shown = capsys.readouterr().out
    assert f"run-1 / {GATE}: the fix to approve" in shown
    assert "Fix:              set container app of deployment shop/web" in shown
    assert "resourceVersion:  4711" in shown and "RBAC:             allowed" in shown
    assert shown.rstrip().endswith("+  memory: 1Gi") and executor.resumed == []
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.index("Diff:") < out.index("approved: run-1") and "(as bob)" in out
    assert executor.resumed == [("run-1", GATE, True, "bob", "")]
    with state.sessions.begin() as session:  # run-2 waits at a gate whose fix is not offered
        run = WorkflowRun(name="run-2", workflow_name="agent-alert-investigation")
        session.add(run)
        session.flush()
        session.add(Approval(run_id=run.id, gate=GATE, step_name="fix-memory", preview=NOT_OFFERED))
    assert main(["approve", "run-2", "--server", url]) == 1
    err = capsys.readouterr().err
    assert "the fix is not offered, so it cannot be approved: the API server rejected" in err
    assert len(executor.resumed) == 1


def test_the_web_page_shows_the_preview_on_the_gates_card(
    setup: tuple[TestClient, ServerState, ResumingExecutor],  # noqa: F811
) -> None:
    _, state, executor = setup
    hostile = preview(diff=DIFF + '\n+  note: <script>alert("pwned")</script>')
    observe(state, hostile)
    with state.sessions.begin() as session:  # run-2 waits at a gate whose fix is not offered
        run = WorkflowRun(name="run-2", workflow_name="agent-alert-investigation")
        session.add(run)
        session.flush()
        session.add(Approval(run_id=run.id, gate=GATE, step_name="fix-memory", preview=NOT_OFFERED))
    token = state.access.headers()["Authorization"].removeprefix("Bearer ")
    with browser(create_app(state)) as http:
        login(http, token)
        for page in ("/ui/approvals", "/ui/runs/run-1"):
            html = http.get(page).text
            assert "<dd>set container app of deployment shop/web to limits memory=1Gi</dd>" in html
            assert "resourceVersion <code>4711</code>" in html
            assert "allowed for system:serviceaccount:pf:remediator" in html
            assert '<pre class="diff"><code>--- deployment shop/web' in html
            assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in html
            assert "<script>alert" not in html
        cards = http.get("/ui/approvals").text.split('<section class="card gate">')[1:]
        (offered,) = [c for c in cards if "/runs/run-1/" in c]
        (refused,) = [c for c in cards if "/runs/run-2/" in c]
        assert 'value="approve"' in offered and 'value="deny"' in offered
        assert 'value="approve"' not in refused and 'value="deny"' in refused
        assert "Not offered: the API server rejected the dry run: memory: must be" in refused
        csrf = form_token(refused)
        answer = {"csrf": csrf, "decision": "approve", "approver": "alice"}
        tried = http.post(f"/ui/runs/run-2/approvals/{GATE}", data=answer)
        assert tried.status_code == 409 and "the fix is not offered" in tried.text
    assert executor.resumed == []


def test_a_gate_answered_outside_the_server_records_the_approved_version(
    setup: tuple[TestClient, ServerState, ResumingExecutor],  # noqa: F811
) -> None:
    http, state, _ = setup
    observe(state, preview())
    answered = NodeObservation(
        name=GATE,
        type="Suspend",
        phase="Succeeded",
        parameters={"approved": "true", "approver": "kubernetes-admin", "comment": "ok"},
    )
    track(state, [answered])
    record = http.get(URL).json()
    assert (record["decision"], record["channel"]) == ("approved", "argo")
    assert record["approved_resource_version"] == "4711" and record["preview"] == preview()
