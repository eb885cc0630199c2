"""Multi-row inserts: on PostgreSQL an `INSERT ... SELECT FROM json_populate_recordset` per
table, all tables in one pipelined round trip; executemany elsewhere.

The webhook writes a few dozen rows per notification into five tables with several indexes.
Round trips are what a batch of a few notifications mostly pays for (each one also hands the
GIL back and forth with the request thread), so a batch's inserts go together.
"""

from __future__ import annotations

import functools
import json
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import JSON, ColumnElement, Table, any_, bindparam, insert
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class EncodedJSON:
    """A JSON column's value with its encoding made beforehand (when parts of it are shared by
    many rows and encoded once): PostgreSQL is sent `text`, other stores get `value`."""

    value: Any
    text: str


class Ids:
    """Random (version 4) UUIDs, drawn from the OS a block at a time: `uuid.uuid4()` makes a
    system call per id, which was a tenth of the webhook writer's time."""

    def __init__(self, block: int = 64) -> None:
        self.block = block
        self._ready: list[uuid.UUID] = []

    def __call__(self) -> uuid.UUID:
        if not self._ready:
            data = os.urandom(16 * self.block)
            self._ready = [
                uuid.UUID(bytes=data[i : i + 16], version=4) for i in range(0, len(data), 16)
            ]
        return self._ready.pop()


Rows = Sequence[dict[str, Any]]


def insert_many(session: Session, tables: Sequence[tuple[type[Any], Rows]]) -> None:
    """Insert rows (dicts keyed by column name, all with the same keys; columns left out get
    their default) into several tables inside the session's transaction, in the order given
    (parents before the rows that refer to them). On PostgreSQL every table is one
    `INSERT ... SELECT FROM json_populate_recordset` and all of them travel in one pipeline:
    one round trip for the lot, where a COPY per table cost two each. Elsewhere an
    executemany per table."""
    tables = [(model, rows) for model, rows in tables if rows]
    if not tables:
        return
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        for model, rows in tables:
            session.execute(insert(model), [_plain(model, row) for row in rows])
        return
    from psycopg import Error as PsycopgError
    from psycopg import errors

    raw = connection.connection.driver_connection
    assert raw is not None
    statements = [_json_insert(model, rows) for model, rows in tables]
    try:
        with raw.pipeline(), raw.cursor() as cursor:
            for statement, parameters in statements:
                cursor.execute(statement, parameters)
    except errors.IntegrityError as error:
        raise IntegrityError(statements[0][0], None, error) from error
    except PsycopgError as error:
        raise DBAPIError(statements[0][0], None, error) from error


def _plain(model: type[Any], row: dict[str, Any]) -> dict[str, Any]:
    encoded = [name for name in _json_columns(model.__table__) if name in row]
    if not any(isinstance(row[name], EncodedJSON) for name in encoded):
        return row
    return {**row, **{n: row[n].value for n in encoded if isinstance(row[n], EncodedJSON)}}


def _json_insert(model: type[Any], rows: Rows) -> tuple[str, list[str]]:
    """The statement and its one parameter, the rows as a JSON array, for inserting `rows`;
    columns the rows leave out that have a client-side default get it. One text parameter per
    table keeps the driver's per-value work off the writer thread: PostgreSQL takes the rows
    apart (`json_populate_recordset`)."""
    table: Table = model.__table__
    first = rows[0]
    missing = [
        c for c in table.columns
        if c.name not in first and c.default is not None and c.server_default is None
    ]  # fmt: skip
    if missing:
        rows = [{**row, **{c.name: _default(c) for c in missing}} for row in rows]
    names = tuple(rows[0])
    encoded = [n for n in names if n in _json_columns(table) and isinstance(first[n], EncodedJSON)]
    if not encoded:
        data = encode_json(rows)
    else:  # splice the pre-encoded values in: encode the rest, then close each object with them
        texts = []
        for row in rows:
            rest = encode_json({n: v for n, v in row.items() if n not in encoded})
            tail = ",".join(f'"{n}":{_json_text(row[n])}' for n in encoded)
            texts.append(f"{rest[:-1]},{tail}}}" if rest != "{}" else f"{{{tail}}}")
        data = f"[{','.join(texts)}]"
    return _statement(table, names), [data]


@functools.cache
def _statement(table: Table, names: tuple[str, ...]) -> str:
    columns = ", ".join(f'"{name}"' for name in names)
    return (
        f'INSERT INTO "{table.name}" ({columns}) SELECT {columns} '
        f'FROM json_populate_recordset(NULL::"{table.name}", %s::json)'
    )


@functools.cache
def _json_columns(table: Table) -> frozenset[str]:
    return frozenset(c.name for c in table.columns if isinstance(c.type, JSON))


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    return value.text if isinstance(value, EncodedJSON) else encode_json(value)


encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
"""Compact JSON, as the PostgreSQL path sends it."""


def _default(column: Any) -> Any:
    default = column.default
    if default.is_callable:
        return default.arg(None)
    return default.arg


def one_of(session: Session, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """`column IN values`. On PostgreSQL as `= ANY(array)`: one parameter however many values,
    so the statement text (and its prepared plan) stays the same from batch to batch."""
    items = list(values)
    if session.get_bind().dialect.name == "postgresql":
        condition = column == any_(bindparam(None, items, type_=ARRAY(column.type)))
    else:
        condition = column.in_(items)
    return cast("ColumnElement[bool]", condition)
