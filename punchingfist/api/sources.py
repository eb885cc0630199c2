"""The `Source` custom resource: what starts an investigation."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from punchingfist.api.base import Duration, ObjectName, SecretName, SpecModel, duration_seconds


class Authentication(SpecModel):
    """How callers of a webhook or API Source prove who they are."""

    type: Literal["bearer", "apikey", "none"] = "bearer"
    """`bearer` (Authorization: Bearer <token>), `apikey` (X-API-Key header) or `none`."""
    secret_ref: SecretName | None = None
    """Kubernetes Secret holding the expected token, or a secret reference
    (`vault://PATH#KEY`, `aws://NAME#KEY`, `azure://VAULT/NAME`, `env://NAME`), re-read at
    most every 30 s so a rotated token is used without a restart."""
    key: str = "token"
    """Key inside the Secret's data (a reference names its key after '#')."""
    header: str | None = None
    """Header carrying the credential (defaults: Authorization for bearer, X-API-Key for apikey)."""


MAX_WINDOW_SECONDS = 300
MAX_COOLDOWN_SECONDS = 7 * 86400


class Investigation(SpecModel):
    """How many investigations an alert stream starts (docs/operations.md, "Alert storms")."""

    scope: Literal["perGroup", "perIncident", "perAlert"] = "perGroup"
    """`perGroup` (the default): one run per Alertmanager group (`groupKey`) and its open
    incident; later alerts of the group join it. `perAlert`: every new firing alert starts its
    own run.
    `perIncident`: one run per correlated incident (alerts of other groups with the same
    alertname and namespace join it). An alert that joins a run is stored with status
    `suppressed` and `covered_by_run` naming the run."""
    window: Duration = "2s"
    """How long a new run waits before it starts, so that the rest of its group or incident
    (a second Alertmanager replica's copy, a retry, the next notification) joins it rather
    than starting runs of their own; `0s` starts at once; at most 5m."""
    cooldown: Duration = "30m"
    """After a run, how long the same fingerprint (`perAlert`), group (`perGroup`) or
    incident title (`perIncident`) starts no other run: a re-fire within it is stored as
    `suppressed`, covered by that run; `0s` for none; at most 7d."""

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        if duration_seconds(value) > MAX_WINDOW_SECONDS:
            raise ValueError(f"{value!r} is longer than 5m: runs would wait too long to start")
        return value

    @field_validator("cooldown")
    @classmethod
    def _cooldown(cls, value: str) -> str:
        if duration_seconds(value) > MAX_COOLDOWN_SECONDS:
            raise ValueError(f"{value!r} is longer than 7d: use at most 7d")
        return value


class WebhookConfig(SpecModel):
    """An HTTP endpoint that receives Alertmanager webhook (version 4) payloads."""

    path: str = "/webhook/alerts"
    """URL path served by the Punching Fist server."""
    filters: dict[str, list[str]] = Field(default_factory=dict)
    """Label name -> accepted values; an alert must match every listed label."""
    authentication: Authentication | None = None
    """Credential callers must present."""
    max_alerts: int = Field(default=1000, ge=1, le=100_000)
    """Most alerts one notification may hold; a larger one is refused (413) and stores nothing.
    Set Alertmanager's `max_alerts` on the receiver to this or less: Alertmanager then sends
    the first ones and counts the rest in `truncatedAlerts`."""
    max_runs_per_notification: int = Field(default=50, ge=1, le=100_000)
    """Most runs one notification starts; the alerts beyond are stored with status
    `suppressed` and no run (the answer's `suppressed` counts them)."""
    investigation: Investigation = Field(default_factory=Investigation)
    """How many investigations the alerts start: one per alert, group or incident, after a
    coalescing window, with a cooldown."""

    @field_validator("path")
    @classmethod
    def _path_is_absolute(cls, value: str) -> str:
        if not value.startswith("/") or " " in value:
            raise ValueError(f"{value!r} must be an absolute URL path such as '/webhook/alerts'")
        return value


