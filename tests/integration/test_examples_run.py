"""The example Sources work as shipped (#24): the server is started on every example resource
(as `punchingfist serve -f examples/...` does) with the local engine, each Source is called the
way its users call it, and the run it starts is executed to the end.

Other examples are run elsewhere: every Workflow with `punchingfist run`
(test_embedded_runs.py) and on a cluster (tests/cluster/test_examples_live.py); the escalation
chain (Sink `workflow-escalation` → Source `escalation-trigger` → `escalation-workflow`) and the
Slack, Alertmanager, Jira and PagerDuty Sinks by the demo's test (test_embedded_runs.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from punchingfist.api import OperatorConfig, Resource, Source, load_resources
from punchingfist.controller.sources import KubernetesWatch, cron_workflow
from punchingfist.runs.queueing import queue_run
from punchingfist.server import ServerState, create_app
from punchingfist.server.state import SecretStore
from punchingfist.store import upgrade
from tests.conftest import EXAMPLES
from tests.fakes.saas import FakeSlack
from tests.integration.test_chat import SECRET as SIGNING_SECRET
from tests.integration.test_chat import mention, signed
from tests.integration.test_embedded_runs import replaying_executor, run_example, wait_for

API_KEY = "an-api-key-for-the-example"
FINISHED = ("succeeded", "failed", "error")


def example_resources() -> list[Resource[Any]]:
    resources: list[Resource[Any]] = []
    for folder in ("sources", "workflows", "sinks"):
        for file in sorted((EXAMPLES / folder).glob("*.yaml")):
            resources += load_resources(file.read_text(), origin=str(file))
    config = EXAMPLES / "operatorconfigs" / "punchingfist-config.yaml"
    resources += [r for r in load_resources(config.read_text()) if isinstance(r, OperatorConfig)]
    return resources


@pytest.fixture
def examples_server(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, ServerState]]:
    """The server on every example, with the Secrets the example Sources name, and a (fake)
    Slack workspace whose #ops channel the chat Source listens in."""
    upgrade(database_url)
    resources = example_resources()
    secrets = SecretStore(values={("api-trigger-secret", "token"): API_KEY})
    with FakeSlack("xoxb-example", {"C0OPS1234": "ops"}) as slack:
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-example")
        monkeypatch.setenv("SLACK_API_URL", slack.url + "/api/")
        monkeypatch.delenv("SLACK_APP_TOKEN", raising=False)
        state = ServerState.from_resources(
            resources,
            database_url,
            dispatch_interval=0.1,
            secrets=secrets,
            slack_signing_secret=SIGNING_SECRET,
        )
        state.executor = replaying_executor(state, resources, tmp_path)
        # An api Source's trigger API is called with the Source's key, not the server's token.
        with TestClient(create_app(state)) as client:
            client.headers.update(state.access.headers())
            yield client, state
        state.engine.dispose()


