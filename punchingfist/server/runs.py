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

from punchingfist.api import Source
from punchingfist.api.sources import ApiSource
from punchingfist.server import auth
from punchingfist.server.state import ServerState
from punchingfist.store import Alert, OutboxEntry, WorkflowRun
from punchingfist.store.models import RunStep, SinkDelivery


def problem(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


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
        name = _trigger_run_name(source, key)
        with state.sessions.begin() as session:
            if session.scalars(select(OutboxEntry).where(OutboxEntry.run_name == name)).first():
                return JSONResponse({"run": name, "created": False}, status_code=200)
            event = {**data, "context": {**source.spec.context, **data.get("context", {})}}
            parameters = {"event": event, "source": source.name, "fingerprint": ""}
            workflow = source.spec.trigger_workflow
            session.add(WorkflowRun(name=name, namespace=state.namespace, workflow_name=workflow,
                                    source_name=source.name, parameters=parameters))  # fmt: skip
            queued = {"workflow": workflow, "namespace": state.namespace}
            session.add(OutboxEntry(run_name=name, payload=queued))
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
            record = session.scalars(
                select(RunStep).where(RunStep.run_id == run.id, RunStep.name == step)
            ).first()
            usage = data.get("usage") or {}
            first_report = record is None
            previous = 0
            if record is None:
                record = RunStep(run_id=run.id, name=step, kind=data["kind"], phase=data["phase"])
                session.add(record)
            else:  # a retried report replaces the earlier one
                previous = record.prompt_tokens + record.completion_tokens
                run.tokens_total -= previous
                if record.cost_usd is not None and run.cost_usd is not None:
                    run.cost_usd -= float(record.cost_usd)
            record.kind, record.phase = data["kind"], data["phase"]
            record.result = data
            record.tool_calls = data.get("tool_calls")
            record.error = data.get("error")
            record.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            record.completion_tokens = int(usage.get("completion_tokens") or 0)
            record.cost_usd = usage.get("cost_usd")
            record.finished_at = now
            run.tokens_total += record.prompt_tokens + record.completion_tokens
            if record.cost_usd is not None:
                run.cost_usd = (run.cost_usd or 0.0) + float(record.cost_usd)
            if run.status in ("pending", "submitted"):
                run.status, run.started_at = "running", run.started_at or now
            answer = data.get("result")
            if data["kind"] == "agent" and data.get("success") and isinstance(answer, dict):
                _triaged(state, session.get(Alert, run.alert_id) if run.alert_id else None,
                         answer, now)  # fmt: skip
        tokens = record.prompt_tokens + record.completion_tokens - previous
        if tokens > 0:
            state.metrics.llm_tokens.labels(run.workflow_name).inc(tokens)
        if first_report and isinstance(data.get("seconds"), (int, float)):
            state.metrics.task_duration.labels(data["kind"], data["phase"]).observe(data["seconds"])
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
            session.add(SinkDelivery(
                run_id=run.id, sink_name=sink, sink_type=data["type"], outcome=outcome,
                detail=data, attempts=int(data.get("attempts") or 1),
                delivered_at=datetime.now(UTC) if outcome == "delivered" else None,
            ))  # fmt: skip
        state.metrics.sink_deliveries.labels(sink, outcome).inc()
        return JSONResponse({"run": run_name, "sink": sink, "outcome": outcome})

    return routes


def _reporter(state: ServerState, request: Request) -> bool:
    """Reports need `Authorization: Bearer <report token>` when the server has one."""
    if not state.report_token:
        return True
    given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    return hmac.compare_digest(given.encode(), state.report_token.encode())


def _trigger_run_name(source: Source, key: str) -> str:
    digest = hashlib.sha256(f"{source.name}\x00{key}".encode()).hexdigest()[:10]
    return f"{source.spec.trigger_workflow[:52]}-{digest}"


def _check_report(data: Any) -> list[dict[str, str]]:
    if not isinstance(data, dict):
        return [{"field": "body", "message": "must be a JSON object (the step's result.json)"}]
    problems = []
    for field, kind in (("kind", str), ("phase", str), ("success", bool)):
        if not isinstance(data.get(field), kind):
            problems.append({"field": f"body.{field}", "message": f"required {kind.__name__}"})
    return problems


def _triaged(
    state: ServerState, alert: Alert | None, answer: dict[str, Any], now: datetime
) -> None:
    if alert is None or alert.triage_completed_at is not None:
        return
    alert.triage_completed_at = now
    alert.ai_analysis = answer
    confidence = answer.get("confidence")
    alert.ai_confidence = float(confidence) if isinstance(confidence, (int, float)) else None
    received = (
        alert.received_at if alert.received_at.tzinfo else alert.received_at.replace(tzinfo=UTC)
    )
    state.metrics.triage_seconds.observe((now - received).total_seconds())
