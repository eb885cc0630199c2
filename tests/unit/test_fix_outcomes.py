"""What a remediation step's fix did, as the reports say it (#25): Slack's `Fix` line (posted on
the incident's thread), Jira's description, PagerDuty's and the webhook's structured details,
and the terminal report — for a fix that worked, one that made things worse and was rolled
back, a dry run's preview, and one that was not approved."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from punchingfist.api.actions import Action, Preview, as_command, change, describe
from punchingfist.api.runspec import StepResult, result_env
from punchingfist.cli.approve import _shown
from punchingfist.engine import NodeStatus, RunResult
from punchingfist.engine.results import RunInfo
from punchingfist.runs.report import STEP_LABEL, TASK_LABEL, investigation, render
from punchingfist.runtime.remediation import apply
from punchingfist.runtime.sinks.findings import Findings, gather
from punchingfist.runtime.sinks.fixes import FixOutcome, fix_outcome
from punchingfist.runtime.sinks.jira import _description
from punchingfist.runtime.sinks.previews import rollback_text
from punchingfist.runtime.sinks.slack import result_blocks
from tests.builders import make_sink, make_workflow
from tests.fakes.saas import FakeService, FakeSlack, Request
from tests.sink_support import agent_result, crashloop_event, run, task_env
from tests.unit.test_remediation import (
    INVESTIGATE,
    NO_KUBECTL,
    SET_MEMORY,
    offered_preview,
    remediation,
    task_spec,
)

ACTION = TypeAdapter(Action).validate_python(SET_MEMORY)
SAID = "set container web of deployment shop/web to limits memory=1Gi"
PREVIEW = Preview(
    action=ACTION.model_dump(mode="json", exclude_none=True),
    description=describe(ACTION),
    command=as_command(ACTION),
    target=str(ACTION.target),
    resource_version="4711",
    diff="-  memory: 512Mi\n+  memory: 1Gi",
    dry_run="accepted",
    offered=True,
).model_dump(mode="json")
SAVED = {"object": {"kind": "Deployment", "spec": {"replicas": 2}}, "ready_replicas": 2}


def fix_result(outcome: str, success: bool, **record: Any) -> dict[str, Any]:
    """A fix task's result as `runtime.remediation.steps.apply` writes it after applying."""
    value = {
        "preview": PREVIEW,
        "applied": True,
        "saved": SAVED,
        "generation": 3,
        "check": ["rollout: complete", "ready: 2/2 for 30 s"],
        "verdict": outcome.split(",")[0],
        **record,
        "outcome": outcome,
    }
    return StepResult(
        step="fix",
        kind="remediation",
        success=success,
        phase="Succeeded" if success else "Failed",
        result=value,
        error=None if success else outcome,
    ).model_dump(mode="json")


FIXED = fix_result("fixed", True)
ROLLED_BACK = fix_result(
    "made worse, rolled back",
    False,
    rolled_back=True,
    rollback_verified=True,
    rollback_check=["rollout: complete"],
)
ROLLBACK_FAILED = fix_result(
    "made worse, rollback failed", False, rolled_back=False, rollback_error="409: generation moved"
)


def dry_run_result() -> dict[str, Any]:
    """What the fix task writes in a dry-run Workflow (`spec.dryRun`), by the real task."""
    spec, environ = task_spec(SET_MEMORY, dry_run=True)
    previewed = offered_preview()
    previewed["result"]["preview"] = PREVIEW
    environ[result_env("fix-preview")] = json.dumps(previewed)
    return apply(spec, environ, NO_KUBECTL)


def unapproved_result() -> dict[str, Any]:
    """What the fix task writes when its gate was not approved, by the real task."""
    spec, environ = task_spec(SET_MEMORY)
    previewed = offered_preview()
    previewed["result"]["preview"] = PREVIEW
    environ[result_env("fix-preview")] = json.dumps(previewed)
    return apply(spec.model_copy(update={"gated": True}), environ, NO_KUBECTL)


def findings(**steps: dict[str, Any]) -> Findings:
    results = {"investigate": agent_result(), **steps}
    context = {"source": {"data": crashloop_event()}, "workflow": {"name": "wf"}, "steps": results}
    return gather(context, {})


def fix_section(found: Findings) -> str | None:
    texts = [b["text"]["text"] for b in result_blocks(found, None, "") if "text" in b]
    sections = [t for t in texts if t.startswith("*Fix")]
    assert len(sections) <= 1, sections
    return sections[0] if sections else None


