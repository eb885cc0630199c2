"""Sinks against real servers: Alertmanager and Pushgateway (Debian), the Punching Fist server's
trigger API and Slack interactivity endpoint. Each result is read back from the server."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from punchingfist.api import OperatorConfig, Sink, Workflow, load_resources
from punchingfist.server import ServerState, create_app
from punchingfist.server.state import SecretStore
from punchingfist.store import WorkflowRun, upgrade
from tests.builders import make_sink, make_workflow
from tests.fakes.saas import FakeSlack
from tests.integration import servers
from tests.integration.conftest import _unavailable
from tests.integration.test_approvals_api import SIGNING_SECRET, ResumingExecutor, slack_request
from tests.sink_support import RUN, agent_result, crashloop_event, run, task_env

OUTPUTS = {
    "investigation_summary": 'OOM-killed: the log says "Java heap space"',
    "root_cause": "512Mi limit too low",
    "auto_fixed": False,
    "escalation_context": "Raise the limit.",
}


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read().decode()
    return json.loads(body) if body.startswith(("{", "[")) else body


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    config = {"route": {"receiver": "nobody"}, "receivers": [{"name": "nobody"}]}
    try:
        with servers.alertmanager(config, tmp_path) as url:
            yield url
    except servers.Unavailable as error:
        _unavailable(str(error))


@pytest.fixture
def firing(alertmanager: str) -> dict[str, Any]:
    """The example alert, firing in the real Alertmanager; returns the run's event."""
    event = crashloop_event()
    started = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    alert = event["alert"]
    alert["startsAt"] = started
    posted = {
        "labels": alert["labels"],
        "annotations": alert["annotations"],
        "startsAt": started,
        "generatorURL": alert["generatorURL"],
    }
    request = urllib.request.Request(
        f"{alertmanager}/api/v2/alerts",
        method="POST",
        data=json.dumps([posted]).encode(),
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=5).close()
    return event


def am_sink(example_sinks: dict[str, Sink], name: str, endpoint: str, **extra: Any) -> Sink:
    config = {**example_sinks[name].spec.config.dump(), "endpoint": endpoint, **extra}
    return make_sink(name, "alertmanager", config)


def alerts_in(alertmanager: str) -> list[dict[str, Any]]:
    query = urllib.parse.quote('alertname="PodCrashLooping"')
    found: list[dict[str, Any]] = get(f"{alertmanager}/api/v2/alerts?filter={query}")
    return found


def test_alertmanager_annotate_silence_and_resolve(
    alertmanager: str,
    firing: dict[str, Any],
    example_workflows: dict[str, Workflow],
    example_sinks: dict[str, Sink],
    tmp_path: Path,
) -> None:
    workflow = example_workflows["agent-alert-investigation"]
    sinks = dict(example_sinks)
    sinks["alertmanager-annotation"] = am_sink(
        example_sinks, "alertmanager-annotation", alertmanager
    )
    env = task_env(
        workflow,
        sinks,
        "sink-alertmanager-annotation",
        event=firing,
        outputs=OUTPUTS,
        results={"agent-investigation": agent_result()},
    )
    code, record = run("sink", env, tmp_path / "annotate")
    assert code == 0, record
    (alert,) = alerts_in(alertmanager)
    annotations = alert["annotations"]
    assert annotations["ai_summary"] == OUTPUTS["investigation_summary"]  # quotes stay data
    assert annotations["ai_root_cause"] == "512Mi limit too low"
    assert annotations["ai_auto_fixed"] == "False"
    assert annotations["summary"] == firing["alert"]["annotations"]["summary"]
    assert alert["startsAt"] == firing["alert"]["startsAt"]

    silence_sink = make_sink(
        "alertmanager-annotation",
        "alertmanager",
        {"endpoint": alertmanager, "action": "silence", "silenceDuration": "2h"},
    )
    env = task_env(
        workflow,
        {**sinks, "alertmanager-annotation": silence_sink},
        "sink-alertmanager-annotation",
        event=firing,
        outputs=OUTPUTS,
        extra={"ARGO_UI_URL": "https://argo.example"},
    )
    code, record = run("sink", env, tmp_path / "silence")
    assert code == 0, record
    silence = get(f"{alertmanager}/api/v2/silence/{record['external_id']}")
    assert silence["status"]["state"] == "active" and silence["createdBy"] == "punchingfist"
    assert {m["name"]: m["value"] for m in silence["matchers"]} == firing["alert"]["labels"]
    assert f"https://argo.example/workflows/monitoring/{RUN}" in silence["comment"]
    ends = datetime.fromisoformat(silence["endsAt"].replace("Z", "+00:00"))
    assert timedelta(hours=1, minutes=59) < ends - datetime.now(UTC) <= timedelta(hours=2)
    (alert,) = alerts_in(alertmanager)
    assert alert["status"]["silencedBy"] == [record["external_id"]]

    sinks["alertmanager-resolve"] = am_sink(example_sinks, "alertmanager-resolve", alertmanager)
    env = task_env(
        investigating_workflow("alertmanager-resolve"),
        sinks,
        "sink-alertmanager-resolve",
        event=firing,
    )
    before = datetime.now(UTC)
    code, record = run("sink", env, tmp_path / "resolve")
    assert code == 0, record
    resolved_at = datetime.fromisoformat(record["result"]["endsAt"].replace("Z", "+00:00"))
    assert before - timedelta(seconds=1) <= resolved_at <= datetime.now(UTC)
    assert alerts_in(alertmanager) == []  # Alertmanager lists only unresolved alerts


