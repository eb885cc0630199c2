"""Humans judge a run's Slack report (#22): its "✅ right" / "❌ wrong" buttons record a verdict on
the run's findings (`memory.remember.judge`: the incident stays as it is); "Resolved by…" opens a
modal (`views.open`) whose submission resolves the run's incident with the root cause and note
given (`memory.remember.resolve`, verdict right).

`POST /slack/interactions` (server/approvals.py) hands these payloads here once Slack's
signature is verified. A button's value (and the modal's `private_metadata`) names the run and
nothing more is read from it: the run, its incident and its knowledge entry are looked up in the
store. Who may judge or resolve: whoever may answer approval gates (OperatorConfig
`spec.approvals.approvers`, by Slack user id `U…` or `slack:U…`; anyone when there is no
list), checked on the click and again on the submission. What is recorded names the user as the
approvals do (`slack:U…`). The modal is opened with the bot token of the Sink that posted the
run's report (`also_firing.bot_token`), else `SLACK_BOT_TOKEN` of the server's environment.
"""

from __future__ import annotations

import json
import os
from typing import Any

from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from punchingfist.memory.remember import Resolution, Verdict, judge, resolve
from punchingfist.runtime.sinks.delivery import Budget, DeliveryFailed
from punchingfist.runtime.sinks.mrkdwn import escape
from punchingfist.runtime.sinks.slack import RESOLVE_ACTION, RIGHT_ACTION, WRONG_ACTION, Slack
from punchingfist.server.also_firing import bot_token, report_threads
from punchingfist.server.requests import problem
from punchingfist.server.runs import unstorable
from punchingfist.server.state import ServerState
from punchingfist.store import Incident, WorkflowRun

RESOLVE_VIEW = "pf_resolve"
ROOT_CAUSE, NOTE = "pf_root_cause", "pf_note"
MAX_INPUT = 3000
"""What the modal's fields take (Slack's plain text input allows 3000 characters)."""
OPEN_SECONDS = 2.5
"""Slack's trigger_id lasts 3 s: the modal is opened within this, or not at all."""
VERDICTS: dict[str, Verdict] = {RIGHT_ACTION: "right", WRONG_ACTION: "wrong"}
NOT_OURS = "not a Slack interaction of a run's report"


def ours(payload: Any) -> bool:
    """A click on a report's feedback buttons, or the submission of the resolution modal."""
    if not isinstance(payload, dict):
        return False
    if payload.get("type") == "view_submission":
        view = payload.get("view")
        return isinstance(view, dict) and view.get("callback_id") == RESOLVE_VIEW
    actions = payload.get("actions")
    first = actions[0] if isinstance(actions, list) and actions else None
    return isinstance(first, dict) and first.get("action_id") in (*VERDICTS, RESOLVE_ACTION)


async def answer(state: ServerState, payload: dict[str, Any]) -> JSONResponse:
    """The answer to a signed payload that `ours` accepted."""
    from punchingfist.server.approvals import SLACK_USER

    user = payload.get("user")
    user_id = user.get("id") if isinstance(user, dict) else None
    if not isinstance(user_id, str) or not SLACK_USER.match(user_id):
        return problem(400, NOT_OURS)
    assert isinstance(user, dict)
    shown = user.get("username") or user.get("name")
    shown = shown if isinstance(shown, str) and shown.isprintable() else user_id
    allowed = not state.approvers or bool({user_id, f"slack:{user_id}"} & state.approvers)
    if payload.get("type") == "view_submission":
        return _submitted(state, payload, user_id, shown, allowed)
    action = payload["actions"][0]
    run_name = _run_named(action.get("value"))
    if run_name is None:
        return problem(400, NOT_OURS)
    if not allowed:
        return _ephemeral(f"{shown} may not judge or resolve incidents.")
    if action["action_id"] == RESOLVE_ACTION:
        return await _open_modal(state, payload, run_name)
    verdict = VERDICTS[action["action_id"]]
    with state.sessions.begin() as session:
        run = WorkflowRun.named(session, run_name)
        if run is None:
            return _ephemeral(f"Not recorded: no run {run_name}.")
        entry = judge(session, run, verdict, f"slack:{user_id}")
        if entry is None:
            return _ephemeral(
                f"Not recorded: nothing is remembered of run {run_name} (it has not finished "
                "with an answer)."
            )
    return _ephemeral(
        f"Recorded: {shown} ({user_id}) says the findings of run {run_name} are {verdict}."
    )


