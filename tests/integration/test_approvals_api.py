"""Approval endpoints and Slack interactivity (signature verified), on SQLite and PostgreSQL.
Resuming a real Argo run: tests/cluster/test_tracking_real.py and test_main_job.py."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import queue
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient

from punchingfist.api import load_resources
from punchingfist.runs.dispatching import RunSubmission, SubmitError
from punchingfist.server import ServerState, create_app
from punchingfist.store import WorkflowRun, upgrade
from tests.e2e.controlplane import free_port
from tests.integration.servers import post_chunked, uvicorn_app
from tests.integration.test_server import SOURCES

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


class ResumingExecutor:
    name = "recording"

    def __init__(self) -> None:
        self.resumed: list[tuple[Any, ...]] = []

    def submit(self, run: RunSubmission) -> None:
        """These tests start no runs: only `resume` matters."""

    def resume(
        self,
        name: str,
        namespace: str,
        gate: str,
        *,
        approved: bool,
        approver: str,
        comment: str,
        channel: str,
    ) -> None:
        if gate == "not-waiting":
            raise SubmitError(f"run {name} is not waiting at gate {gate!r}", temporary=False)
        self.resumed.append((name, gate, approved, approver, comment))


def server_state(database_url: str, **settings: Any) -> tuple[ServerState, ResumingExecutor]:
    """A server whose executor records resumes, with one run (`run-1`) to answer."""
    upgrade(database_url)
    executor = ResumingExecutor()
    state = ServerState.from_resources(
        load_resources(SOURCES), database_url, executor=executor, **settings
    )
    with state.sessions.begin() as session:
        session.add(WorkflowRun(name="run-1", workflow_name="agent-alert-investigation"))
    return state, executor


@pytest.fixture
def setup(database_url: str) -> Iterator[tuple[TestClient, ServerState, ResumingExecutor]]:
    state, executor = server_state(
        database_url, approvers=frozenset({"alice", "U123"}), slack_signing_secret=SIGNING_SECRET
    )
    with TestClient(create_app(state), headers=state.access.headers()) as http:
        yield http, state, executor
    state.engine.dispose()


URL = "/api/v1/runs/run-1/approvals/resolution-attempt-approval"


def test_approve_by_rest(setup: tuple[TestClient, ServerState, ResumingExecutor]) -> None:
    http, _, executor = setup
    response = http.post(URL, json={"decision": "approve", "approver": "alice", "comment": "go"})
    assert response.status_code == 200, response.text
    record = response.json()
    assert (record["decision"], record["approver"], record["channel"]) == (
        "approved",
        "alice",
        "api",
    )
    assert executor.resumed == [("run-1", "resolution-attempt-approval", True, "alice", "go")]
    again = http.post(URL, json={"decision": "deny", "approver": "alice"})
    assert again.status_code == 409 and "already approved by alice" in again.text
    decided = http.get("/api/v1/approvals", params={"decision": "approved"}).json()["items"]
    assert [(a["run"], a["gate"]) for a in decided] == [("run-1", "resolution-attempt-approval")]
    run = http.get("/api/v1/runs/run-1").json()
    assert run["approvals"][0]["decision"] == "approved"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"decision": "maybe", "approver": "alice"}, 422, "approve` or `deny"),
        ({"decision": "approve"}, 422, "approver is required"),
        ({"decision": "approve", "approver": "mallory"}, 403, "may not answer"),
    ],
)
def test_bad_answers(
    setup: tuple[TestClient, ServerState, ResumingExecutor],
    body: dict[str, Any],
    status: int,
    message: str,
) -> None:
    http, _, executor = setup
    response = http.post(URL, json=body)
    assert response.status_code == status and message in response.text
    assert executor.resumed == []


TOKENS = {"alice": "t0k-alice-5b1f", "bob": "t0k-bob-77c2"}


@pytest.mark.parametrize(
    ("headers", "body", "status", "message"),
    [
        ({"Authorization": ""}, {"decision": "approve"}, 401, "Authorization: Bearer"),
        ({"Authorization": "Bearer nope"}, {"decision": "approve"}, 401, "Authorization: Bearer"),
        ({"Authorization": f"Basic {TOKENS['alice']}"}, {"decision": "approve"}, 401, "Bearer"),
        (
            {"Authorization": f"Bearer {TOKENS['alice']}"},
            {"decision": "approve", "approver": "bob"},
            403,
            "cannot answer as 'bob'",
        ),
        (
            {"Authorization": f"Bearer {TOKENS['bob']}"},
            {"decision": "approve"},
            403,
            "'bob' may not answer",
        ),
    ],
    ids=["no-token", "unknown-token", "not-bearer", "someone-else", "not-on-the-allow-list"],
)
def test_with_approver_tokens_the_token_says_who_decides(
    setup: tuple[TestClient, ServerState, ResumingExecutor],
    headers: dict[str, str],
    body: dict[str, Any],
    status: int,
    message: str,
) -> None:
    """With `spec.approvals.tokensSecret`, the body cannot name someone else: whoever
    reaches the server without credentials answers nothing."""
    http, state, executor = setup
    state.approver_tokens = dict(TOKENS)
    response = http.post(URL, json=body, headers=headers)
    assert response.status_code == status and message in response.text, response.text
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    assert executor.resumed == []
    assert http.get("/api/v1/approvals", params={"decision": ""}).json()["items"] == []
    state.approver_tokens = {}  # configured, but the Secret holds none: alice's is unknown
    again = http.post(
        URL, json={"decision": "approve"}, headers={"Authorization": f"Bearer {TOKENS['alice']}"}
    )
    assert again.status_code == 401 and executor.resumed == []


def test_an_approver_token_answers_as_its_owner(
    setup: tuple[TestClient, ServerState, ResumingExecutor],
) -> None:
    http, state, executor = setup
    state.approver_tokens = dict(TOKENS)
    response = http.post(
        URL,
        json={"decision": "deny", "comment": "not now"},
        headers={"Authorization": f"Bearer {TOKENS['alice']}"},
    )
    assert response.status_code == 200, response.text
    assert (response.json()["decision"], response.json()["approver"]) == ("denied", "alice")
    assert executor.resumed == [("run-1", "resolution-attempt-approval", False, "alice", "not now")]


def test_unknown_run_and_a_gate_that_is_not_waiting(
    setup: tuple[TestClient, ServerState, ResumingExecutor],
) -> None:
    http, _, _ = setup
    body = {"decision": "approve", "approver": "alice"}
    assert http.post("/api/v1/runs/nope/approvals/x", json=body).status_code == 404
    response = http.post("/api/v1/runs/run-1/approvals/not-waiting", json=body)
    assert response.status_code == 409 and "not waiting" in response.text
    assert http.get("/api/v1/approvals").json()["items"] == []


def slack_request(
    payload: dict[str, Any], *, secret: str = SIGNING_SECRET, age: int = 0
) -> tuple[bytes, dict[str, str]]:
    body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
    timestamp = str(int(time.time()) - age)
    digest = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
    return body, {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": "v0=" + digest.hexdigest(),
        "Content-Type": "application/x-www-form-urlencoded",
    }


def button(user_id: str, decision: str) -> dict[str, Any]:
    value = json.dumps(
        {"run": "run-1", "gate": "resolution-attempt-approval", "decision": decision}
    )
    return {
        "type": "block_actions",
        "user": {"id": user_id, "username": "bob"},
        "actions": [{"action_id": "approval", "value": value}],
    }


def test_slack_button_with_a_valid_signature(
    setup: tuple[TestClient, ServerState, ResumingExecutor],
) -> None:
    http, _, executor = setup
    body, headers = slack_request(button("U123", "deny"))
    response = http.post("/slack/interactions", content=body, headers=headers)
    assert response.status_code == 200
    assert response.json()["text"].startswith("Denied by bob (U123)")
    # Recorded under the fixed user id; the changeable name is shown beside it.
    assert executor.resumed == [
        ("run-1", "resolution-attempt-approval", False, "slack:U123", "via Slack by bob")
    ]
    (record,) = http.get("/api/v1/approvals", params={"decision": "denied"}).json()["items"]
    assert (record["approver"], record["comment"]) == ("slack:U123", "via Slack by bob")


class _Hook(http.server.BaseHTTPRequestHandler):
    """Slack's response URL: records the JSON posted to it."""

    posted: ClassVar[queue.Queue[tuple[str, dict[str, Any]]]] = queue.Queue()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.posted.put((self.path, json.loads(self.rfile.read(length))))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        return


