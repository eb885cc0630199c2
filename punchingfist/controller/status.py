"""Status subresources the controller writes: conditions that keep their transition times."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

ConditionStatus = Literal["True", "False", "Unknown"]

READY = "Ready"
COMPILED = "Compiled"
MAX_MESSAGE = 4000
"""Condition messages are capped (the whole status must stay well below etcd's object limit)."""


@dataclass(frozen=True)
class Condition:
    """One condition as the controller decides it; the transition time comes from `merge`."""

    type: str
    status: ConditionStatus
    reason: str
    message: str


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge(
    previous: Iterable[Mapping[str, Any]],
    current: Iterable[Condition],
    *,
    generation: int | None,
    at: str | None = None,
) -> list[dict[str, Any]]:
    """The new `conditions` list: lastTransitionTime moves only when a status changes.

    Conditions of other types (written by someone else) are kept as they are.
    """
    old = {c.get("type"): c for c in previous if isinstance(c, Mapping)}
    stamp = at or now()
    merged: dict[str, dict[str, Any]] = {}
    for condition in current:
        before = old.get(condition.type)
        changed = before is None or before.get("status") != condition.status
        entry: dict[str, Any] = {
            "type": condition.type,
            "status": condition.status,
            "reason": condition.reason,
            "message": _cap(condition.message),
            "lastTransitionTime": stamp if changed else before.get("lastTransitionTime", stamp),  # type: ignore[union-attr]
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        merged[condition.type] = entry
    kept = [dict(c) for t, c in old.items() if t not in merged]
    return [*merged.values(), *kept]


def condition(status: Mapping[str, Any] | None, kind: str) -> Mapping[str, Any] | None:
    """The condition of type `kind` in a status, if any."""
    for item in (status or {}).get("conditions") or []:
        if isinstance(item, Mapping) and item.get("type") == kind:
            return item
    return None


def is_ready(status: Mapping[str, Any] | None) -> bool:
    found = condition(status, READY)
    return found is not None and found.get("status") == "True"


def same_verdict(status: Mapping[str, Any] | None, ready: Condition) -> bool:
    """True when the status already says what `ready` says (no Event needed again)."""
    found = condition(status, READY)
    return (
        found is not None
        and found.get("status") == ready.status
        and found.get("reason") == ready.reason
        and found.get("message") == _cap(ready.message)
    )


def _cap(message: str) -> str:
    if len(message) <= MAX_MESSAGE:
        return message
    return message[: MAX_MESSAGE - 20] + " … (message cut)"
