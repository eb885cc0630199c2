"""`pf-runtime approval-request`: post an approval gate's request to Slack (D5).

The message has Approve and Deny buttons. Each button's `value` is the JSON the server's Slack
interactivity endpoint (`POST /slack/interactions`, punchingfist/server/approvals.py) reads:
`{"run": <Argo run name>, "gate": <suspend node>, "decision": "approve"|"deny"}`. A request
that cannot be posted fails the task, which does not block the gate: it can still be answered
with the REST API or `argo node set`, and the deadline means denied. What comes from the alert
or the model is escaped (`mrkdwn`): it cannot mention anyone or disguise a link.

The gate of a remediation step shows its preview (punchingfist.runtime.sinks.previews): the
fix, its target, the server-side dry run's diff (cut to fit, with a marker), RBAC's verdict
and the resourceVersion approved. A preview that is not offered says why, and has no Approve
button.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from punchingfist.api.actions import Preview
from punchingfist.api.runspec import ApprovalTask, TaskSpec
from punchingfist.errors import TemplateError
from punchingfist.runtime.context import BadTaskInput, build_context
from punchingfist.runtime.sinks.delivery import Budget, Delivery, DeliveryFailed, say, secret
from punchingfist.runtime.sinks.findings import gather
from punchingfist.runtime.sinks.mrkdwn import escape
from punchingfist.runtime.sinks.previews import (
    cut_diff,
    preview_from_env,
    rbac_line,
    why_not_offered,
)
from punchingfist.runtime.sinks.slack import Slack, link_line, replay_block
from punchingfist.templating import compile_template

TOKEN_ENV = "SLACK_BOT_TOKEN"
APPROVE_ACTION, DENY_ACTION = "pf_approve", "pf_deny"


def button_value(run: str, gate: str, decision: str) -> str:
    return json.dumps({"run": run, "gate": gate, "decision": decision}, separators=(",", ":"))


def request_approval(spec: TaskSpec, environ: Mapping[str, str]) -> Delivery:
    approval = spec.approval
    if approval is None or spec.step is None:
        raise BadTaskInput("the approval-request task spec has no `approval`")
    started = time.monotonic()
    name = f"{spec.step}-approval-request"
    if not approval.channel:
        raise BadTaskInput(
            "approval requests go to the OperatorConfig's `spec.chat.slack.channelId`, which is "
            "not set; answer the gate with the REST API or `argo node set` instead"
        )
    token = secret(environ, TOKEN_ENV, "set `spec.secrets.slackToken` in the OperatorConfig")
    context = build_context(spec, environ)
    run_name = environ.get("PF_RUN_NAME", "")
    if not run_name:
        raise BadTaskInput("PF_RUN_NAME is not set: the buttons could not name the run")
    blocks = approval_blocks(spec, approval, context, environ, run_name)
    slack = Slack(token, Budget.from_env(environ), environ)
    say(f"asking for approval of step {spec.step} in {approval.channel}")
    try:
        data = slack.call(
            "chat.postMessage",
            channel=approval.channel,
            blocks=blocks,
            text=escape(f"Approval needed: step {spec.step} of {run_name}"),
        )
    except DeliveryFailed as failed:
        return Delivery(
            name,
            "approval-request",
            "failed",
            http_status=failed.status,
            attempts=slack.retry.attempts,
            error=str(failed),
            seconds=round(time.monotonic() - started, 3),
        )
    ts = str(data.get("ts", ""))
    return Delivery(
        name,
        "approval-request",
        "delivered",
        http_status=slack.last_status,
        external_id=ts,
        attempts=slack.retry.attempts,
        seconds=round(time.monotonic() - started, 3),
        detail=f"asked in {data.get('channel', approval.channel)}; "
        f"gate {approval.gate} waits {approval.timeout_seconds} s",
        extra={"channel": data.get("channel"), "ts": ts, "gate": approval.gate},
    )


def approval_blocks(
    spec: TaskSpec,
    approval: ApprovalTask,
    context: dict[str, Any],
    environ: Mapping[str, str],
    run_name: str,
) -> list[dict[str, Any]]:
    findings = gather(context, environ)
    action = escape(_rendered(approval.summary, context))
    minutes = max(1, round(approval.timeout_seconds / 60))
    lines = [
        f"*Workflow* {escape(spec.workflow)} | *step* `{escape(spec.step)}` | "
        f"*run* `{escape(run_name)}`",
        f"*Alert* {escape(findings.alertname or '-')} ({escape(findings.severity or 'unknown')})"
        f": {escape(findings.summary)}",
        f"No answer within {minutes} min means *denied*.",
    ]
    if approval.approvers:
        lines.append("May approve: " + escape(", ".join(approval.approvers)))
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "emoji": True,
                "text": f"✋ Approval needed: {escape(spec.step)}"[:150],
            },
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:2900]}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"*Will run once approved*\n```{action[:2700]}```"},
        },
    ]
    preview = preview_from_env(spec.step or "", environ)
    deny = button_value(run_name, approval.gate, "deny")
    buttons = [_button("Deny", DENY_ACTION, deny, "danger")]
    if preview is None or preview.offered:
        approve = button_value(run_name, approval.gate, "approve")
        buttons.insert(0, _button("Approve", APPROVE_ACTION, approve, "primary"))
    if preview is not None:
        blocks += preview_blocks(preview)
    blocks.append(
        {"type": "actions", "block_id": f"pf_approval:{approval.gate}"[:255], "elements": buttons}
    )
    if findings.replayed:
        blocks.insert(1, replay_block())
    links = link_line(findings)
    if links:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": links}]})
    return blocks


SECTION_CHARS = 3000
"""Slack's limit on a section's text."""


def preview_blocks(preview: Preview) -> list[dict[str, Any]]:
    """The fix's preview: what changes on which object, the dry run, RBAC and the version
    approved; the diff in a code block cut to fit (with a marker); why it is not offered."""
    facts = [
        f"*Fix* {escape(preview.description)}",
        f"*Target* `{escape(preview.target)}` | *resourceVersion* "
        f"`{escape(preview.resource_version or '-')}`",
        f"*Dry run* {escape(preview.dry_run)}"
        + (f": {escape(preview.dry_run_error)}" if preview.dry_run_error else "")
        + f" | *RBAC* {escape(rbac_line(preview))}",
    ]
    why = why_not_offered(preview)
    if why is not None:
        facts.append(f"🚫 *Not offered:* {escape(why)}. There is nothing to approve.")
    blocks = [_section("\n".join(facts)[: SECTION_CHARS - 100])]
    if preview.diff:
        # inside ``` Slack still reads entities; a ``` of the diff's own would end the block
        text = escape(preview.diff).replace("```", "``\u200b`")
        blocks.append(_section(f"*Diff*\n```{cut_diff(text, chars=SECTION_CHARS - 200)}```"))
    return blocks


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _button(text: str, action_id: str, value: str, style: str) -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
        "value": value,
        "style": style,
    }


def _rendered(summary: str, context: dict[str, Any]) -> str:
    """The action with its values filled in; as written when it cannot be rendered here."""
    try:
        return compile_template(summary, field="approval summary").render(context).strip()
    except TemplateError as error:
        say(f"  (showing the action unrendered: {error.message})")
        return summary.strip()
