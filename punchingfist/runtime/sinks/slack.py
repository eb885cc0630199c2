"""Slack: the investigation as a Block Kit message, one thread per incident.

`messageType: thread` keeps one thread per incident without any state of our own: the first
message of an incident carries Slack message metadata (`event_type: punchingfist_incident`,
`event_payload.incident`: `Findings.incident_key`, the Alertmanager group, else the alert
fingerprint), and later runs find that message with
`conversations.history` (last 30 days) and answer in its thread. Scopes: `chat:write`,
`channels:history` (and `groups:history` for private channels), `channels:read` when the
channel is given by name.

The message says what each remediation step's fix did (`Fix`: `🔧 <action> — <outcome>`, e.g.
`made worse, rolled back (verified)`, or that a dry run only previewed it; `fixes.FixOutcome`).
It is posted on the incident's thread, so the fix's outcome is there too.

The message names the similar past incident the run was given (`Seen before: …`,
`findings.seen_before_text`: the one the answer relied on, else the best match).

The message lists the other alerts of the run's group or incident (`Also firing (N): …`, from
the run's `event.alerts`: those of the notification that started it and those that joined it
before it started; `also_firing_list` names the first `ALSO_FIRING_NAMED`).

Everything from an alert or a model is escaped (`mrkdwn.escape`): it shows as text and
cannot mention anyone or disguise a link; links are built only from URLs `mrkdwn.safe_url`
accepts. A template's own markup stays: its values are escaped before it is rendered.

`SLACK_API_URL` points the client at another Slack Web API base (GovSlack, or a test server).
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.http_retry import HttpRequest, HttpResponse, RetryHandler, RetryState

from punchingfist.runtime.agent.runner import also_firing
from punchingfist.runtime.redaction import redact
from punchingfist.runtime.sinks.delivery import (
    MAX_ATTEMPTS,
    REQUEST_TIMEOUT,
    Budget,
    DeliveryFailed,
    retry_after,
    say,
)
from punchingfist.runtime.sinks.findings import REPLAY_MARK, Findings, seen_before_text
from punchingfist.runtime.sinks.fixes import FixOutcome
from punchingfist.runtime.sinks.mrkdwn import escape, escaped, link
from punchingfist.runtime.sinks.running import Sent, SinkRun

API_URL_ENV = "SLACK_API_URL"
METADATA_TYPE = "punchingfist_incident"
THREAD_LOOKBACK_SECONDS = 30 * 86400
HISTORY_PAGES = 5
_SECTION_LIMIT = 2900
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")
_SEVERITY_ICON = {"critical": "🔴", "error": "🟠", "warning": "🟡", "info": "🔵"}
ALSO_FIRING_NAMED = 10
"""How many other alerts a message names; the rest are counted ("and 12 more")."""
ALERT_SUBJECT_LABELS = ("pod", "instance", "service", "deployment", "job")
"""The first of these labels an alert has says which one it is, beside its name."""
_ALERT_NAME_LIMIT = 120
TIMES = "\N{MULTIPLICATION SIGN}"
TOKEN_FIX = "set `botTokenSecret` on the Sink or `spec.secrets.slackToken` in the OperatorConfig"


class _BudgetRetry(RetryHandler):
    """Retries 429 (after `Retry-After`), 5xx and connection errors while the budget lasts."""

    def __init__(self, budget: Budget) -> None:
        super().__init__(max_retry_count=MAX_ATTEMPTS - 1)
        self.budget = budget
        self.wait = 0.0
        self.attempts = 1
        self.client: WebClient | None = None
        """Its timeout shrinks with the budget before each retry."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is not None and response.status_code == 429:
            headers = {k: v[0] for k, v in response.headers.items() if v}
            self.wait = retry_after(headers) or 1.0
        elif (response is not None and response.status_code >= 500) or (
            response is None and error is not None
        ):
            self.wait = 0.5 * 2**state.current_attempt + random.random() / 10
        else:
            return False
        return self.wait < self.budget.remaining()

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        status = f"HTTP {response.status_code}" if response is not None else "connection error"
        say(f"  Slack: {status}, retrying in {self.wait:.1f} s")
        state.next_attempt_requested = True
        time.sleep(self.wait)
        state.increment_current_attempt()
        self.attempts += 1
        if self.client is not None:
            self.client.timeout = max(1, int(min(REQUEST_TIMEOUT, self.budget.remaining())))


