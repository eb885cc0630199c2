"""The FastAPI application: webhook intake, read API, metrics, health."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from punchingfist import __version__
from punchingfist.api import Source
from punchingfist.api.alerts import AlertmanagerPayload
from punchingfist.api.resources import format_validation_error
from punchingfist.runs.dispatching import dispatch_pending
from punchingfist.runs.intake import IntakeRefused
from punchingfist.server import auth
from punchingfist.server import reads as records
from punchingfist.server.access import Permission, Resource, Verb
from punchingfist.server.also_firing import reply_later
from punchingfist.server.approvals import router as approvals_router
from punchingfist.server.chat import router as chat_router
from punchingfist.server.incidents import router as incidents_router
from punchingfist.server.pages import resolve_later
from punchingfist.server.requests import TooLarge, admit, problem, read_body, too_large
from punchingfist.server.runs import router as runs_router
from punchingfist.server.runs import trigger_routes
from punchingfist.server.similar import router as similar_router
from punchingfist.server.state import ServerState
from punchingfist.server.views import row
from punchingfist.server.web import router as web_router
from punchingfist.store import Alert, OutboxEntry, WorkflowRun
from punchingfist.store.models import AlertRelationship

log = logging.getLogger("punchingfist.server")


def _dispatcher(state: ServerState, stop: threading.Event) -> None:
    assert state.executor is not None
    while not stop.is_set():
        try:
            dispatch_pending(
                state.sessions,
                state.executor,
                daily_budget_usd=state.daily_llm_budget_usd,
                metrics=state.metrics,
            )
        except SQLAlchemyError as error:
            log.warning("outbox dispatch failed, retrying: %s", error)
        state.wake.wait(state.dispatch_interval)
        state.wake.clear()


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServerState = app.state.pf
    stop = threading.Event()
    thread = None
    if state.executor is not None:
        thread = threading.Thread(
            target=_dispatcher, args=(state, stop), daemon=True, name="outbox-dispatcher"
        )
        thread.start()
    yield
    state.writer.stop()
    stop.set()
    state.wake.set()
    if thread is not None:
        thread.join(timeout=10)


def create_app(state: ServerState) -> FastAPI:
    app = FastAPI(
        title="Punching Fist",
        version=__version__,
        description="Alertmanager webhook intake and the record of alerts, incidents and runs.",
        lifespan=_lifespan,
    )
    app.state.pf = state

    @app.exception_handler(SQLAlchemyError)
    async def _database_error(request: Request, error: SQLAlchemyError) -> Response:
        log.warning(
            "%s %s: the database failed (%s): answered 503",
            request.method,
            request.url.path,
            type(error).__name__,
        )
        return _database_down()

    @app.get("/healthz", tags=["health"])
    def healthz() -> Response:
        failing = [reason for probe in state.probes if (reason := probe()) is not None]
        if failing:
            return problem(503, "; ".join(failing))
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", tags=["health"])
    def readyz() -> Response:
        failing = [reason for probe in state.probes if (reason := probe()) is not None]
        if failing:
            return problem(503, "; ".join(failing))
        try:
            with state.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return problem(503, "database unreachable")
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["health"])
    def metrics() -> Response:
        with state.sessions() as session:
            pending = session.scalar(
                select(func.count()).select_from(OutboxEntry).where(OutboxEntry.status == "pending")
            )
            active = session.scalar(
                select(func.count())
                .select_from(WorkflowRun)
                .where(WorkflowRun.status.in_(("submitted", "running")))
            )
        state.metrics.outbox_pending.set(pending or 0)
        state.metrics.active_tasks.set(active or 0)
        return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def receive(request: Request) -> Response:
        started = time.perf_counter()
        path = request.url.path
        sources = state.webhook_sources(path)
        if not sources:
            return problem(404, f"no webhook Source serves {path}")
        headers = {k.lower(): v for k, v in request.headers.items()}

        def check() -> list[tuple[Source, bool | None]]:
            return [(s, auth.allowed(s, headers, state.secrets)) for s in sources]

        verdicts = await run_in_threadpool(check) if auth.reads_a_manager(sources) else check()
        admitted = [s for s, verdict in verdicts if verdict is not False]
        if not admitted:
            for source in sources:
                state.metrics.alerts_processed.labels(source.name, "rejected").inc()
            return problem(
                401,
                "missing or wrong credentials for this webhook",
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            body = await read_body(request, state.max_body_bytes)
        except TooLarge as error:
            return too_large(error.limit)
        try:  # parsed and validated in one pass
            payload = AlertmanagerPayload.model_validate_json(body)
        except ValidationError as error:
            return _invalid_payload(error, body)
        client = (request.client.host, request.client.port) if request.client else None
        result = await state.writer.submit(admitted, payload, client)
        for (source_name, status), count in result.by_source.items():
            state.metrics.alerts_processed.labels(source_name, status).inc(count)
        for seconds in result.resolution_seconds:
            state.metrics.resolution_seconds.observe(seconds)
        state.metrics.batch_notifications.observe(result.batch_size)
        for reason, count in result.suppressed_reasons.items():
            state.metrics.investigations_suppressed.labels(reason).inc(count)
        if result.joined:  # told in the runs' Slack threads, off the request path
            reply_later(state.sessions, result.joined, state.sinks, state.secrets.get)
        for name in result.runs:
            workflow = name.rsplit("-", 1)[0]
            state.metrics.runs_queued.labels(workflow).inc()
        state.metrics.request_seconds.labels(path).observe(time.perf_counter() - started)
        if result.runs:
            state.wake.set()
        if result.starts_in:  # due after their window: dispatch then, not a poll later
            asyncio.get_running_loop().call_later(result.starts_in + 0.01, state.wake.set)
        resolve_later(
            state.sessions, result.resolved_incidents, state.sinks, state.secrets.get, state.metrics
        )
        return JSONResponse(result.as_dict())

    app.include_router(runs_router(state))
    app.include_router(approvals_router(state))
    app.include_router(chat_router(state))

    app.include_router(incidents_router(state))
    app.include_router(web_router(state))  # the web page, /ui/
    app.state.pf_receive = receive
    add_source_routes(app)
    app.add_middleware(_WebhookShortcut, state=state, handler=receive)

    def reads(verb: Verb, resource: Resource) -> Any:
        """A dependency: the caller may `verb` `resource` (else the 401/403 is raised)."""

        async def allowed(request: Request) -> None:
            caller = await admit(state, request, Permission(verb, resource))
            if isinstance(caller, JSONResponse):
                raise _Refused(caller)

        return Depends(allowed)

    @app.exception_handler(_Refused)
    async def _refused(request: Request, refusal: _Refused) -> Response:
        return refusal.response

    @app.get("/api/v1/alerts", tags=["read"], dependencies=[reads("list", "alerts")])
    def alerts(
        status: str | None = None, severity: str | None = None, limit: int = 100
    ) -> dict[str, Any]:
        query = select(Alert).order_by(Alert.received_at.desc()).limit(records.limited(limit))
        if status:
            query = query.where(Alert.status == status)
        if severity:
            query = query.where(Alert.severity == severity)
        with state.sessions() as session:
            return {"items": [row(a) for a in session.scalars(query)]}

    @app.get("/api/v1/alerts/{alert_id}", tags=["read"], dependencies=[reads("get", "alerts")])
    def alert(alert_id: str) -> Response:
        with state.sessions() as session:
            key = records.as_uuid(alert_id)
            found = session.get(Alert, key) if key else None
            if found is None:
                return problem(404, f"no alert {alert_id}")
            view = row(found)
            view["relationships"] = [
                row(r)
                for r in session.scalars(
                    select(AlertRelationship).where(
                        (AlertRelationship.parent_alert_id == found.id)
                        | (AlertRelationship.child_alert_id == found.id)
                    )
                )
            ]
            view["runs"] = [
                records.run_view(r)
                for r in session.scalars(
                    select(WorkflowRun).where(WorkflowRun.alert_id == found.id)
                )
            ]
            return JSONResponse(view)

    app.include_router(similar_router(state), dependencies=[reads("get", "alerts")])

    @app.get("/api/v1/incidents", tags=["read"], dependencies=[reads("list", "incidents")])
    def incidents(status: str | None = None, limit: int = 100) -> dict[str, Any]:
        with state.sessions() as session:
            return {"items": records.incidents(session, status, limit)}

    @app.get(
        "/api/v1/incidents/{incident_id}", tags=["read"], dependencies=[reads("get", "incidents")]
    )
    def incident(incident_id: str) -> Response:
        with state.sessions() as session:
            view = records.incident(session, incident_id)
        if view is None:
            return problem(404, f"no incident {incident_id}")
        return JSONResponse(view)

    @app.get("/api/v1/runs", tags=["read"], dependencies=[reads("list", "runs")])
    def runs(status: str | None = None, limit: int = 100) -> dict[str, Any]:
        with state.sessions() as session:
            return {"items": records.runs(session, status, limit)}

    @app.get("/api/v1/runs/{run_id}", tags=["read"], dependencies=[reads("get", "runs")])
    def run(run_id: str) -> Response:
        with state.sessions() as session:
            view = records.run(session, run_id)
        if view is None:
            return problem(404, f"no run {run_id}")
        return JSONResponse(view)

    return app


class _Refused(Exception):
    """A read refused by `admit`: its 401/403 answer."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class _WebhookShortcut:
    """ASGI: a POST to a webhook path goes straight to the intake handler, past FastAPI's
    exception, routing and dependency layers, which add to every notification's CPU time
    (docs/operations.md, 'Performance decisions'). The webhook routes stay registered, for
    the OpenAPI document. What those layers did for the handler, it does here: a database
    error is a 503 (Alertmanager retries), anything else reaches the server-error layer (500).
    Every other request goes on to FastAPI."""

    def __init__(self, app: ASGIApp, state: ServerState, handler: Callable[..., Any]) -> None:
        self.app, self.state, self.handler = app, state, handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] not in self.state.webhook_paths()
        ):
            await self.app(scope, receive, send)
            return
        try:
            response = await self.handler(Request(scope, receive))
        except IntakeRefused as refused:  # logged where it was decided
            response = problem(refused.status, refused.message, problems=refused.problems)
        except SQLAlchemyError:  # logged by the intake writer
            response = _database_down()
        await response(scope, receive, send)


