"""A batch's reads and writes in as few round trips as the store allows.

The intake reads what it needs to decide a batch of notifications (`read_many`), then writes
its rows into several tables and updates others (`write_many`). Which way they go is the
store's decision (`fast_path`):

- On PostgreSQL, the fast path (`store._bulk`): one round trip for all the reads and one for
  all the writes, through psycopg's simple query protocol with prepared statements. It is
  what meets the 2,000 alerts/s goal (`benchmarks/intake.py`).
- Elsewhere, and on PostgreSQL with the fast path turned off, the plain path: the same
  statements through SQLAlchemy, one by one (an executemany per table and update).

The fast path is on unless `PUNCHINGFIST_STORE_FAST_PATH=off` was set when the engine was
made (`store.sessions`), for a database or a proxy that does not take it.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, Engine, Select, any_, bindparam, insert, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from punchingfist.store import _bulk
from punchingfist.store._bulk import Rows, Updates
from punchingfist.store.sessions import FAST_PATH_OPTION


def fast_path(bind: Session | Connection | Engine) -> bool:
    """Whether the reads and writes of this session (or connection, or engine) take the fast
    path: PostgreSQL, with the fast path on for its engine."""
    found = bind.get_bind() if isinstance(bind, Session) else bind
    return found.dialect.name == "postgresql" and bool(
        found.get_execution_options().get(FAST_PATH_OPTION, True)
    )


class Ids:
    """Random (version 4) UUIDs, drawn from the OS a block at a time: `uuid.uuid4()` makes a
    system call per id, and the webhook writer makes an id for most rows it writes
    (docs/operations.md, 'Performance decisions'). With `text=True` they
    are made as their canonical text, which is all the fast path needs (its `read_many`
    reads ids back as text too). One instance can serve several threads (`list.pop` takes
    each id once), and a forked process starts with none drawn, never with its parent's."""

    def __init__(self, block: int = 64, *, text: bool = False) -> None:
        self.block = block
        self.text = text
        self._ready: list[Any] = []
        os.register_at_fork(after_in_child=self._ready.clear)

    def __call__(self) -> Any:
        if not self._ready:
            data = os.urandom(16 * self.block)
            if self.text:
                self._ready.extend(_uuid4_text(h) for h in _chunks(data.hex(), 32))
            else:
                self._ready.extend(uuid.UUID(bytes=b, version=4) for b in _chunks(data, 16))
        return self._ready.pop()

    def of(self, value: uuid.UUID) -> Any:
        """An id as this kind of ids is (and as `read_many` gives it back on its path)."""
        return str(value) if self.text else value


_TEXT_IDS, _UUID_IDS = Ids(text=True), Ids()
"""Row ids for every batch (drawn a block at a time)."""


def row_ids(bind: Session | Connection | Engine) -> Ids:
    """New row ids for a batch's rows, as its path reads and writes them: text on the fast
    path, UUIDs on the plain one."""
    return _TEXT_IDS if fast_path(bind) else _UUID_IDS


def _chunks(data: Any, size: int) -> list[Any]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _uuid4_text(digits: str) -> str:
    """32 random hex digits as a version 4, RFC 4122 variant UUID's text."""
    variant = "89ab"[int(digits[16], 16) & 3]
    return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{variant}{digits[17:20]}-{digits[20:]}"


def read_many(
    session: Session,
    queries: Sequence[tuple[Select[Any], dict[str, Any]]],
    *,
    locks: Mapping[str, bool] | None = None,
) -> list[list[dict[str, Any]]]:
    """The rows of each query, as dicts by column name, inside the session's transaction,
    once the transaction holds the advisory `locks` (name -> taken shared?) on PostgreSQL.

    Locks are taken in ascending key order, so that any two callers take the ones they share
    in the same order, and in a statement of their own, before the lookups' snapshot. SQLite
    takes none (it has one writer at a time). On the fast path this is one round trip
    (`_bulk.read_many`); on the plain path one statement per query (and one for the locks)."""
    postgresql = session.get_bind().dialect.name == "postgresql"
    keys = {lock_key(name): shared for name, shared in (locks or {}).items()} if postgresql else {}
    if fast_path(session):
        return _bulk.read_many(session, queries, locks=keys)
    if keys:
        ordered = sorted(keys)
        session.execute(_PLAIN_LOCKS, {"keys": ordered, "shared": [keys[k] for k in ordered]})
    return [[dict(row._mapping) for row in session.execute(q, p)] for q, p in queries]


_PLAIN_LOCKS = text(_bulk.locks_query(":keys", ":shared"))


def lock_key(name: str) -> int:
    """A PostgreSQL advisory lock key (a signed 64-bit integer) for `name`. Two names that
    hash alike only make their transactions wait for each other."""
    digest = hashlib.blake2b(name.encode(), digest_size=8, person=b"pf-intake").digest()
    return int.from_bytes(digest, "big", signed=True)


def write_many(
    session: Session,
    tables: Sequence[tuple[type[Any], Rows]],
    updates: Sequence[Updates] = (),
    *,
    commit: bool = False,
) -> None:
    """Insert rows (dicts keyed by column name, all with the same keys; columns left out get
    their default) into several tables inside the session's transaction, in the order given
    (parents before the rows that refer to them), then run each update statement once per
    parameter set. The fast path sends it all in one round trip (`_bulk.write_many`); the
    plain path an executemany per table and update. `commit`: the caller has nothing more to
    do in the transaction, so on the fast path a transaction `read_many` began by hand ends
    in the same round trip (other sessions commit as usual)."""
    tables = [(model, rows) for model, rows in tables if rows]
    updates = [(statement, rows) for statement, rows in updates if rows]
    if not tables and not updates:
        return
    if fast_path(session):
        _bulk.write_many(session, tables, updates, commit)
        return
    for model, rows in tables:
        session.execute(insert(model), list(rows))
    for update, changes in updates:
        session.connection().execute(update, list(changes))


def within(column: Any, name: str, dialect: str) -> ColumnElement[bool]:
    """`column IN :name`, for a list bound at execution. On PostgreSQL as `= ANY(array)`: one
    parameter however many values, so the statement's text and prepared plan stay the same
    from batch to batch."""
    if dialect == "postgresql":
        condition = column == any_(bindparam(name, type_=ARRAY(column.type)))
    else:
        condition = column.in_(bindparam(name, expanding=True))
    return cast("ColumnElement[bool]", condition)


def writer_connection(engine: Engine) -> Connection:
    """A connection for a writer that keeps it from batch to batch. On the fast path the
    driver leaves its transactions to the batch (AUTOCOMMIT, reset when it is closed):
    `read_many` begins one with its lookups and `write_many` commits it with its writes, in
    their own round trips."""
    connection = engine.connect()
    if fast_path(engine):
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
    return connection
