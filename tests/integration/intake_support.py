"""The webhook on a real store for the input tests: an authenticated Source, row counts."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from punchingfist.api import load_resources
from punchingfist.server import ServerState, create_app
from punchingfist.server.state import SecretStore
from punchingfist.store import Alert, AlertRelationship, Incident, OutboxEntry, WorkflowRun, upgrade
from punchingfist.store.models import Notification

TOKEN = "fuzz-t0ken"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
PATH = "/webhook/alerts"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "alerts" / "pod-crashlooping.json"
TABLES = {
    "alerts": Alert,
    "incidents": Incident,
    "runs": WorkflowRun,
    "outbox": OutboxEntry,
    "notifications": Notification,
    "relationships": AlertRelationship,
}


def source(config: str = "") -> str:
    return f"""
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {{name: am}}
spec:
  type: webhook
  triggerWorkflow: investigate-alert
  config:
    path: {PATH}
    authentication: {{type: bearer, secretRef: hook}}
    {config}
"""


def example() -> dict[str, Any]:
    """A valid notification of one firing alert (a fresh copy each time)."""
    return copy.deepcopy(json.loads(EXAMPLE.read_text()))


@contextmanager
def webhook(database_url: str, config: str = "") -> Iterator[tuple[TestClient, ServerState]]:
    """The real app on `database_url`, one webhook Source (bearer `TOKEN`) with `config`."""
    upgrade(database_url)
    state = ServerState.from_resources(
        load_resources(source(config)),
        database_url,
        secrets=SecretStore(values={("hook", "token"): TOKEN}),
    )
    try:
        with TestClient(create_app(state), raise_server_exceptions=False) as client:
            yield client, state
    finally:
        state.engine.dispose()


def counts(state: ServerState) -> dict[str, int]:
    """How many rows each table the intake writes holds."""
    with state.sessions() as session:
        return {
            name: int(session.scalar(select(func.count()).select_from(model)) or 0)
            for name, model in TABLES.items()
        }


def post(client: TestClient, body: Any) -> Any:
    """POST `body` (bytes as they are, anything else as JSON, NaN included) to the webhook."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(PATH, content=content, headers=HEADERS)
