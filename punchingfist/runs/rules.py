"""Intake's rules (D7) as pure functions: which Sources take an alert, when an alert is one
seen before, which incident it joins and how sure that is, how severe the incident is, and
which runs a notification starts. They decide from what they are given and touch no
database: `runs.intake` reads the store, applies them and writes what they decided. (Run
names are `runs.queueing`'s.)
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence, Set
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from punchingfist.api import Source
from punchingfist.api.base import duration_seconds
from punchingfist.api.sources import Investigation, WebhookSource

CORRELATION_WINDOW = timedelta(hours=1)
"""How long an incident takes new alerts of its title (alertname and namespace/service)."""
SEVERITIES = ("critical", "warning", "info")
"""The severities ranked, worst first."""
SUPPRESSED_REASONS = ("scope", "cooldown", "run_limit")
"""Why a new firing alert starts no run (`punchingfist_investigations_suppressed_total`): it
joined its group's or incident's run (`scope`), a run covered it within its Source's cooldown
(`cooldown`), or its Source had started all the runs it may per notification (`run_limit`)."""
GROUP_CONFIDENCE, TITLE_CONFIDENCE, DUPLICATE_CONFIDENCE = 0.9, 0.6, 1.0

Incident = TypeVar("Incident")
AlertId = TypeVar("AlertId")


def matches(source: Source, labels: dict[str, str]) -> bool:
    """An alert matches a webhook Source when every filtered label has an accepted value."""
    assert isinstance(source.spec, WebhookSource)
    return all(labels.get(name) in values for name, values in source.spec.config.filters.items())


def over_alert_limit(sources: Iterable[Source], alerts: int) -> tuple[int, str] | None:
    """(limit, Source name): the smallest `maxAlerts` of the webhook Sources a notification of
    `alerts` alerts was sent to, when it holds more than that; else None."""
    limits = [
        (s.spec.config.max_alerts, s.name) for s in sources if isinstance(s.spec, WebhookSource)
    ]
    if not limits or alerts <= min(limits)[0]:
        return None
    return min(limits)


def aware(value: datetime) -> datetime:
    """A time read back without its zone (SQLite) is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def dedup_key(fingerprint: str, starts_at: datetime) -> tuple[str, datetime]:
    """Alerts with the same fingerprint and start are one alert: a repeat updates it. The same
    fingerprint with another start is a new firing, a duplicate of the earlier one."""
    return fingerprint, aware(starts_at)


def repeat_outcome(stored_status: str, incoming_status: str) -> str:
    """What an alert seen again counts as: `resolved` when it now resolves, else `updated`."""
    if incoming_status == "resolved" and stored_status != "resolved":
        return "resolved"
    return "updated"


def severity(labels: dict[str, str]) -> str:
    """An alert's severity: its `severity` label when that is one of `SEVERITIES`, else
    warning."""
    value = labels.get("severity", "warning")
    return value if value in SEVERITIES else "warning"


def worse(current: str | None, new: str) -> str | None:
    """An incident's severity once an alert of severity `new` joins it: `new` when that is
    worse than `current` (which counts as info when it is not one of `SEVERITIES`), else
    `current` as it is."""
    worst = current if current in SEVERITIES else "info"
    return new if SEVERITIES.index(new) < SEVERITIES.index(worst) else current


def incident_title(labels: dict[str, str]) -> str:
    """The title of the incident a new alert opens, which later alerts correlate on: its
    alertname, and its namespace (else service) when it has one."""
    alert_name = labels.get("alertname", "unnamed")
    place = labels.get("namespace") or labels.get("service") or ""
    return (f"{alert_name} in {place}" if place else alert_name)[:255]


def in_window(created_at: datetime, now: datetime) -> bool:
    """Whether an incident created at `created_at` still takes alerts by its title."""
    return aware(created_at) >= now - CORRELATION_WINDOW


def correlate(
    by_group: Incident | None, by_title: Incident | None
) -> tuple[Incident | None, float]:
    """The incident a new alert joins and the confidence of that: the open incident of its
    notification's Alertmanager group, else the open one of its title created within the
    window; None when it opens an incident of its own."""
    if by_group is not None:
        return by_group, GROUP_CONFIDENCE
    return by_title, TITLE_CONFIDENCE


