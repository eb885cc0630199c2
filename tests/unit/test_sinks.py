"""Sinks and approval requests through `pf-runtime`, against fake Slack, PagerDuty and Jira
servers that speak the real protocols (slack-sdk and httpx run for real)."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from punchingfist.api import OperatorConfig, Sink, Workflow
from punchingfist.api.runspec import SinkTask, TaskSpec
from tests.builders import make_sink
from tests.fakes.saas import FakeJira, FakePagerDuty, FakeService, FakeSlack, Request
from tests.sink_support import RUN, agent_result, crashloop_event, run, sink_env, task_env

TOKEN = "xoxb-test-token-never-printed"
ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"
FINGERPRINT = "37ccf244a17807e8"
GROUP_KEY = crashloop_event()["groupKey"]
"""The incident of the example alert: its Alertmanager group."""
INVESTIGATION = {
    "investigation_summary": "my-app is OOM-killed since the rollout.",
    "root_cause": "The 512Mi limit is too low.",
    "auto_fixed": False,
    "escalation_context": "Raise the limit.",
}


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(TOKEN, {"C0OPSALERTS": "ops-alerts", "C1234567890": "approvals"}) as fake:
        yield fake  # type: ignore[misc]


def investigation_env(
    workflow: Workflow, sinks: dict[str, Sink], sink: str, config: OperatorConfig, **kw: Any
) -> dict[str, str]:
    kw.setdefault("results", {"agent-investigation": agent_result()})
    kw.setdefault("outputs", INVESTIGATION)
    return task_env(workflow, sinks, f"sink-{sink}", config=config.spec, **kw)


def approval_env(
    workflows: dict[str, Workflow], sinks: dict[str, Sink], config: OperatorConfig, **kw: Any
) -> dict[str, str]:
    """The environment of the approval request of agent-alert-investigation's fix."""
    workflow = workflows["agent-alert-investigation"]
    task = "resolution-attempt-approval-request"
    return task_env(workflow, sinks, task, config=config.spec, **kw)


# -- Slack -----------------------------------------------------------------------------------


