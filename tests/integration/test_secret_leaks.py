"""The secret-leak test (issue #18): one full embedded run with every secret the product takes
configured, each a distinctive random value, then a search of everything the run left behind.

`punchingfist serve --executor local` runs as a user starts it (a real process, resources from
files, Secrets in --secrets-dir, one credential in clear text in a Sink); only the SaaS
endpoints are fakes on real sockets: Slack, PagerDuty, Jira, a generic webhook receiver, an
OpenAI-compatible model and a Prometheus that checks its bearer token. An alert is posted to the
authenticated webhook, the approval gate is answered through the REST API with an approver
token, a signed Slack click is sent, and a workflow sink escalates through the trigger API to a
run whose sinks meet services that echo the credential back in their refusals.

Then the server's output, every /api/v1 answer, /metrics, every file under the workdir, every
database row, the model's prompts and what the services got besides their own credential are
searched for each secret, its base64 (HTTP Basic auth) and its first 16 characters. The search
is not vacuous: each service must have received its secret where it belongs, and a canary in
the alert must be found in the run files, the database, the prompts, Slack and the API.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.controlplane import free_port
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.saas import Answer, FakeJira, FakePagerDuty, FakeService, FakeSlack, Request
from tests.integration.test_embedded_runs import ROOT, environ

CHANNEL = ("C0LEAKS01", "leaks")
JIRA_USER = "leak-bot@example.com"


def _random(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(16)}"


@dataclass(frozen=True)
class Secrets:
    """Every credential the product takes, each unique to this test run."""

    slack_bot_token: str = field(default_factory=lambda: _random("xoxb-"))
    slack_signing_secret: str = field(default_factory=lambda: _random("slacksign"))
    pagerduty_routing_key: str = field(default_factory=lambda: _random("pdkey"))
    jira_token: str = field(default_factory=lambda: _random("jiratoken"))
    webhook_source_token: str = field(default_factory=lambda: _random("amwebhook"))
    trigger_token: str = field(default_factory=lambda: _random("trigger"))
    llm_api_key: str = field(default_factory=lambda: _random("sk-"))
    prometheus_token: str = field(default_factory=lambda: _random("promtoken"))
    webhook_sink_token: str = field(default_factory=lambda: _random("sinkhook"))
    approver_token: str = field(default_factory=lambda: _random("approver"))

    def files(self) -> dict[str, str]:
        """--secrets-dir layout, NAME/KEY -> value."""
        return {
            "slack/bot-token": self.slack_bot_token,
            "slack/signing-secret": self.slack_signing_secret,
            "pagerduty/routing-key": self.pagerduty_routing_key,
            "jira/credentials": f"{JIRA_USER}:{self.jira_token}",
            "alertmanager-auth/token": self.webhook_source_token,
            "trigger-auth/token": self.trigger_token,
            "llm/api-key": self.llm_api_key,
            "prometheus/token": self.prometheus_token,
            "receiver/token": self.webhook_sink_token,
            "approver-tokens/alice": self.approver_token,
        }


def forms(value: str, *, prefix: bool = True) -> list[str]:
    """`value` as it might show up: itself, base64 (HTTP Basic auth), and its first 16
    characters (a cut log line; the random part starts within them)."""
    return [value, base64.b64encode(value.encode()).decode()] + ([value[:16]] if prefix else [])


class FakePrometheus(FakeService):
    """`/api/v1/query` answering one series, only with the right bearer token."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def handle(self, request: Request) -> Answer:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"status": "error", "errorType": "unauthorized", "error": "bad token"}
        series = {
            "metric": {"pod": "my-app-5d8f7", "namespace": "production"},
            "value": [time.time(), "7"],
        }
        return 200, {"status": "success", "data": {"resultType": "vector", "result": [series]}}


class CarelessJira(FakeJira):
    """Jira, except that below `/refuse` it answers 400 echoing the Authorization header."""

    def handle(self, request: Request) -> Answer:
        if request.path.startswith("/refuse/"):
            echoed = request.headers.get("authorization")
            return 400, {"errorMessages": [f"{echoed} may not search"]}
        return super().handle(request)


class FakeReceiver(FakeService):
    """Any endpoint a generic webhook sink posts to. `/refuse` answers 400 and, as a careless
    service might, echoes the credential it got back in the error."""

    def handle(self, request: Request) -> Answer:
        if request.path == "/refuse":
            return 400, {"error": f"not allowed for {request.headers.get('authorization')}"}
        return 200, {"received": True}