def finished(client: TestClient, name: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        run: dict[str, Any] = client.get(f"/api/v1/runs/{name}").json()
        return run if run.get("status") in FINISHED else None

    found: dict[str, Any] = wait_for(f"run {name} to finish", done, timeout=240)
    return found


@pytest.mark.timeout(300)
def test_the_api_source_starts_its_workflow_for_a_caller_with_its_key(
    examples_server: tuple[TestClient, ServerState],
) -> None:
    client, _ = examples_server
    url = "/api/v1/trigger/api-trigger"
    event = json.loads((EXAMPLES / "alerts" / "pod-crashlooping.json").read_text())
    event = {"alert": event["alerts"][0], "requestedBy": "an SRE's script"}
    bare = {"Content-Type": "application/json"}
    assert client.post(url, json=event, headers=bare | {"Authorization": ""}).status_code == 401
    wrong = client.post(url, json=event, headers={"X-API-Key": "wrong", "Authorization": ""})
    assert wrong.status_code == 401
    answer = client.post(url, json=event, headers={"X-API-Key": API_KEY, "Authorization": ""})
    assert answer.status_code == 202, answer.text
    name = answer.json()["run"]
    assert name.startswith("investigate-alert-")
    run = finished(client, name)
    assert run["status"] == "succeeded", run
    assert run["workflow_name"] == "investigate-alert" and run["source_name"] == "api-trigger"
    steps = {step["name"]: step["phase"] for step in run["steps"]}
    assert steps["investigate-alert"] == "Succeeded"
    report = run["outputs"]["report"]
    (agent,) = [s for s in report["steps"] if s["kind"] == "agent"]
    assert agent["result"]["summary"], "the agent answered (replayed model)"


@pytest.mark.timeout(300)
def test_the_schedule_source_runs_its_workflow_through_its_gate(
    examples_server: tuple[TestClient, ServerState],
) -> None:
    """`nightly-maintenance` becomes an Argo CronWorkflow (02:00 UTC) of `tiered-investigation`;
    here its firing is the run that CronWorkflow starts, with the parameters it carries, queued
    the way every trigger is and run on the local engine; the remediation waits at its approval
    gate until it is approved through the API."""
    client, state = examples_server
    (source,) = [s for s in state.sources if s.name == "nightly-maintenance"]
    assert isinstance(source, Source)
    cron = cron_workflow(source, "punchingfist")["spec"]
    assert cron["schedules"] == ["0 2 * * *"] and cron["timezone"] == "UTC"
    assert cron["workflowSpec"]["workflowTemplateRef"] == {"name": "tiered-investigation"}
    arguments = {p["name"]: p["value"] for p in cron["workflowSpec"]["arguments"]["parameters"]}
    assert arguments["source"] == "nightly-maintenance"
    event = json.loads(arguments["event"])
    assert event["schedule"]["cron"] == "0 2 * * *"
    name, created = queue_run(state.sessions, source, event, "02:00", namespace="punchingfist")
    assert created
    state.wake.set()
    assert tiered_run_approved(client, name)["source_name"] == "nightly-maintenance"


def tiered_run_approved(client: TestClient, name: str) -> dict[str, Any]:
    """Run `name` of tiered-investigation, its remediation gate approved over the API, to the
    end: both steps Succeeded."""
    assert name.startswith("tiered-investigation-")
    (gate,) = wait_for("the gate", lambda: client.get("/api/v1/approvals").json()["items"])
    assert gate["run"] == name and gate["gate"] == "remediation-approval"
    url = f"/api/v1/runs/{name}/approvals/{gate['gate']}"
    answer = client.post(url, json={"decision": "approve", "approver": "carol"})
    assert answer.status_code == 200, answer.text
    run = finished(client, name)
    assert run["status"] == "succeeded", run
    steps = {step["name"]: step["phase"] for step in run["steps"]}
    assert steps["safe-investigation"] == "Succeeded" and steps["remediation"] == "Succeeded"
    return run


@pytest.mark.timeout(300)
def test_the_kubernetes_source_runs_its_workflow_for_a_created_pod(
    examples_server: tuple[TestClient, ServerState],
) -> None:
    """`critical-pod-created`: the watch's ADDED event of a pod (the API server applies the
    Source's labelSelector `app=critical-service` to the watch) queues `tiered-investigation`
    about that pod, which runs through its gate; a modified pod is no `created` change."""
    client, state = examples_server
    (source,) = [s for s in state.sources if s.name == "critical-pod-created"]
    watch = KubernetesWatch(source, "punchingfist", None, state.sessions, state.metrics)
    assert (watch.group, watch.plural) == ("", "pods")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "critical-service-7d9f",
            "namespace": "production",
            "uid": "0b7c7a4e-1",
            "resourceVersion": "42",
            "labels": {"app": "critical-service"},
        },
        "status": {"phase": "Pending"},
    }
    assert watch.handle("MODIFIED", pod) is None
    name = watch.handle("ADDED", pod)
    assert name is not None
    state.wake.set()
    run = tiered_run_approved(client, name)
    assert run["source_name"] == "critical-pod-created"
    about = run["parameters"]["event"]["kubernetes"]
    assert (about["event"], about["name"]) == ("created", "critical-service-7d9f")


@pytest.mark.timeout(300)
def test_the_chat_source_starts_its_workflow_from_a_mention_in_its_channel(
    examples_server: tuple[TestClient, ServerState],
) -> None:
    """`chat-ops-debug`: a signed Slack mention in #ops starts `investigate-alert`, which runs
    to the end; a mention in another channel starts nothing."""
    client, _ = examples_server
    body, headers = signed(mention("<@U0BOT> why is my-app crashing?", channel="C0DEV5678"))
    assert client.post("/slack/events", content=body, headers=headers).json()["runs"] == []
    body, headers = signed(mention("<@U0BOT> why is my-app crashing?", event_id="Ev02"))
    answer = client.post("/slack/events", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    (name,) = answer.json()["runs"]
    run = finished(client, name)
    assert run["status"] == "succeeded", run
    assert (run["workflow_name"], run["source_name"]) == ("investigate-alert", "chat-ops-debug")
    assert run["parameters"]["event"]["chat"]["text"] == "why is my-app crashing?"


CURL_SCENARIO = """
alert:
  labels: {alertname: PodCrashLooping}
turns:
  - thought: Check the service's health endpoint, and a page outside the cluster.
    action:
      kind: tool_calls
      calls:
        - {tool: curl, url: "http://my-app.production.svc.cluster.local:8080/healthz"}
        - {tool: curl, url: "https://example.com/"}
  - thought: Enough.
    action:
      kind: final_answer
      summary: my-app's health endpoint did not answer.
      problem_summary: my-app is down
      root_cause: unknown
      can_auto_fix: false
      confidence: 0.3
      escalation_notes: check my-app
"""


@pytest.mark.timeout(300)
def test_curl_reaches_the_hosts_the_example_allows_and_no_others(tmp_path: Path) -> None:
    """agent-alert-investigation gives curl the cluster's Services: a call to one goes out (here
    it cannot resolve), a call elsewhere is refused by the policy before any connection."""
    scenario = tmp_path / "curl-scenario"
    scenario.mkdir()
    (scenario / "scenario.yaml").write_text(CURL_SCENARIO)
    done = run_example(
        tmp_path,
        "agent-alert-investigation",
        "examples/alerts/pod-crashlooping.json",
        "--replay",
        str(scenario),
        "--deny",
    )
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout)
    (agent,) = [s for s in report["steps"] if s["step"] == "agent-investigation"]
    assert agent["phase"] == "Succeeded", agent
    calls = {call["call"]["url"]: call for call in agent["tool_calls"]}
    inside = calls["http://my-app.production.svc.cluster.local:8080/healthz"]
    outside = calls["https://example.com/"]
    assert outside["status"] == "refused"
    assert "not in the allowed domains" in outside["error"]
    assert inside["status"] == "error", inside  # allowed: it went out, and found no such host
    assert "allowed domains" not in inside["error"]
