"""Queueing runs (D7): their names, and the run row and outbox entry every Source writes.

A run is queued by writing its `workflow_runs` row and its `outbox` entry in one transaction;
the dispatcher (`runs.dispatching`) submits what the outbox holds, so a crash between the two
loses nothing. Names are deterministic, so a retry maps to the run it started and never
queues a second one: a webhook alert's name comes from its Source, fingerprint and start
(`alert_run_name`; `runs.intake` writes those rows in bulk, `queued_rows`), any other
trigger's from its Source and an idempotency key (`trigger_run_name`, `queue_run`: the api,
chat and kubernetes Sources).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from punchingfist.api import Source
from punchingfist.api.runspec import RunParameters
from punchingfist.store import OutboxEntry, WorkflowRun


def run_name(workflow: str, *key: str) -> str:
    """The name of the run of `workflow` for `key`: the workflow's name (cut to leave room)
    and a digest of the key, 63 characters at most. The same key always gives the same
    name."""
    digest = hashlib.sha256("\x00".join(key).encode()).hexdigest()[:10]
    return f"{workflow[: 63 - 11]}-{digest}"


def alert_run_name(source: Source, fingerprint: str, starts_at: datetime) -> str:
    """An alert's run: an Alertmanager retry maps to the same run, never a second one."""
    return run_name(source.spec.trigger_workflow, source.name, fingerprint, starts_at.isoformat())


def trigger_run_name(source: Source, key: str) -> str:
    """A triggered run: the same Source and idempotency key always name the same run."""
    return run_name(source.spec.trigger_workflow, source.name, key)


def run_parameters(source: Source, event: dict[str, Any], fingerprint: str) -> dict[str, Any]:
    """A run's parameters as its row keeps them: its event, Source and fingerprint."""
    return RunParameters(event, source.name, fingerprint).stored()


def queued_rows(
    name: str,
    source: Source,
    namespace: str,
    parameters: dict[str, Any],
    fingerprint: str | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The columns of a queued run's `workflow_runs` row and of its `outbox` entry (ids and
    the links to its alert, incident and notification are the caller's)."""
    workflow = source.spec.trigger_workflow
    run = {
        "name": name,
        "namespace": namespace,
        "workflow_name": workflow,
        "source_name": source.name,
        "fingerprint": fingerprint,
        "parameters": parameters,
        "status": "pending",
        "executor": "argo",
    }
    # The parameters live on the run row; the outbox only says what to submit.
    outbox = {"run_name": name, "payload": {"workflow": workflow, "namespace": namespace}}
    return run, outbox


def queue_run(
    sessions: sessionmaker[Session],
    source: Source,
    event: dict[str, Any],
    key: str,
    *,
    namespace: str,
    fingerprint: str = "",
) -> tuple[str, bool]:
    """Queue a run of the Source's workflow (run row + outbox entry, one transaction), the path
    every trigger takes (api, chat, kubernetes). Returns (run name, whether it is new): a key
    seen before maps to the run it started, which is not queued again."""
    name = trigger_run_name(source, key)
    parameters = run_parameters(source, event, fingerprint)
    run, outbox = queued_rows(name, source, namespace, parameters, fingerprint or None)
    try:
        with sessions.begin() as session:
            if session.scalars(select(OutboxEntry).where(OutboxEntry.run_name == name)).first():
                return name, False
            session.add(WorkflowRun(**run))
            session.add(OutboxEntry(**outbox))
    except IntegrityError:  # the same key, queued concurrently: that run stands
        return name, False
    return name, True
