"""Approval gates (D5): list pending ones, decide by REST or by Slack button, resume the run.

A decision resumes the run's suspend node through the executor (Argo: the node's outputs
`approved`/`approver`/`comment` are set and the node is marked done, as `argo node set` and
`argo resume` do). Only then is it recorded; who decided is always recorded and checked against
the OperatorConfig allow-list (`spec.approvals.approvers`) when there is one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.parse
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from punchingfist.executors import SubmitError
from punchingfist.server.auth import bearer_token
from punchingfist.server.runs import problem, read_json
from punchingfist.server.state import ServerState
from punchingfist.server.views import row
from punchingfist.store import WorkflowRun
from punchingfist.store.models import Approval

SLACK_MAX_SKEW = 300


def decide(
    state: ServerState, run_name: str, gate: str, approved: bool, approver: str,
    comment: str, channel: str, identities: frozenset[str] | None = None,
) -> JSONResponse:  # fmt: skip
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
        namespace = run.namespace
    try:
        resume(run_name, namespace, gate, approved=approved, approver=approver, comment=comment,
               channel=channel)  # fmt: skip
    except SubmitError as error:
        return problem(502 if error.temporary else 409, str(error))
    with state.sessions.begin() as session:
        run = WorkflowRun.named(session, run_name)
        assert run is not None  # looked up above; runs are never deleted
        record = session.scalars(
            select(Approval).where(Approval.run_id == run.id, Approval.gate == gate)
        ).first()
        if record is None:
            step = gate.removesuffix("-approval")
            record = Approval(run_id=run.id, gate=gate, step_name=step)
            session.add(record)
        record.decision = "approved" if approved else "denied"
        record.approver, record.comment, record.channel = approver, comment, channel
        record.decided_at = datetime.now(UTC)
        session.flush()
        view = row(record)
    return JSONResponse(view)


def token_owner(tokens: dict[str, str], authorization: str | None) -> str | None:
    """The approver whose token the `Authorization: Bearer` header carries, else None. Every
    token is compared, in constant time, so the answer's timing tells nothing."""
    given = bearer_token(authorization)
    if not given:
        return None
    offered = given.encode()
    owner = None
    for name, token in sorted(tokens.items()):
        if hmac.compare_digest(offered, token.encode()) and token:
            owner = name
    return owner


def slack_signature_ok(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    try:
        if abs(time.time() - int(timestamp)) > SLACK_MAX_SKEW:
            return False
    except ValueError:
        return False
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def router(state: ServerState) -> APIRouter:
    routes = APIRouter()

    @routes.get("/api/v1/approvals", tags=["approvals"])
    def approvals(decision: str | None = "pending") -> dict[str, Any]:
        query = select(Approval, WorkflowRun.name).join(
            WorkflowRun, WorkflowRun.id == Approval.run_id
        )
        if decision:
            query = query.where(Approval.decision == decision)
        with state.sessions() as session:
            return {"items": [row(a) | {"run": name} for a, name in session.execute(query)]}

    @routes.post("/api/v1/runs/{run_name}/approvals/{gate}", tags=["approvals"])
    async def answer(run_name: str, gate: str, request: Request) -> JSONResponse:
        """Body: `{"decision": "approve"|"deny", "approver": "...", "comment": "..."}`. With
        approver tokens configured (OperatorConfig `spec.approvals.tokensSecret`), the request
        needs `Authorization: Bearer <token>` and the approver is the token's owner."""
        owner = None
        if state.approver_tokens is not None:
            owner = token_owner(state.approver_tokens, request.headers.get("authorization"))
            if owner is None:
                return problem(401, "approving needs `Authorization: Bearer <token>` with an "
                                    "approver's token (spec.approvals.tokensSecret)",
                               headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
        data = await read_json(request, state)
        if isinstance(data, JSONResponse):
            return data
        if not isinstance(data, dict) or data.get("decision") not in ("approve", "deny"):
            return problem(422, "body.decision must be `approve` or `deny`")
        approver = data.get("approver", owner)
        if not isinstance(approver, str) or not approver.strip():
            return problem(422, "body.approver is required: who decides")
        if owner is not None and approver.strip() != owner:
            return problem(403, f"this token is {owner!r}'s: it cannot answer as {approver!r}")
        comment = data.get("comment") or ""
        return decide(state, run_name, gate, data["decision"] == "approve", approver.strip(),
                      str(comment), "api")  # fmt: skip

    @routes.post("/slack/interactions", tags=["approvals"])
    async def slack(request: Request) -> JSONResponse:
        """Slack interactivity: Approve / Deny buttons of approval requests."""
        if not state.slack_signing_secret:
            return problem(404, "Slack is not configured on this server")
        body = await request.body()
        timestamp = request.headers.get("x-slack-request-timestamp", "")
        signature = request.headers.get("x-slack-signature", "")
        if not slack_signature_ok(state.slack_signing_secret, timestamp, body, signature):
            return problem(401, "invalid or stale Slack signature")
        try:
            form = urllib.parse.parse_qs(body.decode())
            payload = json.loads(form["payload"][0])
            action = payload["actions"][0]
            value = json.loads(action["value"])
            run_name, gate, verdict = value["run"], value["gate"], value["decision"]
            user = payload["user"]
        except (KeyError, IndexError, ValueError, TypeError, UnicodeDecodeError):
            return problem(400, "not a Slack block action of an approval request")
        approver = user.get("username") or user.get("id")
        # Slack user ids are fixed; usernames are handles anyone can change (a Slack user
        # renamed `alice` is not the allow-listed `alice`): the allow-list sees ids only.
        names = frozenset(str(n) for n in (user.get("id"), f"slack:{user.get('id')}") if n)
        if state.approvers and not (names & state.approvers):
            return JSONResponse({"response_type": "ephemeral", "replace_original": False,
                                 "text": f"{approver} may not answer approval gates."})  # fmt: skip
        response = decide(state, run_name, gate, verdict == "approve", f"slack:{approver}",
                          "via Slack", "slack", identities=names)  # fmt: skip
        if response.status_code != 200:
            message = json.loads(bytes(response.body))["error"]
            return JSONResponse({"response_type": "ephemeral", "replace_original": False,
                                 "text": f"Not recorded: {message}"})  # fmt: skip
        word = "Approved" if verdict == "approve" else "Denied"
        return JSONResponse({"replace_original": True,
                             "text": f"{word} by {approver}: {run_name} / {gate}"})  # fmt: skip

    return routes
