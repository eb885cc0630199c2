"""The store's fast path on PostgreSQL: a batch's reads and writes in two round trips.

Private to `store`: `store.batches` decides when it is taken (PostgreSQL, unless turned off)
and runs the same statements through SQLAlchemy otherwise.

The webhook writes a few dozen rows per notification into six tables with several indexes,
after reading what it needs to decide them. Here the reads go out together in one round trip
(`read_many`), and so do the writes (`write_many`): one statement for every table, each
table's rows as a single JSON text taken apart by `json_populate_recordset`, then the
updates. Each round trip is one query string of the simple query protocol. Round trips and
the driver's work per statement are what a batch of a few notifications mostly pays for; each
round trip also hands the GIL back and forth with the request thread. The writes are
prepared on the server once per connection (`_Prepared`), so that PostgreSQL parses, analyses
and plans the one insert statement once, not for every batch (docs/operations.md, 'Performance
decisions').
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import orjson
from psycopg import ClientCursor, errors
from psycopg import Error as PsycopgError
from psycopg.pq import ExecStatus, TransactionStatus
from sqlalchemy import (
    DateTime,
    Dialect,
    Executable,
    Select,
    Table,
    Text,
    func,
    select,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

log = logging.getLogger("punchingfist.store")


Rows = Sequence[dict[str, Any]]
Updates = tuple[Executable, Rows]


def read_many(
    session: Session,
    queries: Sequence[tuple[Select[Any], dict[str, Any]]],
    *,
    locks: Mapping[int, bool] | None = None,
) -> list[list[dict[str, Any]]]:
    """The rows of each query, as dicts by column name, inside the session's transaction.

    One round trip (which begins the transaction, when the connection leaves that to us:
    `_runs_by_hand`): first the transaction's advisory `locks` (key -> taken shared?), in
    ascending key order, so that any two callers take the keys they share in the same order;
    then every query as one statement, each one's rows aggregated as JSON (UUIDs come back as
    text, see `batches.Ids`). Queries share one namespace of parameters. The statement is
    planned for the values it is given, never prepared: a generic plan cached while the tables
    were small would go on scanning them whole as they grow."""
    parameters: dict[str, Any] = {}
    for _, bound in queries:
        for name, value in bound.items():
            if parameters.setdefault(name, value) is not value:
                raise ValueError(f"two queries bind the parameter {name!r}")
    combined = _combined(tuple(query for query, _ in queries), session.get_bind().dialect)
    text, values = combined.text, _pg_parameters(parameters, combined.constants)
    if locks:  # a statement of its own: the lookups' snapshot is taken once they are held
        keys = sorted(locks)
        values["pf_lock_keys"] = _array_literal(keys)
        values["pf_lock_shared"] = _array_literal([locks[key] for key in keys])
        text = f"{_LOCKS};\n{text}"
    with _psycopg_errors(session, combined.text):
        (row,) = _simple_query(session, text, values, begin=True)
    return [_decoded(rows, dates) for rows, dates in zip(row, combined.dates, strict=True)]


def locks_query(keys: str, shared: str) -> str:
    """The statement that takes advisory locks, given the placeholders of its two arrays (the
    keys, and whether each is taken shared): in the arrays' order, one row (one call) at a
    time."""
    return (
        "SELECT CASE WHEN shared THEN pg_advisory_xact_lock_shared(key) "
        "ELSE pg_advisory_xact_lock(key) END "
        f"FROM unnest(CAST({keys} AS bigint[]), CAST({shared} AS boolean[])) AS lock(key, shared)"
    )


_LOCKS = locks_query("%(pf_lock_keys)s", "%(pf_lock_shared)s")


def _runs_by_hand(session: Session, status: Any) -> bool:
    """Whether the session's connection leaves its transactions to us (the driver's
    autocommit: the intake writer's connections, `IntakeWriter`) and is at `status`. Then the
    lookups begin the transaction and the writes commit it, in their own round trips, where
    the driver would spend one on each more."""
    raw = _driver_connection(session)
    return bool(raw.autocommit) and raw.info.transaction_status == status


def _simple_query(
    session: Session, text: str, values: Any = None, *, begin: bool = False
) -> list[tuple[Any, ...]]:
    """Run `text` (several statements, `;`-separated) in one round trip of PostgreSQL's simple
    query protocol, the values bound into the text by the driver (quoted as literals, as its
    `ClientCursor` does: label text stays data), and return the last statement's rows, each
    value as the server's text (bytes; None for NULL). Outside a transaction, the text begins
    one when the driver would have (its autocommit off) or when the caller asks (`begin`: a
    connection that leaves its transactions to us, `_runs_by_hand`).

    The text goes to libpq's `PQexec` (psycopg's `pgconn.exec_`), which waits for the answer
    in C with the interpreter lock released. A cursor would drive the same exchange through
    Python generators, build a description and wrap each result, all holding the interpreter
    lock. The statements in front only have to succeed (`PQexec` stops at the first error and
    returns it). A batch's handful of statements cost the driver more in its pipeline mode than
    as one query string (docs/operations.md, 'Performance decisions'); each statement still
    has its own snapshot (read committed). Statements that are to be prepared are prepared by
    the text itself (`_Prepared`)."""
    raw = _driver_connection(session)
    if values is not None:
        text = ClientCursor(raw).mogrify(text, values)
    if raw.info.transaction_status == IDLE and (begin or not raw.autocommit):
        text = f"BEGIN;\n{text}"
    result = raw.pgconn.exec_(text.encode())
    if result.status not in _SUCCEEDED:
        raise errors.error_from_result(result, encoding=raw.info.encoding)
    columns = range(result.nfields)
    return [tuple(result.get_value(row, c) for c in columns) for row in range(result.ntuples)]


_SUCCEEDED = (ExecStatus.COMMAND_OK, ExecStatus.TUPLES_OK)


IDLE, INTRANS = TransactionStatus.IDLE, TransactionStatus.INTRANS


class _Prepared:
    """The write statements a connection has prepared on the server (`PREPARE`), by text.

    A statement is prepared in the same query string as its first `EXECUTE`, under a name
    that is never used twice on the connection: a prepared statement outlives the transaction
    that made it even when that transaction fails, so after a failed batch its name is
    neither known to be prepared nor free (a later batch prepares the text again, under a new
    name). The lookups are not prepared: a generic plan made while the tables were small would
    go on scanning them whole as they grow, until autovacuum analyses them (docs/operations.md,
    'Performance decisions').

    A database that loses prepared statements between transactions (a connection pooler in
    transaction mode) turns preparing off for the process (`_psycopg_errors`)."""

    enabled = True
    """False once a prepared statement went missing: statements are then sent as they are."""

    def __init__(self, binder: ClientCursor[Any], kept: _Kept | None) -> None:
        self.binder = binder
        self.kept = kept
        self.made: dict[str, str] = {}

    @classmethod
    def of(cls, session: Session) -> _Prepared:
        binder = ClientCursor(_driver_connection(session))
        if not cls.enabled:
            return cls(binder, None)
        info = session.connection().info  # kept with the driver's connection, not past it
        return cls(binder, info.setdefault("punchingfist.prepared", _Kept()))

    def execute(self, text: str, values: Any) -> str:
        """The query text that runs `text` (psycopg `%s` or `%(name)s` placeholders) with
        `values`, literals bound by the driver."""
        if self.kept is None:
            return self.binder.mogrify(text, values)
        digest, body, keys = _preparable(text)
        arguments = [values[key] for key in keys] if keys else list(values)
        prepare = ""
        name = self.kept.names.get(text) or self.made.get(text)
        if name is None:
            self.kept.sent += 1
            name = self.made[text] = f"pf_{digest}_{self.kept.sent}"
            prepare = f"PREPARE {name} AS {body};\n"
        placeholders = ", ".join(["%s"] * len(arguments))
        return prepare + self.binder.mogrify(f"EXECUTE {name}({placeholders})", arguments)

    def succeeded(self) -> None:
        """The query string ran: the statements it prepared can be executed from now on."""
        if self.kept is not None:
            self.kept.names.update(self.made)


@dataclass
class _Kept:
    """What one connection has prepared: statement text -> name, and how many `PREPARE`s it
    was sent (the next name's number)."""

    names: dict[str, str] = field(default_factory=dict)
    sent: int = 0


@functools.cache
def _preparable(text: str) -> tuple[str, str, tuple[str, ...]]:
    """A name part unique to `text`, the text with PostgreSQL's `$n` placeholders (and `%%`
    back to `%`), and the parameter names in `$n` order (empty for positional `%s`
    placeholders, which keep their order)."""
    keys: list[str] = []
    positional = 0

    def placeholder(match: re.Match[str]) -> str:
        nonlocal positional
        if match.group(0) == "%%":
            return "%"
        if match.group(1) is None:
            positional += 1
            return f"${positional}"
        if match.group(1) not in keys:
            keys.append(match.group(1))
        return f"${keys.index(match.group(1)) + 1}"

    body = _PLACEHOLDER.sub(placeholder, text)
    return hashlib.sha1(text.encode()).hexdigest()[:12], body, tuple(keys)


_PLACEHOLDER = re.compile(r"%%|%\((\w+)\)s|%s")
"""psycopg's placeholders, and its escaped percent sign."""


@dataclass(frozen=True)
class _Combined:
    text: str
    constants: dict[str, Any]
    dates: list[tuple[str, ...]]
    """Per query, the columns that are timestamps (JSON gives them as ISO 8601 text)."""


@functools.cache
def _combined(queries: tuple[Select[Any], ...], dialect: Dialect) -> _Combined:
    """`SELECT (SELECT json_agg(q0)::text FROM (query 0) AS q0), ...`: one row, a JSON array (or
    null) per query."""
    columns = []
    for number, query in enumerate(queries):
        rows = query.subquery(f"q{number}")
        rows_json = func.json_agg(rows.table_valued()).cast(Text)  # decoded here, by orjson
        columns.append(select(rows_json).scalar_subquery())
    text, constants = _compiled(select(*columns), dialect)
    dates = [
        tuple(c.name for c in query.selected_columns if isinstance(c.type, DateTime))
        for query in queries
    ]
    return _Combined(text, constants, dates)


def _decoded(text: bytes | None, dates: tuple[str, ...]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = orjson.loads(text) if text else []
    for row in rows:
        for name in dates:
            if row[name] is not None:
                row[name] = datetime.fromisoformat(row[name])
    return rows


def write_many(
    session: Session,
    tables: Sequence[tuple[type[Any], Rows]],
    updates: Sequence[Updates],
    commit: bool,
) -> None:
    """`batches.write_many` on the fast path (its tables and updates all have rows): one
    statement inserts into every table (`INSERT ... SELECT FROM json_populate_recordset`
    each) and the updates follow in the same query string, one round trip for the lot, each
    statement prepared on the connection the first time it is sent (`_Prepared`). `commit`:
    a transaction `read_many` began by hand ends in the same round trip."""
    dialect = session.get_bind().dialect
    inserts = [_json_rows(model, rows) for model, rows in tables]
    statement = _insert_statement(tuple((table, names) for table, names, _ in inserts))
    first: Any = statement or updates[0][0]
    with _psycopg_errors(session, first):
        prepared = _Prepared.of(session)
        texts = [prepared.execute(statement, [data for _, _, data in inserts])] if inserts else []
        for update, rows in updates:
            text, constants = _compiled(update, dialect)
            texts.extend(prepared.execute(text, _pg_parameters(row, constants)) for row in rows)
        if commit and _runs_by_hand(session, INTRANS):
            texts.append("COMMIT")
        _simple_query(session, ";\n".join(texts))
        prepared.succeeded()


def _driver_connection(session: Session) -> Any:
    raw = session.connection().connection.driver_connection
    assert raw is not None
    return raw


@functools.cache
def _compiled(statement: Executable, dialect: Dialect) -> tuple[str, dict[str, Any]]:
    """The statement's text for the driver, and the values of the literals it binds."""
    compiled = cast(Any, statement).compile(dialect=dialect)
    return str(compiled), dict(compiled.params)


def _pg_parameters(parameters: dict[str, Any], constants: dict[str, Any]) -> dict[str, Any]:
    """What the driver is given: dicts as jsonb, and lists as PostgreSQL array literals (the
    statements cast them: `%(name)s::VARCHAR[]`), which psycopg sends as they are instead of
    dumping element by element."""
    from psycopg.types.json import Jsonb

    converted = {**constants, **parameters}
    for name, value in parameters.items():
        if isinstance(value, dict):
            converted[name] = Jsonb(value)
        elif isinstance(value, list):
            converted[name] = _array_literal(value)
    return converted


def _array_literal(values: list[Any]) -> str:
    """A PostgreSQL array literal of `values` (texts quoted and escaped, integers, booleans,
    NULL). Lists of one kind take a shortcut: they are what batches send."""
    if all(type(value) is str for value in values):
        if any('"' in value or "\\" in value for value in values):
            values = [value.replace("\\", "\\\\").replace('"', '\\"') for value in values]
        return '{"' + '","'.join(values) + '"}' if values else "{}"
    if all(type(value) is int for value in values):
        return "{" + ",".join(map(str, values)) + "}"
    return "{" + ",".join(_array_element(value) for value in values) + "}"


def _array_element(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int):
        return str(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


@contextmanager
def _psycopg_errors(session: Session, statement: Any) -> Iterator[None]:
    """psycopg's errors as SQLAlchemy's, as if SQLAlchemy had run `statement`: callers handle
    one kind, and a lost connection is invalidated and said to be (the webhook writer then
    writes its batch again on a new one). So is one that lost a statement it had prepared:
    preparing is then turned off (`_Prepared`), and the batch goes again unprepared."""
    try:
        yield
    except errors.IntegrityError as error:
        raise IntegrityError(str(statement), None, error) from error
    except PsycopgError as error:
        connection = session.connection()
        raw = connection.connection.dbapi_connection
        lost = connection.dialect.is_disconnect(cast(Any, error), raw, None)
        if isinstance(error, errors.InvalidSqlStatementName) and _Prepared.enabled:
            _Prepared.enabled, lost = False, True
            log.warning(
                "the database lost a statement this connection had prepared (a "
                "connection pooler in transaction mode?); statements are sent "
                "unprepared from now on"
            )
        if lost:
            connection.invalidate(error)
        raise DBAPIError.instance(  # DataError, OperationalError, ... as psycopg's class says
            str(statement), None, error, PsycopgError, connection_invalidated=lost
        ) from error


def _json_rows(model: type[Any], rows: Rows) -> tuple[Table, tuple[str, ...], str]:
    """The table, the columns and the rows as one JSON array, for inserting `rows`; columns the
    rows leave out that have a client-side default get it. One text parameter per table keeps
    the driver's per-value work off the writer thread: PostgreSQL takes the rows apart
    (`json_populate_recordset`)."""
    table: Table = model.__table__
    first = rows[0]
    missing = [
        c
        for c in table.columns
        if c.name not in first and c.default is not None and c.server_default is None
    ]
    if missing:
        rows = [{**row, **{c.name: _default(c) for c in missing}} for row in rows]
    return table, tuple(rows[0]), encode_json(rows)


@functools.cache
def _insert_statement(tables: tuple[tuple[Table, tuple[str, ...]], ...]) -> str:
    """One statement inserting into every table, one JSON parameter each: a data-modifying
    `WITH` part per table but the last, which spares the driver and the server their work per
    statement. The foreign keys are checked when the whole statement is done, so parents and
    the rows that refer to them can go in together."""
    inserts = []
    for table, names in tables:
        columns = ", ".join(f'"{name}"' for name in names)
        inserts.append(
            f'INSERT INTO "{table.name}" ({columns}) SELECT {columns} '
            f'FROM json_populate_recordset(NULL::"{table.name}", %s::json)'
        )
    if len(inserts) <= 1:
        return "".join(inserts)
    parts = ", ".join(f"t{number} AS ({insert})" for number, insert in enumerate(inserts[:-1]))
    return f"WITH {parts} {inserts[-1]}"


def encode_json(value: Any) -> str:
    """Compact JSON, as the PostgreSQL path sends it (orjson, for its speed: docs/operations.md,
    'Performance decisions'). Timestamps as ISO 8601, ids as text."""
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def _default(column: Any) -> Any:
    default = column.default
    if default.is_callable:
        return default.arg(None)
    return default.arg
