"""JSON views of stored rows; field names follow the design document's columns."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import DeclarativeBase


def row(record: DeclarativeBase, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for column in record.__table__.columns:
        if column.name in skip:
            continue
        value = getattr(record, column.key)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif value is not None and not isinstance(value, (str, int, float, bool, dict, list)):
            value = str(value)
        out[column.name] = value
    return out