@pytest.mark.parametrize(
    ("result", "section"),
    [
        (FIXED, f"*Fix*\n🔧 {SAID} — fixed"),
        (
            fix_result("fixed", True, approver="alice"),
            f"*Fix*\n🔧 {SAID} — fixed (approved by alice)",
        ),
        (ROLLED_BACK, f"*Fix*\n🔧 {SAID} — made worse, rolled back (verified)"),
        (
            ROLLBACK_FAILED,
            f"*Fix*\n🔧 {SAID} — made worse, rollback failed: 409: generation moved",
        ),
        (
            dry_run_result(),
            f"*Fix (dry run: only previewed)*\n🔧 {SAID} — previewed (dry run); nothing applied",
        ),
        (
            unapproved_result(),
            f"*Fix*\n🔧 {SAID} — not applied: the fix was not approved: nothing applied",
        ),
    ],
    ids=[
        "fixed",
        "fixed-approved-by",
        "made-worse-rolled-back",
        "rollback-failed",
        "dry-run",
        "not-approved",
    ],
)
def test_slack_says_what_the_fix_did(result: dict[str, Any], section: str) -> None:
    found = findings(fix=result)
    assert fix_section(found) == section
    (detail,) = found.details()["remediations"]  # PagerDuty's custom_details, the webhook's
    assert detail["step"] == "fix" and detail["action"] == SAID
    assert detail["target"] == {"kind": "Deployment", "namespace": "shop", "name": "web"}
    assert detail["outcome"] == result["result"]["outcome"]
    assert f"*Fix (fix):* {SAID} — " in _description(found)  # Jira's default description


def test_the_structured_outcome_says_rolled_back_verified_and_dry_run() -> None:
    (worse,) = findings(fix=ROLLED_BACK).details()["remediations"]
    assert (worse["applied"], worse["rolled_back"], worse["rollback_verified"]) == (
        True,
        True,
        True,
    )
    assert worse["dry_run"] is False and worse["detail"] is None
    (dry,) = findings(fix=dry_run_result()).details()["remediations"]
    assert dry["dry_run"] is True and dry["applied"] is False and dry["rolled_back"] is None
    (fixed,) = findings(fix=FIXED).details()["remediations"]
    assert fixed["outcome"] == "fixed" and fixed["rolled_back"] is None


def test_no_remediation_step_no_fix_line() -> None:
    found = findings()
    assert found.fixes == [] and fix_section(found) is None
    assert found.details()["remediations"] == [] and "*Fix" not in _description(found)
    assert fix_outcome(agent_result()) is None
    waiting = StepResult(step="fix", kind="remediation", success=False, phase="Failed")
    assert fix_outcome(waiting.model_dump(mode="json")) is None  # no outcome reported


def test_several_fixes_name_their_steps_and_the_text_is_escaped() -> None:
    hostile = {**PREVIEW, "description": "patch <!channel> & @here <https://evil.example|ok>"}
    second = fix_result("not fixed, left as it is", False, preview=hostile)
    second["step"] = "fix-again"
    section = fix_section(findings(fix=FIXED, again=second))
    assert section is not None
    first, other = section.splitlines()[1:]
    assert first == f"🔧 `fix` {SAID} — fixed"
    assert other.startswith("🔧 `fix-again` patch &lt;!channel&gt; &amp; @\u2060here &lt;https")
    assert "<" not in other and other.endswith("— not fixed, left as it is")


def test_a_stored_outcome_reads_back_the_same() -> None:
    fix = fix_outcome(ROLLED_BACK, approver="alice")
    assert fix is not None
    stored = {"run": "run-1", **fix.as_dict(), "at": "2026-12-03T07:00:00+00:00"}
    assert FixOutcome.from_dict(json.loads(json.dumps(stored))) == fix
    assert fix.text() == f"{SAID} — made worse, rolled back (verified) (approved by alice)"
    assert FixOutcome.from_dict({"run": "run-1"}) is None


def node(task: str, type_: str, minute: int, **outputs: str) -> NodeStatus:
    at = datetime(2026, 12, 3, 7, minute, tzinfo=UTC)
    return NodeStatus(
        id=f"r.{task}",
        display_name=task,
        template=task,
        type=type_,
        phase="Failed" if type_ == "Pod" else "Succeeded",
        started_at=at,
        finished_at=at,
        outputs=outputs,
        labels={TASK_LABEL: task, STEP_LABEL: "fix"},
    )


def test_the_terminal_report_shows_the_final_outcome_with_its_approver() -> None:
    waiting = fix_result("made worse, rollback awaits approval", False, rollback_pending=True)
    nodes = [
        node("fix-approval", "Suspend", 1, approved="true", approver="alice"),
        node("fix", "Pod", 2, result=json.dumps(waiting)),
        node("fix-rollback-approval", "Suspend", 3, approved="true", approver="bob"),
        node("fix-rollback", "Pod", 4, result=json.dumps(ROLLED_BACK)),
    ]
    now = datetime.now(UTC)
    info = RunInfo("r", "u", "wf", "default", Path("/tmp/r"), now, {}, {})
    report = investigation(RunResult(info, "Failed", "", now, {n.id: n for n in nodes}, {}))
    (fix,) = report["remediations"]
    assert fix["outcome"] == "made worse, rolled back" and fix["approver"] == "alice"
    lines = render(report).splitlines()
    at = lines.index("❌ step fix (remediation): Failed")
    assert lines[at + 1] == (
        f"     🔧 fix: {SAID} — made worse, rolled back (verified) (approved by alice)"
    )
    assert "error: made worse" not in render(report)  # the fix line says it