def resources(ports: dict[str, str], server: str, bot_token: str) -> dict[str, str]:
    """Files of Sources, a Workflow with a cli step, an agent step, a gated cli step and every
    sink type that takes a credential, and an OperatorConfig naming each secret role. One
    credential is also written in clear text in a Sink (the compiler moves it to a Secret)."""
    slack_id, _ = CHANNEL
    return {
        "config.yaml": f"""
apiVersion: punchingfist.io/v1alpha1
kind: OperatorConfig
metadata: {{name: leak-config}}
spec:
  chat:
    slack:
      channelId: {slack_id}
      signingSecret: {{secretRef: slack, key: signing-secret}}
  secrets:
    slackToken: {{secretRef: slack, key: bot-token}}
    pagerdutyRoutingKey: {{secretRef: pagerduty, key: routing-key}}
    jiraToken: {{secretRef: jira, key: credentials}}
    prometheusToken: {{secretRef: prometheus, key: token}}
  approvals:
    approvers: [alice]
    tokensSecret: approver-tokens
""",
        "sources.yaml": """
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: alertmanager}
spec:
  type: webhook
  config:
    path: /webhook/alerts
    authentication: {type: bearer, secretRef: alertmanager-auth}
  triggerWorkflow: leak-investigation
---
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: escalate}
spec:
  type: api
  config:
    authentication: {type: apikey, secretRef: trigger-auth}
  triggerWorkflow: leak-escalation
""",
        "workflows.yaml": f"""
apiVersion: punchingfist.io/v1alpha1
kind: Workflow
metadata: {{name: leak-investigation}}
spec:
  runtime:
    llmConfig:
      provider: openai-compatible
      model: leak-model
      apiKeySecret: {{secretRef: llm, key: api-key}}
    environment:
      PROMETHEUS_URL: "{ports["prometheus"]}"
  steps:
    - name: look
      type: cli
      command: env | sort
    - name: investigate
      type: agent
      goal: "Investigate: {{{{ .source.data.alert.summary }}}}"
      tools:
        - name: promql
          endpoint: "{{{{ .env.PROMETHEUS_URL }}}}"
      maxIterations: 3
    - name: restart
      type: cli
      command: env | sort
      approvalRequired: true
  outputs:
    - name: investigation_summary
      value: "{{{{ .steps.investigate.result.summary }}}}"
  sinks:
    - name: slack-results
    - name: pagerduty-page
    - name: jira-ticket
    - name: receiver-hook
    - name: escalate-further
---
apiVersion: punchingfist.io/v1alpha1
kind: Workflow
metadata: {{name: leak-escalation}}
spec:
  steps:
    - name: note
      type: cli
      command: env | sort
  sinks:  # services that echo the credential back in their refusals
    - name: receiver-refuses
    - name: jira-refuses
""",
        "sinks.yaml": f"""
apiVersion: punchingfist.io/v1alpha1
kind: Sink
metadata: {{name: slack-results}}
spec:
  type: slack
  config: {{channel: "{slack_id}", botToken: "{bot_token}"}}  # clear text, as users do
---
apiVersion: punchingfist.io/v1alpha1
kind: Sink
metadata: {{name: pagerduty-page}}
spec:
  type: pagerduty
  config:
    routingKeySecret: {{secretRef: pagerduty, key: routing-key}}
    endpoint: "{ports["pagerduty"]}"
---
apiVersion: punchingfist.io/v1alpha1
kind: Sink
metadata: {{name: jira-ticket}}
spec:
  type: jira
  config: {{project: OPS, endpoint: "{ports["jira"]}"}}
---
apiVersion: punchingfist.io/v1alpha1
kind: Sink
metadata: {{name: receiver-hook}}
spec:
  type: webhook
  config:
    url: "{ports["receiver"]}/hook"
    authSecret: {{secretRef: receiver, key: token}}
---
apiVersion: punchingfist.io/v1alpha1
kind: Sink
metadata: {{name: receiver-refuses}}
spec:
  type: webhook
  config:
    url: "{ports["receiver"]}/refuse"
    authSecret: {{secretRef: receiver, key: token}}
---
apiVersion: punchingfist.io/v1alpha1
kind: Sink
metadata: {{name: jira-refuses}}
spec:
  type: jira
  config: {{project: OPS, endpoint: "{ports["jira"]}/refuse"}}
---
apiVersion: punchingfist.io/v1alpha1
kind: Sink
metadata: {{name: escalate-further}}
spec:
  type: workflow
  config:
    workflowName: leak-escalation
    source: escalate
    endpoint: "{server}"
    authSecret: {{secretRef: trigger-auth, key: token}}
    authHeader: X-API-Key
""",
    }


