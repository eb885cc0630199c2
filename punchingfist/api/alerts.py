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
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Payload(BaseModel):
    # Alertmanager may add fields in later versions: keep what we know, ignore the rest.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class Alert(_Payload):
    """One alert of a notification."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str = Field(min_length=1, max_length=255)

    @field_validator("labels", "annotations")
    @classmethod
    def _storable(cls, value: dict[str, str]) -> dict[str, str]:
        if "\x00" in "".join(value) or "\x00" in "".join(value.values()):  # one scan, in C
            for name, text in value.items():
                if "\x00" in name or "\x00" in text:
                    raise ValueError(f"{name[:60]!r} holds a NUL character, which cannot be stored")
        if len(value.get("alertname", "")) > 255:
            raise ValueError("alertname is longer than 255 characters")
        return value


class AlertmanagerPayload(_Payload):
    """The body Alertmanager POSTs to a webhook receiver."""

    version: Literal["4"]
    group_key: str = Field(alias="groupKey", max_length=1024)
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts", ge=0)
    status: Literal["firing", "resolved"]
    receiver: str
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
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
