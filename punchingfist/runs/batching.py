"""Group commit for the webhook: notifications that arrive together are written together.

Each request hands its validated payload to one writer thread and waits for its own result.
The writer takes everything queued (up to a bound), stores it with `ingest_batch` in one
transaction and answers every waiting request. Nothing is acknowledged before its commit, so
Alertmanager's retry-on-error still loses nothing. If a batch fails, its notifications are
written one by one, so a single bad notification fails alone.

A request hears of a failure as Alertmanager should act on it, and every failure is logged
(its error class, never the payload): values the database refused (which the payload model
should have caught) are an `IntakeRefused` 422, which Alertmanager does not retry; any other
database error means the database is unavailable (the server answers 503, Alertmanager
retries); anything else is our bug (500, logged with its traceback).

A batch may wait a little for notifications that are due (`IntakeWriter._gather`). Senders
that keep their connection alive and post again as soon as they are answered (Alertmanager
under load, the benchmark) otherwise fall into step with the writer one at a time: each
batch starts with the one notification that came while the last was written, and the
others arrive just after it started. A batch pays for its round trips, lookups and
statements besides its rows, so one notification per batch costs more CPU per alert than
several (docs/operations.md, 'Performance decisions').
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from punchingfist.api import Source
from punchingfist.api.alerts import AlertmanagerPayload
from punchingfist.runs.intake import IntakeRefused, IntakeResult, admit, ingest_batch
from punchingfist.store.batches import writer_connection

MAX_BATCH_ALERTS = 500
LINGER_SECONDS = 0.002
"""The longest a batch waits for notifications that are due (see `IntakeWriter._gather`)."""
RECENT_SECONDS = 0.05
"""A kept-alive connection that posted this recently is expected to post again (it is busy)."""
MAX_WRITERS = 8
"""Each writer keeps a connection; the engine's pool (20) has to serve the API's reads too."""
log = logging.getLogger("punchingfist.runs.intake")


@dataclass
class _Job:
    sources: list[Source]
    payload: AlertmanagerPayload
    future: Future[IntakeResult] = field(default_factory=Future)


Client = tuple[str, int]
"""A request's connection: the peer's address and port."""


def writers_fit(writers: int, dialect: str) -> bool:
    """Whether a store of this dialect takes that many writers: SQLite one at a time."""
    return writers == 1 or (1 < writers <= MAX_WRITERS and dialect == "postgresql")


class _Lane:
    """One writer thread's own things: its connection, kept from batch to batch (taking one
    from the pool for each batch would first ping the database, a round trip more), and the
    Source row ids its batches found (forgotten when a batch fails)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.thread: threading.Thread | None = None
        self.connection: Connection | None = None
        self.source_ids: dict[tuple[str, str], Any] = {}
        self.batches = 0