class Slack:
    """A Slack Web API client whose calls end in DeliveryFailed instead of SDK errors."""

    def __init__(self, token: str, budget: Budget, environ: Mapping[str, str]) -> None:
        self.retry = _BudgetRetry(budget)
        self.budget = budget
        self.token = token
        base = environ.get(API_URL_ENV, "").strip() or WebClient.BASE_URL
        self.client = WebClient(
            token=token,
            base_url=base.rstrip("/") + "/",
            timeout=int(REQUEST_TIMEOUT),
            retry_handlers=[self.retry],
        )
        self.retry.client = self.client
        self.last_status: int | None = None

    def call(self, method: str, **arguments: Any) -> dict[str, Any]:
        if self.budget.remaining() <= 0:
            raise DeliveryFailed(f"Slack {method}: the time budget is spent")
        self.client.timeout = max(1, int(min(REQUEST_TIMEOUT, self.budget.remaining())))
        # Reads go as form fields, writes as JSON (blocks and metadata are nested).
        writes = method.startswith("chat.")
        try:
            response = self.client.api_call(
                method, json=arguments if writes else None, data=None if writes else arguments
            )
        except SlackApiError as error:
            self.last_status = error.response.status_code
            code = error.response.get("error") if error.response.data else None
            raise DeliveryFailed(
                f"Slack {method} failed: {code or 'HTTP ' + str(error.response.status_code)}",
                status=error.response.status_code,
            ) from None
        except (SlackRequestError, OSError) as error:
            message = redact(f"Slack {method}: cannot reach Slack ({error})", [self.token])
            raise DeliveryFailed(message, status=self.last_status) from None
        self.last_status = response.status_code
        data = response.data
        return data if isinstance(data, dict) else {}

    def channel_id(self, channel: str) -> str:
        """A channel id for a name such as `#ops-alerts` (ids pass through)."""
        if _CHANNEL_ID.match(channel):
            return channel
        wanted = channel.lstrip("#")
        for page in self._pages(
            "conversations.list",
            "channels",
            types="public_channel,private_channel",
            exclude_archived="true",
            limit=200,
        ):
            if page.get("name") == wanted:
                return str(page["id"])
        raise DeliveryFailed(
            f"Slack: no channel named {channel!r} that the bot can see; invite the bot or "
            "give the channel id"
        )

    def thread_of(self, channel_id: str, incident: str) -> str | None:
        """The `ts` of the first message about `incident` in the channel, if there is one."""
        oldest = f"{time.time() - THREAD_LOOKBACK_SECONDS:.6f}"
        found: str | None = None
        for message in self._pages(
            "conversations.history",
            "messages",
            channel=channel_id,
            oldest=oldest,
            limit=200,
            include_all_metadata="true",
        ):
            metadata = message.get("metadata") or {}
            payload = metadata.get("event_payload") or {}
            if metadata.get("event_type") == METADATA_TYPE and payload.get("incident") == incident:
                found = str(message["ts"])  # newest first: keep going to the oldest
        return found

    def _pages(self, method: str, key: str, **arguments: Any) -> Iterator[dict[str, Any]]:
        cursor = ""
        for _ in range(HISTORY_PAGES):
            data = self.call(method, **arguments, **({"cursor": cursor} if cursor else {}))
            yield from data.get(key) or []
            cursor = (data.get("response_metadata") or {}).get("next_cursor") or ""
            if not cursor:
                return


def deliver(run: SinkRun) -> Sent:
    channel = run.config.get("channel")
    if not channel:
        raise DeliveryFailed(
            f"{run.resource}: no channel: set `spec.config.channel` or the OperatorConfig's "
            "`spec.chat.slack.channelId`"
        )
    body = run.template(escaped(run.context))
    mentions = mention_text(run.config.get("mentionUsers") or [])
    findings = run.findings
    data = (run.context.get("source") or {}).get("data") or {}
    others = also_firing(data) if isinstance(data, Mapping) else []
    blocks = result_blocks(findings, body, mentions, others)
    message: dict[str, Any] = {
        "channel": str(channel),
        "blocks": blocks,
        # Handles such as `@oncall` are linked by Slack only with `link_names`.
        "link_names": "@" in mentions,
        "text": _fallback(findings),
        "unfurl_links": False,
    }
    text = f"would post to {channel}:\n{blocks_text(blocks)}"
    token = run.secret(TOKEN_FIX, preview=message, text=text)
    slack = Slack(token, run.budget, run.environ)
    try:
        return _post(run, slack, message)
    finally:
        run.other_attempts += slack.retry.attempts


