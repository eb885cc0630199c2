"""Run endpoints: the trigger API of `api` Sources and step reports from `pf-runtime`."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from punchingfist.api import Source
from punchingfist.api.sources import ApiSource
from punchingfist.server import auth
from punchingfist.server.state import ServerState
from punchingfist.store import OutboxEntry, WorkflowRun
from punchingfist.store.recording import StepRecorded, record_delivery, record_step


def problem(
    status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """An error answer: `{"error": message, **extra}`, with `headers` on the response."""
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


async def read_json(request: Request, state: ServerState) -> Any | JSONResponse:
    body = await request.body()
    if len(body) > state.max_body_bytes:
        return problem(413, f"body larger than {state.max_body_bytes} bytes")
    try:
        return json.loads(body or b"{}")
    except ValueError as error:
        return problem(400, f"the body is not JSON: {error}")


def router(state: ServerState) -> APIRouter:
    routes = APIRouter()

    @routes.post("/api/v1/trigger/{source_name}", status_code=202, tags=["runs"])
    async def trigger(source_name: str, request: Request) -> JSONResponse:
        """Start the Source's workflow with the JSON body as the event (`.source.data`).
        An `Idempotency-Key` header makes retries map to the same run."""
        source = next((s for s in state.sources if s.name == source_name), None)
        if source is None or not isinstance(source.spec, ApiSource):
            return problem(404, f"no api Source named {source_name!r}")
        headers = {k.lower(): v for k, v in request.headers.items()}
        if auth.allowed(source, headers, state.secrets) is False:
            return problem(401, "missing or wrong credentials for this Source")
        data = await read_json(request, state)
        if isinstance(data, JSONResponse):
            return data
        if not isinstance(data, dict):
            return problem(422, "the body must be a JSON object (the event)")
        key = headers.get("idempotency-key") or uuid.uuid4().hex
        context = data.get("context")
        event = {**data, "context": {**source.spec.context,
                                     **(context if isinstance(context, dict) else {})}}  # fmt: skip
        name, created = queue_run(state.sessions, source, event, key, namespace=state.namespace)
        if not created:
            return JSONResponse({"run": name, "created": False}, status_code=200)
        state.metrics.runs_queued.labels(source.spec.trigger_workflow).inc()
        state.wake.set()
        return JSONResponse({"run": name, "created": True}, status_code=202)

    @routes.post("/api/v1/runs/{run_name}/steps/{step}", tags=["runs"])
    async def report(run_name: str, step: str, request: Request) -> JSONResponse:
        """A step's result, as `pf-runtime` writes it (result.json)."""
        if not _reporter(state, request):
            return problem(401, "missing or wrong report token")
        data = await read_json(request, state)
        if isinstance(data, JSONResponse):
            return data
        problems = _check_report(data)
        if problems:
            return problem(422, "invalid step report", problems=problems)
        now = datetime.now(UTC)
        with state.sessions.begin() as session:
            run = WorkflowRun.named(session, run_name)
            if run is None:
                return problem(404, f"no run {run_name!r}")
            recorded = record_step(session, run, step, data, now)
            workflow = run.workflow_name
        observe_step(state, workflow, data, recorded)
        return JSONResponse({"run": run_name, "step": step, "phase": data["phase"]})

    @routes.post("/api/v1/runs/{run_name}/sinks/{sink}", tags=["runs"])
    async def delivery(run_name: str, sink: str, request: Request) -> JSONResponse:
        """A sink's delivery result: `{"type", "outcome": delivered|skipped|failed, ...}`."""
        if not _reporter(state, request):
            return problem(401, "missing or wrong report token")
        data = await read_json(request, state)
        if isinstance(data, JSONResponse):
            return data
        outcome = data.get("outcome") if isinstance(data, dict) else None
        if outcome not in ("delivered", "skipped", "failed") or not isinstance(
            data.get("type"), str
        ):
            return problem(422, "body needs `type` and `outcome` (delivered, skipped or failed)")
        with state.sessions.begin() as session:
            run = WorkflowRun.named(session, run_name)
            if run is None:
                return problem(404, f"no run {run_name!r}")
            record_delivery(session, run, sink, data, datetime.now(UTC))
        state.metrics.sink_deliveries.labels(sink, outcome).inc()
        return JSONResponse({"run": run_name, "sink": sink, "outcome": outcome})

    return routes


def _reporter(state: ServerState, request: Request) -> bool:
    """Reports need `Authorization: Bearer <report token>` when the server has one."""
    if not state.report_token:
        return True
    given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    return hmac.compare_digest(given.encode(), state.report_token.encode())


def trigger_run_name(source: Source, key: str) -> str:
    """Deterministic (D7): the same Source and idempotency key always name the same run."""
    digest = hashlib.sha256(f"{source.name}\x00{key}".encode()).hexdigest()[:10]
    return f"{source.spec.trigger_workflow[:52]}-{digest}"


def queue_run(
    sessions: sessionmaker[Session], source: Source, event: dict[str, Any], key: str, *,
    namespace: str, fingerprint: str = "",
) -> tuple[str, bool]:  # fmt: skip
    """Queue a run of the Source's workflow (run row + outbox entry, one transaction), the path
    every trigger takes (api, chat, kubernetes). Returns (run name, whether it is new): a key
    seen before maps to the run it started, which is not queued again."""
    name = trigger_run_name(source, key)
    workflow = source.spec.trigger_workflow
    try:
        with sessions.begin() as session:
            if session.scalars(select(OutboxEntry).where(OutboxEntry.run_name == name)).first():
                return name, False
            parameters = {"event": event, "source": source.name, "fingerprint": fingerprint}
            session.add(WorkflowRun(name=name, namespace=namespace, workflow_name=workflow,
                                    source_name=source.name, fingerprint=fingerprint or None,
                                    parameters=parameters))  # fmt: skip
            session.add(
                OutboxEntry(run_name=name, payload={"workflow": workflow, "namespace": namespace})
            )
    except IntegrityError:  # the same key, queued concurrently: that run stands
        return name, False
    return name, True


def _check_report(data: Any) -> list[dict[str, str]]:
    if not isinstance(data, dict):
        return [{"field": "body", "message": "must be a JSON object (the step's result.json)"}]
    problems = []
    for field, kind in (("kind", str), ("phase", str), ("success", bool)):
        if not isinstance(data.get(field), kind):
            problems.append({"field": f"body.{field}", "message": f"required {kind.__name__}"})
    return problems


def observe_step(state: ServerState, workflow: str, data: dict[str, Any],
                 recorded: StepRecorded) -> None:  # fmt: skip
    """The metrics a recorded step feeds."""
    if recorded.tokens_added > 0:
        state.metrics.llm_tokens.labels(workflow).inc(recorded.tokens_added)
    if recorded.first_report and isinstance(data.get("seconds"), (int, float)):
        state.metrics.task_duration.labels(data["kind"], data["phase"]).observe(data["seconds"])
    if recorded.triage_seconds is not None:
        state.metrics.triage_seconds.observe(recorded.triage_seconds)