class ChatConfig(SpecModel):
    """A chat mention or command that starts an investigation."""

    platform: Literal["slack"] = "slack"
    """Chat platform."""
    trigger: Literal["mention", "command"] = "mention"
    """React to a bot mention or to a command."""
    channel: str | None = None
    """Only listen in this channel (e.g. `#ops`)."""
    command: str | None = None
    """Command word for `trigger: command` (e.g. `debug`)."""


class ScheduleConfig(SpecModel):
    """A cron schedule."""

    cron: str
    """Five-field cron expression, e.g. `0 2 * * *`."""
    timezone: str = "UTC"
    """IANA time zone the cron expression is read in."""

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(
                f"{value!r} is not a cron expression: write five fields "
                "(minute hour day-of-month month day-of-week), e.g. '0 2 * * *'"
            )
        return value


class ApiConfig(SpecModel):
    """An HTTP API trigger (`POST /api/v1/trigger/<source>`)."""

    endpoint: Annotated[str, Field(pattern=r"^(/[A-Za-z0-9._~-]+)+$", max_length=200)] = (
        "/api/v1/trigger"
    )
    """Base path of the trigger API: the Source is served at `<endpoint>/<source name>`."""
    method: Literal["POST"] = "POST"
    """HTTP method."""
    authentication: Authentication | None = None
    """Credential callers must present."""

    @field_validator("endpoint")
    @classmethod
    def _not_taken(cls, value: str) -> str:
        taken = (
            "/api/v1/alerts",
            "/api/v1/incidents",
            "/api/v1/runs",
            "/api/v1/approvals",
            "/slack",
            "/metrics",
            "/healthz",
            "/readyz",
            "/docs",
            "/openapi.json",
            "/redoc",
        )
        for path in taken:
            if value == path or value.startswith(path + "/"):
                raise ValueError(
                    f"{value!r} is the server's own path {path}: choose another, "
                    "e.g. /api/v1/trigger or /hooks/<name>"
                )
        return value


class KubernetesConfig(SpecModel):
    """Kubernetes object events."""

    resource: str
    """Resource to watch, e.g. `pods` or `deployments.apps`."""
    event: Literal["created", "updated", "deleted"] = "created"
    """Which change starts an investigation."""
    label_selector: str | None = None
    """Only objects matching this label selector, e.g. `app=critical-service`."""
    namespace: str | None = None
    """Only this namespace (default: all namespaces the operator may watch)."""
    debounce: Duration = "60s"
    """At most one investigation per object in this window."""


class _SourceBase(SpecModel):
    trigger_workflow: ObjectName
    """Name of the punchingfist Workflow to run."""
    context: dict[str, Any] = Field(default_factory=dict)
    """Extra values passed to the workflow as `.source.context`."""


class WebhookSource(_SourceBase):
    """Alertmanager (or any v4-compatible) webhook."""

    type: Literal["webhook"]
    config: WebhookConfig = Field(default_factory=WebhookConfig)


class ChatSource(_SourceBase):
    """Chat mention or command."""

    type: Literal["chat"]
    config: ChatConfig = Field(default_factory=ChatConfig)


class ScheduleSource(_SourceBase):
    """Cron schedule."""

    type: Literal["schedule"]
    config: ScheduleConfig


class ApiSource(_SourceBase):
    """HTTP trigger API."""

    type: Literal["api"]
    config: ApiConfig = Field(default_factory=ApiConfig)


class KubernetesSource(_SourceBase):
    """Kubernetes object events."""

    type: Literal["kubernetes"]
    config: KubernetesConfig


SourceSpec = Annotated[
    WebhookSource | ChatSource | ScheduleSource | ApiSource | KubernetesSource,
    Field(discriminator="type"),
]
"""Spec of a Source: `type` selects the shape of `config`."""
