"""Decide which secret reaches which container, and move clear-text secrets into a Secret.

Least privilege: the LLM key and the Prometheus token go to agent tasks only, chat and paging
credentials to the sink (or approval-request) tasks that use them, and cli steps get none.
A credential written in clear text in a resource (the design document's `botToken:
"xoxb-secret"`) never lands in the WorkflowTemplate: it is put into a generated Secret and
referenced from there, and the compiler warns about it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from punchingfist.api import SecretKeyRef, Sink, Workflow
from punchingfist.api.operatorconfigs import RUNBOOK_TOKEN_ENV, SECRET_ENV, OperatorConfigSpec
from punchingfist.api.sinks import SINK_SECRET_FIELDS
from punchingfist.compiler.naming import secret_name


@dataclass(frozen=True)
class SecretEnvVar:
    """An environment variable read from a Secret key."""

    env: str
    secret: str
    key: str


@dataclass
class Credentials:
    """Collects secret references and the clear-text values that need a generated Secret."""

    workflow: Workflow
    config: OperatorConfigSpec | None
    generated: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def _literal(self, env: str, key: str, value: str, where: str) -> SecretEnvVar:
        name = secret_name(self.workflow.name)
        self.generated[key] = value
        self.warnings.append(
            f"{where} holds a credential in clear text; it was moved into Secret {name!r} "
            f"(key {key!r}). Reference a Secret instead."
        )
        return SecretEnvVar(env=env, secret=name, key=key)

    def _role(self, role: str) -> SecretEnvVar | None:
        if self.config is None or role not in self.config.secrets:
            return None
        ref = self.config.secrets[role]
        return SecretEnvVar(env=SECRET_ENV[role], secret=ref.secret_ref, key=ref.key)

    def agent(self) -> list[SecretEnvVar]:
        """LLM key, Prometheus token and the runbook repository's token for agent tasks."""
        found: list[SecretEnvVar] = []
        llm = self._llm_key()
        if llm is not None:
            found.append(llm)
        prometheus = self._role("prometheusToken")
        if prometheus is not None:
            found.append(prometheus)
        runbooks = self.config.runbooks if self.config else None
        if runbooks and runbooks.git and runbooks.git.credentials_secret:
            found.append(_ref(RUNBOOK_TOKEN_ENV, runbooks.git.credentials_secret))
        return found

    def _llm_key(self) -> SecretEnvVar | None:
        env = SECRET_ENV["llmApiKey"]
        llm = self.workflow.spec.runtime.llm_config
        if llm is not None and llm.api_key_secret is not None:
            return _ref(env, llm.api_key_secret)
        provider_name = (
            llm.provider
            if llm is not None
            else (self.config.llm.default_provider if self.config and self.config.llm else None)
        )
        if self.config and self.config.llm and provider_name in self.config.llm.providers:
            provider = self.config.llm.providers[provider_name]
            if provider.api_key_secret is not None:
                return _ref(env, provider.api_key_secret)
            if provider.api_key is not None:
                return self._literal(
                    env,
                    f"llm-{provider_name}-api-key",
                    provider.api_key,
                    f"OperatorConfig spec.llm.providers.{provider_name}.apiKey",
                )
        return self._role("llmApiKey")

    def slack(self) -> SecretEnvVar | None:
        """The Slack bot token of the OperatorConfig, for approval requests."""
        role = self._role("slackToken")
        if role is not None:
            return role
        chat = self.config.chat if self.config else None
        if chat is not None and chat.slack is not None and chat.slack.bot_token is not None:
            return self._literal(
                SECRET_ENV["slackToken"],
                "slack-bot-token",
                chat.slack.bot_token,
                "OperatorConfig spec.chat.slack.botToken",
            )
        return None

    def sink(self, sink: Sink) -> SecretEnvVar | None:
        """The credential of one sink, if its type has one."""
        fields = SINK_SECRET_FIELDS.get(sink.spec.type)
        if fields is None:
            return None
        literal_field, ref_field, env = fields
        config = sink.spec.config
        ref = getattr(config, ref_field, None)
        if isinstance(ref, SecretKeyRef):
            return _ref(env, ref)
        literal = getattr(config, literal_field, None) if literal_field else None
        if isinstance(literal, str):
            camel = "".join(
                part.capitalize() if i else part for i, part in enumerate(literal_field.split("_"))
            )
            return self._literal(
                env, f"sink-{sink.name}", literal, f"{sink.ref} spec.config.{camel}"
            )
        if sink.spec.type == "slack":
            return self.slack()
        role = {"pagerduty": "pagerdutyRoutingKey", "jira": "jiraToken"}.get(sink.spec.type)
        return self._role(role) if role else None


def _ref(env: str, ref: SecretKeyRef) -> SecretEnvVar:
    return SecretEnvVar(env=env, secret=ref.secret_ref, key=ref.key)