class IntakeWriter:
    """Group commit with `writers` threads, each writing its own batches on its own
    connection (PostgreSQL only: SQLite has one writer at a time). Batches that touch the same
    alerts, groups or incidents run one after the other, as they do across server replicas
    (advisory locks, see `intake._locks`).

    More than one writer overlaps one batch's round trips and database time with another's,
    which pays when the database is across a network. The threads share the interpreter lock
    with the request handlers, though, so where the database shares the server's cores one
    writer stores more (docs/operations.md, 'Performance decisions')."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        namespace: str = "default",
        max_batch_alerts: int = MAX_BATCH_ALERTS,
        writers: int = 1,
        linger: float = LINGER_SECONDS,
    ) -> None:
        self.sessions = sessions
        engine = sessions.kw.get("bind")
        assert isinstance(engine, Engine), "the writer needs a sessionmaker bound to an engine"
        self.engine = engine
        self.namespace = namespace
        self.max_batch_alerts = max_batch_alerts
        self.linger = linger
        self._recent: dict[Client, tuple[float, int]] = {}
        """Connection -> when it last posted, and how many times in a row it posted within
        `RECENT_SECONDS` of the one before (written by the request thread, read and pruned by
        the writers)."""
        if not writers_fit(writers, engine.dialect.name):
            raise ValueError(
                f"{writers} intake writers on {engine.dialect.name}: give 1, or "
                f"up to {MAX_WRITERS} on PostgreSQL"
            )
        self._lanes = [_Lane(f"intake-writer-{n}") for n in range(writers)]
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()

    @property
    def batches(self) -> int:
        """How many transactions the writers committed (for tests and the benchmark)."""
        return sum(lane.batches for lane in self._lanes)

    async def submit(
        self, sources: list[Source], payload: AlertmanagerPayload, client: Client | None = None
    ) -> IntakeResult:
        """Store one notification; returns once it is committed. Raises `IntakeRefused` (4xx)
        for a notification that is not stored, a `SQLAlchemyError` when the database is
        unavailable (see the module). `client`: the connection it came on, when known (see
        `_gather`)."""
        return await asyncio.wrap_future(self.put(sources, payload, client))

    def put(
        self, sources: list[Source], payload: AlertmanagerPayload, client: Client | None = None
    ) -> Future[IntakeResult]:
        admit(sources, payload)  # a notification over a Source's limits waits for nothing
        if client is not None:
            now, before = time.monotonic(), self._recent.get(client)
            recent = before is not None and now - before[0] <= RECENT_SECONDS
            self._recent[client] = (now, before[1] + 1 if recent and before else 1)
            if len(self._recent) > 1024:  # the queue has not run empty for a while
                self._forget_quiet()
        self._ensure_started()
        job = _Job(sources, payload)
        self._queue.put(job)
        return job.future

    def _ensure_started(self) -> None:
        with self._lock:
            for lane in self._lanes:
                if lane.thread is None or not lane.thread.is_alive():
                    lane.thread = threading.Thread(
                        target=self._run, args=(lane,), daemon=True, name=lane.name
                    )
                    lane.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then end the threads."""
        with self._lock:
            threads = [(lane, lane.thread) for lane in self._lanes if lane.thread is not None]
            for lane, _ in threads:
                lane.thread = None
        for _ in threads:
            self._queue.put(None)  # each thread ends at the first it takes
        deadline = time.monotonic() + timeout
        for lane, thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if not thread.is_alive() and lane.connection is not None:
                lane.connection.close()
                lane.connection = None

    @contextmanager
    def _transaction(self, lane: _Lane) -> Iterator[Session]:
        """A transaction on the lane's own connection. A connection the database dropped is
        replaced at the next batch."""
        connection = lane.connection
        if connection is None or connection.closed or connection.invalidated:
            if connection is not None:
                connection.close()
            connection = lane.connection = writer_connection(self.engine)
        with Session(bind=connection, expire_on_commit=False) as session, session.begin():
            yield session

    def _run(self, lane: _Lane) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, stopping = self._gather(first)
            self._write(lane, jobs)
            if stopping:
                return

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """The batch that starts with `first`: everything queued, up to the bound, and then,
        for at most `linger` seconds, what is due. Due are as many notifications as there are
        busy connections (shared among the writers): ones that posted again and again, each
        within `RECENT_SECONDS` of the last, and are likely to post again right after their
        answer. A lone sender, a sender that opens a connection per post, or a quiet moment, is
        never kept waiting. Returns the jobs, and whether the writer was told to stop."""
        jobs, alerts = [first], len(first.payload.alerts)
        due, deadline = 0, 0.0
        while alerts < self.max_batch_alerts:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:  # all queued is taken: wait for more only if more are due
                if not deadline:
                    due, deadline = self._due(), time.monotonic() + self.linger
                remaining = deadline - time.monotonic()
                if len(jobs) >= due or remaining <= 0:
                    break
                try:
                    job = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if job is None:
                return jobs, True
            jobs.append(job)
            alerts += len(job.payload.alerts)
        return jobs, False

    def _due(self) -> int:
        """How many notifications a batch may expect: the connections that are busy."""
        if self.linger <= 0:
            return 0
        self._forget_quiet()
        busy = sum(1 for _, posts in list(self._recent.values()) if posts > 1)
        return -(-busy // len(self._lanes))

    def _forget_quiet(self) -> None:
        now = time.monotonic()
        for client, (seen, _) in list(self._recent.items()):
            if now - seen > RECENT_SECONDS:
                self._recent.pop(client, None)

    def _write(self, lane: _Lane, jobs: list[_Job], *, reconnected: bool = False) -> None:
        try:
            with self._transaction(lane) as session:
                results = ingest_batch(
                    session,
                    [(j.sources, j.payload) for j in jobs],
                    namespace=self.namespace,
                    source_ids=lane.source_ids,
                )
        except Exception as error:  # every waiting request gets an answer, whatever happened
            lane.source_ids.clear()
            if isinstance(error, DBAPIError) and error.connection_invalidated and not reconnected:
                # The kept connection died (a database restart or failover): once more on a
                # new one before anyone hears of it.
                log.info("the database connection was lost; writing the batch again")
                self._write(lane, jobs, reconnected=True)
                return
            if len(jobs) == 1:
                self._write_alone(lane, jobs[0], error)
                return
            log.info(
                "a batch of %d notifications failed (%s); writing them one by one",
                len(jobs),
                type(error).__name__,
            )
            for job in jobs:
                self._write(lane, [job])
            return
        lane.batches += 1
        for job, result in zip(jobs, results, strict=True):
            result.batch_size = len(jobs)
            job.future.set_result(result)

    def _write_alone(self, lane: _Lane, job: _Job, error: Exception) -> None:
        """A concurrent writer (another replica) stored the same alert first: read it again."""
        if isinstance(error, IntegrityError):
            try:
                with self._transaction(lane) as session:
                    result = ingest_batch(
                        session, [(job.sources, job.payload)], namespace=self.namespace
                    )[0]
            except Exception as again:
                job.future.set_exception(_answer(again))
                return
            lane.batches += 1
            job.future.set_result(result)
            return
        job.future.set_exception(_answer(error))


def _answer(error: Exception) -> Exception:
    """What the request of a notification that failed alone hears (see the module), logged."""
    name = type(error).__name__
    if isinstance(error, DataError | IntegrityError) or (
        isinstance(error, StatementError) and not isinstance(error, DBAPIError)
    ):
        log.warning("the database refused a notification's values (%s): answered 422", name)
        return IntakeRefused(
            422,
            "the database refused this notification's values and nothing was stored; "
            "Alertmanager will not retry it. Please report this: the payload checks should "
            "have named the field",
        )
    if isinstance(error, SQLAlchemyError):
        log.warning(
            "storing a notification failed: the database is unavailable (%s): answered 503", name
        )
        return error
    log.error("storing a notification failed", exc_info=error)
    return error