def relations(
    first: AlertId | None, earlier: AlertId | None, confidence: float
) -> list[tuple[AlertId, str, float]]:
    """A new alert's relationships, as (parent alert, type, confidence): `related` to the
    first alert of the incident it joined (with the correlation's confidence), unless that is
    the earlier firing of its own fingerprint, and `duplicate` of that earlier firing."""
    found: list[tuple[AlertId, str, float]] = []
    if first is not None and first != earlier:
        found.append((first, "related", confidence))
    if earlier is not None:
        found.append((earlier, "duplicate", DUPLICATE_CONFIDENCE))
    return found


def run_limit(source: Source) -> int:
    """How many runs a Source starts per notification (`maxRunsPerNotification`)."""
    spec = source.spec
    return spec.config.max_runs_per_notification if isinstance(spec, WebhookSource) else 1 << 62


def investigation(source: Source) -> Investigation:
    """A Source's `investigation` settings (those of a webhook Source; the defaults else)."""
    spec = source.spec
    return spec.config.investigation if isinstance(spec, WebhookSource) else Investigation()


def run_key(
    source: Source, fingerprint: str, starts_at: datetime, group_key: str, incident: str
) -> tuple[str, ...]:
    """What names the run a new firing alert starts under its Source's scope: alerts with the
    same key are one investigation (a retry of a notification maps to the same run)."""
    scope = investigation(source).scope
    if scope == "perGroup":
        return ("group", group_key, incident)
    if scope == "perIncident":
        return ("incident", incident)
    return (fingerprint, aware(starts_at).isoformat())


def cooldown_key(source: Source, fingerprint: str, group_key: str, title: str) -> str:
    """What a cooldown is counted on: the fingerprint (`perAlert`), the Alertmanager group
    (`perGroup`) or the incident's title (`perIncident`)."""
    scope = investigation(source).scope
    return {"perGroup": group_key, "perIncident": title}.get(scope, fingerprint)


def cooldown_seconds(source: Source) -> float:
    return duration_seconds(investigation(source).cooldown)


def window_seconds(source: Source) -> float:
    return duration_seconds(investigation(source).window)


@dataclass(frozen=True)
class RunPlan:
    """What one new firing alert starts."""

    start: list[tuple[str, Source]]
    """(run name, Source) of each run to queue."""
    suppressed: bool
    """Every Source it matched had started as many runs for its notification as it may: the
    alert is stored without a run."""
    joined: list[str]
    """The runs of its group or incident (queued before, or earlier in the same call) that it
    joined instead of starting its own."""


def plan_runs(
    alerts: Iterable[tuple[Hashable, Sequence[tuple[str, Source]]]], taken: Set[str]
) -> list[RunPlan]:
    """The runs new firing alerts start, decided in order. Each alert is given as (its
    notification, the (run name, Source) of each Source it matched). A run whose name is
    `taken` (queued before: a retry) or taken earlier in the same call is not queued again;
    a Source queues at most `run_limit` runs per notification."""
    started: dict[tuple[Hashable, str], int] = {}
    queued: set[str] = set()
    plans = []
    for notification, named in alerts:
        start: list[tuple[str, Source]] = []
        over, joined = 0, []
        for name, source in named:
            if name in taken or name in queued:
                joined.append(name)
                continue
            key = (notification, source.name)
            if started.get(key, 0) >= run_limit(source):
                over += 1
                continue
            started[key] = started.get(key, 0) + 1
            queued.add(name)
            start.append((name, source))
        plans.append(RunPlan(start, bool(over) and over == len(named), joined))
    return plans


def suppressed_note(count: int, sources: list[Source]) -> str:
    """Why `count` new alerts of a notification have no run."""
    limits = ", ".join(f"{s.name!r} at most {run_limit(s)}" for s in sources)
    return (
        f"{count} new alerts were stored without starting a run (status suppressed): a "
        f"Source starts a limited number of runs per notification ({limits}; "
        "spec.config.maxRunsPerNotification)"
    )