def test_a_clicks_answer_is_posted_to_its_response_url_on_slacks_host_only(
    setup: tuple[TestClient, ServerState, ResumingExecutor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slack shows the answer to a button click only when it is posted to the click's
    response_url (it ignores the HTTP answer's body); a URL on another host is never called."""
    http_client, _, executor = setup
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{hook.server_address[1]}"
    try:
        monkeypatch.setenv("SLACK_API_URL", f"{base}/api")  # this test's Slack
        click = button("U123", "approve") | {"response_url": f"{base}/actions/T1/42/xyz"}
        body, headers = slack_request(click)
        assert http_client.post("/slack/interactions", content=body, headers=headers).is_success
        path, posted = _Hook.posted.get(timeout=10)
        assert path == "/actions/T1/42/xyz" and posted["replace_original"] is True
        assert posted["text"].startswith("Approved by bob (U123)")
        assert executor.resumed[-1][:3] == ("run-1", "resolution-attempt-approval", True)

        monkeypatch.delenv("SLACK_API_URL")  # the same host is no longer Slack's
        refused = button("U999", "approve") | {"response_url": f"{base}/actions/T1/43/abc"}
        body, headers = slack_request(refused)
        answer = http_client.post("/slack/interactions", content=body, headers=headers)
        assert "may not answer" in answer.json()["text"]
        with pytest.raises(queue.Empty):
            _Hook.posted.get(timeout=1)
    finally:
        hook.shutdown()
        hook.server_close()


@pytest.mark.parametrize("problem", ["bad-signature", "stale", "wrong-secret", "no-headers"])
def test_slack_requests_that_fail_verification(
    setup: tuple[TestClient, ServerState, ResumingExecutor], problem: str
) -> None:
    http, _, executor = setup
    secret = "other" if problem == "wrong-secret" else SIGNING_SECRET
    body, headers = slack_request(
        button("U123", "approve"), secret=secret, age=600 if problem == "stale" else 0
    )
    if problem == "bad-signature":
        headers["X-Slack-Signature"] = "v0=" + "0" * 64
    if problem == "no-headers":
        headers = {}
    response = http.post("/slack/interactions", content=body, headers=headers)
    assert response.status_code == 401 and executor.resumed == []


def test_slack_user_not_allowed_and_malformed_payloads(
    setup: tuple[TestClient, ServerState, ResumingExecutor],
) -> None:
    http, _, executor = setup
    body, headers = slack_request(button("U999", "approve"))
    response = http.post("/slack/interactions", content=body, headers=headers)
    assert response.status_code == 200 and "may not answer" in response.json()["text"]
    body, headers = slack_request({"type": "block_actions", "actions": []})
    assert http.post("/slack/interactions", content=body, headers=headers).status_code == 400
    shown = button("U999", "approve") | {"user": {"id": "U999", "username": "<!channel> x"}}
    body, headers = slack_request(shown)
    text = http.post("/slack/interactions", content=body, headers=headers).json()["text"]
    assert "<!channel>" not in text and "&lt;!channel&gt; x may not answer" in text
    for user in ("U123", {"id": 7}, {"id": "not-an-id"}, None):  # signed, but not Slack's shape
        payload = button("U123", "approve") | {"user": user}
        body, headers = slack_request(payload)
        answer = http.post("/slack/interactions", content=body, headers=headers)
        assert answer.status_code == 400, (user, answer.text)
    assert executor.resumed == []


def test_slack_bodies_are_cut_at_the_limit_while_streaming(database_url: str) -> None:
    """A chunked body (no Content-Length) is refused once it passes the limit, not buffered
    whole, and an unsigned one before a byte of it is parsed (the issue: four 250 MiB posts
    to /slack/interactions added 1.2 GiB to the server)."""
    state, executor = server_state(database_url, slack_signing_secret=SIGNING_SECRET)
    state.max_body_bytes = 64 * 1024
    _, signed = slack_request(button("U123", "approve"))
    with uvicorn_app(create_app(state)) as url:
        for path in (
            "/slack/interactions",
            "/slack/events",
            "/webhook/alerts",
            "/api/v1/runs/run-1/approvals/resolution-attempt-approval",
        ):
            status, sent = post_chunked(url, path, signed | state.access.headers())
            assert status == 413, path
            assert sent < 16 * 1024 * 1024, (path, sent)  # cut near the limit
        status, sent = post_chunked(url, "/slack/interactions", {})
        assert status == 401 and sent < 16 * 1024 * 1024
    assert executor.resumed == []
    state.engine.dispose()


@pytest.fixture
def served(database_url: str) -> Iterator[tuple[str, ServerState, ResumingExecutor]]:
    """The app behind a real HTTP listener (the CLI talks HTTP), approver tokens on."""
    import threading

    import uvicorn

    from tests.e2e.controlplane import free_port

    state, executor = server_state(
        database_url, approvers=frozenset({"alice", "bob"}), approver_tokens=dict(TOKENS)
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(state), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", state, executor
    server.should_exit = True
    thread.join(10)
    state.engine.dispose()


def test_the_cli_answers_with_the_approver_token(
    served: tuple[str, ServerState, ResumingExecutor],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from punchingfist.cli import main

    url, _, executor = served
    argv = ["approve", "run-1", "--step", "resolution-attempt", "--server", url]
    monkeypatch.setenv("USER", "mallory")
    monkeypatch.delenv("PUNCHINGFIST_APPROVER_TOKEN", raising=False)
    monkeypatch.delenv("PUNCHINGFIST_TOKEN", raising=False)
    assert main(argv) == 1  # no token: $USER is only a name
    assert "needs credentials" in capsys.readouterr().err and executor.resumed == []
    monkeypatch.setenv("PUNCHINGFIST_TOKEN", "not-a-token-anyone-has")
    assert main(argv) == 1
    assert "401" in capsys.readouterr().err and executor.resumed == []
    monkeypatch.delenv("PUNCHINGFIST_TOKEN")
    monkeypatch.setenv("PUNCHINGFIST_APPROVER_TOKEN", TOKENS["bob"])
    assert main([*argv, "--approver", "alice"]) == 1
    assert "cannot answer as 'alice'" in capsys.readouterr().err and executor.resumed == []
    assert main([*argv, "--comment", "ok"]) == 0
    assert "(as bob)" in capsys.readouterr().out
    assert executor.resumed == [("run-1", "resolution-attempt-approval", True, "bob", "ok")]


def test_serve_makes_an_api_token_once_and_the_cli_uses_it(tmp_path: Path) -> None:
    """Embedded mode: the first start makes the token (0600, beside the database) and says
    where; the read API refuses callers without it; a later start keeps it."""
    import subprocess
    import sys

    (tmp_path / "sources.yaml").write_text(SOURCES)
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "punchingfist.cli",
        "serve",
        "-f",
        str(tmp_path / "sources.yaml"),
        "--database-url",
        f"sqlite:///{tmp_path}/db/pf.db",
        "--port",
        str(port),
    ]
    (tmp_path / "db").mkdir()
    token_file = tmp_path / "db" / "api-token"
    for start in ("made now", "kept"):
        log = tmp_path / f"serve-{start}.log"
        with log.open("wb") as out:
            server = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
            try:
                url = f"http://127.0.0.1:{port}"
                wait_http(f"{url}/healthz", server, log)
                assert f"{token_file} ({start}, mode 0600)" in log.read_text()
                assert token_file.stat().st_mode & 0o777 == 0o600
                token = token_file.read_text().strip()
                assert token not in log.read_text()
                assert http_status(f"{url}/api/v1/runs", {}) == 401
                assert http_status(f"{url}/api/v1/runs", {"Authorization": "Bearer nope"}) == 401
                auth = {"Authorization": f"Bearer {token}"}
                assert http_status(f"{url}/api/v1/runs", auth) == 200
            finally:
                server.terminate()
                server.wait(timeout=30)


def test_an_open_api_is_explicit_and_loud(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "sources.yaml").write_text(SOURCES)
    port = free_port()
    log = tmp_path / "serve.log"
    argv = [
        sys.executable,
        "-m",
        "punchingfist.cli",
        "serve",
        "-f",
        str(tmp_path / "sources.yaml"),
        "--database-url",
        f"sqlite:///{tmp_path}/pf.db",
        "--port",
        str(port),
        "--insecure-open-api",
    ]
    with log.open("wb") as out:
        server = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", server, log)
            assert "WARNING: --insecure-open-api" in log.read_text()
            assert http_status(f"http://127.0.0.1:{port}/api/v1/runs", {}) == 200
        finally:
            server.terminate()
            server.wait(timeout=30)
    assert not (tmp_path / "api-token").exists()


def wait_http(url: str, process: Any, log: Path) -> None:
    deadline = time.monotonic() + 60
    while http_status(url, {}) != 200:
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


def http_status(url: str, headers: dict[str, str]) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0
