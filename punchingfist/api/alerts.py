"""Alertmanager webhook payloads (version 4) and the event a workflow run receives.

The event is what templates read as `.source.data`:

    {"alert":  {alertname, summary, description, severity, status, labels, annotations,
                startsAt, endsAt, fingerprint, generatorURL},      the alert this run is about
     "alerts": [{fingerprint, alertname, severity, status, startsAt} of every alert of the
                notification, this one included],
     "groupKey", "receiver", "status", "externalURL", "groupLabels", "commonLabels",
     "commonAnnotations", "truncatedAlerts",
     "context": {... the Source's `context` ...}}

Label and annotation text is copied verbatim: it is data, never a template or a command.
What the stores cannot hold is refused here, before any transaction, with the field named (the
same answer on SQLite and PostgreSQL): a NUL character in any string, a time outside
`STORABLE_TIMES` (times are kept in UTC), `truncatedAlerts` beyond a 64-bit integer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

STORABLE_TIMES = (datetime(1, 1, 2, tzinfo=UTC), datetime(9999, 12, 30, tzinfo=UTC))
"""Times both stores hold and give back in any session time zone (a day inside Python's years
1 to 9999: PostgreSQL returns a stored time in its session's zone, up to ±16 hours away)."""
NOT_ENDED = datetime(1, 1, 1, tzinfo=UTC)
"""Go's zero time, which Alertmanager sends as the `endsAt` of an alert that has not ended."""
MAX_BIGINT = 2**63 - 1


def _text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("holds a NUL character (\\u0000), which cannot be stored: remove it")
    return value


def _mapping(value: dict[str, str]) -> dict[str, str]:
    if "\x00" in "".join(value) or "\x00" in "".join(value.values()):  # one scan, in C
        for name, text in value.items():
            if "\x00" in name or "\x00" in text:
                raise ValueError(
                    f"{name[:60]!r} holds a NUL character (\\u0000), which cannot "
                    "be stored: remove it"
                )
    return value


def _time(value: datetime) -> datetime:
    """The time in UTC (a time without an offset is read as UTC), if it can be stored."""
    try:
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # past year 9999 or before year 1 once in UTC
        utc = None
    if utc is None or not STORABLE_TIMES[0] <= utc < STORABLE_TIMES[1]:
        low, high = (t.date().isoformat() for t in STORABLE_TIMES)
        raise ValueError(
            f"{value.isoformat()} cannot be stored: give a time between {low} and {high} (UTC)"
        )
    return utc


Text = Annotated[str, AfterValidator(_text)]
"""A string the stores can hold: no NUL character."""
Mapping = Annotated[dict[str, str], AfterValidator(_mapping)]
"""Labels or annotations: no NUL character in a name or a value."""
Time = Annotated[datetime, AfterValidator(_time)]
"""A time the stores can hold, in UTC."""


class _Payload(BaseModel):
    # Alertmanager may add fields in later versions: keep what we know, ignore the rest.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


def _alertname(labels: dict[str, str]) -> dict[str, str]:
    if len(labels.get("alertname", "")) > 255:
        raise ValueError("alertname is longer than 255 characters")
    return labels


class Alert(_Payload):
    """One alert of a notification."""

    status: Literal["firing", "resolved"]
    labels: Annotated[Mapping, AfterValidator(_alertname)]
    annotations: Mapping = Field(default_factory=dict)
    starts_at: Time = Field(alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    """None while the alert has not ended (Alertmanager's zero time included)."""
    generator_url: Text = Field(default="", alias="generatorURL")
    fingerprint: Text = Field(min_length=1, max_length=255)

    @field_validator("ends_at")
    @classmethod
    def _ended(cls, value: datetime | None) -> datetime | None:
        if value is None or (value.replace(tzinfo=UTC) == NOT_ENDED and not value.utcoffset()):
            return None
        return _time(value)


class AlertmanagerPayload(_Payload):
    """The body Alertmanager POSTs to a webhook receiver."""

    version: Literal["4"]
    group_key: Text = Field(alias="groupKey", max_length=1024)
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts", ge=0, le=MAX_BIGINT)
    status: Literal["firing", "resolved"]
    receiver: Text
    group_labels: Mapping = Field(default_factory=dict, alias="groupLabels")
    common_labels: Mapping = Field(default_factory=dict, alias="commonLabels")
    common_annotations: Mapping = Field(default_factory=dict, alias="commonAnnotations")
    external_url: Text = Field(default="", alias="externalURL")
    alerts: list[Alert] = Field(min_length=1)


def alert_view(alert: Alert) -> dict[str, Any]:
    """An alert as templates see it: the labels and annotations plus handy top-level names."""
    return {
        "alertname": alert.labels.get("alertname", ""),
        "summary": alert.annotations.get("summary", ""),
        "description": alert.annotations.get("description", ""),
        "severity": alert.labels.get("severity", ""),
        "status": alert.status,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "startsAt": alert.starts_at.isoformat(),
        "endsAt": alert.ends_at.isoformat() if alert.ends_at else None,
        "fingerprint": alert.fingerprint,
        "generatorURL": alert.generator_url,
    }


GROUP_KEYS = ("fingerprint", "alertname", "severity", "status", "startsAt")


def group_identities(views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The alerts of a group by identity only (`GROUP_KEYS`): a run is about one alert, and a
    group can hold hundreds (each run's parameters would otherwise repeat all of them)."""
    return [{key: view[key] for key in GROUP_KEYS} for view in views]


def event_from_payload(
    payload: AlertmanagerPayload,
    index: int = 0,
    context: dict[str, Any] | None = None,
    views: list[dict[str, Any]] | None = None,
    identities: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The event of a run about `payload.alerts[index]` (`views`: the payload's alerts already
    passed through `alert_view`, and `identities` through `group_identities`, when the caller
    builds several events of one payload)."""
    alerts = views if views is not None else [alert_view(alert) for alert in payload.alerts]
    group = event_group(payload, identities if identities is not None else group_identities(alerts))
    return {"alert": alerts[index], **group, "context": context or {}}


def event_group(payload: AlertmanagerPayload, identities: list[dict[str, Any]]) -> dict[str, Any]:
    """The part of the event that every alert of the notification shares (all but `alert` and
    `context`): intake stores it once per notification."""
    return {
        "alerts": identities,
        "groupKey": payload.group_key,
        "receiver": payload.receiver,
        "status": payload.status,
        "externalURL": payload.external_url,
        "groupLabels": dict(payload.group_labels),
        "commonLabels": dict(payload.common_labels),
        "commonAnnotations": dict(payload.common_annotations),
        "truncatedAlerts": payload.truncated_alerts,
    }
