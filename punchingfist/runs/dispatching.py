"""Dispatching: the `Executor` protocol and the outbox that submits queued runs to one.

`dispatch_pending` submits what the outbox holds; it runs after the intake transaction,
never inside a request."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from punchingfist.errors import PunchingFistError
from punchingfist.runs.recording import Recorder
from punchingfist.store import OutboxEntry, WorkflowRun


class SubmitError(PunchingFistError):
    """A run could not be submitted. `temporary` errors are retried with backoff."""

    def __init__(self, message: str, *, temporary: bool = True) -> None:
        self.temporary = temporary
        super().__init__(message)


@dataclass(frozen=True)
class RunSubmission:
    name: str
    namespace: str
    workflow: str
    parameters: dict[str, Any]
    """`event` (a mapping), `source`, `fingerprint`: the compiled template's parameters."""


class Executor(Protocol):
    name: str

    def submit(self, run: RunSubmission) -> None:
        """Start the run; a run that already exists under that name counts as started."""

    def resume(
        self,
        name: str,
        namespace: str,
        gate: str,
        *,
        approved: bool,
        approver: str,
        comment: str,
        channel: str,
    ) -> None:
        """Answer the approval gate `gate` the run waits at; `SubmitError` (not temporary) when
        it does not wait there."""


log = logging.getLogger("punchingfist.outbox")
MAX_ATTEMPTS = 8


def dispatch_pending(
    sessions: sessionmaker[Session], executor: Executor, *, limit: int = 50
) -> int:
    """Submit due outbox entries; return how many were submitted."""
    now = datetime.now(UTC)
    submitted = 0
    with sessions.begin() as session:
        query = (
            select(OutboxEntry)
            .where(OutboxEntry.status == "pending")
            .where(or_(OutboxEntry.next_attempt_at.is_(None), OutboxEntry.next_attempt_at <= now))
            .order_by(OutboxEntry.created_at)
            .limit(limit)
        )
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        for entry in session.scalars(query):
            payload = entry.payload
            record = WorkflowRun.named(session, entry.run_name)
            run = RunSubmission(
                name=entry.run_name,
                namespace=payload["namespace"],
                workflow=payload["workflow"],
                parameters=record.arguments if record is not None else {},
            )
            try:
                executor.submit(run)
            except SubmitError as error:
                entry.attempts += 1
                entry.last_error = str(error)
                if not error.temporary or entry.attempts >= MAX_ATTEMPTS:
                    entry.status = "failed"
                    if record is not None:
                        Recorder(session).not_submitted(record, str(error))
                    log.error("run %s not submitted: %s", entry.run_name, error)
                else:
                    entry.next_attempt_at = now + timedelta(seconds=min(300, 2**entry.attempts))
                    log.warning(
                        "run %s: %s (attempt %d, retrying)", entry.run_name, error, entry.attempts
                    )
                continue
            entry.status = "done"
            entry.attempts += 1
            if record is not None:
                Recorder(session).submitted(record, executor.name)
            submitted += 1
            log.info("run %s submitted to %s", entry.run_name, executor.name)
    return submitted
