"""The web page (`/ui/`, `server.web`) on SQLite and PostgreSQL: every page needs the API's
credentials (a login form sets an HttpOnly SameSite=Strict cookie), hostile alert labels and
model text are escaped, a form without its token or from another site is refused, and Approve
through the page records the approver as the REST endpoint does (channel `web`). The real
browser on the local engine: test_web_browser.py."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from punchingfist.server import ServerState, create_app
from punchingfist.server.web import COOKIE
from punchingfist.store import WorkflowRun
from punchingfist.store.models import Approval, RunStep, SinkDelivery
from tests.integration.test_approvals_api import ResumingExecutor, server_state
from tests.integration.test_server import payload

GATE = "resolution-attempt-approval"
HOSTILE = '<script>alert("pwned")</script>'
TOKENS = {"alice": "alice-token-0123456789abcdef", "bob": "bob-token-0123456789abcdef0"}


@pytest.fixture
def site(database_url: str) -> Iterator[tuple[TestClient, ServerState, ResumingExecutor, str]]:
    """A browser-like client (no credentials), the state, its executor, and the API token.
    `run-1` waits at GATE; approvers: alice and U123."""
    state, executor = server_state(database_url, approvers=frozenset({"alice", "U123"}))
    with state.sessions.begin() as session:
        run = WorkflowRun.named(session, "run-1")
        assert run is not None
        session.add(Approval(run_id=run.id, gate=GATE, step_name="resolution-attempt"))
    token = state.access.headers()["Authorization"].removeprefix("Bearer ")
    with browser(create_app(state)) as http:
        yield http, state, executor, token
    state.engine.dispose()


def browser(app: Any) -> TestClient:
    """A client as a browser is: no credentials, redirects shown (not followed)."""
    return TestClient(app, base_url="http://pf.test", follow_redirects=False)


def login(http: TestClient, token: str) -> None:
    answer = http.post("/ui/login", data={"token": token, "next": "/ui/runs/run-1"})
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/runs/run-1"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert "Path=/ui" in cookie


def form_token(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert found, "the page has no form token"
    return found.group(1)


def decision(state: ServerState) -> tuple[str, str | None, str | None]:
    with state.sessions() as session:
        gate = session.scalars(select(Approval).where(Approval.gate == GATE)).one()
        return gate.decision, gate.approver, gate.channel


PAGES = ["/ui/", "/ui/runs", "/ui/runs/run-1", "/ui/approvals", "/ui/incidents/nope"]


def test_every_page_needs_the_apis_credentials(
    site: tuple[TestClient, ServerState, ResumingExecutor, str],
) -> None:
    http, state, executor, token = site
    for path in PAGES:
        answer = http.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/ui/login?next=/ui/"), path
    http.cookies.set(COOKIE, "not-the-token-at-all")
    assert http.get("/ui/runs").status_code == 303
    http.cookies.clear()
    refused = http.post("/ui/login", data={"token": "wrong-token-0123456789"})
    assert refused.status_code == 401 and "That token is not valid." in refused.text
    assert COOKIE not in refused.headers.get("set-cookie", "")
    # Nobody signed in: the POST does not reach the gate.
    posted = http.post(f"/ui/runs/run-1/approvals/{GATE}", data={"decision": "approve"})
    assert posted.status_code == 303 and posted.headers["location"].startswith("/ui/login")
    assert decision(state) == ("pending", None, None) and executor.resumed == []
    login(http, token)
    # The JSON API takes no cookie (a form on another site cannot call it with one).
    cookie = {"Cookie": f"{COOKIE}={token}"}
    assert http.get("/api/v1/runs", headers=cookie).status_code == 401
    for path in PAGES[:-1]:
        assert http.get(path).status_code == 200, path
    assert http.get("/ui/incidents/nope").status_code == 404
    # The login form sends nobody elsewhere afterwards.
    elsewhere = http.post("/ui/login", data={"token": token, "next": "//evil.example/"})
    assert elsewhere.headers["location"] == "/ui/"
    out = http.post("/ui/logout", data={"csrf": form_token(http.get("/ui/runs").text)})
    assert out.status_code == 303 and http.get("/ui/runs").status_code == 303


def test_a_hostile_alert_and_answer_are_shown_as_text(
    site: tuple[TestClient, ServerState, ResumingExecutor, str],
) -> None:
    http, state, _, token = site
    alert = copy.deepcopy(payload("pod-crashlooping.json"))
    alert["alerts"][0]["labels"]["pod"] = HOSTILE
    alert["alerts"][0]["annotations"]["summary"] = '<img src=x onerror="alert(1)">'
    posted = http.post("/webhook/alerts", json=alert, headers=state.access.headers())
    (name,) = posted.json()["runs"]
    with state.sessions.begin() as session:
        run = WorkflowRun.named(session, name)
        assert run is not None and run.incident_id is not None
        incident = str(run.incident_id)
        session.add(
            RunStep(
                run_id=run.id,
                name="agent-investigation",
                kind="agent",
                phase="Succeeded",
                result={
                    "kind": "agent",
                    "result": {
                        "summary": f"the pod {HOSTILE} runs out of memory",
                        "root_cause": "memory limit 64Mi below the working set",
                        "confidence": 0.87,
                        "evidence": ["call-1"],
                        "recommendations": ["raise the limit to 256Mi"],
                    },
                    "model": "replay",
                },
                tool_calls=[
                    {
                        "id": "call-1",
                        "tool": "kubectl",
                        "call": {"tool": "kubectl"},
                        "argv": ["kubectl", "describe", "pod", HOSTILE],
                        "status": "ok",
                    }
                ],
                prompt_tokens=1200,
                completion_tokens=345,
            )
        )
        session.add(
            SinkDelivery(
                run_id=run.id,
                sink_name="slack-oncall",
                sink_type="slack",
                outcome="skipped",
                detail={"reason": "not configured", "link": "javascript:alert(1)"},
            )
        )
    login(http, token)
    for page in (f"/ui/incidents/{incident}", f"/ui/runs/{name}"):
        answer = http.get(page)
        assert answer.status_code == 200
        assert HOSTILE not in answer.text and "<img src=x" not in answer.text
        assert "javascript:" not in answer.text
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    incident_page = http.get(f"/ui/incidents/{incident}").text
    assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in incident_page
    assert f"/ui/runs/{name}" in incident_page
    run_page = http.get(f"/ui/runs/{name}").text
    for shown in (
        "runs out of memory",
        "memory limit 64Mi below the working set",
        "87%",
        'href="#agent-investigation-call-1"',
        "kubectl describe pod &lt;script&gt;",
        "raise the limit to 256Mi",
        "1200 in · 345 out",
        "slack-oncall",
        "not configured",
    ):
        assert shown in run_page, shown
    assert "Argo UI" not in run_page  # not configured, and a local run besides


def test_the_argo_link_when_configured(
    site: tuple[TestClient, ServerState, ResumingExecutor, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    http, state, _, token = site
    monkeypatch.setenv("ARGO_UI_URL", "https://argo.example/")
    with state.sessions.begin() as session:
        session.add(
            WorkflowRun(name="argo-run", workflow_name="w", executor="argo", namespace="pf")
        )
    with browser(create_app(state)) as argo_http:
        login(argo_http, token)
        page = argo_http.get("/ui/runs/argo-run").text
    assert 'href="https://argo.example/workflows/pf/argo-run"' in page
    login(http, token)  # made before ARGO_UI_URL was set: no link
    assert "argo.example" not in http.get("/ui/runs/argo-run").text


def test_a_form_without_its_token_or_from_another_site_is_refused(
    site: tuple[TestClient, ServerState, ResumingExecutor, str],
) -> None:
    http, state, executor, token = site
    login(http, token)
    good = form_token(http.get("/ui/runs/run-1").text)
    url = f"/ui/runs/run-1/approvals/{GATE}"
    body = {"decision": "approve", "approver": "alice"}
    for form, headers in (
        (body, {}),
        (body | {"csrf": "0" * 64}, {}),
        (body | {"csrf": good}, {"Origin": "https://evil.example"}),
        (body | {"csrf": good}, {"Sec-Fetch-Site": "cross-site"}),
    ):
        refused = http.post(url, data=form, headers=headers)
        assert refused.status_code == 403, (form, headers)
    as_json = http.post(url, json=body | {"csrf": good})
    assert as_json.status_code == 415
    assert decision(state) == ("pending", None, None) and executor.resumed == []
    # Another session's form token does not fit this one.
    state.approver_tokens = dict(TOKENS)
    with browser(http.app) as other:
        login(other, TOKENS["alice"])
        theirs = form_token(other.get("/ui/approvals").text)
        assert theirs != good
        assert other.post(url, data=body | {"csrf": good}).status_code == 403
    assert decision(state) == ("pending", None, None) and executor.resumed == []


def test_approve_on_the_page_records_the_approver_as_rest_does(
    site: tuple[TestClient, ServerState, ResumingExecutor, str],
) -> None:
    http, state, executor, token = site
    login(http, token)
    listed = http.get("/ui/approvals").text
    assert f'action="/ui/runs/run-1/approvals/{GATE}"' in listed
    assert 'name="approver"' in listed  # the API token is no person: the form asks who
    csrf = form_token(listed)
    url = f"/ui/runs/run-1/approvals/{GATE}"
    # The allow-list of the REST endpoint holds here too.
    mallory = http.post(url, data={"csrf": csrf, "decision": "approve", "approver": "mallory"})
    assert mallory.status_code == 403 and "may not answer approval gates" in mallory.text
    nameless = http.post(url, data={"csrf": csrf, "decision": "approve"})
    assert nameless.status_code == 422 and "approver is required" in nameless.text
    assert decision(state) == ("pending", None, None)
    done = http.post(
        url,
        data={"csrf": csrf, "decision": "approve", "approver": "alice", "comment": "go"},
    )
    assert done.status_code == 303 and done.headers["location"] == "/ui/runs/run-1"
    assert decision(state) == ("approved", "alice", "web")
    assert executor.resumed == [("run-1", GATE, True, "alice", "go")]
    page = http.get("/ui/runs/run-1").text
    assert "by alice via web" in page and "Approve</button>" not in page
    again = http.post(url, data={"csrf": csrf, "decision": "deny", "approver": "alice"})
    assert again.status_code == 409 and "already approved by alice" in again.text


def test_an_approver_token_answers_as_its_owner(
    site: tuple[TestClient, ServerState, ResumingExecutor, str],
) -> None:
    http, state, executor, _ = site
    state.approver_tokens = dict(TOKENS)
    login(http, TOKENS["alice"])
    page = http.get("/ui/runs/run-1").text
    assert 'name="approver"' not in page  # the token says who
    csrf = form_token(page)
    url = f"/ui/runs/run-1/approvals/{GATE}"
    posing = http.post(url, data={"csrf": csrf, "decision": "deny", "approver": "bob"})
    assert posing.status_code == 403 and "cannot answer as" in posing.text
    denied = http.post(url, data={"csrf": csrf, "decision": "deny", "comment": "not now"})
    assert denied.status_code == 303
    assert decision(state) == ("denied", "alice", "web")
    assert executor.resumed == [("run-1", GATE, False, "alice", "not now")]
    # bob holds an approver token but is not on the allow-list: refused like REST.
    http.cookies.clear()
    login(http, TOKENS["bob"])
    csrf = form_token(http.get("/ui/approvals").text)
    refused = http.post(url, data={"csrf": csrf, "decision": "approve"})
    assert refused.status_code == 403 and "bob&#39; may not answer approval gates" in refused.text


def test_static_files_and_the_root(
    site: tuple[TestClient, ServerState, ResumingExecutor, str],
) -> None:
    http, *_ = site
    assert http.get("/").headers["location"] == "/ui/"
    css = http.get("/ui/static/web.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "@media" in css.text  # the phone layout
    assert http.get("/ui/static/web.js").status_code == 200
    assert http.get("/ui/static/..%2Fweb.py").status_code == 404


def test_serve_help_names_the_web_page() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "punchingfist.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "the web page (/ui/:" in " ".join(shown.split())
