"""The similar past incident a report names ("Seen before: …", #22): which one, escaped and
bounded in Slack, in PagerDuty's details and in the local run's report."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from punchingfist.engine import NodeStatus, RunResult
from punchingfist.engine.results import RunInfo
from punchingfist.runs.report import STEP_LABEL, TASK_LABEL, investigation, render
from punchingfist.runtime.agent.decisions import FinalAnswer
from punchingfist.runtime.sinks.findings import SEEN_BEFORE_TEXT, gather, past_incident
from punchingfist.runtime.sinks.slack import result_blocks
from tests.sink_support import agent_result, crashloop_event

HOSTILE = "<!channel> <https://evil.example|Approve> & @here"


def incident(id_: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": id_,
        "title": f"PodCrashLooping in {id_}",
        "alertname": "PodCrashLooping",
        "when": "2026-11-20",
        "score": 0.8,
        "confirmed": True,
        "outcome": "fixed",
        "summary": "OOMKilled",
        "root_cause": "limit too low",
        "fix": "kubectl set resources deploy/web --limits=memory=1Gi",
        "reasons": ["same alertname"],
    } | fields


def findings(similar: list[Any], **answer: Any) -> Any:
    event = crashloop_event() | {"similar_incidents": similar}
    steps = {"investigate": agent_result(**answer)}
    return gather({"source": {"data": event}, "workflow": {"name": "wf"}, "steps": steps}, {})


def seen(blocks: list[dict[str, Any]]) -> str | None:
    texts = [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]
    found = [t for t in texts if t.startswith("*Seen before*")]
    assert len(found) <= 1, found
    return found[0] if found else None


def test_the_report_names_the_incident_the_answer_relied_on_else_the_best() -> None:
    similar = [incident("a"), incident("b", confirmed=False, fix=None)]
    relied = findings(similar, relied_on="b")
    assert relied.seen_before is not None and relied.seen_before["id"] == "b"
    assert seen(result_blocks(relied, None, "")) == (
        "*Seen before*: PodCrashLooping in b, 2026-11-20, root cause: limit too low "
        "(not confirmed; the answer relies on it)"
    )
    best = findings(similar, relied_on="nonexistent")
    assert seen(result_blocks(best, None, "")) == (
        "*Seen before*: PodCrashLooping in a, 2026-11-20, fixed by kubectl set resources "
        "deploy/web --limits=memory=1Gi (confirmed)"
    )
    assert best.details()["seen_before"]["id"] == "a"  # PagerDuty's custom_details
    none = findings([])
    assert none.seen_before is None and seen(result_blocks(none, None, "")) is None
    assert none.details()["seen_before"] is None
    assert past_incident("not a list", None) is None
    assert past_incident([None, incident("c")], "c") == incident("c") | {"relied_on": True}


def test_the_section_is_escaped_and_bounded() -> None:
    hostile = incident("x", title=HOSTILE * 100, fix=HOSTILE, when="<@U0ADMIN>")
    text = seen(result_blocks(findings([hostile]), "**body** from a template", ""))
    assert text is not None
    body = text.removeprefix("*Seen before*: ")
    assert "<" not in body and ">" not in body and "@here" not in body
    assert body.startswith("&lt;!channel&gt; &lt;https://evil.example|Approve&gt; &amp; @\u2060")
    assert "&lt;@\u2060U0ADMIN&gt;" in body and body.count("…") == 1
    assert len(text) < 3 * SEEN_BEFORE_TEXT * 2  # far inside Block Kit's 3000


def local_run(similar: list[Any], relied_on: str | None) -> RunResult:
    """A finished local run whose agent step answered (relying on `relied_on`)."""
    now = datetime.now(UTC)
    event = crashloop_event() | {"similar_incidents": similar}
    result = agent_result(relied_on=relied_on)
    step = NodeStatus(
        id="r.investigate",
        display_name="investigate",
        template="investigate",
        type="Pod",
        phase="Succeeded",
        started_at=now,
        outputs={"result": json.dumps(result)},
        labels={TASK_LABEL: "investigate", STEP_LABEL: "investigate"},
    )
    info = RunInfo("r", "u", "wf", "default", Path("/tmp/r"), now, {"event": json.dumps(event)}, {})
    return RunResult(info, "Succeeded", "", now, {step.id: step}, {})


def test_the_answer_may_name_it_and_the_run_report_shows_it() -> None:
    answer = agent_result()["result"] | {"kind": "final_answer", "relied_on": "a"}
    assert FinalAnswer.model_validate(answer).relied_on == "a"
    assert FinalAnswer.model_validate(answer | {"relied_on": None}).relied_on is None
    text = render(investigation(local_run([incident("a"), incident("b")], relied_on="b")))
    assert (
        "📚 seen before: PodCrashLooping in b, 2026-11-20, fixed by kubectl set resources "
        "deploy/web --limits=memory=1Gi (confirmed; the answer relies on it)"
    ) in text.splitlines()
    assert "seen before" not in render(investigation(local_run([], relied_on=None)))
