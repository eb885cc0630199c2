"""`GET /api/v1/alerts/{id}/similar`: the past incidents most like a stored alert (#22)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from punchingfist.memory.retrieval import THRESHOLD, alert_of, similar
from punchingfist.server.requests import problem
from punchingfist.server.state import ServerState
from punchingfist.store import Alert

MAX_LIMIT = 20


def router(state: ServerState) -> APIRouter:
    """The route; the app includes it behind the same access check as `GET /api/v1/alerts/{id}`."""
    routes = APIRouter()

    @routes.get("/api/v1/alerts/{alert_id}/similar", tags=["read"])
    def similar_incidents(alert_id: str, limit: int = 3, threshold: float = THRESHOLD) -> Response:
        try:
            key = uuid.UUID(alert_id)
        except ValueError:
            return problem(404, f"no alert {alert_id}")
        if not 0.0 <= threshold <= 1.0:
            return problem(422, "threshold must be between 0 and 1")
        with state.sessions() as session:
            found = session.get(Alert, key)
            if found is None:
                return problem(404, f"no alert {alert_id}")
            matches = similar(
                session, alert_of(found), limit=max(1, min(limit, MAX_LIMIT)), threshold=threshold
            )
        return JSONResponse(
            {"alert_id": alert_id, "threshold": threshold, "items": [m.as_dict() for m in matches]}
        )

    return routes