QUERY = "kube_pod_container_status_restarts_total"
TURNS = [
    {"http_status": 500},  # the model API fails once: the client retries
    {
        "thought": "How often did it restart?",
        "action": {"kind": "tool_calls", "calls": [{"tool": "promql", "query": QUERY}]},
    },
    {
        "thought": "Restarting seven times: it crash-loops.",
        "action": {
            "kind": "final_answer",
            "summary": "my-app restarted 7 times",
            "problem_summary": "crash loop",
            "root_cause": "unknown from metrics alone",
            "can_auto_fix": False,
            "confidence": 0.5,
            "escalation_notes": "look at the logs",
        },
    },
]


@dataclass
class Server:
    url: str
    api_token: str
    log: Path
    process: subprocess.Popen[bytes]

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, str]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        request.add_header("Authorization", f"Bearer {token or self.api_token}")
        if data is not None and raw is None:
            request.add_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()


def wait_for(what: str, probe: Callable[[], Any], server: Server, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"the server exited:\n{server.log.read_text()}")
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}:\n{server.log.read_text()[-4000:]}")


@pytest.fixture
def fakes(tmp_path: Path) -> Iterator[dict[str, Any]]:
    given = Secrets()
    with ExitStack() as stack:
        found = {
            "secrets": given,
            "slack": stack.enter_context(FakeSlack(given.slack_bot_token, dict([CHANNEL]))),
            "pagerduty": stack.enter_context(FakePagerDuty(given.pagerduty_routing_key)),
            "jira": stack.enter_context(CarelessJira(JIRA_USER, given.jira_token)),
            "receiver": stack.enter_context(FakeReceiver()),
            "prometheus": stack.enter_context(FakePrometheus(given.prometheus_token)),
            "llm": stack.enter_context(FakeOpenAI(TURNS)),
        }
        yield found


@pytest.fixture
def server(tmp_path: Path, fakes: dict[str, Any]) -> Iterator[Server]:
    given: Secrets = fakes["secrets"]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    ports = {name: fakes[name].url for name in ("pagerduty", "jira", "receiver", "prometheus")}
    folder = tmp_path / "resources"
    folder.mkdir()
    for name, text in resources(ports, url, given.slack_bot_token).items():
        (folder / name).write_text(text)
    for name, value in given.files().items():
        path = tmp_path / "secrets" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")
    (tmp_path / "db").mkdir()
    log = tmp_path / "server.log"
    env = environ(tmp_path) | {"SLACK_API_URL": fakes["slack"].url + "/api/"}
    options = {
        "--executor": "local",
        "--secrets-dir": str(tmp_path / "secrets"),
        "--database-url": f"sqlite:///{tmp_path / 'db' / 'punchingfist.db'}",
        "--port": str(port),
        "--llm-endpoint": fakes["llm"].url,
        "--llm-model": "leak-model",
        "--workdir": str(tmp_path / "runs"),
    }
    command = [sys.executable, "-m", "punchingfist.cli", "serve", "-f", str(folder)]
    command += [part for option in options.items() for part in option]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = Server(url, "", log, process)
    try:

        def healthy() -> bool:
            try:
                return running.call("GET", "/healthz")[0] == 200
            except OSError:
                return False

        wait_for("the server to listen", healthy, running, timeout=60)
        # made at first start, beside the SQLite database, as the server said on stderr
        token_file = tmp_path / "db" / "api-token"
        assert str(token_file) in log.read_text()
        running.api_token = token_file.read_text().strip()
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def finished(server: Server, name: str) -> Callable[[], Any]:
    def probe() -> Any:
        status, text = server.call("GET", f"/api/v1/runs/{name}")
        run = json.loads(text) if status == 200 else {}
        return run if run.get("status") in ("succeeded", "failed", "error") else None

    return probe