def investigating_workflow(*sinks: str) -> Workflow:
    """One agent step named like the examples' (its result arrives as PF_RESULT_...)."""
    step = {"name": "agent-investigation", "type": "agent", "goal": "look", "tools": ["kubectl"]}
    return make_workflow([step], sinks=[{"name": name} for name in sinks])


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[str]:
    try:
        with servers.pushgateway(tmp_path) as url:
            yield url
    except servers.Unavailable as error:
        _unavailable(str(error))


def test_pushgateway_receives_the_investigation_figures(
    pushgateway: str, example_sinks: dict[str, Sink], tmp_path: Path
) -> None:
    config = {**example_sinks["pushgateway-results"].spec.config.dump(), "pushgateway": pushgateway}
    sink = make_sink("pushgateway-results", "prometheus", config)
    env = task_env(
        investigating_workflow("pushgateway-results"),
        {"pushgateway-results": sink},
        "sink-pushgateway-results",
        outputs=OUTPUTS,
        results={"agent-investigation": agent_result()},
    )
    code, record = run("sink", env, tmp_path / "out")
    assert code == 0, record
    exposition = get(f"{pushgateway}/metrics")
    samples = {
        sample.name: sample
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name.startswith("punchingfist_investigation_")
    }
    labels = {
        "job": "punchingfist-results",
        "workflow": "wf",
        "alertname": "PodCrashLooping",
        "instance": "",
    }
    assert samples["punchingfist_investigation_confidence"].value == 0.86
    assert samples["punchingfist_investigation_confidence"].labels == labels
    assert samples["punchingfist_investigation_duration_seconds"].value == 42.5
    assert samples["punchingfist_investigation_tool_calls"].value == 3
    assert samples["punchingfist_investigation_tokens"].value == 5120
    assert samples["punchingfist_investigation_auto_fixed"].value == 0
    assert samples["punchingfist_investigation_succeeded"].value == 1


TRIGGER_SOURCE = """
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: escalate}
spec:
  type: api
  config:
    authentication: {type: apikey, secretRef: trigger-secret}
  triggerWorkflow: escalation-workflow
"""


