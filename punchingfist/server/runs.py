"""Run endpoints: the trigger API of `api` Sources and step reports from `pf-runtime`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError
from sqlalchemy.orm import Session

from punchingfist.api.resources import format_validation_error
from punchingfist.api.sources import ApiConfig, ApiSource
from punchingfist.runs.queueing import queue_run
from punchingfist.runs.recording import Recorder
from punchingfist.server import auth
from punchingfist.server.access import Caller, Permission
from punchingfist.server.pages import resolve_later
from punchingfist.server.requests import admit, problem, read_json
from punchingfist.server.state import ServerState
from punchingfist.store import Incident, WorkflowRun

MAX_TOKENS_PER_STEP = 10_000_000
MAX_COST_PER_STEP = 10_000.0
DEFAULT_TRIGGER_ENDPOINT: str = ApiConfig.model_fields["endpoint"].default
_Finite = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class _Report(BaseModel):
    """Known fields are typed; the rest of result.json is kept as it is."""

    model_config = ConfigDict(extra="allow")


class Usage(_Report):
    prompt_tokens: Annotated[int, Field(ge=0, le=MAX_TOKENS_PER_STEP)] = 0
    completion_tokens: Annotated[int, Field(ge=0, le=MAX_TOKENS_PER_STEP)] = 0
    cost_usd: Annotated[float, Field(ge=0, le=MAX_COST_PER_STEP, allow_inf_nan=False)] | None = None


class StepReport(_Report):
    """`POST /api/v1/runs/{run}/steps/{step}`: a step's result.json."""

    kind: Literal["cli", "agent", "sink", "approval", "outputs"]
    phase: Literal["Succeeded", "Failed", "Skipped", "Error", "Omitted"]
    success: StrictBool
    seconds: _Finite | None = None
    error: Annotated[str, Field(max_length=20_000)] | None = None
    usage: Usage | None = None
    tool_calls: Annotated[list[dict[str, Any]], Field(max_length=500)] | None = None


class DeliveryReport(_Report):
    """`POST /api/v1/runs/{run}/sinks/{sink}`: a sink's delivery record."""

    type: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,31}$")]
    outcome: Literal["delivered", "skipped", "failed"]
    attempts: Annotated[int, Field(ge=1, le=1000)] = 1


def router(state: ServerState) -> APIRouter:
    routes = APIRouter()

    @routes.post("/api/v1/runs/{run_name}/steps/{step}", tags=["runs"])
    async def report(run_name: str, step: str, request: Request) -> JSONResponse:
        """A step's result, as `pf-runtime` writes it (result.json). Needs `report` on
        `runs.punchingfist.io` (a step pod's ServiceAccount token: only for its own run)."""
        done = await _record(state, request, run_name, step, StepReport)
        if isinstance(done, JSONResponse):
            return done
        data = done
        return JSONResponse({"run": run_name, "step": step, "phase": data["phase"]})

    @routes.post("/api/v1/runs/{run_name}/sinks/{sink}", tags=["runs"])
    async def delivery(run_name: str, sink: str, request: Request) -> JSONResponse:
        """A sink's delivery result: `{"type", "outcome": delivered|skipped|failed, ...}`."""
        done = await _record(state, request, run_name, sink, DeliveryReport)
        if isinstance(done, JSONResponse):
            return done
        data = done
        return JSONResponse({"run": run_name, "sink": sink, "outcome": data["outcome"]})

    return routes


def trigger_routes(state: ServerState) -> dict[str, tuple[Any, dict[str, Any]]]:
    """`{endpoint}/{source_name}` for the `spec.config.endpoint` of every api Source (default
    `/api/v1/trigger`): path -> (handler, route options)."""
    endpoints = {DEFAULT_TRIGGER_ENDPOINT} | {
        s.spec.config.endpoint for s in state.sources if isinstance(s.spec, ApiSource)
    }
    return {
        endpoint.rstrip("/") + "/{source_name}": (
            _trigger_handler(state, endpoint),
            {
                "status_code": 202,
                "tags": ["runs"],
                "summary": f"Start an api Source's workflow ({endpoint})",
            },
        )
        for endpoint in endpoints
    }


