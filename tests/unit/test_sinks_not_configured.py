"""A sink with nothing to deliver to here is skipped as not configured, never a failure; it
shows what it would have sent (#24). A configured sink that fails still fails."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.builders import make_sink
from tests.sink_support import agent_result, run, sink_env

RESULTS = {"look": agent_result()}
JIRA = {"project": "OPS", "endpoint": "https://jira.test", "credentialsSecret": {"secretRef": "j"}}


def test_slack_without_a_token_is_skipped_and_shows_the_message_it_would_post(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sink = make_sink("chat", "slack", {"channel": "#ops"})
    code, record = run("sink", sink_env(sink, results=RESULTS), tmp_path)
    out = capsys.readouterr().out
    assert code == 0, out
    assert record["outcome"] == "skipped" and record["phase"] == "Skipped"
    assert record["success"] is True and record["error"] is None
    assert record["detail"].startswith("not configured: SLACK_BOT_TOKEN is not set")
    assert "botTokenSecret" in record["detail"]
    assert "⏭️ sink chat (slack): skipped: not configured: SLACK_BOT_TOKEN" in out
    shown = [line.removeprefix("│ ") for line in out.splitlines() if line.startswith("│")]
    assert shown[0] == "would post to #ops:"
    assert any("PodCrashLooping" in line for line in shown), shown
    assert any(line.startswith("[") and "right" in line for line in shown), "the buttons"
    sent = json.loads((tmp_path / "would-send.json").read_text())
    assert record["result"]["would_send"] == str(tmp_path / "would-send.json")
    assert sent["channel"] == "#ops" and sent["blocks"][0]["type"] == "header"
    assert "PodCrashLooping" in sent["blocks"][0]["text"]["text"]


@pytest.mark.parametrize(
    ("type_", "config", "variable"),
    [
        ("pagerduty", {"routingKeySecret": {"secretRef": "pd"}}, "PAGERDUTY_ROUTING_KEY"),
        ("jira", JIRA, "JIRA_CREDENTIALS"),
    ],
)
def test_a_sink_whose_credential_did_not_arrive_is_skipped(
    type_: str, config: dict[str, object], variable: str, tmp_path: Path
) -> None:
    code, record = run("sink", sink_env(make_sink("s", type_, config)), tmp_path)
    assert code == 0 and record["outcome"] == "skipped", record
    assert record["detail"].startswith(f"not configured: {variable} is not set")


def _resolves(host: str) -> bool:
    try:
        socket.getaddrinfo(host, None)
    except OSError:
        return False
    return True


def test_alertmanager_left_at_its_default_and_unresolvable_is_skipped(tmp_path: Path) -> None:
    sink = make_sink("am", "alertmanager", {"action": "annotate"})
    if _resolves("alertmanager"):
        pytest.skip("this machine resolves the host name `alertmanager`")
    code, record = run("sink", sink_env(sink), tmp_path)
    assert code == 0 and record["outcome"] == "skipped", record
    assert "not configured: no Alertmanager" in record["detail"]
    assert "ALERTMANAGER_URL" in record["detail"]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.parametrize("where", ["endpoint", "environment"])
def test_a_configured_alertmanager_that_cannot_be_reached_fails(where: str, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    config = {"action": "annotate"} | ({"endpoint": url} if where == "endpoint" else {})
    extra = {"PF_SINK_BUDGET_SECONDS": "0.5"} | (
        {"ALERTMANAGER_URL": url} if where == "environment" else {}
    )
    env = sink_env(make_sink("am", "alertmanager", config), extra=extra)
    code, record = run("sink", env, tmp_path)
    assert code == 1 and record["outcome"] == "failed" and record["phase"] == "Failed"
    assert "Alertmanager: cannot connect" in record["error"]
