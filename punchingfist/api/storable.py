"""What both stores can hold of a parsed JSON document, checked before any transaction.

SQLite and PostgreSQL take different things: PostgreSQL refuses a NUL character in text and in
`json`/`jsonb`, and a lone surrogate cannot be encoded for it; JSON itself has no NaN or
Infinity (Python's and pydantic's parsers accept them, `1e400` becomes Infinity) and a stored
one breaks every later read; orjson, which writes the PostgreSQL path's JSON, stops at 64-bit
integers. `problems` finds all of them, so that an endpoint answers 4xx naming the field
instead of storing on one store and failing on the other:

    found = problems(data, "body")
    if found:
        return problem(422, "the body holds values that cannot be stored",
                       problems=[{"field": f, "message": m} for f, m in found])
"""

from __future__ import annotations

import math
from typing import Any

MAX_DEPTH = 32
"""Nesting deeper than this is refused (a step's result is a few levels deep)."""
MAX_PROBLEMS = 20
"""At most this many problems are reported: enough to fix, bounded for a hostile body."""
_INT_RANGE = (-(2**63), 2**63 - 1)


def problems(value: Any, field: str = "body") -> list[tuple[str, str]]:
    """The values in `value` (parsed JSON: dicts, lists, str, int, float, bool, None) that a
    store cannot hold, each as (field path, message): e.g. `body.result.items[2]`."""
    found: list[tuple[str, str]] = []
    _walk(value, field, 0, found)
    return found


def _walk(value: Any, field: str, depth: int, found: list[tuple[str, str]]) -> None:
    if len(found) >= MAX_PROBLEMS:
        return
    if isinstance(value, str):
        if message := _text_problem(value):
            found.append((field, message))
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
            found.append(
                (field, "is an integer beyond 64 bits, which cannot be stored: send it as a string")
            )
    elif isinstance(value, float):
        if not math.isfinite(value):
            found.append(
                (
                    field,
                    f"is {value!r}, which JSON does not have and cannot be stored: "
                    "send null or a string",
                )
            )
    elif depth >= MAX_DEPTH:
        found.append((field, f"nests deeper than {MAX_DEPTH} levels: flatten it"))
    elif isinstance(value, dict):
        for key, item in value.items():
            name = str(key)
            message = _text_problem(name)
            if message or len(name) > 60:
                name = repr(name[:60])
            if message:
                found.append((f"{field}.{name}", f"the name {message}"))
            _walk(item, f"{field}.{name}", depth + 1, found)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _walk(item, f"{field}[{index}]", depth + 1, found)
    else:
        found.append((field, f"is a {type(value).__name__}, which is not JSON"))


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "holds a NUL character (\\u0000), which cannot be stored: remove it"
    if text.isascii():
        return None
    try:
        text.encode()
    except UnicodeEncodeError:
        return "holds a lone surrogate (an unpaired \\ud800-\\udfff), which is not text"
    return None