def _trigger_handler(state: ServerState, endpoint: str) -> Any:
    async def trigger(source_name: str, request: Request) -> JSONResponse:
        """Start the Source's workflow with the JSON body as the event (`.source.data`).
        An `Idempotency-Key` header makes retries map to the same run. The Source's own
        `authentication`, when it has one, decides who may; else `trigger` on
        `sources.punchingfist.io/<name>`."""
        source = next((s for s in state.sources if s.name == source_name), None)
        if (
            source is None
            or not isinstance(source.spec, ApiSource)
            or source.spec.config.endpoint.rstrip("/") != endpoint.rstrip("/")
        ):
            return problem(404, f"no api Source named {source_name!r} at {endpoint}")
        headers = {k.lower(): v for k, v in request.headers.items()}
        verdict = auth.allowed(source, headers, state.secrets)
        if verdict is False:
            return problem(
                401,
                "missing or wrong credentials for this Source",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if verdict is None:
            caller = await admit(state, request, Permission("trigger", "sources", source.name))
            if isinstance(caller, JSONResponse):
                return caller
        data = await storable_object(request, state, "the event")
        if isinstance(data, JSONResponse):
            return data
        key = headers.get("idempotency-key") or uuid.uuid4().hex
        if len(key) > 200 or not key.isprintable():
            return problem(
                422, "the Idempotency-Key header must be printable, 200 characters at most"
            )
        context = data.get("context")
        event = {
            **data,
            "context": {**source.spec.context, **(context if isinstance(context, dict) else {})},
        }
        name, created = queue_run(state.sessions, source, event, key, namespace=state.namespace)
        if not created:
            return JSONResponse({"run": name, "created": False}, status_code=200)
        state.metrics.runs_queued.labels(source.spec.trigger_workflow).inc()
        state.wake.set()
        return JSONResponse({"run": name, "created": True}, status_code=202)

    return trigger


async def _record(
    state: ServerState,
    request: Request,
    run_name: str,
    name: str,
    model: type[_Report],
) -> dict[str, Any] | JSONResponse:
    """Admit a report about step or sink `name` of a run, validate it and record it
    (`punchingfist.runs.recording`): the report, or the 4xx answer."""
    caller = await admit(state, request, Permission("report", "runs", run_name))
    if isinstance(caller, JSONResponse):
        return caller
    if (refused := _foreign_pod(caller, run_name)) is not None:
        return refused
    found = await _validated(request, state, model)
    if isinstance(found, JSONResponse):
        return found
    data: dict[str, Any] = found.model_dump(mode="json", exclude_none=True)
    kind = "sinks" if model is DeliveryReport else "steps"
    with state.sessions.begin() as session:
        run = WorkflowRun.named(session, run_name)
        if run is None:
            return problem(404, f"no run {run_name!r}")
        if (unknown := _unknown(state, run.workflow_name, kind, name)) is not None:
            return unknown
        recorder = Recorder(session, state.metrics)
        if model is DeliveryReport:
            recorder.report_delivery(run, name, data, datetime.now(UTC))
        else:
            recorder.report_step(run, name, data, datetime.now(UTC))
        closed = _closed_incident(session, run, data)
    if closed is not None:  # a page of an incident that resolved while its run went on
        resolve_later(state.sessions, [closed], state.sinks, state.secrets.get, state.metrics)
    return data


def _closed_incident(session: Session, run: WorkflowRun, data: dict[str, Any]) -> str | None:
    """The run's incident, when this report is of a sink and the incident has resolved
    already: its pages are resolved now (`server.pages` skips those resolved before)."""
    if run.incident_id is None or not (
        data.get("type") == "pagerduty" or data.get("kind") == "sink"
    ):
        return None
    incident = session.get(Incident, run.incident_id)
    return str(incident.id) if incident is not None and incident.status == "resolved" else None


async def _validated(request: Request, state: ServerState, model: type[_Report]) -> Any:
    """The body as `model`, or the 4xx answer naming each wrong field."""
    data = await read_json(request, state)
    if isinstance(data, JSONResponse):
        return data
    if not isinstance(data, dict):
        return problem(422, f"the body must be a JSON object ({model.__doc__ or ''})".strip())
    if found := unstorable(data):
        return problem(422, "the report cannot be stored", problems=found)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        wrong = format_validation_error(error, data, prefix="body")
        return problem(
            422,
            f"invalid {model.__name__}",
            problems=[{"field": f, "message": m} for f, m in wrong],
        )


async def storable_object(
    request: Request, state: ServerState, what: str
) -> dict[str, Any] | JSONResponse:
    """The body as a JSON object the store can hold, or the 4xx answer naming `what`."""
    data = await read_json(request, state)
    if isinstance(data, JSONResponse):
        return data
    if not isinstance(data, dict):
        return problem(422, f"the body must be a JSON object ({what})")
    if found := unstorable(data):
        return problem(422, f"{what} cannot be stored", problems=found)
    return data


def unstorable(data: Any) -> list[dict[str, str]]:
    """Why the database could not store this JSON (each field and why), before any write."""
    from punchingfist.api.storable import problems

    return [{"field": f, "message": m} for f, m in problems(data, "body")]


def _foreign_pod(caller: Caller, run_name: str) -> JSONResponse | None:
    """A step pod's token reports for its own run only (Argo names its pods `<run>-...`)."""
    pod = caller.pod
    if pod is not None and not pod.startswith(f"{run_name}-"):
        return problem(403, f"pod {pod} is not a step of run {run_name}")
    return None


def _unknown(state: ServerState, workflow_name: str, kind: str, name: str) -> JSONResponse | None:
    """A 422 unless `name` is a step (or sink) of the run's workflow: only those become
    metric labels and rows."""
    workflow = state.workflows.get(workflow_name)
    if workflow is None:
        return problem(
            422, f"workflow {workflow_name!r} is not served here: its {kind} are unknown"
        )
    names = {item.name for item in workflow.spec.sinks}
    if kind == "steps":  # a sink's task reports as a step too
        names |= {item.name for item in workflow.spec.steps}
    if name not in names:
        listed = ", ".join(sorted(names)) or "none"
        return problem(
            422, f"{name!r} is not one of the {kind} of workflow {workflow_name!r} ({listed})"
        )
    return None