# -- through the real sink tasks ------------------------------------------------------------


class Hook(FakeService):
    def handle(self, request: Request) -> tuple[int, Any]:
        return 200, {"received": True}


TOKEN = "xoxb-test-token-never-printed"


def sink_task_env(sink: str, **kw: Any) -> dict[str, str]:
    """The exit handler's sink task of a Workflow whose `fix` step made things worse and rolled
    them back (its result as the compiled template passes it)."""
    sinks = {
        "slack": make_sink(
            "slack",
            "slack",
            {
                "channel": "C0OPSALERTS",
                "messageType": "thread",
                "botTokenSecret": {"secretRef": "slack"},
            },
        ),
        "hook": make_sink("hook", "webhook", {"url": kw.pop("url", "http://unused")}),
    }
    steps = [INVESTIGATE, remediation(fixFrom="investigate")]
    workflow = make_workflow(steps, sinks=[{"name": "slack"}, {"name": "hook"}])
    results = {"investigate": agent_result(), "fix": ROLLED_BACK}
    return task_env(workflow, sinks, f"sink-{sink}", results=results, **kw)


def test_the_slack_thread_and_the_webhook_get_the_fix(tmp_path: Path) -> None:
    with FakeSlack(TOKEN, {"C0OPSALERTS": "ops-alerts"}) as slack:
        env = sink_task_env(
            "slack",
            secrets={"SLACK_BOT_TOKEN": TOKEN},
            extra={"SLACK_API_URL": slack.url + "/api/"},
        )
        for attempt in ("first", "second"):  # a second run of the incident: in its thread
            code, record = run("sink", env, tmp_path / attempt)
            assert code == 0, record
        first, second = slack.messages
    assert second["thread_ts"] == first["ts"]
    for message in (first, second):
        texts = [b["text"]["text"] for b in message["blocks"] if "text" in b]
        assert f"*Fix*\n🔧 {SAID} — made worse, rolled back (verified)" in texts
    with Hook() as hook:
        env = sink_task_env("hook", url=hook.url + "/in")
        code, record = run("sink", env, tmp_path / "hook")
        assert code == 0, record
        (request,) = hook.requests
    (sent,) = request.json()["investigation"]["remediations"]
    assert sent["outcome"] == "made worse, rolled back" and sent["rollback_verified"] is True
    assert sent["target"] == {"kind": "Deployment", "namespace": "shop", "name": "web"}


def test_the_fix_task_records_who_approved_it() -> None:
    """The gate's approver (PF_APPROVER) is in the fix task's record, so every sink names them;
    here the approved fix cannot even read its target (no kubectl), and still says who."""
    spec, environ = task_spec(SET_MEMORY)
    previewed = offered_preview()
    previewed["result"] |= {"preview": PREVIEW, "change": change(ACTION).model_dump(mode="json")}
    environ[result_env("fix-preview")] = json.dumps(previewed)
    environ |= {"PF_APPROVED": "true", "PF_APPROVER": "slack:U0ALICE"}
    result = apply(spec.model_copy(update={"gated": True}), environ, NO_KUBECTL)
    assert result["result"]["approver"] == "slack:U0ALICE"
    fix = fix_outcome(result)
    assert fix is not None and fix.approver == "slack:U0ALICE" and not fix.applied


def test_the_rollback_gate_shows_the_failed_fix_and_what_it_puts_back(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`punchingfist approve --step fix-rollback` (onFailure ask) shows what the failed fix
    did, what its post-check saw and what the rollback puts back, from the fix task's result;
    a fix that does not wait for a rollback shows nothing to roll back."""
    waiting = fix_result(
        "made worse, rollback awaits approval",
        False,
        verdict="made worse",
        rollback_pending=True,
        approver="alice",
        saved={**SAVED, "revision": "7"},
    )
    text = rollback_text(waiting)
    assert text is not None
    assert f"Failed fix:       {SAID}" in text and "Approved by:      alice" in text
    assert "Post-check:       made worse\n  rollout: complete" in text
    assert "(revision 7, 2 ready replicas)" in text
    assert rollback_text(FIXED) is None and rollback_text(None) is None

    args = argparse.Namespace(run="r-1", show=True, deny=False)
    assert _shown(args, "fix-rollback-approval", None, waiting) is True
    printed = capsys.readouterr().out
    assert printed.startswith("r-1 / fix-rollback-approval: the rollback to approve\n")
    assert _shown(args, "fix-rollback-approval", None, FIXED) is True
    assert "no preview" in capsys.readouterr().out
