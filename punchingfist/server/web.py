"""The web page (`/ui/`): incidents with their alerts and what their fixes did, runs with their
step tree, the agent's report and the sink deliveries, and pending approvals with Approve / Deny
buttons.

Server-rendered with Jinja2 (autoescape on: alert labels and everything a model wrote are
attacker-controlled), one stylesheet and one small script served from the package, no build
step. The script only refreshes a running run's page; without it every page works.

Access is the JSON API's (`access.check`, D13): every page asks for the permission its JSON
endpoint asks for, with the credentials of the `Authorization` header, else the token a browser
gave the login form, kept in an HttpOnly, SameSite=Strict cookie (Secure over HTTPS) and sent
as that bearer token. A page needs no right the API would not ask. Approve / Deny go through
the REST endpoint's own checks (`approvals.answer_as`: who may approve, who the approver is,
the allow-list), recorded with channel `web`. Every POST carries a form token derived from the
session's credentials (HMAC; a forged form from another site cannot know it) and is refused
when the browser says it comes from another origin. Pages show no run parameters, no Secret
and no sink payload: only what the record says happened.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import urllib.parse
from collections.abc import Mapping
from datetime import datetime
from importlib import resources
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import ChainableUndefined, Environment, PackageLoader

from punchingfist.runtime.agent.decisions import proposed_fix
from punchingfist.runtime.sinks.findings import ARGO_UI_ENV
from punchingfist.runtime.sinks.fixes import FixOutcome
from punchingfist.runtime.sinks.previews import parse_preview, rbac_line, why_not_offered
from punchingfist.server import reads as records
from punchingfist.server.access import Caller, Permission, check
from punchingfist.server.approvals import SPEAKS_FOR_OTHERS, answer_as
from punchingfist.server.requests import TooLarge, read_body
from punchingfist.server.state import ServerState

PREFIX = "/ui"
COOKIE = "pf_session"
SESSION_SECONDS = 12 * 3600
FORM_BYTES = 16 * 1024
RUNNING = ("pending", "submitted", "running")
STATIC = {"web.css": "text/css", "web.js": "text/javascript"}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
"""On every page: nothing but our own stylesheet and script runs, nobody frames the page."""

_templates = Environment(
    loader=PackageLoader("punchingfist.server", "templates"),
    autoescape=True,
    undefined=ChainableUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def url(text: str) -> str:
    """One path segment, quoted."""
    return urllib.parse.quote(text, safe="")


def link(value: Any) -> str | None:
    """`value` when it is an http(s) URL (never `javascript:` or another scheme), else None."""
    if isinstance(value, str) and value.lower().startswith(("https://", "http://")):
        return value
    return None


def when(value: Any) -> str:
    """An ISO timestamp as `YYYY-MM-DD HH:MM:SS` (UTC as stored); anything else as it is."""
    if not isinstance(value, str):
        return "" if value is None else str(value)
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return value


def fix_preview(value: Any) -> dict[str, Any] | None:
    """A gate's stored preview (#25) as its card shows it: the Preview, why it is not offered
    (None when it is) and RBAC's verdict in words; None for a gate without one."""
    shown = parse_preview(value)
    if shown is None:
        return None
    return {"p": shown, "why": why_not_offered(shown), "rbac": rbac_line(shown)}


def fix_of(answer: Any) -> str | None:
    """An agent answer's proposed fix: the action's description and its kubectl command."""
    return proposed_fix(answer) if isinstance(answer, Mapping) else None


def fix_line(entry: Any) -> str | None:
    """One of an incident's `remediations` (#25) in words: the action, how it ended, who
    approved it; None for an entry that is not one."""
    fix = FixOutcome.from_dict(entry)
    return fix.text() if fix is not None else None


_templates.filters.update(
    url=url,
    link=link,
    when=when,
    fix_preview=fix_preview,
    proposed_fix=fix_of,
    fix_line=fix_line,
)


