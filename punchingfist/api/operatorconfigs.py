"""The `OperatorConfig` custom resource: operator-wide settings (chat, LLMs, secrets, approvals).

Fields of the design document that nothing implements yet (`database`) keep their schema, so
`kubectl explain` shows them, but a resource that sets one is refused with "not supported yet"
naming the field: the compiler (through these models) and admission refuse it instead of
ignoring it. `secretManager` and `secretRotation` are read by punchingfist.secrets.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator, model_validator

from punchingfist.api.base import Duration, ObjectName, SecretKeyRef, SpecModel
from punchingfist.api.limits import ConcurrencyConfig


class DatabaseConfig(SpecModel):
    """Not supported yet: the server's database is its `--database-url` (the chart's
    `database` values). Where alerts, incidents and runs would be stored."""

    type: Literal["postgres", "sqlite"] = "sqlite"
    """`postgres` in production, `sqlite` for one machine."""
    connection_string: str | None = None
    """Connection URL in clear text; prefer `connectionStringSecret`."""
    connection_string_secret: SecretKeyRef | None = None
    """Secret holding the connection URL."""


class SlackChatConfig(SpecModel):
    """Slack app used for messages, approvals and chat commands."""

    bot_token: str | None = None
    """Bot token in clear text; prefer `spec.secrets.slackToken`."""
    channel_id: str | None = None
    """Default channel for messages and approval requests."""
    signing_secret: SecretKeyRef | None = None
    """Secret holding the Slack signing secret (verifies interactivity requests)."""


class ChatConfig(SpecModel):
    """Chat platforms."""

    slack: SlackChatConfig | None = None


class LLMProvider(SpecModel):
    """One configured model provider."""

    type: (
        Literal["local", "openai", "anthropic", "claude", "together", "ollama", "openai-compatible"]
        | None
    ) = None
    """Wire protocol family (default: the provider's key, or `local`)."""
    endpoint: str | None = None
    """Base URL of the OpenAI-compatible API."""
    model: str | None = None
    """Model name."""
    api_key: str | None = None
    """API key in clear text; prefer `apiKeySecret`. Never copied into manifests."""
    api_key_secret: SecretKeyRef | None = None
    """Secret holding the API key."""
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    """Default sampling temperature (0-2)."""
    max_tokens: Annotated[int, Field(gt=0)] | None = None
    """Default largest completion per model turn."""
    mode: Literal["tools", "json_schema"] | None = None
    """How answers are structured (default: chosen from the provider type)."""


class ModelPrice(SpecModel):
    """What a model's tokens cost, in USD per million tokens."""

    input_per_million: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    """USD per million input (prompt) tokens."""
    output_per_million: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    """USD per million output (completion) tokens."""


class LLMConfig(SpecModel):
    """Model providers available to agent steps, what their tokens cost, and the budgets."""

    default_provider: str = "local"
    """Provider used when a Workflow does not name one."""
    providers: dict[str, LLMProvider] = Field(default_factory=dict)
    """Providers by name, e.g. `local`, `claude`."""
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    """Prices by model name or glob pattern (`gpt-4.1*`), over the built-in list prices of
    common OpenAI and Anthropic models (2025; check your provider). Self-hosted providers
    (`local`, `ollama`, `openai-compatible`) cost nothing unless their model is listed here."""
    step_budget_usd: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    """Most USD one agent step may spend on its model (a step's `rigConfig.safety.costBudgetUsd`
    overrides it). When spent, the agent stops and answers with what it has, marked partial."""
    run_budget_usd: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    """Most USD one run may spend on models, shared by its agent steps in order (a Workflow's
    `spec.safety.costBudgetUsd` overrides it): each agent step may spend what the agent steps
    before it left, and at most its step budget. A step that starts with nothing left answers
    at once, without calling its model, marked partial."""
    daily_budget_usd: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    """Most USD all runs may spend on models per day (UTC). Once today's recorded spend reaches
    it, queued runs are refused until 00:00 UTC."""

    def price_table(self) -> dict[str, tuple[float, float]]:
        """`prices` as the runtime takes them: name -> (input, output) USD per million."""
        return {
            name: (price.input_per_million, price.output_per_million)
            for name, price in self.prices.items()
        }

    @model_validator(mode="after")
    def _default_exists(self) -> LLMConfig:
        if self.providers and self.default_provider not in self.providers:
            raise ValueError(
                f"defaultProvider {self.default_provider!r} is not one of the providers: "
                + ", ".join(sorted(self.providers))
            )
        return self


RUNBOOK_TOKEN_ENV = "RUNBOOKS_GIT_TOKEN"
"""The variable that carries `spec.runbooks.git.credentialsSecret` into agent step pods."""
_REF = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]{0,199}$")


