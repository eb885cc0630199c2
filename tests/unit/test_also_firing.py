"""The other alerts of a run's group in its Slack report ("Also firing (N): …") and in the
thread replies about alerts that join the run later: named, counted, bounded, escaped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from punchingfist.api import OperatorConfig
from punchingfist.runtime.sinks.findings import gather
from punchingfist.runtime.sinks.slack import (
    ALSO_FIRING_NAMED,
    TIMES,
    also_firing_list,
    result_blocks,
)
from punchingfist.server.also_firing import Thread, reply_text, thread_of
from tests.builders import make_sink
from tests.fakes.saas import FakeSlack
from tests.sink_support import crashloop_event, run, sink_env

TOKEN = "xoxb-test-token-never-printed"
HOSTILE = "<!channel> <https://evil.example|Approve> & @here"


def identity(name: str, fingerprint: str, status: str = "firing") -> dict[str, Any]:
    """An alert as the run's `event.alerts` lists it (identity only, no labels)."""
    return {
        "fingerprint": fingerprint,
        "alertname": name,
        "severity": "warning",
        "status": status,
        "startsAt": "2026-12-01T12:00:00+00:00",
    }


def also_firing_text(blocks: list[dict[str, Any]]) -> str | None:
    texts = [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]
    found = [t for t in texts if t.startswith("*Also firing")]
    assert len(found) <= 1, found
    return found[0] if found else None


def findings() -> Any:
    return gather({"source": {"data": crashloop_event()}, "workflow": {"name": "wf"}}, {})


def test_the_report_lists_the_groups_other_firing_alerts() -> None:
    others = [
        identity("HighMemory", "f1"),
        identity("HighMemory", "f2"),
        identity("DiskFull", "f3"),
        identity("Gone", "f4", status="resolved"),
    ]
    text = also_firing_text(result_blocks(findings(), None, "", others))
    assert text == f"*Also firing (3)*: HighMemory {TIMES}2, DiskFull"
    assert also_firing_text(result_blocks(findings(), None, "", [others[3]])) is None
    assert also_firing_text(result_blocks(findings(), None, "")) is None


def test_the_list_is_bounded_and_counts_the_rest() -> None:
    alerts = [
        {"alertname": "PodCrashLooping", "labels": {"pod": f"web-{i}"}, "status": "firing"}
        for i in range(25)
    ]
    text = also_firing_list(alerts)
    assert text.count("PodCrashLooping (web-") == ALSO_FIRING_NAMED
    assert text.endswith(f", and {25 - ALSO_FIRING_NAMED} more")
    long = [{"alertname": "A" * 5000, "status": "firing"}] * 3 + [
        {"alertname": f"B{i}" * 400} for i in range(40)
    ]
    (section,) = [b for b in result_blocks(findings(), None, "", long) if "Also" in json.dumps(b)]
    assert len(section["text"]["text"]) < 2000  # far inside Block Kit's 3000
    assert f"{TIMES}3" in section["text"]["text"] and "and 31 more" in section["text"]["text"]


def test_alert_text_is_escaped() -> None:
    alerts = [{"alertname": HOSTILE, "labels": {"pod": "<@U0ADMIN>"}, "status": "firing"}]
    text = also_firing_list(alerts)
    assert "<" not in text and ">" not in text and "@here" not in text
    assert text.startswith("&lt;!channel&gt; &lt;https://evil.example|Approve&gt; &amp; @\u2060")
    assert "(&lt;@\u2060U0ADMIN&gt;)" in text
    reply = reply_text("<!here>-run", alerts)
    assert reply.startswith("also firing: &lt;!channel&gt;")
    assert reply.endswith("(covered by run `&lt;!here&gt;-run`)")


def test_the_slack_sink_lists_the_events_other_alerts_but_not_its_own(
    example_config: OperatorConfig, tmp_path: Path
) -> None:
    event = crashloop_event()
    own = event["alert"]["fingerprint"]
    event["alerts"] = [
        identity("PodCrashLooping", own),
        identity(HOSTILE, "other-1"),
        identity("PodCrashLooping", "other-2"),
    ]
    with FakeSlack(TOKEN, {"C0OPSALERTS": "ops-alerts"}) as slack:
        assert isinstance(slack, FakeSlack)
        sink = make_sink("chat", "slack", {"channel": "#ops-alerts"})
        env = sink_env(
            sink,
            config=example_config.spec,
            event=event,
            secrets={"SLACK_BOT_TOKEN": TOKEN},
            extra={"SLACK_API_URL": slack.url + "/api/"},
        )
        code, record = run("sink", env, tmp_path)
        assert code == 0, record
        (message,) = slack.messages
    text = also_firing_text(message["blocks"])
    assert (
        text == "*Also firing (2)*: &lt;!channel&gt; &lt;https://evil.example|Approve&gt; "
        "&amp; @\u2060here, PodCrashLooping"
    )


def test_a_reply_goes_to_the_reports_thread() -> None:
    report = {"result": {"channel": "C0OPS", "ts": "2.0", "thread_ts": None}}
    assert thread_of(report) == Thread("C0OPS", "2.0")
    in_thread = {"result": {"channel": "C0OPS", "ts": "2.0", "thread_ts": "1.0"}}
    assert thread_of(in_thread) == Thread("C0OPS", "1.0")  # the thread's root, not the reply
    posted = {"type": "slack", "outcome": "delivered", "channel": "C0OPS", "external_id": "3.0"}
    assert thread_of(posted) == Thread("C0OPS", "3.0")  # POST /api/v1/runs/{run}/sinks/{sink}
    assert thread_of({"result": {"ts": "2.0"}, "external_id": "2.0"}) is None  # no channel
    assert thread_of(None) is None