def _post(run: SinkRun, slack: Slack, message: dict[str, Any]) -> Sent:
    findings = run.findings
    arguments = dict(message)
    channel = str(arguments["channel"])
    thread_ts = None
    if run.config.get("messageType") == "thread":
        channel_id = slack.channel_id(channel)
        arguments["channel"] = channel_id
        thread_ts = slack.thread_of(channel_id, findings.incident_key)
        if thread_ts is None:
            arguments["metadata"] = {
                "event_type": METADATA_TYPE,
                "event_payload": {"incident": findings.incident_key, "run": findings.run},
            }
        else:
            arguments["thread_ts"] = thread_ts
    data = slack.call("chat.postMessage", **arguments)
    ts, posted_in = str(data.get("ts", "")), str(data.get("channel", channel))
    where = f"in thread {thread_ts}" if thread_ts else "as a new message"
    return Sent(
        external_id=ts,
        detail=f"posted to {posted_in} {where}",
        http_status=slack.last_status,
        extra={"channel": posted_in, "ts": ts, "thread_ts": thread_ts},
    )


def blocks_text(blocks: Sequence[Mapping[str, Any]]) -> str:
    """A Block Kit message as plain text for a terminal: headers, sections, fields, context
    and the labels of its buttons, one block after another."""
    lines: list[str] = []
    for block in blocks:
        text = (block.get("text") or {}).get("text")
        if text:
            lines += str(text).splitlines()
        for item in block.get("fields") or []:
            lines += str(item.get("text", "")).replace("\n", ": ", 1).splitlines()
        elements = block.get("elements") or []
        if block.get("type") == "actions":
            labels = [str((e.get("text") or {}).get("text", "")) for e in elements]
            lines.append("[" + "] [".join(labels) + "]")
        else:
            lines += [str(e.get("text", "")) for e in elements if e.get("text")]
    return "\n".join(lines)


def mention_text(users: Sequence[str]) -> str:
    """Slack mention syntax: user ids `<@U…>`, group ids `<!subteam^S…>`, `@here`/`@channel`
    as `<!here>`/`<!channel>`; a handle such as `@oncall` stays text (Slack links it)."""
    out = []
    for user in users:
        name = user.strip()
        bare = name.lstrip("@")
        if bare in ("here", "channel", "everyone"):
            out.append(f"<!{bare}>")
        elif re.match(r"^[UW][A-Z0-9]{6,}$", bare):
            out.append(f"<@{bare}>")
        elif re.match(r"^S[A-Z0-9]{6,}$", bare):
            out.append(f"<!subteam^{bare}>")
        elif name:
            out.append("@" + escape(bare))
    return " ".join(out)


