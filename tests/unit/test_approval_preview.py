"""The approval request of a fix shows its preview (#25): the action, the target, the dry run's
diff (cut to Slack's limits, escaped), RBAC and the resourceVersion; a fix that is not offered
says why and has no Approve button. Through `pf-runtime approval-request` against fake Slack."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from punchingfist.api import OperatorConfig, Sink, Workflow
from punchingfist.api.actions import Preview, Rbac
from punchingfist.runtime.sinks.previews import cut_diff, parse_preview, preview_text
from tests.fakes.saas import FakeSlack
from tests.sink_support import agent_result, run, task_env

TOKEN = "xoxb-test-token-never-printed"
Ask = Callable[[Preview | None], dict[str, Any]]
PREVIEW_ENV = "PF_RESULT_RESOLUTION_ATTEMPT_PREVIEW"
"""api.runspec.result_env("resolution-attempt-preview"): the gated step's preview task."""
DIFF = """\
--- deployment production/my-app (resourceVersion 4711)
+++ deployment production/my-app (after the fix)
@@ -20,3 +20,3 @@
       resources:
         limits:
-          memory: 512Mi
+          memory: 1Gi"""


def preview(**given: Any) -> Preview:
    values: dict[str, Any] = {
        "action": {
            "action": "set-resources",
            "target": {"kind": "Deployment", "namespace": "production", "name": "my-app"},
            "container": "my-app",
            "limits": {"memory": "1Gi"},
        },
        "description": "set container my-app of deployment production/my-app to limits memory=1Gi",
        "command": "kubectl set resources deployment/my-app -n production -c my-app "
        "--limits=memory=1Gi",
        "target": "deployment production/my-app",
        "resource_version": "4711",
        "diff": DIFF,
        "dry_run": "accepted",
        "rbac": Rbac(allowed=True, account="system:serviceaccount:pf:remediator"),
        "offered": True,
    }
    return Preview(**(values | given))


def preview_result(shown: Preview) -> str:
    """The preview task's result, as PF_RESULT_<STEP>_PREVIEW carries it."""
    value = {"preview": shown.model_dump(mode="json"), "offered": shown.offered}
    result = {"step": "resolution-attempt-preview", "kind": "remediation-preview"}
    return json.dumps(result | {"success": True, "result": value})


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(TOKEN, {"C1234567890": "approvals"}) as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
def ask(
    example_workflows: dict[str, Workflow],
    example_sinks: dict[str, Sink],
    example_config: OperatorConfig,
    slack: FakeSlack,
    tmp_path: Path,
) -> Ask:
    """Post the approval request of agent-alert-investigation's gated step with a preview (or
    none); the one message Slack received."""

    def asking(shown: Preview | None) -> dict[str, Any]:
        extra = {"SLACK_API_URL": slack.url + "/api/"}
        if shown is not None:
            extra[PREVIEW_ENV] = preview_result(shown)
        env = task_env(
            example_workflows["agent-alert-investigation"],
            example_sinks,
            "resolution-attempt-approval-request",
            config=example_config.spec,
            results={"agent-investigation": agent_result()},
            secrets={"SLACK_BOT_TOKEN": TOKEN},
            extra=extra,
        )
        code, record = run("approval-request", env, tmp_path)
        assert code == 0, record
        (message,) = slack.messages
        return message

    return asking


def buttons(message: dict[str, Any]) -> list[str]:
    (actions,) = [b for b in message["blocks"] if b["type"] == "actions"]
    return [json.loads(b["value"])["decision"] for b in actions["elements"]]


def diff_of(message: dict[str, Any]) -> str:
    (diff,) = [t for b in message["blocks"] if "*Diff*" in (t := b.get("text", {}).get("text", ""))]
    return str(diff)


def test_the_request_shows_the_preview_and_offers_approval(ask: Ask) -> None:
    message = ask(preview())
    text = json.dumps(message["blocks"], ensure_ascii=False)
    assert "*Fix* set container my-app of deployment production/my-app to limits memory=1Gi" in text
    assert "*Target* `deployment production/my-app` | *resourceVersion* `4711`" in text
    assert "*Dry run* accepted | *RBAC* allowed for system:serviceaccount:pf:remediator" in text
    diff = diff_of(message)
    assert diff.startswith("*Diff*\n```--- deployment")
    assert diff.endswith("+          memory: 1Gi```")
    assert "-          memory: 512Mi" in diff and "diff cut" not in diff
    assert buttons(message) == ["approve", "deny"]