def slack_signed(secret: str, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
    timestamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
    return body, {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": "v0=" + digest.hexdigest(),
        "Content-Type": "application/x-www-form-urlencoded",
    }


@pytest.mark.timeout(180)
def test_no_secret_leaks_from_a_full_run(
    server: Server, fakes: dict[str, Any], tmp_path: Path
) -> None:
    given: Secrets = fakes["secrets"]
    # a canary: data that flows where a leaked secret would, so the search below is shown to
    # look at the places the run's data really reaches
    canary = _random("canary")
    answers: dict[str, str] = {}
    name = investigate(server, given, canary, answers)
    read_everything(server, answers)
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=30)

    received_where_they_belong(fakes, given)
    places = everything_left(server, fakes, answers, tmp_path)
    reached = {
        where.split(" ")[0] if where.startswith("run file") else where
        for where, text in places.items()
        if canary in text
    }
    seen = {"run", "database", "model prompts", "Slack messages", "GET /api/v1/alerts"}
    assert seen | {f"GET /api/v1/runs/{name}"} <= reached, reached
    searched = {field: forms(value) for field, value in vars(given).items()}
    searched["api_token"] = forms(server.api_token)
    searched["jira credentials"] = forms(f"{JIRA_USER}:{given.jira_token}", prefix=False)
    leaks = [
        f"{field} ({'as is' if form == shapes[0] else repr(form)}) in {where}"
        for field, shapes in searched.items()
        for form in shapes
        for where, text in places.items()
        if form in text
    ]
    assert not leaks, "\n".join(leaks)


def investigate(server: Server, given: Secrets, canary: str, answers: dict[str, str]) -> str:
    """Post the alert, approve the gate with an approver token, wait for the run and the run
    its workflow sink escalated to; the investigation's run name."""
    payload = json.loads((ROOT / "examples" / "alerts" / "pod-crashlooping.json").read_text())
    payload["alerts"][0]["annotations"]["summary"] += f" ({canary})"
    alert = json.dumps(payload).encode()
    kind = {"Content-Type": "application/json"}
    status, text = server.call("POST", "/webhook/alerts", raw=alert, token="no", headers=kind)
    assert status == 401, text  # the Source's token is really checked
    post = server.call(
        "POST", "/webhook/alerts", raw=alert, token=given.webhook_source_token, headers=kind
    )
    assert post[0] == 200, post
    (name,) = json.loads(post[1])["runs"]
    # secrets offered in the wrong places are refused (and must not be logged either)
    assert server.call("GET", "/api/v1/runs", token=given.webhook_source_token)[0] == 401
    wrong = server.call("POST", "/webhook/alerts", raw=alert, token=server.api_token, headers=kind)
    assert wrong[0] == 401

    def gate() -> Any:
        return json.loads(server.call("GET", "/api/v1/approvals")[1])["items"]

    (pending,) = wait_for("the approval gate", gate, server)
    approve = f"/api/v1/runs/{name}/approvals/{pending['gate']}"
    decision = {"decision": "approve", "comment": "go"}
    status, answers[approve] = server.call("POST", approve, decision, token=given.approver_token)
    assert status == 200, answers[approve]
    # the signing secret is loaded: a signed click is read (the gate is answered already),
    # a click signed with another secret is refused
    value = {"run": name, "gate": pending["gate"], "decision": "deny"}
    click = {
        "type": "block_actions",
        "user": {"id": "U0ALICE", "username": "alice"},
        "actions": [{"action_id": "approval", "value": json.dumps(value)}],
    }
    body, headers = slack_signed("not-the-secret", click)
    assert server.call("POST", "/slack/interactions", raw=body, headers=headers)[0] == 401
    body, headers = slack_signed(given.slack_signing_secret, click)
    status, answers["/slack/interactions"] = server.call(
        "POST", "/slack/interactions", raw=body, headers=headers
    )
    assert status == 200, answers["/slack/interactions"]

    run = wait_for("the run to finish", finished(server, name), server)
    assert run["status"] == "succeeded", run
    steps = {step["name"]: step["phase"] for step in run["steps"]}  # every task is recorded
    named = ["look", "investigate", "restart", "restart-approval", "pf-outputs"]
    assert {name: steps.get(name) for name in named} == dict.fromkeys(named, "Succeeded")
    deliveries = {d["sink_name"]: d["outcome"] for d in run["sink_deliveries"]}
    sinks = ["slack-results", "pagerduty-page", "jira-ticket", "receiver-hook", "escalate-further"]
    # the gate's request to Slack is a delivery too (as Argo runs record it)
    sinks.append("restart-approval-request")
    assert deliveries == dict.fromkeys(sinks, "delivered"), run["sink_deliveries"]
    (approval,) = run["approvals"]
    assert (approval["approver"], approval["decision"]) == ("alice", "approved")

    runs = json.loads(server.call("GET", "/api/v1/runs")[1])["items"]
    (escalated,) = [r["name"] for r in runs if r["name"] != name]
    later = wait_for("the escalated run", finished(server, escalated), server)
    assert later["status"] == "failed" and later["steps"][0]["phase"] == "Succeeded", later
    refusals = {d["sink_name"]: d["outcome"] for d in later["sink_deliveries"]}
    assert refusals == {"receiver-refuses": "failed", "jira-refuses": "failed"}, refusals
    return str(name)


