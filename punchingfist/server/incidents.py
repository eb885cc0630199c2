"""Humans add the truth: resolve an incident with a root cause, a note, lessons and a verdict on
what the runs found (`memory.remember.resolve`); read what is remembered of an incident."""

from __future__ import annotations

import uuid
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from punchingfist.api.resources import format_validation_error
from punchingfist.memory.remember import Resolution, resolve
from punchingfist.server.access import Permission
from punchingfist.server.requests import admit, problem
from punchingfist.server.runs import storable_object
from punchingfist.server.state import ServerState
from punchingfist.server.views import row
from punchingfist.store import Incident, KnowledgeEntry

MAX_TEXT = 10_000
SPEAKS_FOR_OTHERS = ("punchingfist:api-token", "anonymous")
"""Callers that are no person (the embedded API token, an open API): the body names who."""


class ResolveBody(BaseModel):
    """`{"root_cause"?, "note"?, "lessons_learned"?, "verdict"?: "right"|"wrong", "by"?}`"""

    model_config = ConfigDict(extra="forbid")

    root_cause: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT)
    note: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT)
    lessons_learned: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT)
    verdict: Literal["right", "wrong"] | None = None
    by: str | None = Field(default=None, min_length=1, max_length=200)
    """Who resolves: only with the embedded API token (or an open API); otherwise the
    credentials say who, and this must match them."""


def router(state: ServerState) -> APIRouter:
    routes = APIRouter()

    @routes.post("/api/v1/incidents/{incident_id}/resolve", tags=["incidents"])
    async def resolve_incident(incident_id: str, request: Request) -> JSONResponse:
        """Resolve the incident as a human says. Needs `resolve` on
        `incidents.punchingfist.io/<id>`. Answers the incident and its knowledge entries."""
        caller = await admit(state, request, Permission("resolve", "incidents", incident_id))
        if isinstance(caller, JSONResponse):
            return caller
        data = await storable_object(request, state, "the resolution")
        if isinstance(data, JSONResponse):
            return data
        try:
            body = ResolveBody.model_validate(data)
        except ValidationError as error:
            wrong = format_validation_error(error, data, prefix="body")
            return problem(
                422,
                "invalid resolution: " + ", ".join(f for f, _ in wrong),
                problems=[{"field": f, "message": m} for f, m in wrong],
            )
        named = body.by.strip() if body.by else None
        if caller.username in SPEAKS_FOR_OTHERS:
            by = named or caller.username
        elif named is not None and named != caller.username:
            return problem(
                403,
                f"these credentials are {caller.username!r}'s: they cannot resolve as {named!r}",
            )
        else:
            by = caller.username
        resolution = Resolution(
            by=by,
            root_cause=body.root_cause,
            note=body.note,
            lessons=body.lessons_learned,
            verdict=body.verdict,
        )
        with state.sessions.begin() as session:
            incident = _incident(session, incident_id)
            if incident is None:
                return problem(404, f"no incident {incident_id}")
            entries = resolve(session, incident, resolution)
            view = row(incident) | {"knowledge": [row(e) for e in entries]}
        return JSONResponse(view)

    @routes.get("/api/v1/incidents/{incident_id}/knowledge", tags=["incidents"])
    async def knowledge(incident_id: str, request: Request) -> JSONResponse:
        """What is remembered of the incident: its knowledge entries, oldest first."""
        caller = await admit(state, request, Permission("get", "incidents", incident_id))
        if isinstance(caller, JSONResponse):
            return caller
        with state.sessions() as session:
            incident = _incident(session, incident_id)
            if incident is None:
                return problem(404, f"no incident {incident_id}")
            query = (
                select(KnowledgeEntry)
                .where(KnowledgeEntry.incident_id == incident.id)
                .order_by(KnowledgeEntry.created_at)
            )
            return JSONResponse({"items": [row(e) for e in session.scalars(query)]})

    return routes


def _incident(session: Session, incident_id: str) -> Incident | None:
    try:
        key = uuid.UUID(incident_id)
    except ValueError:
        return None
    return session.get(Incident, key)