def test_workflow_sink_starts_the_escalation_through_the_trigger_api(
    example_workflows: dict[str, Workflow], example_sinks: dict[str, Sink], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'pf.db'}"
    upgrade(url)
    state = ServerState.from_resources(
        load_resources(TRIGGER_SOURCE),
        url,
        secrets=SecretStore(values={("trigger-secret", "token"): "tr1gger-token"}),
    )
    sink = make_sink(
        "workflow-escalation",
        "workflow",
        {
            "workflowName": "escalation-workflow",
            "triggerCondition": "severity == 'critical'",
            "source": "escalate",
            "authSecret": {"secretRef": "trigger-secret"},
            "authHeader": "X-API-Key",
        },
    )
    workflow = example_workflows["alert-triage-workflow"]
    try:
        with servers.uvicorn_app(create_app(state)) as base:
            sink = make_sink(sink.name, "workflow", {**sink.spec.config.dump(), "endpoint": base})
            env = task_env(
                workflow,
                {**example_sinks, sink.name: sink},
                "sink-workflow-escalation",
                outputs={"recommendations": "Raise the limit"},
                secrets={"PF_TRIGGER_TOKEN": "tr1gger-token"},
            )
            code, first = run("sink", env, tmp_path / "1")
            assert code == 0, first
            code, again = run("sink", env, tmp_path / "2")  # a retried sink task
            assert code == 0 and again["result"]["created"] is False
            env["PF_TRIGGER_TOKEN"] = "wrong"
            code, refused = run("sink", env, tmp_path / "3")
            assert code == 1 and refused["http_status"] == 401 and refused["attempts"] == 1
            warning = crashloop_event()
            warning["alert"]["severity"] = "warning"
            env = task_env(
                workflow,
                {**example_sinks, sink.name: sink},
                "sink-workflow-escalation",
                event=warning,
                secrets={"PF_TRIGGER_TOKEN": "tr1gger-token"},
            )
            code, skipped = run("sink", env, tmp_path / "4")
            assert code == 0 and skipped["outcome"] == "skipped"
        with state.sessions() as session:
            runs = session.scalars(select(WorkflowRun)).all()
    finally:
        state.engine.dispose()
    (started,) = runs
    assert first["result"]["created"] is True and first["external_id"] == started.name
    assert started.workflow_name == "escalation-workflow" and started.source_name == "escalate"
    event = started.parameters["event"]
    assert event["alert"]["alertname"] == "PodCrashLooping"
    assert event["outputs"]["recommendations"] == "Raise the limit"
    assert event["escalatedFrom"]["run"] == RUN


def test_approval_buttons_are_what_the_server_endpoint_reads(
    example_workflows: dict[str, Workflow],
    example_sinks: dict[str, Sink],
    example_config: OperatorConfig,
    tmp_path: Path,
) -> None:
    token = "xoxb-approvals"
    with FakeSlack(token, {"C1234567890": "approvals"}) as slack:
        assert isinstance(slack, FakeSlack)
        env = task_env(
            example_workflows["agent-alert-investigation"],
            example_sinks,
            "resolution-attempt-approval-request",
            config=example_config.spec,
            results={"agent-investigation": agent_result()},
            secrets={"SLACK_BOT_TOKEN": token},
            extra={"SLACK_API_URL": slack.url + "/api/"},
        )
        code, record = run("approval-request", env, tmp_path)
        assert code == 0, record
        (message,) = slack.messages
    (actions,) = [b for b in message["blocks"] if b["type"] == "actions"]
    approve = actions["elements"][0]
    url = f"sqlite:///{tmp_path / 'pf.db'}"
    upgrade(url)
    executor = ResumingExecutor()
    state = ServerState.from_resources(
        [], url, executor=executor, slack_signing_secret=SIGNING_SECRET
    )
    with state.sessions.begin() as session:
        session.add(WorkflowRun(name=RUN, workflow_name="agent-alert-investigation"))
    payload = {
        "type": "block_actions",
        "user": {"id": "U777", "username": "carol"},
        "actions": [{"action_id": approve["action_id"], "value": approve["value"]}],
    }
    body, headers = slack_request(payload)
    with TestClient(create_app(state), headers=state.access.headers()) as http:
        response = http.post("/slack/interactions", content=body, headers=headers)
    state.engine.dispose()
    assert response.status_code == 200 and response.json()["text"].startswith("Approved by carol")
    assert executor.resumed == [  # under the user id; the changeable name only beside it
        (RUN, "resolution-attempt-approval", True, "slack:U777", "via Slack by carol")
    ]
