"""Multi-row inserts: PostgreSQL's COPY when the store is PostgreSQL, executemany elsewhere.

The webhook writes a few dozen rows per notification into tables with several indexes. One
COPY per table is one round trip and the cheapest path through PostgreSQL; an executemany
(what SQLAlchemy does otherwise) costs a statement execution per row.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import JSON, ColumnElement, Table, any_, bindparam, insert
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session


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


def bulk_insert(session: Session, model: type[Any], rows: Sequence[dict[str, Any]]) -> None:
    """Insert `rows` (dicts keyed by column name, all with the same keys) into `model`'s table,
    inside the session's transaction. Columns left out get their default."""
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        session.execute(insert(model), list(rows))
        return
    table: Table = model.__table__
    names = list(rows[0])
    missing = [
        c for c in table.columns
        if c.name not in rows[0] and c.default is not None and c.server_default is None
    ]  # fmt: skip
    json_columns = {c.name for c in table.columns if isinstance(c.type, JSON)}
    formats = [_json_field if name in json_columns else _field for name in names]
    constant = not any(getattr(c.default, "is_callable", False) for c in missing)
    defaults = [_field(_default(c)) for c in missing]
    columns = ", ".join(f'"{name}"' for name in names + [c.name for c in missing])
    statement = f'COPY "{table.name}" ({columns}) FROM STDIN'
    lines = []
    for row in rows:
        fields = [fmt(row[name]) for fmt, name in zip(formats, names, strict=True)]
        if missing:
            fields += defaults if constant else [_field(_default(c)) for c in missing]
        lines.append("\t".join(fields))
    data = ("\n".join(lines) + "\n").encode()
    from psycopg import Error as PsycopgError
    from psycopg import errors

    raw = connection.connection.driver_connection
    assert raw is not None
    try:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            copy.write(data)
    except errors.IntegrityError as error:
        raise IntegrityError(statement, None, error) from error
    except PsycopgError as error:
        raise DBAPIError(statement, None, error) from error


_ENCODE_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


def _escape(text: str) -> str:
    """COPY's text format reserves backslash, tab, newline and carriage return."""
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    if "\t" in text:
        text = text.replace("\t", "\\t")
    if "\n" in text:
        text = text.replace("\n", "\\n")
    if "\r" in text:
        text = text.replace("\r", "\\r")
    return text


def _field(value: Any) -> str:
    """One field of COPY's text format: \\N for NULL, backslash escapes for the rest."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return value.hex  # PostgreSQL reads a uuid without its hyphens too
    return _escape(str(value))


def _json_field(value: Any) -> str:
    return "\\N" if value is None else _escape(_ENCODE_JSON(value))


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
