"""Group commit for the webhook: notifications that arrive together are written together.

Each request hands its validated payload to one writer thread and waits for its own result.
The writer takes everything queued (up to a bound), stores it with `ingest_batch` in one
transaction and answers every waiting request. Nothing is acknowledged before its commit, so
Alertmanager's retry-on-error still loses nothing. If a batch fails, its notifications are
written one by one, so a single bad notification fails alone.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from punchingfist.api import Source
from punchingfist.api.alerts import AlertmanagerPayload
from punchingfist.server.intake import IntakeResult, ingest_batch

MAX_BATCH_ALERTS = 500
log = logging.getLogger("punchingfist.server.intake")


@dataclass
class _Job:
    sources: list[Source]
    payload: AlertmanagerPayload
    future: Future[IntakeResult] = field(default_factory=Future)


class IntakeWriter:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        namespace: str = "default",
        max_batch_alerts: int = MAX_BATCH_ALERTS,
    ) -> None:
        self.sessions = sessions
        engine = sessions.kw.get("bind")
        assert isinstance(engine, Engine), "the writer needs a sessionmaker bound to an engine"
        self.engine = engine
        self.namespace = namespace
        self.max_batch_alerts = max_batch_alerts
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batches = 0
        """How many transactions the writer committed (for tests and the benchmark)."""
        self._connection: Connection | None = None
        self._source_ids: dict[tuple[str, str], Any] = {}
        """Source row ids found by earlier batches; forgotten when a batch fails."""

    async def submit(self, sources: list[Source], payload: AlertmanagerPayload) -> IntakeResult:
        """Store one notification; returns once it is committed (raises what the store raised)."""
        return await asyncio.wrap_future(self.put(sources, payload))

    def put(self, sources: list[Source], payload: AlertmanagerPayload) -> Future[IntakeResult]:
        self._ensure_started()
        job = _Job(sources, payload)
        self._queue.put(job)
        return job.future

    def _ensure_started(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="intake-writer")  # fmt: skip
                self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then end the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)
            if not thread.is_alive() and self._connection is not None:
                self._connection.close()
                self._connection = None

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        """A transaction on the writer's own connection, kept from batch to batch: taking one
        from the pool for each batch would first ping the database (a round trip more). A
        connection the database dropped is replaced at the next batch."""
        connection = self._connection
        if connection is None or connection.closed or connection.invalidated:
            if connection is not None:
                connection.close()
            connection = self._connection = self.engine.connect()
        with Session(bind=connection, expire_on_commit=False) as session, session.begin():
            yield session

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, alerts, stopping = [first], len(first.payload.alerts), False
            while alerts < self.max_batch_alerts:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                jobs.append(job)
                alerts += len(job.payload.alerts)
            self._write(jobs)
            if stopping:
                return

    def _write(self, jobs: list[_Job], *, reconnected: bool = False) -> None:
        try:
            with self._transaction() as session:
                results = ingest_batch(session, [(j.sources, j.payload) for j in jobs],
                                       namespace=self.namespace,
                                       source_ids=self._source_ids)  # fmt: skip
        except Exception as error:  # every waiting request gets an answer, whatever happened
            self._source_ids.clear()
            if isinstance(error, DBAPIError) and error.connection_invalidated and not reconnected:
                # The kept connection died (a database restart or failover): once more on a
                # new one before anyone hears of it.
                log.info("the database connection was lost; writing the batch again")
                self._write(jobs, reconnected=True)
                return
            if len(jobs) == 1:
                self._write_alone(jobs[0], error)
                return
            log.info("a batch of %d notifications failed (%s); writing them one by one",
                     len(jobs), type(error).__name__)  # fmt: skip
            for job in jobs:
                self._write([job])
            return
        self.batches += 1
        for job, result in zip(jobs, results, strict=True):
            job.future.set_result(result)

    def _write_alone(self, job: _Job, error: Exception) -> None:
        """A concurrent writer (another replica) stored the same alert first: read it again."""
        if isinstance(error, IntegrityError):
            try:
                with self._transaction() as session:
                    result = ingest_batch(session, [(job.sources, job.payload)],
                                          namespace=self.namespace)[0]  # fmt: skip
            except Exception as again:
                job.future.set_exception(again)
                return
            self.batches += 1
            job.future.set_result(result)
            return
        if not isinstance(error, SQLAlchemyError):
            log.error("storing a notification failed", exc_info=error)
        job.future.set_exception(error)