def test_without_a_preview_the_request_is_as_before(ask: Ask) -> None:
    message = ask(None)
    assert "*Diff*" not in json.dumps(message["blocks"]) and "*Fix*" not in json.dumps(message)
    assert buttons(message) == ["approve", "deny"]


def test_a_long_hostile_diff_is_cut_to_slacks_limit_and_shown_as_text(ask: Ask) -> None:
    hostile = "\n".join(
        [DIFF, "+  note: <!channel> <https://evil.example|Approve> @here ``` *bold*"]
        + [f"+  line-{i}: {'x' * 60}" for i in range(200)]
    )
    shown = preview(diff=hostile, description="scale <!here> to 2")
    message = ask(shown)
    # the fake refuses blocks over Block Kit's limits: it was posted, so every section fits
    text = json.dumps(message["blocks"], ensure_ascii=False)
    assert "<!channel>" not in text and "<!here>" not in text and "<https://evil" not in text
    assert "&lt;!channel&gt; &lt;https://evil.example|Approve&gt; @\u2060here" in text
    assert "*Fix* scale &lt;!here&gt; to 2" in text
    diff = diff_of(message)
    assert diff.count("```") == 2, "the diff's own ``` cannot end the code block"
    assert 2500 < len(diff) <= 3000
    assert "more lines not shown```" in diff and "line-199" not in diff


def test_a_fix_that_is_not_offered_says_why_and_cannot_be_approved(ask: Ask) -> None:
    shown = preview(
        dry_run="rejected",
        dry_run_error='Deployment.apps "my-app" is invalid: memory: must be <= 4Gi',
        diff="",
        offered=False,
    )
    message = ask(shown)
    text = json.dumps(message["blocks"], ensure_ascii=False)
    assert "🚫 *Not offered:* the API server rejected the dry run: Deployment.apps" in text
    assert "There is nothing to approve." in text and "*Diff*" not in text
    assert buttons(message) == ["deny"]


def test_every_reason_not_to_offer_is_named() -> None:
    refused = preview(refused="patch is not among this step's actions", offered=False)
    assert "NOT OFFERED:      the step's policy refuses it: patch is not" in preview_text(refused)
    denied = preview(rbac=Rbac(allowed=False, account="sa", reason="no patch"), offered=False)
    assert "RBAC does not allow sa to apply it: no patch" in preview_text(denied)
    assert "RBAC:             DENIED for sa (no patch)" in preview_text(denied)
    offered = preview_text(preview())
    assert "Offered:          yes" in offered and offered.endswith("+          memory: 1Gi")
    # the preview task's result, its `result` or the preview itself all read as the preview
    whole = json.loads(preview_result(preview()))
    for given in (whole, whole["result"], whole["result"]["preview"]):
        assert parse_preview(given) == preview()
    assert parse_preview({"result": {"offered": False, "skipped": True}}) is None


def test_a_cut_diff_says_how_much_is_left_out() -> None:
    lines = "\n".join(f"line {i}" for i in range(10))
    assert cut_diff(lines, 3) == "line 0\nline 1\nline 2\n… diff cut: 7 more lines not shown"
    assert cut_diff(lines, 9, chars=14) == "line 0\nline 1\n… diff cut: 8 more lines not shown"
    assert cut_diff(lines, 10) == lines


def test_the_compiled_remediation_gate_reads_its_preview_task(
    example_workflows: dict[str, Workflow],
    example_sinks: dict[str, Sink],
    example_config: OperatorConfig,
    slack: FakeSlack,
    tmp_path: Path,
) -> None:
    """examples/workflows/safe-remediation.yaml as compiled: the approval request of step `fix`
    gets the `fix-preview` task's result and shows it."""
    env = task_env(
        example_workflows["safe-remediation"],
        example_sinks,
        "fix-approval-request",
        config=example_config.spec,
        results={
            "investigate": agent_result(),
            "fix-preview": json.loads(preview_result(preview())),
        },
        secrets={"SLACK_BOT_TOKEN": TOKEN},
        extra={"SLACK_API_URL": slack.url + "/api/"},
    )
    assert "PF_RESULT_FIX_PREVIEW" in env
    code, record = run("approval-request", env, tmp_path)
    assert code == 0, record
    (message,) = slack.messages
    assert "*resourceVersion* `4711`" in json.dumps(message["blocks"])
    assert "-          memory: 512Mi" in diff_of(message)
    assert buttons(message) == ["approve", "deny"]