def test_slack_thread_keeps_one_thread_per_incident(
    example_workflows: dict[str, Workflow],
    example_sinks: dict[str, Sink],
    example_config: OperatorConfig,
    slack: FakeSlack,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = investigation_env(
        example_workflows["agent-alert-investigation"],
        example_sinks,
        "slack-investigation-results",
        example_config,
        secrets={"SLACK_BOT_TOKEN": TOKEN},
        extra={"SLACK_API_URL": slack.url + "/api/", "ARGO_UI_URL": "https://argo.example"},
    )
    code, first = run("sink", env, tmp_path / "1")
    assert code == 0, first
    assert first["outcome"] == "delivered" and first["http_status"] == 200
    parent = slack.messages[0]
    assert first["external_id"] == parent["ts"] and parent["channel"] == "C0OPSALERTS"
    assert parent["thread_ts"] is None
    assert parent["metadata"] == {
        "event_type": "punchingfist_incident",
        "event_payload": {"incident": GROUP_KEY, "run": RUN},
    }
    text = json.dumps(parent["blocks"])
    assert parent["blocks"][0]["type"] == "header" and "PodCrashLooping" in text
    assert "*Root cause:* The 512Mi limit is too low." in text  # the template, **bold** -> *bold*
    assert "*Severity*\\ncritical" in text and "*Confidence*\\n86%" in text
    assert f"https://argo.example/workflows/monitoring/{RUN}|View run in Argo" in text
    assert "prometheus-k8s-0:9090/graph" in text  # the alert's generatorURL

    code, second = run("sink", env, tmp_path / "2")
    assert code == 0 and len(slack.messages) == 2
    assert slack.messages[1]["thread_ts"] == parent["ts"]
    assert second["result"]["thread_ts"] == parent["ts"]
    history = [r for r in slack.requests if r.path.endswith("conversations.history")]
    assert history and all(r.arguments()["include_all_metadata"] == "true" for r in history)
    assert TOKEN not in capsys.readouterr().out + (tmp_path / "2" / "result.json").read_text()


def test_slack_mentions_and_the_operator_default_channel(
    example_config: OperatorConfig, slack: FakeSlack, tmp_path: Path
) -> None:
    sink = make_sink("page", "slack", {"mentionUsers": ["@oncall", "U0123ABCD", "@here"]})
    env = sink_env(
        sink,
        config=example_config.spec,
        secrets={"SLACK_BOT_TOKEN": TOKEN},
        extra={"SLACK_API_URL": slack.url + "/api/"},
    )
    code, record = run("sink", env, tmp_path)
    assert code == 0, record
    (message,) = slack.messages
    assert message["channel"] == "C1234567890"  # OperatorConfig spec.chat.slack.channelId
    assert "cc @oncall <@U0123ABCD> <!here>" in json.dumps(message["blocks"])
    assert slack.requests[-1].json()["link_names"] is True


def test_slack_honours_retry_after(
    example_config: OperatorConfig, slack: FakeSlack, tmp_path: Path
) -> None:
    env = _plain_slack_env(example_config, slack)
    slack.fail_next(429, {"Retry-After": "1"})
    started = time.monotonic()
    code, record = run("sink", env, tmp_path)
    assert code == 0 and record["attempts"] == 2
    assert time.monotonic() - started >= 1.0
    assert [r.path for r in slack.requests] == ["/api/chat.postMessage"] * 2


def test_slack_permanent_error_is_reported_once(
    example_config: OperatorConfig, slack: FakeSlack, tmp_path: Path
) -> None:
    env = _plain_slack_env(example_config, slack, channel="#nowhere")
    code, record = run("sink", env, tmp_path)
    assert code == 1
    assert record["outcome"] == "failed" and "channel_not_found" in record["error"]
    assert len(slack.requests) == 1


HOSTILE_NAME = "<!channel> <https://evil.example|Approve the fix here> & @here"
HOSTILE_URL = "http://prometheus:9090/graph?g0.expr=up|<https://evil.example|Approve>"


def hostile_event() -> dict[str, Any]:
    """The crash-loop event with Slack markup in its alertname and generatorURL."""
    event = crashloop_event()
    alert = event["alert"]
    alert["alertname"] = alert["labels"]["alertname"] = HOSTILE_NAME
    alert["generatorURL"] = HOSTILE_URL
    return event


def hostile_answer() -> dict[str, Any]:
    """An agent answer that repeats what the alert told the model."""
    return agent_result(
        summary=f"{HOSTILE_NAME}: my-app is OOM-killed",
        root_cause="<@U0ADMIN> said so",
        recommendations=["<https://evil.example/fix|Run the fix>"],
        fix_command="kubectl apply -f <https://evil.example/x.yaml|fix.yaml>",
    )


def link_targets(blocks: list[dict[str, Any]]) -> list[str]:
    """Where the links of posted mrkdwn point (`<target|label>` and `<target>`)."""
    texts = re.findall(r'"text": "((?:[^"\\]|\\.)*)"', json.dumps(blocks))
    return [m for text in texts for m in re.findall(r"<([^|>]*)(?:\|[^>]*)?>", text)]


def hostile(slack: FakeSlack, step: str) -> dict[str, Any]:
    """Arguments of the `*_env` helpers: the hostile event, step `step`'s hostile answer, and
    the fake Slack."""
    return {
        "event": hostile_event(),
        "results": {step: hostile_answer()},
        "secrets": {"SLACK_BOT_TOKEN": TOKEN},
        "extra": {"SLACK_API_URL": slack.url + "/api/"},
    }


def posted_as_text(kind: str, env: dict[str, str], tmp_path: Path, slack: FakeSlack) -> str:
    """Run the task; its one message shows the hostile text as text. The blocks, as JSON."""
    code, record = run(kind, env, tmp_path)
    assert code == 0, record
    (message,) = slack.messages
    blocks = json.dumps(message["blocks"]) + json.dumps(message["text"])
    assert "<!channel>" not in blocks and "<!here>" not in blocks and "<@U0ADMIN>" not in blocks
    assert "&lt;!channel&gt; &lt;https://evil.example|Approve the fix here&gt; &amp;" in blocks
    assert "@here" not in blocks  # `link_names` would turn it into a mention
    for target in link_targets(message["blocks"]):
        host = urlsplit(target.replace("&amp;", "&")).hostname
        assert host and "evil.example" not in host, target
    return json.dumps(message["blocks"])


def test_slack_shows_alert_and_model_text_as_text_and_links_only_safe_urls(
    example_config: OperatorConfig, slack: FakeSlack, tmp_path: Path
) -> None:
    sink = make_sink("chat", "slack", {"channel": "#ops-alerts"})
    env = sink_env(sink, config=example_config.spec, **hostile(slack, "look"))
    blocks = posted_as_text("sink", env, tmp_path, slack)
    assert "&lt;@\\u2060U0ADMIN&gt; said so" in blocks  # with a word joiner after the @
    assert "&lt;https://evil.example/fix|Run the fix&gt;" in blocks
    # the generatorURL is still linked, with its `|`, `<`, `>` percent-encoded
    (alert_link,) = [t for t in link_targets(slack.messages[0]["blocks"]) if "prometheus" in t]
    assert alert_link.startswith("http://prometheus:9090/graph?g0.expr=up%7C%3Chttps")
    assert slack.requests[-1].json()["link_names"] is False  # no handle to link


def test_slack_templates_keep_their_markup_and_escape_their_values(
    example_workflows: dict[str, Workflow],
    example_sinks: dict[str, Sink],
    example_config: OperatorConfig,
    slack: FakeSlack,
    tmp_path: Path,
) -> None:
    env = investigation_env(
        example_workflows["agent-alert-investigation"],
        example_sinks,
        "slack-investigation-results",
        example_config,
        outputs=INVESTIGATION | {"root_cause": "<!everyone> look"},
        **hostile(slack, "agent-investigation"),
    )
    blocks = posted_as_text("sink", env, tmp_path, slack)
    assert "*Root cause:* &lt;!everyone&gt; look" in blocks  # the template's own *bold* stays


def test_approval_request_shows_alert_and_model_text_as_text(
    example_workflows: dict[str, Workflow],
    example_sinks: dict[str, Sink],
    example_config: OperatorConfig,
    slack: FakeSlack,
    tmp_path: Path,
) -> None:
    env = approval_env(
        example_workflows, example_sinks, example_config, **hostile(slack, "agent-investigation")
    )
    blocks = posted_as_text("approval-request", env, tmp_path, slack)
    assert "kubectl apply -f &lt;https://evil.example/x.yaml|fix.yaml&gt;" in blocks


def _plain_slack_env(
    config: OperatorConfig, slack: FakeSlack, channel: str = "#ops-alerts"
) -> dict[str, str]:
    sink = make_sink("chat", "slack", {"channel": channel})
    return sink_env(
        sink,
        config=config.spec,
        secrets={"SLACK_BOT_TOKEN": TOKEN},
        extra={"SLACK_API_URL": slack.url + "/api/"},
    )


# -- approval requests -----------------------------------------------------------------------


def test_approval_request_buttons_name_the_run_and_the_suspend_node(
    example_workflows: dict[str, Workflow],
    example_sinks: dict[str, Sink],
    example_config: OperatorConfig,
    slack: FakeSlack,
    tmp_path: Path,
) -> None:
    env = approval_env(
        example_workflows,
        example_sinks,
        example_config,
        results={"agent-investigation": agent_result(fix_command="kubectl set resources ...")},
        secrets={"SLACK_BOT_TOKEN": TOKEN},
        extra={"SLACK_API_URL": slack.url + "/api/"},
    )
    code, record = run("approval-request", env, tmp_path)
    assert code == 0, record
    (message,) = slack.messages
    assert message["channel"] == "C1234567890"
    (actions,) = [b for b in message["blocks"] if b["type"] == "actions"]
    values = [json.loads(button["value"]) for button in actions["elements"]]
    assert values == [
        {"run": RUN, "gate": "resolution-attempt-approval", "decision": "approve"},
        {"run": RUN, "gate": "resolution-attempt-approval", "decision": "deny"},
    ]
    text = json.dumps(message["blocks"])
    assert "Proposed fix: kubectl set resources ..." in text  # the action, rendered
    assert "means *denied*" in text


def test_approval_request_without_a_channel_fails_clearly(
    example_workflows: dict[str, Workflow],
    example_sinks: dict[str, Sink],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = task_env(
        example_workflows["agent-alert-investigation"],
        example_sinks,
        "resolution-attempt-approval-request",
    )
    code, record = run("approval-request", env, tmp_path)
    assert code == 2 and "channelId" in capsys.readouterr().err
    assert record["outcome"] == "failed"


# -- PagerDuty -------------------------------------------------------------------------------


@pytest.fixture
def pagerduty() -> Iterator[FakePagerDuty]:
    with FakePagerDuty(ROUTING_KEY) as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
def pagerduty_env(
    example_workflows: dict[str, Workflow],
    example_sinks: dict[str, Sink],
    example_config: OperatorConfig,
    pagerduty: FakePagerDuty,
) -> Callable[..., dict[str, str]]:
    """The example's pagerduty-escalation sink, its endpoint moved to the fake server."""

    def make(**kw: Any) -> dict[str, str]:
        name = "pagerduty-escalation"
        moved = make_sink(
            name, "pagerduty", {"routingKey": "service-key", "endpoint": pagerduty.url}
        )
        workflow = example_workflows["agent-alert-investigation"]
        secrets = {"PAGERDUTY_ROUTING_KEY": ROUTING_KEY}
        return investigation_env(
            workflow, {**example_sinks, name: moved}, name, example_config, secrets=secrets, **kw
        )

    return make


def test_pagerduty_trigger_carries_the_investigation(
    pagerduty_env: Callable[..., dict[str, str]], pagerduty: FakePagerDuty, tmp_path: Path
) -> None:
    env = pagerduty_env(extra={"ARGO_UI_URL": "https://argo.x"})
    pagerduty.fail_next(500)
    code, record = run("sink", env, tmp_path)
    assert code == 0, record
    assert record["http_status"] == 202 and record["attempts"] == 2
    assert record["external_id"] == GROUP_KEY
    (event,) = pagerduty.events
    assert event["event_action"] == "trigger" and event["dedup_key"] == GROUP_KEY
    payload = event["payload"]
    assert payload["severity"] == "critical" and payload["source"] == "my-app"
    assert payload["summary"].startswith("PodCrashLooping: my-app is OOM-killed")
    assert payload["custom_details"]["root_cause"].startswith("The new version needs more heap")
    assert payload["custom_details"]["confidence"] == 0.86
    assert event["links"][0] == {
        "href": f"https://argo.x/workflows/monitoring/{RUN}",
        "text": "Investigation run (Argo)",
    }
    assert ROUTING_KEY not in (tmp_path / "result.json").read_text()


def test_pagerduty_pages_once_per_alertmanager_group(
    pagerduty_env: Callable[..., dict[str, str]], pagerduty: FakePagerDuty, tmp_path: Path
) -> None:
    """Runs about two alerts of one group (a `perAlert` Source, or a re-fire) act on one page;
    an event without a group keys on the alert's fingerprint; an overlong group key is hashed
    to what PagerDuty accepts."""
    first, sibling = crashloop_event(), crashloop_event()
    sibling["alert"] = sibling["alert"] | {"fingerprint": "0f0f0f0f0f0f0f0f"}
    sibling["alert"]["labels"] = sibling["alert"]["labels"] | {"pod": "my-app-2"}
    lone = crashloop_event() | {"groupKey": ""}
    huge = crashloop_event() | {"groupKey": "{}:{" + 'pod="x",' * 60 + "}"}
    for index, event in enumerate((first, sibling, lone, huge)):
        code, record = run("sink", pagerduty_env(event=event), tmp_path / str(index))
        assert code == 0, record
    keys = [event["dedup_key"] for event in pagerduty.events]
    hashed = "pf-incident-" + hashlib.sha256(huge["groupKey"].encode()).hexdigest()[:20]
    assert keys == [GROUP_KEY, GROUP_KEY, FINGERPRINT, hashed]


def test_pagerduty_skipped_when_the_workflow_condition_does_not_hold(
    pagerduty_env: Callable[..., dict[str, str]], pagerduty: FakePagerDuty, tmp_path: Path
) -> None:
    env = pagerduty_env(outputs=INVESTIGATION | {"auto_fixed": True})
    code, record = run("sink", env, tmp_path)
    assert code == 0 and record["outcome"] == "skipped" and record["phase"] == "Skipped"
    assert pagerduty.requests == []


def test_pagerduty_resolve_and_a_refused_key(pagerduty: FakePagerDuty, tmp_path: Path) -> None:
    sink = make_sink(
        "pd",
        "pagerduty",
        {"routingKeySecret": {"secretRef": "pd"}, "action": "resolve", "endpoint": pagerduty.url},
    )
    env = sink_env(sink, secrets={"PAGERDUTY_ROUTING_KEY": ROUTING_KEY})
    code, _ = run("sink", env, tmp_path / "ok")
    assert code == 0
    assert pagerduty.events == [
        {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": GROUP_KEY}
    ]
    env["PAGERDUTY_ROUTING_KEY"] = "wrong-key-0123456789"
    code, record = run("sink", env, tmp_path / "bad")
    assert code == 1 and record["http_status"] == 400 and record["attempts"] == 1
    assert "Invalid routing key" in record["error"] and "wrong-key" not in record["error"]
    assert len(pagerduty.requests) == 2  # no retry storm on a permanent 4xx


# -- Jira ------------------------------------------------------------------------------------


@pytest.mark.parametrize("cloud", [True, False], ids=["cloud", "data-center"])
def test_jira_creates_once_then_comments(
    example_workflows: dict[str, Workflow],
    example_sinks: dict[str, Sink],
    example_config: OperatorConfig,
    tmp_path: Path,
    cloud: bool,
) -> None:
    with FakeJira("bot@example.com", "api-token", cloud=cloud) as jira:
        assert isinstance(jira, FakeJira)
        sink = make_sink(
            "jira-ops",
            "jira",
            {
                "project": "OPS",
                "issueType": "Incident",
                "endpoint": jira.url,
                "labels": ["sre"],
                "credentialsSecret": {"secretRef": "jira"},
            },
        )
        workflow = example_workflows["escalation-workflow"]
        env = task_env(
            workflow,
            {**example_sinks, "jira-ops": sink},
            "sink-jira-ops",
            config=example_config.spec,
            outputs={"handover": "Raise the limit."},
            results={"prepare-escalation": agent_result()},
            secrets={"JIRA_CREDENTIALS": "bot@example.com:api-token"},
        )
        code, first = run("sink", env, tmp_path / "1")
        assert code == 0, first
        assert first["external_id"] == "OPS-1" and first["link"] == f"{jira.url}/browse/OPS-1"
        (issue,) = jira.issues
        label = "pf-incident-" + hashlib.sha256(GROUP_KEY.encode()).hexdigest()[:20]
        assert issue["labels"] == ["punchingfist", label, "sre"]
        fields = issue["fields"]
        assert fields["issuetype"] == {"name": "Incident"}
        assert fields["summary"].startswith("[critical] PodCrashLooping: my-app is OOM-killed")
        assert "*Root cause:* The new version needs more heap" in fields["description"]

        code, second = run("sink", env, tmp_path / "2")
        assert code == 0 and second["external_id"] == "OPS-1"
        assert second["result"]["created"] is False
        assert len(jira.issues) == 1 and len(jira.comments["OPS-1"]) == 1

        env["JIRA_CREDENTIALS"] = "bot@example.com:wrong"
        before = len(jira.requests)
        code, third = run("sink", env, tmp_path / "3")
        assert code == 1 and third["http_status"] == 401
        assert len(jira.requests) == before + 1


# -- webhook and the retry budget ------------------------------------------------------------


class Recorder(FakeService):
    def handle(self, request: Request) -> tuple[int, Any]:
        return 200, {"received": True}


def _webhook_env(url: str, **config: Any) -> dict[str, str]:
    sink = make_sink("hook", "webhook", {"url": url, "authSecret": {"secretRef": "hook"}, **config})
    event = crashloop_event()
    event["alert"]["labels"]["pod"] = "{{ 7*7 }} $(touch /tmp/x)"
    return sink_env(
        sink,
        event=event,
        secrets={"WEBHOOK_TOKEN": "hook-token-1234"},
        extra={"PF_SINK_BUDGET_SECONDS": "3"},
    )


def test_webhook_posts_the_rendered_json_with_the_token(tmp_path: Path) -> None:
    template = '{"pod": {{ .source.data.alert.labels.pod | toJSON }}, "run": "{{ .workflow.run }}"}'
    with Recorder() as hook:
        env = _webhook_env(hook.url + "/in", template=template, headers={"X-Team": "sre"})
        code, record = run("sink", env, tmp_path)
        assert code == 0, record
        (request,) = hook.requests
    assert request.headers["authorization"] == "Bearer hook-token-1234"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-team"] == "sre"
    assert request.json() == {"pod": "{{ 7*7 }} $(touch /tmp/x)", "run": RUN}


def test_temporary_failures_are_retried_inside_the_budget(tmp_path: Path) -> None:
    with Recorder() as hook:
        hook.fail_next(503)
        hook.fail_next(429, {"Retry-After": "30"})  # longer than the 3 s budget
        env = _webhook_env(hook.url)
        started = time.monotonic()
        code, record = run("sink", env, tmp_path)
        assert time.monotonic() - started < 3
        assert code == 1 and record["http_status"] == 429 and len(hook.requests) == 2
        assert "would exceed the time budget" in record["error"]


def test_a_silent_host_times_out_within_the_budget(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        env = _webhook_env(f"http://127.0.0.1:{silent.getsockname()[1]}/")
        started = time.monotonic()
        code, record = run("sink", env, tmp_path)
        elapsed = time.monotonic() - started
    assert code == 1 and record["outcome"] == "failed"
    assert 2.5 <= elapsed < 4.5
    assert "no answer" in record["error"] or "time budget" in record["error"]


def test_a_bad_template_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = TaskSpec(
        kind="sink",
        workflow="wf",
        sink=SinkTask(
            name="hook",
            type="webhook",
            config={"url": "http://127.0.0.1:9/", "template": "{{ .source.data.nope.deeper }}"},
        ),
    )
    code, record = run("sink", {"PF_SPEC": spec.encode(), "PF_EVENT": "{}"}, tmp_path)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "Sink/hook: spec.config.template" in err and "undefined" in err
    assert record["outcome"] == "failed"


def test_a_url_that_is_not_http_fails_at_once(tmp_path: Path) -> None:
    code, record = run("sink", _webhook_env("ftp://127.0.0.1/x"), tmp_path)
    assert code == 1 and record["attempts"] == 1 and "not an http(s) URL" in record["error"]
