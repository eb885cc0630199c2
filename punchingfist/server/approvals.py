"""Approval gates (D5): list pending ones, decide by REST or by Slack button, resume the run.

The gate of a remediation step shows the fix's preview (`preview`, recorded with the approval);
a fix that is not offered (the policy, the dry run or RBAC said no) cannot be approved on any
path (409 with the reason), and approving one records the resourceVersion it was previewed at.

A decision resumes the run's suspend node through the executor (Argo: the node's outputs
`approved`/`approver`/`comment` are set and the node is marked done, as `argo node set` and
`argo resume` do). Only then is it recorded; who decided is always recorded and checked against
the OperatorConfig allow-list (`spec.approvals.approvers`) when there is one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import urllib.parse
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from punchingfist.runs.dispatching import SubmitError
from punchingfist.runs.recording import Recorder
from punchingfist.runtime.sinks.previews import why_not_offered
from punchingfist.server import feedback
from punchingfist.server import reads as records
from punchingfist.server.access import Caller, Permission
from punchingfist.server.requests import TooLarge, admit, problem, read_body, read_json, too_large
from punchingfist.server.slack_replies import respond_later
from punchingfist.server.state import ServerState
from punchingfist.server.views import row
from punchingfist.store import WorkflowRun
from punchingfist.store.models import Approval

SLACK_MAX_SKEW = 300


def decide(
    state: ServerState,
    run_name: str,
    gate: str,
    approved: bool,
    approver: str,
    comment: str,
    channel: str,
    identities: frozenset[str] | None = None,
) -> JSONResponse:
    """Resume the gate, then record the decision. `identities`: the names the allow-list may
    know the approver by (default: just `approver`)."""
    if state.approvers and not ((identities or frozenset({approver})) & state.approvers):
        return problem(403, f"{approver!r} may not answer approval gates")
    resume = getattr(state.executor, "resume", None)
    if resume is None:
        return problem(409, "this server has no executor that can resume runs")
    with state.sessions() as session:
        run = WorkflowRun.named(session, run_name)
        if run is None:
            return problem(404, f"no run {run_name!r}")
        earlier = session.scalars(
            select(Approval).where(Approval.run_id == run.id, Approval.gate == gate)
        ).first()
        if earlier is not None and earlier.decision != "pending":
            return problem(409, f"already {earlier.decision} by {earlier.approver}")
        step = earlier.step_name if earlier is not None else gate.removesuffix("-approval")
        shown = Recorder(session).preview(run, step)
        why = why_not_offered(shown) if approved and shown is not None else None
        if why is not None:
            return problem(409, f"the fix is not offered, so it cannot be approved: {why}")
        namespace = run.namespace
    try:
        resume(
            run_name,
            namespace,
            gate,
            approved=approved,
            approver=approver,
            comment=comment,
            channel=channel,
        )
    except SubmitError as error:
        return problem(502 if error.temporary else 409, str(error))
    with state.sessions.begin() as session:
        run = WorkflowRun.named(session, run_name)
        assert run is not None  # looked up above; runs are never deleted
        record = Recorder(session, state.metrics).decided(
            run, gate, approved=approved, approver=approver, comment=comment, channel=channel
        )
        session.flush()
        view = row(record)
    return JSONResponse(view)


SPEAKS_FOR_OTHERS = ("punchingfist:api-token", "anonymous")
"""Callers that are no person (the embedded API token, an open API): the answer names who."""


def answer_as(
    state: ServerState, caller: Caller, run_name: str, gate: str, data: Any, channel: str
) -> JSONResponse:
    """`caller`'s answer `data` (`{"decision", "comment"?, "approver"?}`) to a gate, already
    allowed `approve` on the run: the REST endpoint's and the web page's. The approver is who
    the credentials say; only a caller that is no person (`SPEAKS_FOR_OTHERS`) names one."""
    if not isinstance(data, dict) or data.get("decision") not in ("approve", "deny"):
        return problem(422, "body.decision must be `approve` or `deny`")
    named = data.get("approver")
    if named is not None and (
        not isinstance(named, str)
        or not named.strip()
        or len(named) > 200
        or not named.isprintable()
    ):
        return problem(422, "body.approver must be a printable name (200 characters at most)")
    comment = data.get("comment") or ""
    if not isinstance(comment, str) or len(comment) > 2000 or "\x00" in comment:
        return problem(422, "body.comment must be text of 2000 characters at most")
    if caller.username in SPEAKS_FOR_OTHERS:
        if named is None:
            return problem(422, "body.approver is required: who decides")
        approver = named.strip()
    else:
        approver = caller.username
        if named is not None and named.strip() != approver:
            return problem(
                403,
                f"these credentials are {approver!r}'s: they cannot answer as {named.strip()!r}",
            )
    return decide(state, run_name, gate, data["decision"] == "approve", approver, comment, channel)


SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,30}$")
_SIGNATURE = re.compile(r"^v0=[0-9a-f]{64}$")


def slack_headers_ok(timestamp: str, signature: str) -> bool:
    """What can be checked of a Slack request before its body is read: a fresh timestamp and
    a signature of the right shape."""
    try:
        fresh = abs(time.time() - int(timestamp)) <= SLACK_MAX_SKEW
    except ValueError:
        return False
    return fresh and bool(_SIGNATURE.match(signature))


def slack_signature_ok(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    if not slack_headers_ok(timestamp, signature):
        return False
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


async def signed_slack_body(state: ServerState, request: Request) -> bytes | JSONResponse:
    """The body of a request Slack signed (signing secret of OperatorConfig
    `spec.chat.slack.signingSecret`), or the answer to send instead. The headers are checked
    before the body is read, and the body is read with a limit."""
    secret = state.slack_signing_secret
    if not secret:
        return problem(404, "Slack is not configured on this server")
    timestamp = request.headers.get("x-slack-request-timestamp", "")
    signature = request.headers.get("x-slack-signature", "")
    if not slack_headers_ok(timestamp, signature):
        return problem(401, "invalid or stale Slack signature")
    try:
        body = await read_body(request, state.max_body_bytes)
    except TooLarge as error:
        return too_large(error.limit)
    if not slack_signature_ok(secret, timestamp, body, signature):
        return problem(401, "invalid or stale Slack signature")
    return body


def _plain(text: str) -> str:
    """Text Slack shows as it is: its markup characters escaped (a display name like
    `<!channel>` pings no one)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def router(state: ServerState) -> APIRouter:
    routes = APIRouter()

    @routes.get("/api/v1/approvals", tags=["approvals"])
    async def approvals(request: Request, decision: str | None = "pending") -> Any:
        caller = await admit(state, request, Permission("list", "approvals"))
        if isinstance(caller, JSONResponse):
            return caller
        with state.sessions() as session:
            return {"items": records.approvals(session, decision)}

    @routes.get("/api/v1/runs/{run_name}/approvals/{gate}", tags=["approvals"])
    async def approval(run_name: str, gate: str, request: Request) -> Any:
        """One gate of a run, with the preview of the fix it gates (`preview`, from the
        remediation step's preview task when the gate has not recorded it yet). Needs `get` on
        `runs.punchingfist.io/<run>`."""
        caller = await admit(state, request, Permission("get", "runs", run_name))
        if isinstance(caller, JSONResponse):
            return caller
        with state.sessions() as session:
            run = WorkflowRun.named(session, run_name)
            record = None
            if run is not None:
                query = select(Approval).where(Approval.run_id == run.id, Approval.gate == gate)
                record = session.scalars(query).first()
            if run is None or record is None:
                return problem(404, f"no approval gate {gate!r} in run {run_name!r}")
            view = row(record) | {"run": run_name}
            if view["preview"] is None:
                shown = Recorder(session).preview(run, record.step_name)
                view["preview"] = shown.model_dump(mode="json") if shown else None
            return view

    @routes.post("/api/v1/runs/{run_name}/approvals/{gate}", tags=["approvals"])
    async def answer(run_name: str, gate: str, request: Request) -> JSONResponse:
        """Body: `{"decision": "approve"|"deny", "comment": "...", "approver": "..."}`. Needs
        `approve` on `runs.punchingfist.io/<run>`. The approver is who the credentials say
        (a Kubernetes user, the owner of an approver token); only the embedded API token (or an
        open API) lets the body name one."""
        caller = await admit(state, request, Permission("approve", "runs", run_name))
        if isinstance(caller, JSONResponse):
            return caller
        data = await read_json(request, state)
        if isinstance(data, JSONResponse):
            return data
        return answer_as(state, caller, run_name, gate, data, "api")

    @routes.post("/slack/interactions", tags=["approvals"])
    async def slack(request: Request) -> JSONResponse:
        """Slack interactivity: Approve / Deny buttons of approval requests, and the feedback
        buttons of run reports (`server.feedback`). The signature is checked before anything
        is parsed; the body is read with a limit."""
        body = await signed_slack_body(state, request)
        if isinstance(body, JSONResponse):
            return body
        try:
            form = urllib.parse.parse_qs(body.decode())
            payload = json.loads(form["payload"][0])
        except (KeyError, IndexError, ValueError, TypeError, UnicodeDecodeError):
            return problem(400, "not a Slack block action of an approval request")
        if feedback.ours(payload):  # a run report's buttons, its resolution modal
            response = await feedback.answer(state, payload)
        else:
            response = _approval_click(state, payload)
        respond_later(payload, response)  # where Slack shows a click's answer
        return response

    return routes


