"""The `Sink` custom resource: where a workflow's result goes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from punchingfist.api.base import Duration, ObjectName, SecretKeyRef, SpecModel, TemplateString


class _SinkConfig(SpecModel):
    template: TemplateString | None = None
    """Message body template (sees `.source`, `.steps`, `.workflow`, `.outputs`)."""


def _one_of(model: SpecModel, literal: str, ref: str) -> None:
    if getattr(model, literal) is not None and getattr(model, ref) is not None:
        raise ValueError(f"set `{literal}` or `{ref}`, not both")


class SlackConfig(_SinkConfig):
    """Post to a Slack channel with Block Kit."""

    channel: str | None = None
    """Channel name or id (default: OperatorConfig `spec.chat.slack.channelId`)."""
    bot_token: str | None = None
    """Bot token in clear text; prefer `botTokenSecret`. Never copied into manifests."""
    bot_token_secret: SecretKeyRef | None = None
    """Secret holding the bot token (default: OperatorConfig `spec.secrets.slackToken`)."""
    message_type: Literal["message", "thread"] = "message"
    """`thread` keeps one thread per incident."""
    mention_users: list[str] = Field(default_factory=list)
    """Users or groups to mention, e.g. `@oncall`."""

    @model_validator(mode="after")
    def _token(self) -> SlackConfig:
        _one_of(self, "bot_token", "bot_token_secret")
        return self


class AlertmanagerConfig(_SinkConfig):
    """Resolve, annotate or silence the alert in Alertmanager."""

    endpoint: str = "http://alertmanager:9093"
    """Alertmanager base URL."""
    action: Literal["annotate", "resolve", "silence"] = "annotate"
    """What to do with the alert."""
    silence_duration: Duration = "1h"
    """How long a `silence` lasts."""


class PrometheusConfig(_SinkConfig):
    """Push result metrics to a Prometheus Pushgateway."""

    pushgateway: str
    """Pushgateway base URL."""
    job: str = "punchingfist-results"
    """Pushgateway job label."""


class JiraConfig(_SinkConfig):
    """Open a Jira issue."""

    project: str
    """Project key, e.g. `OPS`."""
    issue_type: str = "Incident"
    """Issue type name."""
    endpoint: str
    """Jira base URL."""
    credentials_secret: SecretKeyRef | None = None
    """Secret holding `user:api-token` (default: OperatorConfig `spec.secrets.jiraToken`)."""
    labels: list[str] = Field(default_factory=list)
    """Labels of new issues, besides `punchingfist` and `pf-incident-<hash>` (the incident's
    key: one issue per incident)."""


class PagerDutyConfig(_SinkConfig):
    """Trigger or resolve a PagerDuty incident (Events API v2)."""

    routing_key: str | None = None
    """Integration routing key in clear text; prefer `routingKeySecret`."""
    routing_key_secret: SecretKeyRef | None = None
    """Secret holding the routing key."""
    action: Literal["trigger", "resolve", "acknowledge"] = "trigger"
    """Event action."""
    endpoint: str = "https://events.pagerduty.com"
    """Events API base URL."""

    @model_validator(mode="after")
    def _key(self) -> PagerDutyConfig:
        _one_of(self, "routing_key", "routing_key_secret")
        if self.routing_key is None and self.routing_key_secret is None:
            raise ValueError("set `routingKeySecret` (or `routingKey`)")
        return self


class WorkflowSinkConfig(_SinkConfig):
    """Start another punchingfist Workflow with this run's result as its event."""

    workflow_name: ObjectName
    """Workflow to start."""
    trigger_condition: str | None = None
    """Expression without braces, e.g. `severity == 'critical'`."""
    source: ObjectName | None = None
    """The `api` Source whose trigger API starts `workflowName` (default: `workflowName`)."""
    endpoint: str = "http://punchingfist:8080"
    """Base URL of the Punching Fist server (default: the chart's Service, from a step pod in
    the release's namespace)."""
    auth_secret: SecretKeyRef | None = None
    """Secret holding the credential that Source's `authentication` expects."""
    auth_header: str | None = None
    """Header for the credential: `Authorization: Bearer` when unset, else the raw value in
    this header (e.g. `X-API-Key` for an `apikey` Source)."""


class WebhookSinkConfig(_SinkConfig):
    """POST the result as JSON (or the rendered template) to a URL."""

    url: str
    """Target URL."""
    method: Literal["POST", "PUT"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra headers (no secrets here: use `authSecret`)."""
    auth_secret: SecretKeyRef | None = None
    """Secret holding a bearer token."""


class SlackSink(SpecModel):
    type: Literal["slack"]
    config: SlackConfig = Field(default_factory=SlackConfig)


class AlertmanagerSink(SpecModel):
    type: Literal["alertmanager"]
    config: AlertmanagerConfig = Field(default_factory=AlertmanagerConfig)


class PrometheusSink(SpecModel):
    type: Literal["prometheus"]
    config: PrometheusConfig


class JiraSink(SpecModel):
    type: Literal["jira"]
    config: JiraConfig


class PagerDutySink(SpecModel):
    type: Literal["pagerduty"]
    config: PagerDutyConfig


class WorkflowSink(SpecModel):
    type: Literal["workflow"]
    config: WorkflowSinkConfig


class WebhookSink(SpecModel):
    type: Literal["webhook"]
    config: WebhookSinkConfig


SinkSpec = Annotated[
    SlackSink
    | AlertmanagerSink
    | PrometheusSink
    | JiraSink
    | PagerDutySink
    | WorkflowSink
    | WebhookSink,
    Field(discriminator="type"),
]
"""Spec of a Sink: `type` selects the shape of `config`."""

# Literal secret fields of each sink config and the env var the runtime reads them from.
SINK_SECRET_FIELDS: dict[str, tuple[str, str, str]] = {
    # type: (literal field, secret-ref field, env var)
    "slack": ("bot_token", "bot_token_secret", "SLACK_BOT_TOKEN"),
    "pagerduty": ("routing_key", "routing_key_secret", "PAGERDUTY_ROUTING_KEY"),
    "jira": ("", "credentials_secret", "JIRA_CREDENTIALS"),
    "webhook": ("", "auth_secret", "WEBHOOK_TOKEN"),
    "workflow": ("", "auth_secret", "PF_TRIGGER_TOKEN"),
}