def result_blocks(
    findings: Findings,
    body: str | None,
    mentions: str,
    others: Sequence[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """The Block Kit blocks of an investigation result; `others`: the other alerts of its group
    or incident (`runner.also_firing`), listed when some of them fire."""
    icon = _SEVERITY_ICON.get(findings.severity.lower(), "🚨")
    title = f"{icon} {escape(findings.alertname or findings.workflow)}: investigation "
    title += "complete" if findings.status in ("", "Succeeded") else escape(findings.status.lower())
    fields = [
        f"*Severity*\n{escape(findings.severity or 'unknown')}",
        f"*Workflow*\n{escape(findings.workflow)} ({escape(findings.status or 'running')})",
    ]
    if findings.confidence is not None:
        replayed = " (replayed)" if findings.replayed else ""
        fields.append(f"*Confidence*\n{findings.confidence:.0%}{replayed}")
    if findings.auto_fixed is not None:
        fields.append(f"*Auto-fixed*\n{'yes' if findings.auto_fixed else 'no'}")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
        {"type": "section", "fields": [_mrkdwn(text) for text in fields]},
    ]
    if findings.replayed:
        blocks.insert(1, replay_block())
    if body is not None:
        blocks += [_section(chunk) for chunk in _chunks(markdown_to_mrkdwn(body))]
    else:
        blocks.append(_section(f"*Summary*\n{escape(findings.summary)}"))
        if findings.root_cause:
            blocks.append(_section(f"*Root cause*\n{escape(findings.root_cause)}"))
        if findings.runbook:
            blocks.append(_section(f"*Runbook followed*\n{escape(findings.runbook)}"))
        if findings.recommendations:
            items = "\n".join(f"• {escape(item)}" for item in findings.recommendations)
            blocks.append(_section(f"*Recommendations*\n{items}"))
    if findings.fixes:
        blocks.append(_section(fix_section(findings.fixes)))
    if findings.seen_before:
        seen = escape(seen_before_text(findings.seen_before))
        blocks.append(_section(f"*Seen before*: {seen}"))
    firing = [alert for alert in others if alert.get("status") != "resolved"]
    if firing:
        blocks.append(_section(f"*Also firing ({len(firing)})*: {also_firing_list(firing)}"))
    if mentions:
        blocks.append(_section(f"cc {mentions}"))
    links = link_line(findings)
    if links:
        blocks.append({"type": "context", "elements": [_mrkdwn(links)]})
    if findings.run:
        blocks.append(feedback_block(findings.run, judged=not findings.replayed))
    return blocks


def fix_section(fixes: Sequence[FixOutcome]) -> str:
    """`*Fix*` and one `🔧` line per remediation step: the action, its target, how it ended
    (escaped as Slack text; the step named when there are several)."""
    heading = "*Fix (dry run: only previewed)*" if all(f.dry_run for f in fixes) else "*Fix*"
    named = len(fixes) > 1
    lines = [f"🔧 {f'`{escape(f.step)}` ' if named else ''}{escape(f.text())}" for f in fixes]
    return "\n".join([heading, *lines])


def also_firing_list(alerts: Sequence[Mapping[str, Any]], named: int = ALSO_FIRING_NAMED) -> str:
    """`PodCrashLooping (web-1), HighMemory, and 12 more`: the alerts by name (with the pod or
    instance it is about when the alert has its labels), a repeated name once with its count
    (`TIMES` and the count), the first `named` names shown, escaped as Slack text."""
    counted: dict[str, int] = {}
    for alert in alerts:
        name = alert_subject(alert)
        counted[name] = counted.get(name, 0) + 1
    shown = list(counted.items())[:named]
    parts = [escape(name) + (f" {TIMES}{count}" if count > 1 else "") for name, count in shown]
    rest = len(alerts) - sum(count for _, count in shown)
    if rest:
        parts.append(f"and {rest} more")
    return ", ".join(parts)


def alert_subject(alert: Mapping[str, Any]) -> str:
    """An alert's name, and the first of `ALERT_SUBJECT_LABELS` it has (not yet escaped)."""
    labels = alert.get("labels")
    labels = labels if isinstance(labels, Mapping) else {}
    name = str(alert.get("alertname") or labels.get("alertname") or "alert")
    subject = next((str(labels[key]) for key in ALERT_SUBJECT_LABELS if labels.get(key)), "")
    text = f"{name} ({subject})" if subject else name
    return text if len(text) <= _ALERT_NAME_LIMIT else text[: _ALERT_NAME_LIMIT - 1] + "…"


def replay_block() -> dict[str, Any]:
    """What a message about a replayed answer says first."""
    return _section(
        f"*{REPLAY_MARK}.* The answer below was replayed from a recorded scenario: it is not "
        "an investigation of this alert."
    )


def link_line(findings: Findings) -> str:
    """The run's name and links to it and to the alert (only URLs that are safe to link)."""
    parts = [
        f"run `{escape(findings.run)}`" if findings.run else "",
        link(findings.run_link, "View run in Argo"),
        link(findings.alert_link, "Alert"),
    ]
    return " | ".join(part for part in parts if part)


FEEDBACK_BLOCK = "pf_feedback"
RIGHT_ACTION, WRONG_ACTION, RESOLVE_ACTION = "pf_right", "pf_wrong", "pf_resolved_by"
"""The report's feedback buttons (`POST /slack/interactions`, punchingfist/server/feedback.py)."""


def feedback_block(run: str, judged: bool = True) -> dict[str, Any]:
    """The buttons by which a human judges the findings ("✅ right", "❌ wrong"; not for a
    replayed answer, which nothing remembers) or resolves the incident ("Resolved by…"). Their
    value names only the run: the server looks up everything else."""
    value = json.dumps({"run": run}, separators=(",", ":"))
    buttons = [("✅ right", RIGHT_ACTION), ("❌ wrong", WRONG_ACTION)] if judged else []
    buttons.append(("Resolved by…", RESOLVE_ACTION))
    return {
        "type": "actions",
        "block_id": FEEDBACK_BLOCK,
        "elements": [
            {
                "type": "button",
                "text": {"type": "plain_text", "text": text, "emoji": True},
                "action_id": action,
                "value": value,
            }
            for text, action in buttons
        ],
    }


def markdown_to_mrkdwn(text: str) -> str:
    """`**bold**` (the design document's templates) to Slack's `*bold*`."""
    return re.sub(r"\*\*(.+?)\*\*", r"*\1*", text)


def _fallback(findings: Findings) -> str:
    text = f"{findings.alertname or findings.workflow}: {findings.summary}"
    return escape(findings.marked(text))[:3000]


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text[:_SECTION_LIMIT])}


def _chunks(text: str) -> list[str]:
    text = text.strip() or " "
    return [text[i : i + _SECTION_LIMIT] for i in range(0, len(text), _SECTION_LIMIT)][:20]