def _no_dots(value: str, what: str) -> str:
    if ".." in value.split("/") or value.startswith("/"):
        raise ValueError(f"{what} must be relative and may not contain '..'")
    return value


class RunbookGitSource(SpecModel):
    """A git repository of runbooks, fetched (depth 1) by each agent step that reads them."""

    url: str
    """`https://host/owner/repo` (no credentials in the URL: use `credentialsSecret`).
    Other schemes (ssh, file, git) are refused."""
    ref: str = "main"
    """Branch, tag or commit to read."""
    path: str | None = None
    """Directory of the repository holding the runbooks (default: all of it)."""
    credentials_secret: SecretKeyRef | None = None
    """Secret (in the workflows' namespace) holding a token for HTTPS, or `user:token`."""

    @field_validator("url")
    @classmethod
    def _https_only(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(
                f"{value!r} is not an https:// URL; runbooks are fetched over HTTPS only "
                "(ssh, file and git URLs are refused)"
            )
        if parts.username or parts.password:
            raise ValueError("the URL may not hold credentials: use credentialsSecret")
        return value

    @field_validator("ref")
    @classmethod
    def _ref(cls, value: str) -> str:
        if not _REF.match(value):
            raise ValueError(f"{value!r} is not a branch, tag or commit name")
        return _no_dots(value, "ref")

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _REF.match(value.strip("/")):
            raise ValueError(f"{value!r} is not a directory path (A-Z a-z 0-9 ._/-)")
        return _no_dots(value, "path").strip("/")


class RunbookConfigMapSource(SpecModel):
    """ConfigMaps whose keys ending in `.md` are runbooks."""

    names: list[ObjectName] = Field(default_factory=list, max_length=50)
    """ConfigMaps by name."""
    selector: dict[str, str] = Field(default_factory=dict, max_length=10)
    """Or: every ConfigMap with these labels, e.g. `punchingfist.io/runbook: "true"`."""
    namespace: ObjectName | None = None
    """Where they are (default: the namespace the run's steps run in)."""

    @model_validator(mode="after")
    def _names_or_selector(self) -> RunbookConfigMapSource:
        if bool(self.names) == bool(self.selector):
            raise ValueError("give either names or a selector")
        for key, value in self.selector.items():
            if not _LABEL.match(key) or (value and not _LABEL_VALUE.match(value)):
                raise ValueError(f"selector {key}={value!r} is not a label and value")
        return self


_LABEL = re.compile(r"^([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")


class RunbooksConfig(SpecModel):
    """Runbooks the agent reads with its `runbook` tool: Markdown files whose front matter
    (`title`, `alertname`, `labels`) says which alerts they are for (docs/runtime.md,
    "Runbooks"). Every agent step gets the tool when this is set."""

    git: RunbookGitSource | None = None
    """A git repository of runbooks."""
    config_maps: RunbookConfigMapSource | None = None
    """ConfigMaps of runbooks."""
    repository: str | None = None
    """The design document's spelling of `git.url` (with `branch` as `git.ref`)."""
    branch: str | None = None
    """With `repository`: the branch (default main)."""
    sync_interval: Duration | None = None
    """Refused: runbooks are fetched by each agent step that reads them, so there is nothing to
    sync."""

    @model_validator(mode="before")
    @classmethod
    def _repository(cls, value: Any) -> Any:
        if isinstance(value, dict) and "repository" in value and "git" not in value:
            git = {"url": value["repository"]}
            if value.get("branch"):
                git["ref"] = value["branch"]
            value = {k: v for k, v in value.items() if k not in ("repository", "branch")}
            value["git"] = git
        return value

    @model_validator(mode="after")
    def _some_source(self) -> RunbooksConfig:
        if self.sync_interval is not None:
            raise ValueError(
                "syncInterval: runbooks are fetched by each agent step that reads them; "
                "remove syncInterval"
            )
        if self.repository is not None or self.branch is not None:
            raise ValueError("give the repository as git.url (and git.ref), not both ways")
        if self.git is None and self.config_maps is None:
            raise ValueError("give git, configMaps or both")
        return self


class SecretManagerConfig(SpecModel):
    """The external secret manager that `vault://`, `aws://` and `azure://` references are read
    from (docs/operations.md, "Secrets from Vault, AWS and Azure"). References name their
    manager by scheme; this block says how to reach and log in to it."""

    type: Literal["vault", "aws-secrets", "azure-keyvault"]
    """Secret manager: `vault`, `aws-secrets` or `azure-keyvault`."""
    endpoint: str | None = None
    """Vault address (else the server's VAULT_ADDR)."""
    auth_method: str | None = None
    """Vault: `kubernetes` (log in with `role` and the ServiceAccount token), else token auth
    with the server's VAULT_TOKEN. AWS (`iam-role`): the credentials boto3 finds (IRSA's web
    identity, the instance role). Azure `managed-identity`: that identity only (`clientId`;
    AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET, when all set, win), else the
    credentials azure-identity finds."""
    role: str | None = None
    """Vault role (kubernetes auth)."""
    secret_path: str | None = None
    """Vault KV v2 mount and path prefix, e.g. `secret/data/punchingfist` (default `secret`)."""
    region: str | None = None
    """AWS region (else AWS_REGION)."""
    secret_prefix: str | None = None
    """AWS Secrets Manager name prefix, put before the name of `aws://NAME`."""
    vault_url: str | None = None
    """Azure Key Vault URL; `azure://VAULT/NAME` references whose VAULT is its first host label
    use it."""
    client_id: str | None = None
    """Azure managed identity client id."""


class SecretRotationConfig(SpecModel):
    """How long a value read from a secret manager is used before it is read again. Unset or
    disabled: 30 s. Runs resolve their secrets when they start, so an in-flight run keeps the
    value it started with."""

    enabled: bool = False
    """Use `checkInterval` and `gracePeriod` instead of the 30 s default."""
    check_interval: Duration = "1h"
    """A value is read again from its manager once it is this old."""
    grace_period: Duration = "300s"
    """When the manager cannot be read once a value is due, the old value is used this much
    longer, then the read fails."""


class ApprovalsConfig(SpecModel):
    """Who may answer approval gates."""

    approvers: list[str] = Field(default_factory=list)
    """Slack user ids or Kubernetes user names allowed to approve (empty: RBAC decides)."""
    tokens_secret: str | None = Field(default=None, min_length=1, max_length=253)
    """Secret whose keys are approver names and whose values are their API tokens. When set,
    the REST approval endpoint needs `Authorization: Bearer <token>`, and the approver is
    whoever the token belongs to. Unset, it takes the approver named in the request body."""


_FIXES = {
    "database": "spec.database is not read by anything; the server's database is its "
    "--database-url (the chart's `database` values): remove spec.database",
}


# Well-known keys of `spec.secrets` and the environment variable each becomes in step pods.
SECRET_ENV = {
    "llmApiKey": "LLM_API_KEY",
    "slackToken": "SLACK_BOT_TOKEN",
    "prometheusToken": "PROMETHEUS_TOKEN",
    "pagerdutyRoutingKey": "PAGERDUTY_ROUTING_KEY",
    "jiraToken": "JIRA_CREDENTIALS",
}


class OperatorConfigSpec(SpecModel):
    """Operator-wide settings."""

    database: DatabaseConfig | None = None
    chat: ChatConfig | None = None
    llm: LLMConfig | None = None
    runbooks: RunbooksConfig | None = None
    """Runbooks for the agent's `runbook` tool, from git and ConfigMaps."""
    secret_manager: SecretManagerConfig | None = None
    secrets: dict[str, SecretKeyRef] = Field(default_factory=dict)
    """Kubernetes Secrets (or secret references, `vault://PATH#KEY`...) by role: llmApiKey,
    slackToken, prometheusToken, pagerdutyRoutingKey, jiraToken; each becomes an environment
    variable of step pods."""
    secret_rotation: SecretRotationConfig | None = None
    approvals: ApprovalsConfig | None = None
    concurrency: ConcurrencyConfig | None = None
    """Limits on runs at once (unset: none); see docs/operations.md, "Concurrency"."""

    @field_validator("database")
    @classmethod
    def _not_supported_yet(cls, value: object, info: ValidationInfo) -> object:
        if value is not None:
            raise ValueError(f"not supported yet: {_FIXES[str(info.field_name)]}")
        return value

    @model_validator(mode="after")
    def _known_secrets(self) -> OperatorConfigSpec:
        unknown = sorted(set(self.secrets) - set(SECRET_ENV))
        if unknown:
            raise ValueError(
                f"unknown secret role {unknown[0]!r}; known roles: " + ", ".join(SECRET_ENV)
            )
        return self