def read_everything(server: Server, answers: dict[str, str]) -> None:
    """Every read answer of the API about what the run left, and /metrics, into `answers`."""

    def read(path: str) -> Any:
        status, text = server.call("GET", path)
        assert status == 200, (path, status, text)
        answers[path] = text
        return json.loads(text)

    for item in read("/api/v1/runs")["items"]:
        read(f"/api/v1/runs/{item['name']}")
    for item in read("/api/v1/alerts")["items"]:
        read(f"/api/v1/alerts/{item['id']}")
    for item in read("/api/v1/incidents")["items"]:
        read(f"/api/v1/incidents/{item['id']}")
    read("/api/v1/approvals")
    read("/api/v1/approvals?decision=approved")
    status, answers["/metrics"] = server.call("GET", "/metrics")
    assert status == 200 and "punchingfist_llm_tokens" in answers["/metrics"]


def received_where_they_belong(fakes: dict[str, Any], given: Secrets) -> None:
    """Each service got its own secret, in its header or field, on every request."""
    slack, pagerduty, jira = fakes["slack"], fakes["pagerduty"], fakes["jira"]
    llm, prometheus, receiver = fakes["llm"], fakes["prometheus"], fakes["receiver"]
    assert len(slack.messages) == 2, "the approval request and the results were posted"
    assert {r.headers["authorization"] for r in slack.requests} == {
        f"Bearer {given.slack_bot_token}"
    }
    assert [e["routing_key"] for e in pagerduty.events] == [given.pagerduty_routing_key]
    assert len(jira.issues) == 1
    assert {r.headers["authorization"] for r in jira.requests} == {jira.auth}
    assert [r.path for r in receiver.requests] == ["/hook", "/refuse"]
    assert {r.headers["authorization"] for r in receiver.requests} == {
        f"Bearer {given.webhook_sink_token}"
    }
    assert {r.headers["authorization"] for r in prometheus.requests} == {
        f"Bearer {given.prometheus_token}"
    }
    assert len(llm.requests) == 3  # one failed, retried
    sent = {{k.lower(): v for k, v in h.items()}.get("authorization") for h in llm.headers}
    assert sent == {f"Bearer {given.llm_api_key}"}


def everything_left(
    server: Server, fakes: dict[str, Any], answers: dict[str, str], tmp_path: Path
) -> dict[str, str]:
    """Where a secret must not be, by name: the server's output, the API's answers, the run
    files, the database's rows, and what the services got besides their own credential."""
    places = {"server output": server.log.read_text()}
    places |= {f"GET {path}": text for path, text in answers.items()}
    for path in sorted((tmp_path / "runs").rglob("*")):
        if path.is_file():
            places[f"run file {path.relative_to(tmp_path)}"] = path.read_text(errors="replace")
    with sqlite3.connect(tmp_path / "db" / "punchingfist.db") as database:
        places["database"] = "\n".join(database.iterdump())
    llm = fakes["llm"]
    places["model prompts"] = json.dumps(llm.requests)
    assert QUERY in places["model prompts"]
    assert "my-app-5d8f7" in places["model prompts"], "the tool's output reached the model"
    for service, what in (
        ("slack", "Slack messages"),
        ("jira", "Jira bodies"),
        ("receiver", "webhook sink bodies"),
        ("prometheus", "Prometheus queries"),
    ):
        places[what] = json.dumps([r.body.decode() for r in fakes[service].requests])
    events = [{k: v for k, v in e.items() if k != "routing_key"} for e in fakes["pagerduty"].events]
    places["PagerDuty events"] = json.dumps(events)
    return places
