"""A replayed answer (recorded turns, no model ran) is marked in everything a sink sends, against
fake Slack, PagerDuty and Jira servers and a recording webhook (the real clients run)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from punchingfist.api import OperatorConfig, Sink, Workflow
from punchingfist.runtime.sinks.findings import REPLAY_MARK, gather
from punchingfist.runtime.sinks.prometheus import registry_of
from tests.builders import make_sink
from tests.fakes.saas import FakeJira, FakePagerDuty, FakeService, FakeSlack, Request
from tests.sink_support import agent_result, run, sink_env, task_env

TOKEN = "xoxb-test-token-never-printed"
ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"


def replayed(step: str = "look", **answer: Any) -> dict[str, dict[str, Any]]:
    """The results of a run whose agent step `step` was answered by the replay model."""
    result = agent_result(**answer) | {
        "step": step,
        "provider": "replay",
        "model": "replayed model (oom-crash-loop)",
        "replayed": True,
    }
    return {step: result}


class Recorder(FakeService):
    def handle(self, request: Request) -> tuple[int, Any]:
        return 200, {"received": True}


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(TOKEN, {"C0OPSALERTS": "ops-alerts", "C1234567890": "approvals"}) as fake:
        yield fake  # type: ignore[misc]


def test_slack_says_first_that_no_model_ran(
    example_config: OperatorConfig, slack: FakeSlack, tmp_path: Path
) -> None:
    sink = make_sink("chat", "slack", {"channel": "#ops-alerts"})
    env = sink_env(
        sink,
        config=example_config.spec,
        results=replayed(),
        secrets={"SLACK_BOT_TOKEN": TOKEN},
        extra={"SLACK_API_URL": slack.url + "/api/"},
    )
    code, record = run("sink", env, tmp_path)
    assert code == 0, record
    (message,) = slack.messages
    header, mark, fields = message["blocks"][:3]
    assert header["type"] == "header" and REPLAY_MARK in mark["text"]["text"]
    assert "*Confidence*\n86% (replayed)" in [field["text"] for field in fields["fields"]]
    assert message["text"].startswith(f"[{REPLAY_MARK}] ")


@pytest.fixture
def investigation_task(
    example_workflows: dict[str, Workflow],
    example_sinks: dict[str, Sink],
    example_config: OperatorConfig,
    slack: FakeSlack,
) -> Callable[..., dict[str, str]]:
    """The environment of a task of agent-alert-investigation, posting to the fake Slack."""

    def make(task: str, **kw: Any) -> dict[str, str]:
        return task_env(
            example_workflows["agent-alert-investigation"],
            example_sinks,
            task,
            config=example_config.spec,
            secrets={"SLACK_BOT_TOKEN": TOKEN},
            extra={"SLACK_API_URL": slack.url + "/api/"},
            **kw,
        )

    return make


def test_a_templated_slack_message_is_marked_too(
    investigation_task: Callable[..., dict[str, str]], slack: FakeSlack, tmp_path: Path
) -> None:
    env = investigation_task(
        "sink-slack-investigation-results",
        results=replayed("agent-investigation"),
        outputs={
            "investigation_summary": "s",
            "root_cause": "r",
            "auto_fixed": False,
            "escalation_context": "e",
        },
    )
    code, record = run("sink", env, tmp_path)
    assert code == 0, record
    assert REPLAY_MARK in slack.messages[0]["blocks"][1]["text"]["text"]


def test_an_approval_asked_for_a_replayed_fix_says_so(
    investigation_task: Callable[..., dict[str, str]], slack: FakeSlack, tmp_path: Path
) -> None:
    env = investigation_task(
        "resolution-attempt-approval-request",
        results=replayed("agent-investigation", fix_command="kubectl rollout undo ..."),
    )
    code, record = run("approval-request", env, tmp_path)
    assert code == 0, record
    assert REPLAY_MARK in slack.messages[0]["blocks"][1]["text"]["text"]


def test_pagerduty_summary_and_details_are_marked(tmp_path: Path) -> None:
    with FakePagerDuty(ROUTING_KEY) as pagerduty:
        assert isinstance(pagerduty, FakePagerDuty)
        sink = make_sink("pd", "pagerduty", {"routingKey": "k", "endpoint": pagerduty.url})
        env = sink_env(sink, results=replayed(), secrets={"PAGERDUTY_ROUTING_KEY": ROUTING_KEY})
        code, record = run("sink", env, tmp_path)
        assert code == 0, record
        (event,) = pagerduty.events
    assert event["payload"]["summary"].startswith(f"[{REPLAY_MARK}] PodCrashLooping")
    assert event["payload"]["custom_details"]["replayed"] is True


def test_jira_summary_and_description_are_marked(tmp_path: Path) -> None:
    with FakeJira("bot@example.com", "api-token") as jira:
        assert isinstance(jira, FakeJira)
        config = {"project": "OPS", "endpoint": jira.url, "credentialsSecret": {"secretRef": "j"}}
        sink = make_sink("jira", "jira", config)
        env = sink_env(
            sink, results=replayed(), secrets={"JIRA_CREDENTIALS": "bot@example.com:api-token"}
        )
        code, record = run("sink", env, tmp_path)
        assert code == 0, record
        (issue,) = jira.issues
    assert issue["fields"]["summary"].startswith(f"[{REPLAY_MARK}] [critical] PodCrashLooping")
    assert issue["fields"]["description"].startswith(f"*{REPLAY_MARK}*")


def test_webhook_bodies_say_replayed(tmp_path: Path) -> None:
    with Recorder() as hook:
        sink = make_sink("hook", "webhook", {"url": hook.url + "/in"})
        code, record = run("sink", sink_env(sink, results=replayed()), tmp_path)
        assert code == 0, record
        (request,) = hook.requests
    body = request.json()
    assert body["replayed"] is True and body["investigation"]["replayed"] is True
    assert request.headers["x-punchingfist-replayed"] == "true"


def test_a_live_answer_is_not_marked(tmp_path: Path) -> None:
    with Recorder() as hook:
        sink = make_sink("hook", "webhook", {"url": hook.url + "/in"})
        env = sink_env(sink, results={"look": agent_result(step="look")})
        code, _ = run("sink", env, tmp_path)
        assert code == 0
        (request,) = hook.requests
    assert request.json()["replayed"] is False
    assert "x-punchingfist-replayed" not in request.headers


def test_the_pushgateway_gets_no_confidence_from_a_replay() -> None:
    context = json.loads(json.dumps({"steps": replayed(), "workflow": {"name": "wf"}}))
    figures = {m.name: m.samples[0].value for m in registry_of(gather(context, {})).collect()}
    assert figures["punchingfist_investigation_replayed"] == 1.0
    assert "punchingfist_investigation_confidence" not in figures