def _approval_click(state: ServerState, payload: dict[str, Any]) -> JSONResponse:
    """The answer to an Approve / Deny click."""
    try:
        action = payload["actions"][0]
        value = json.loads(action["value"])
        run_name, gate, verdict = value["run"], value["gate"], value["decision"]
        user = payload["user"]
        user_id = user["id"]
    except (KeyError, IndexError, ValueError, TypeError, UnicodeDecodeError):
        return problem(400, "not a Slack block action of an approval request")
    if not all(isinstance(v, str) for v in (run_name, gate, verdict, user_id)) or not (
        SLACK_USER.match(user_id)
    ):
        return problem(400, "not a Slack block action of an approval request")
    shown = user.get("username") or user.get("name")
    shown = shown if isinstance(shown, str) and shown.isprintable() else user_id
    # Slack user ids are fixed; usernames are handles anyone can change (a Slack user
    # renamed `alice` is not the allow-listed `alice`): the allow-list and the record see
    # the id; the name is shown beside it.
    names = frozenset({user_id, f"slack:{user_id}"})
    if state.approvers and not (names & state.approvers):
        text = _plain(f"{shown} may not answer approval gates.")
        return JSONResponse({"response_type": "ephemeral", "replace_original": False, "text": text})
    response = decide(
        state,
        run_name,
        gate,
        verdict == "approve",
        f"slack:{user_id}",
        f"via Slack by {shown}",
        "slack",
        identities=names,
    )
    if response.status_code != 200:
        message = json.loads(bytes(response.body))["error"]
        return JSONResponse(
            {
                "response_type": "ephemeral",
                "replace_original": False,
                "text": f"Not recorded: {_plain(message)}",
            }
        )
    word = "Approved" if verdict == "approve" else "Denied"
    text = _plain(f"{word} by {shown} ({user_id}): {run_name} / {gate}")
    return JSONResponse({"replace_original": True, "text": text})