def _submitted(
    state: ServerState, payload: dict[str, Any], user_id: str, shown: str, allowed: bool
) -> JSONResponse:
    """The resolution modal's submission: resolve the run's incident, or say why not (Slack
    shows `errors` under the field)."""
    view = payload["view"]
    run_name = _run_named(view.get("private_metadata"))
    values = view.get("state", {}).get("values") if isinstance(view.get("state"), dict) else None
    if run_name is None or not isinstance(values, dict):
        return problem(400, NOT_OURS)
    root_cause, note = _input(values, ROOT_CAUSE), _input(values, NOTE)
    if not allowed:
        return _field_error(f"{shown} may not resolve incidents.")
    if root_cause is None:
        return _field_error(f"the root cause is required ({MAX_INPUT} characters at most)")
    if unstorable({"root_cause": root_cause, "note": note}):
        return _field_error("the text cannot be stored (it holds characters the database refuses)")
    with state.sessions.begin() as session:
        incident = _incident_of(session, run_name)
        if incident is None:
            return _field_error(f"run {run_name} has no incident to resolve")
        resolve(
            session,
            incident,
            Resolution(by=f"slack:{user_id}", root_cause=root_cause, note=note, verdict="right"),
        )
        done = f"Resolved by {shown} ({user_id}): {incident.title} ({incident.id})."
    return JSONResponse({"response_action": "update", "view": _done_view(done)})


async def _open_modal(state: ServerState, payload: dict[str, Any], run_name: str) -> JSONResponse:
    trigger = payload.get("trigger_id")
    if not isinstance(trigger, str) or not trigger:
        return problem(400, NOT_OURS)
    with state.sessions() as session:
        incident = _incident_of(session, run_name)
        title = incident.title if incident is not None else None
    if title is None:
        return _ephemeral(f"Not recorded: run {run_name} has no incident to resolve.")
    token = _token(state, run_name)
    if token is None:
        return _ephemeral(
            "Cannot open the form: no Slack bot token (the report's Sink has none the server can "
            "read, and SLACK_BOT_TOKEN is not set)."
        )
    view = resolve_view(run_name, title)
    slack = Slack(token, Budget(OPEN_SECONDS), os.environ)
    try:
        await run_in_threadpool(slack.call, "views.open", trigger_id=trigger, view=json.dumps(view))
    except DeliveryFailed as error:
        return _ephemeral(f"Cannot open the form: {error}")
    return JSONResponse({})


def resolve_view(run_name: str, title: str) -> dict[str, Any]:
    """The modal asking how the incident of `run_name` was resolved."""

    def field(block: str, label: str, optional: bool) -> dict[str, Any]:
        element = {
            "type": "plain_text_input",
            "action_id": block,
            "multiline": True,
            "max_length": MAX_INPUT,
        }
        label_text = {"type": "plain_text", "text": label}
        return {
            "type": "input",
            "block_id": block,
            "optional": optional,
            "label": label_text,
            "element": element,
        }

    about = f"Incident: {title}\nRun: {run_name}\nThe findings will be marked right."
    return {
        "type": "modal",
        "callback_id": RESOLVE_VIEW,
        "private_metadata": json.dumps({"run": run_name}, separators=(",", ":")),
        "title": {"type": "plain_text", "text": "Resolve incident"},
        "submit": {"type": "plain_text", "text": "Resolve"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {"type": "section", "text": {"type": "plain_text", "text": about[:MAX_INPUT]}},
            field(ROOT_CAUSE, "Root cause", optional=False),
            field(NOTE, "Note (what was done)", optional=True),
        ],
    }


def _done_view(text: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "title": {"type": "plain_text", "text": "Resolved"},
        "close": {"type": "plain_text", "text": "Close"},
        "blocks": [{"type": "section", "text": {"type": "plain_text", "text": text[:MAX_INPUT]}}],
    }


def _run_named(value: Any) -> str | None:
    """The run a button value or the modal's metadata names (`{"run": ...}`)."""
    try:
        data = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        return None
    run = data.get("run") if isinstance(data, dict) else None
    return run if isinstance(run, str) and 0 < len(run) <= 253 else None


def _input(values: dict[str, Any], block: str) -> str | None:
    """A modal field's text, stripped; None when empty, too long or not text."""
    value = (values.get(block) or {}).get(block) if isinstance(values.get(block), dict) else None
    text = value.get("value") if isinstance(value, dict) else None
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_INPUT:
        return None
    return text.strip()


def _incident_of(session: Session, run_name: str) -> Incident | None:
    run = WorkflowRun.named(session, run_name)
    if run is None or run.incident_id is None:
        return None
    return session.get(Incident, run.incident_id)


def _token(state: ServerState, run_name: str) -> str | None:
    places = report_threads(state.sessions, {run_name}).get(run_name) or []
    sink = state.sinks.get(places[0].sink) if places else None
    return bot_token(sink, state.secrets.get, os.environ)


def _ephemeral(text: str) -> JSONResponse:
    """A message only the clicking user sees; the report stays as it is."""
    return JSONResponse(
        {"response_type": "ephemeral", "replace_original": False, "text": escape(text)}
    )


def _field_error(message: str) -> JSONResponse:
    return JSONResponse({"response_action": "errors", "errors": {ROOT_CAUSE: message}})