def router(state: ServerState) -> APIRouter:
    routes = APIRouter(include_in_schema=False)
    fallback_key = secrets.token_bytes(32)
    """Keys the form token of a caller without a session cookie (a header, an open API)."""
    argo_ui = os.environ.get(ARGO_UI_ENV, "").rstrip("/")

    def form_token(request: Request) -> str:
        session = request.cookies.get(COOKIE)
        key = session.encode() if session else fallback_key
        return hmac.new(key, b"punchingfist web form", hashlib.sha256).hexdigest()

    def page(request: Request, template: str, code: int = 200, **context: Any) -> HTMLResponse:
        html = _templates.get_template(template).render(
            prefix=PREFIX,
            csrf=form_token(request),
            signed_in=COOKIE in request.cookies,
            **context,
        )
        return HTMLResponse(html, status_code=code, headers=HEADERS)

    def refused(request: Request, status: int, message: str) -> HTMLResponse:
        return page(request, "error.html", status, status=status, message=message)

    async def credentials(request: Request, permission: Permission) -> Caller | str | None:
        """`access.check` on the request's `Authorization` header, else its session cookie's
        token as that bearer token."""
        headers = {k.lower(): v for k, v in request.headers.items()}
        session = request.cookies.get(COOKIE)
        if session and "authorization" not in headers:
            headers["authorization"] = f"Bearer {session}"
        return await run_in_threadpool(
            check, state.access, state.approver_tokens, headers, permission
        )

    async def caller(request: Request, permission: Permission) -> Caller | Response:
        """The caller allowed `permission`, or the answer: to the login form when nobody is
        signed in, a 403 page when the credentials may not."""
        found = await credentials(request, permission)
        if found is None:
            target = urllib.parse.quote(request.url.path, safe="/")
            return RedirectResponse(f"{PREFIX}/login?next={target}", 303, headers=HEADERS)
        if isinstance(found, str):
            return refused(request, 403, f"{found} may not {permission}")
        return found

    async def form(request: Request, *, csrf: bool = True) -> dict[str, str] | Response:
        """The posted form, or the refusal: a post from another origin, a body that is not a
        form or too large, a missing or wrong form token."""
        if request.headers.get("sec-fetch-site") == "cross-site" or not same_origin(request):
            return refused(request, 403, "a form posted from another site is refused")
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            return refused(request, 415, "the page posts forms (application/x-www-form-urlencoded)")
        try:
            body = await read_body(request, FORM_BYTES)
            fields = urllib.parse.parse_qs(
                body.decode(), keep_blank_values=True, strict_parsing=False, max_num_fields=20
            )
        except TooLarge:
            return refused(request, 413, f"a form of more than {FORM_BYTES} bytes is refused")
        except (UnicodeDecodeError, ValueError):
            return refused(request, 400, "the form could not be read")
        data = {name: values[0] for name, values in fields.items()}
        if csrf and not hmac.compare_digest(data.get("csrf", ""), form_token(request)):
            return refused(request, 403, "the form is stale or not from this page: reload it")
        return data

    @routes.get("/", include_in_schema=False)
    def home() -> Response:
        return RedirectResponse(f"{PREFIX}/", 307)

    @routes.get(f"{PREFIX}/static/{{name}}")
    def static(name: str) -> Response:
        """The stylesheet and the script (public: the login page needs them, they hold
        nothing of the record)."""
        kind = STATIC.get(name)
        if kind is None:
            return Response("not found", 404, media_type="text/plain")
        body = resources.files("punchingfist.server").joinpath("static", name).read_bytes()
        return Response(body, media_type=kind, headers={"Cache-Control": "max-age=300"})

    @routes.get(f"{PREFIX}/login")
    def login_form(request: Request, next: str = f"{PREFIX}/") -> HTMLResponse:
        return page(request, "login.html", next=_local(next), error=None)

    @routes.post(f"{PREFIX}/login")
    async def login(request: Request) -> Response:
        data = await form(request, csrf=False)  # no session to forge yet; origin checked
        if isinstance(data, Response):
            return data
        token = data.get("token", "").strip()
        target = _local(data.get("next", ""))
        headers = {"authorization": f"Bearer {token}"}
        anyone = Permission("get", "runs")
        found = await run_in_threadpool(check, state.access, state.approver_tokens, headers, anyone)
        if not token or found is None:
            return page(request, "login.html", 401, next=target, error="That token is not valid.")
        answer = RedirectResponse(target, 303, headers=HEADERS)
        answer.set_cookie(
            COOKIE,
            token,
            max_age=SESSION_SECONDS,
            path=PREFIX,
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return answer

    @routes.post(f"{PREFIX}/logout")
    async def logout(request: Request) -> Response:
        data = await form(request)
        if isinstance(data, Response):
            return data
        answer = RedirectResponse(f"{PREFIX}/login", 303, headers=HEADERS)
        answer.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
        return answer

    @routes.get(f"{PREFIX}/")
    async def incidents(request: Request, status: str | None = None) -> Response:
        who = await caller(request, Permission("list", "incidents"))
        if isinstance(who, Response):
            return who
        gates = Permission("list", "approvals")
        shows_gates = isinstance(await credentials(request, gates), Caller)
        with state.sessions() as session:
            items = records.incidents(session, status, 100)
            waiting = len(records.approvals(session)) if shows_gates else 0
        return page(request, "incidents.html", incidents=items, waiting=waiting, status=status)

    @routes.get(f"{PREFIX}/incidents/{{incident_id}}")
    async def incident(request: Request, incident_id: str) -> Response:
        who = await caller(request, Permission("get", "incidents"))
        if isinstance(who, Response):
            return who
        shows_runs = isinstance(await credentials(request, Permission("list", "runs")), Caller)
        with state.sessions() as session:
            view = records.incident(session, incident_id)
            listed = view is not None and shows_runs
            runs = records.runs(session, None, 100, incident_id=incident_id) if listed else []
        if view is None:
            return refused(request, 404, f"no incident {incident_id}")
        return page(request, "incident.html", incident=view, runs=runs)

    @routes.get(f"{PREFIX}/runs")
    async def runs(request: Request, status: str | None = None) -> Response:
        who = await caller(request, Permission("list", "runs"))
        if isinstance(who, Response):
            return who
        with state.sessions() as session:
            items = records.runs(session, status, 100)
        return page(request, "runs.html", runs=items, status=status)

    @routes.get(f"{PREFIX}/runs/{{run_name}}")
    async def run(request: Request, run_name: str) -> Response:
        who = await caller(request, Permission("get", "runs", run_name))
        if isinstance(who, Response):
            return who
        with state.sessions() as session:
            view = records.run(session, run_name)
        if view is None:
            return refused(request, 404, f"no run {run_name}")
        argo = (
            f"{argo_ui}/workflows/{url(view['namespace'])}/{url(view['name'])}"
            if argo_ui and view.get("executor") == "argo"
            else None
        )
        return page(
            request,
            "run.html",
            run=view,
            tree=step_tree(view["steps"]),
            reports=[r for s in view["steps"] if (r := agent_report(s)) is not None],
            approvals=[a | {"run": view["name"]} for a in view["approvals"]],
            deliveries=[delivery(d) for d in view["sink_deliveries"]],
            argo=argo,
            live=view["status"] in RUNNING,
            names_approver=who.username in SPEAKS_FOR_OTHERS,
        )

    @routes.get(f"{PREFIX}/approvals")
    async def approvals(request: Request) -> Response:
        who = await caller(request, Permission("list", "approvals"))
        if isinstance(who, Response):
            return who
        with state.sessions() as session:
            items = records.approvals(session)
        return page(
            request,
            "approvals.html",
            approvals=items,
            names_approver=who.username in SPEAKS_FOR_OTHERS,
        )

    @routes.post(f"{PREFIX}/runs/{{run_name}}/approvals/{{gate}}")
    async def decide(request: Request, run_name: str, gate: str) -> Response:
        """Approve / Deny: the REST endpoint's permission and checks, channel `web`."""
        who = await caller(request, Permission("approve", "runs", run_name))
        if isinstance(who, Response):
            return who
        data = await form(request)
        if isinstance(data, Response):
            return data
        answer: dict[str, Any] = {"decision": data.get("decision"), "comment": data.get("comment")}
        if data.get("approver", "").strip():
            answer["approver"] = data["approver"]
        done = await run_in_threadpool(answer_as, state, who, run_name, gate, answer, "web")
        if done.status_code != 200:
            return refused(request, done.status_code, _error(done))
        return RedirectResponse(f"{PREFIX}/runs/{url(run_name)}", 303, headers=HEADERS)

    return routes


def step_tree(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The run's steps in the order they started (not started last), each with the gate that
    held it (`<step>-approval`) beneath it; the exit handler's tasks (sinks, outputs) last,
    under one `on exit` node."""

    def started(step: Mapping[str, Any]) -> tuple[bool, str]:
        return (step.get("started_at") is None, str(step.get("started_at") or ""))

    ordered = sorted(steps, key=started)
    names = {s["name"] for s in ordered}
    gates = {
        s["name"]: s
        for s in ordered
        if s["name"].endswith("-approval") and s["name"].removesuffix("-approval") in names
    }
    exit_tasks = [s for s in ordered if _on_exit(s)]
    tree: list[dict[str, Any]] = [
        {"step": s, "children": [gates[g]] if (g := f"{s['name']}-approval") in gates else []}
        for s in ordered
        if s["name"] not in gates and not _on_exit(s)
    ]
    if exit_tasks:
        tree.append({"step": None, "children": exit_tasks})
    return tree


def _on_exit(step: Mapping[str, Any]) -> bool:
    return step.get("kind") == "sink" or str(step.get("name", "")).startswith(("sink-", "pf-"))


def agent_report(step: Mapping[str, Any]) -> dict[str, Any] | None:
    """What an agent step found (its FinalAnswer), the tool calls it made and the tokens it
    spent; None for a step that is no agent's or has no answer yet."""
    data = step.get("result")
    if step.get("kind") != "agent" or not isinstance(data, Mapping):
        return None
    answer = _mapping(data.get("result"))
    confidence = answer.get("confidence")
    calls = [_call(c) for c in step.get("tool_calls") or data.get("tool_calls") or []]
    return {
        "step": step.get("name"),
        "answer": answer,
        "confidence": (
            f"{confidence:.0%}"
            if isinstance(confidence, (int, float)) and not isinstance(confidence, bool)
            else None
        ),
        "evidence": [e for e in answer.get("evidence") or [] if isinstance(e, str)],
        "recommendations": [r for r in answer.get("recommendations") or [] if isinstance(r, str)],
        "calls": [c for c in calls if c is not None],
        "prompt_tokens": step.get("prompt_tokens") or 0,
        "completion_tokens": step.get("completion_tokens") or 0,
        "cost_usd": step.get("cost_usd"),
        "model": data.get("model") if isinstance(data.get("model"), str) else None,
        "replayed": data.get("replayed") is True,
        "error": step.get("error"),
    }


def _call(call: Any) -> dict[str, Any] | None:
    """A tool call as the audit recorded it: id, tool, what it asked, status, error."""
    if not isinstance(call, Mapping):
        return None
    asked = _mapping(call.get("call"))
    argv = call.get("argv")
    shown = (
        " ".join(str(a) for a in argv)
        if isinstance(argv, list) and argv
        else asked.get("query") or asked.get("url") or asked.get("name") or ""
    )
    return {
        "id": str(call.get("id") or ""),
        "tool": str(call.get("tool") or asked.get("tool") or "?"),
        "asked": str(shown)[:500],
        "status": str(call.get("status") or "?"),
        "error": call.get("error"),
        "seconds": call.get("seconds"),
    }


def delivery(record: Mapping[str, Any]) -> dict[str, Any]:
    """A sink delivery as the page shows it: never its payload, only what happened."""
    detail = _mapping(record.get("detail"))
    reason = detail.get("error") or detail.get("reason")
    return {
        "sink": record.get("sink_name"),
        "type": record.get("sink_type"),
        "outcome": record.get("outcome"),
        "attempts": record.get("attempts"),
        "at": record.get("delivered_at") or record.get("created_at"),
        "link": link(detail.get("link")),
        "external_id": detail.get("external_id"),
        "http_status": detail.get("http_status"),
        "reason": reason if isinstance(reason, str) else None,
    }


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _local(target: str) -> str:
    """A path on this page (`/ui/...`), never another site's (`//evil`, `https://...`)."""
    if target.startswith(f"{PREFIX}/") and not target.startswith("//") and "\\" not in target:
        return target
    return f"{PREFIX}/"


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another origin than this server
    (its `Origin` header); a request without one (not a browser's form post) passes."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return urllib.parse.urlsplit(origin).netloc == host


def _error(response: JSONResponse) -> str:
    try:
        return str(json.loads(bytes(response.body))["error"])
    except (ValueError, KeyError, TypeError):
        return "the answer was not recorded"
