"""Submit what the outbox holds. Runs after the intake transaction, never inside a request."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from punchingfist.executors.base import Executor, RunSubmission, SubmitError
from punchingfist.store import OutboxEntry, WorkflowRun

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
                        record.status, record.error = "error", str(error)
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
                record.status, record.executor = "submitted", executor.name
            submitted += 1
            log.info("run %s submitted to %s", entry.run_name, executor.name)
    return submitted
