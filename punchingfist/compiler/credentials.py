"""Decide which secret reaches which container, and move clear-text secrets into a Secret.

Least privilege: the LLM key and the Prometheus token go to agent tasks only, chat and paging
credentials to the sink (or approval-request) tasks that use them, and cli steps get none.
A credential written in clear text in a resource (the design document's `botToken:
"xoxb-secret"`) never lands in the WorkflowTemplate: it is put into a generated Secret and
referenced from there, and the compiler warns about it.

A secret reference (`secretRef: vault://PATH#KEY`, punchingfist.secrets) is read from the run's
own Secret, `naming.references_secret()` (`<run>-secrets`), under a key made of the
reference's digest; the template's annotation `naming.ANNOTATION_SECRET_REFERENCES` maps those
keys back to the references, which the executor resolves when the run starts (the local
engine in-process; Argo into that Secret, owned by the run).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from punchingfist.api import SecretKeyRef, Sink, Workflow
from punchingfist.api.operatorconfigs import RUNBOOK_TOKEN_ENV, SECRET_ENV, OperatorConfigSpec
from punchingfist.api.sinks import SINK_SECRET_FIELDS
from punchingfist.compiler.naming import references_secret, secret_name
from punchingfist.errors import InvalidResource
from punchingfist.secrets import SecretError, is_reference, parse_reference


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
    references: dict[str, str] = field(default_factory=dict)
    """Key of the run's Secret -> the secret reference it is resolved from."""

    def _ref(self, env: str, ref: SecretKeyRef, where: str) -> SecretEnvVar:
        """The variable reading `ref`: a key of a Kubernetes Secret, or of the run's Secret
        for a reference (checked here, so a malformed one fails the compile)."""
        if not is_reference(ref.secret_ref):
            return SecretEnvVar(env=env, secret=ref.secret_ref, key=ref.key)
        try:
            parse_reference(ref.secret_ref)
        except SecretError as error:
            raise InvalidResource(where.split(" ")[0], [(where, str(error))]) from None
        key = reference_key(ref.secret_ref)
        self.references[key] = ref.secret_ref
        return SecretEnvVar(env=env, secret=references_secret(), key=key)

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
        where = f"OperatorConfig spec.secrets.{role}.secretRef"
        return self._ref(SECRET_ENV[role], self.config.secrets[role], where)

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
            found.append(
                self._ref(
                    RUNBOOK_TOKEN_ENV,
                    runbooks.git.credentials_secret,
                    "OperatorConfig spec.runbooks.git.credentialsSecret.secretRef",
                )
            )
        return found

    def _llm_key(self) -> SecretEnvVar | None:
        env = SECRET_ENV["llmApiKey"]
        llm = self.workflow.spec.runtime.llm_config
        if llm is not None and llm.api_key_secret is not None:
            where = f"{self.workflow.ref} spec.runtime.llmConfig.apiKeySecret.secretRef"
            return self._ref(env, llm.api_key_secret, where)
        provider_name = (
            llm.provider
            if llm is not None
            else (self.config.llm.default_provider if self.config and self.config.llm else None)
        )
        if self.config and self.config.llm and provider_name in self.config.llm.providers:
            provider = self.config.llm.providers[provider_name]
            if provider.api_key_secret is not None:
                where = f"OperatorConfig spec.llm.providers.{provider_name}.apiKeySecret.secretRef"
                return self._ref(env, provider.api_key_secret, where)
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
            return self._ref(env, ref, f"{sink.ref} spec.config.{_camel(ref_field)}.secretRef")
        literal = getattr(config, literal_field, None) if literal_field else None
        if isinstance(literal, str):
            return self._literal(
                env, f"sink-{sink.name}", literal, f"{sink.ref} spec.config.{_camel(literal_field)}"
            )
        if sink.spec.type == "slack":
            return self.slack()
        role = {"pagerduty": "pagerdutyRoutingKey", "jira": "jiraToken"}.get(sink.spec.type)
        return self._role(role) if role else None


def _camel(name: str) -> str:
    return "".join(part.capitalize() if i else part for i, part in enumerate(name.split("_")))


def reference_key(reference: str) -> str:
    """The key of the run's Secret that holds the value of `reference` (a digest: Secret keys
    allow few characters, and the reference itself may be long)."""
    return "ref-" + hashlib.sha256(reference.encode()).hexdigest()[:16]