def _database_down() -> Response:
    # Alertmanager retries on 5xx: nothing was stored, so a retry is safe.
    return problem(503, "the database is unavailable; retry later")


def add_source_routes(app: FastAPI) -> list[str]:
    """Serve every webhook path and api Source endpoint of the state's Sources that has no
    route yet; return the routes added.

    Called again when Sources change at run time (the controller); a path whose Sources are
    gone keeps its route and answers 404.
    """
    state: ServerState = app.state.pf
    routes: dict[str, tuple[Any, dict[str, Any]]] = {
        path: (
            app.state.pf_receive,
            {"tags": ["intake"], "summary": f"Alertmanager webhook receiver ({path})"},
        )
        for path in state.webhook_paths()
    }
    routes |= trigger_routes(state)
    routed = {getattr(route, "path", None) for route in app.router.routes}
    added = []
    for path in sorted(set(routes) - routed):
        handler, options = routes[path]
        app.add_api_route(path, handler, methods=["POST"], **options)
        added.append(path)
    if added:
        app.openapi_schema = None
    return added


def _invalid_payload(error: ValidationError, body: bytes) -> Response:
    """400 for a body that is not strict JSON (a lone surrogate in a string included: it could
    not be stored), else 422 naming each field that is wrong."""
    syntax = [e["msg"] for e in error.errors(include_input=False) if e["type"] == "json_invalid"]
    if syntax:
        return problem(400, f"the body is not JSON: {syntax[0]}")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as bad:
        return problem(400, f"the body is not JSON: {bad}")
    found = format_validation_error(error, data, prefix="body")
    problems = [{"field": f, "message": m} for f, m in found]
    return problem(422, "invalid Alertmanager webhook payload (version 4)", problems=problems)
