"""Secret references: parsing with errors that name the reference and the fix, the resolver's
cache (a rotated value is used once the cached one is older than its time to live), the grace
period, the audit (never the value), and the compiler's handling of references."""

from __future__ import annotations

import json
import logging

import pytest

from punchingfist.api import load_resources
from punchingfist.api.operatorconfigs import OperatorConfigSpec
from punchingfist.compiler import compile_resources
from punchingfist.compiler.credentials import reference_key
from punchingfist.compiler.naming import ANNOTATION_SECRET_REFERENCES
from punchingfist.errors import InvalidResource
from punchingfist.executors.setup import gather_secrets
from punchingfist.secrets import SecretAccess, SecretError, SecretResolver, parse_reference
from punchingfist.secrets.providers import AzureProvider, vault_mount
from punchingfist.server.state import SecretStore


@pytest.mark.parametrize(
    ("text", "scheme", "path", "key"),
    [
        ("vault://punchingfist/slack#bot-token", "vault", "punchingfist/slack", "bot-token"),
        ("aws://punchingfist/slack#token", "aws", "punchingfist/slack", "token"),
        ("aws://plain-secret", "aws", "plain-secret", None),
        ("azure://company-vault/slack-bot-token", "azure", "company-vault/slack-bot-token", None),
        ("k8s://ops/chat-credentials#bot-token", "k8s", "ops/chat-credentials", "bot-token"),
        ("env://SLACK_BOT_TOKEN", "env", "SLACK_BOT_TOKEN", None),
    ],
)
def test_references_parse(text: str, scheme: str, path: str, key: str | None) -> None:
    ref = parse_reference(text)
    assert (ref.scheme, ref.path, ref.key, ref.text) == (scheme, path, key, text)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("gcp://x#y", "unknown secret reference scheme 'gcp'"),
        ("vault://punchingfist/slack", "name one after '#'"),
        ("vault://../root#k", "the path"),
        ("azure://only-a-name", "vault's name and the secret's name"),
        ("azure://v/n#key", "no '#key'"),
        ("k8s://chat-credentials#key", "namespace, the Secret's name and its key"),
        ("k8s://Ops/x#key", "Kubernetes names"),
        ("env://not a name", "the path"),
        ("env://A#b", "no '#key'"),
        ("vault://p#", "the key after '#'"),
    ],
)
def test_bad_references_name_themselves_and_the_form(text: str, says: str) -> None:
    with pytest.raises(SecretError) as caught:
        parse_reference(text)
    assert repr(text) in str(caught.value) and says in str(caught.value)
    assert "://" in str(caught.value).split(";")[-1]  # the form to write


def test_env_values_are_cached_for_their_time_to_live_then_read_again() -> None:
    environ = {"TOKEN": "first"}
    now = [0.0]
    seen: list[SecretAccess] = []
    resolver = SecretResolver(environ=environ, ttl=30, clock=lambda: now[0], audit=seen.append)
    assert resolver.resolve("env://TOKEN", "server") == "first"
    environ["TOKEN"] = "rotated"
    now[0] = 29.0
    assert resolver.resolve("env://TOKEN", "server") == "first"  # cached
    now[0] = 30.0
    assert resolver.resolve("env://TOKEN", "run r-1") == "rotated"  # read again
    assert [(a.who, a.source, a.outcome) for a in seen] == [
        ("server", "manager", "ok"),
        ("run r-1", "manager", "ok"),
    ]  # cache hits are logged, not stored


def test_a_missing_secret_fails_naming_it_and_the_grace_period_keeps_the_old_value() -> None:
    environ = {"TOKEN": "old"}
    now = [0.0]
    resolver = SecretResolver(environ=environ, ttl=10, grace=5, clock=lambda: now[0])
    with pytest.raises(SecretError, match=r"env://NOPE: not found \(NOPE is not set"):
        resolver.resolve("env://NOPE", "server")
    resolver.resolve("env://TOKEN", "server")
    del environ["TOKEN"]
    now[0] = 12.0
    assert resolver.resolve("env://TOKEN", "server") == "old"  # in the grace period
    now[0] = 15.0
    with pytest.raises(SecretError, match="env://TOKEN"):
        resolver.resolve("env://TOKEN", "server")


def test_the_audit_log_names_reference_and_reader_never_the_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    resolver = SecretResolver(environ={"TOKEN": "s3cr3t-value"})
    with caplog.at_level(logging.INFO, logger="punchingfist.secrets.audit"):
        resolver.resolve("env://TOKEN", "run r-7")
        resolver.resolve("env://TOKEN", "run r-8")
        with pytest.raises(SecretError):
            resolver.resolve("k8s://ops/x#k", "server")
    lines = [r.getMessage() for r in caplog.records]
    assert "reference=env://TOKEN who=run r-7 source=manager outcome=ok" in lines[0]
    assert "who=run r-8 source=cache" in lines[1]
    assert "k8s://ops/x#k" in lines[2] and "no Kubernetes client" in lines[2]
    assert all("s3cr3t-value" not in line for line in lines)


def test_rotation_settings_set_the_time_to_live_and_grace() -> None:
    spec = OperatorConfigSpec.model_validate(
        {"secretRotation": {"enabled": True, "checkInterval": "2m", "gracePeriod": "30s"}}
    )
    resolver = SecretResolver.for_config(spec, environ={})
    assert (resolver.ttl, resolver.grace) == (120.0, 30.0)
    default = SecretResolver.for_config(OperatorConfigSpec(), environ={})
    assert (default.ttl, default.grace) == (30.0, 0.0)


def test_vault_secret_path_and_azure_vault_url() -> None:
    assert vault_mount("secret/data/punchingfist") == ("secret", "punchingfist")
    assert vault_mount("kv/punchingfist/prod") == ("kv", "punchingfist/prod")
    assert vault_mount(None) == ("secret", "")
    spec = OperatorConfigSpec.model_validate(
        {
            "secretManager": {
                "type": "azure-keyvault",
                "vaultUrl": "https://company-vault.vault.azure.net/",
            }
        }
    )
    azure = AzureProvider(spec.secret_manager, {})
    assert azure.url("company-vault") == "https://company-vault.vault.azure.net/"
    assert azure.url("other") == "https://other.vault.azure.net/"


def test_a_vault_reference_without_credentials_says_what_to_set() -> None:
    resolver = SecretResolver(environ={"VAULT_ADDR": "http://127.0.0.1:1"})
    with pytest.raises(SecretError, match=r"vault://p#k: Vault: no credentials: set VAULT_TOKEN"):
        resolver.resolve("vault://p#k", "server")


WORKFLOW = """
apiVersion: punchingfist.io/v1alpha1
kind: Workflow
metadata: {name: secret-check}
spec:
  steps:
    - {name: look, type: cli, command: "env"}
  sinks: ["slack-report"]
---
apiVersion: punchingfist.io/v1alpha1
kind: Sink
metadata: {name: slack-report}
spec:
  type: slack
  config:
    channel: "C0123456"
    botTokenSecret: {secretRef: "%s"}
"""
"""A cli step that prints its environment and a Slack sink whose token is the reference `%s`
(tests/integration/test_secret_managers.py runs it too)."""


def test_the_compiler_reads_a_reference_from_the_runs_secret_and_names_it() -> None:
    (compiled,) = compile_resources(load_resources(WORKFLOW % "vault://punchingfist/slack#bot"))
    annotations = compiled.manifest["metadata"]["annotations"]
    key = reference_key("vault://punchingfist/slack#bot")
    assert json.loads(annotations[ANNOTATION_SECRET_REFERENCES]) == {
        key: "vault://punchingfist/slack#bot"
    }
    refs = [
        variable["valueFrom"]["secretKeyRef"]
        for template in compiled.manifest["spec"]["templates"]
        for variable in (template.get("container") or {}).get("env") or []
        if "valueFrom" in variable
    ]
    assert refs == [{"name": "{{workflow.name}}-secrets", "key": key}]
    assert compiled.objects == []  # nothing of the secret in what is applied
    assert "vault://" not in json.dumps(compiled.manifest["spec"])


def test_the_compiler_refuses_a_malformed_reference_naming_the_field() -> None:
    with pytest.raises(InvalidResource) as caught:
        compile_resources(load_resources(WORKFLOW % "vault://punchingfist/slack"))
    assert "Sink/slack-report spec.config.botTokenSecret.secretRef" in str(caught.value)
    assert "name one after '#'" in str(caught.value)


def test_a_reference_with_a_separate_key_is_refused() -> None:
    text = WORKFLOW.replace('{secretRef: "%s"}', '{secretRef: "env://T", key: bot-token}')
    with pytest.raises(InvalidResource, match="write its key after '#'"):
        load_resources(text)


def test_local_runs_resolve_references_into_the_runs_secret() -> None:
    (compiled,) = compile_resources(load_resources(WORKFLOW % "env://PF_TOKEN"))
    secrets = gather_secrets(compiled.manifest, compiled.objects, {"PF_TOKEN": "xoxb-1"})
    assert secrets == {f"{{{{workflow.name}}}}-secrets/{reference_key('env://PF_TOKEN')}": "xoxb-1"}
    with pytest.raises(SecretError, match="env://PF_TOKEN: not found"):
        gather_secrets(compiled.manifest, compiled.objects, {})


def test_the_servers_secret_store_resolves_references_and_json_objects_of_tokens() -> None:
    """A webhook or sink token given as a reference, and approver tokens kept as a JSON object
    in one managed secret (spec.approvals.tokensSecret: env://... here)."""
    environ = {"HOOK": "hook-token", "APPROVERS": json.dumps({"alice": "a-token", "bob": ""})}
    store = SecretStore(resolver=SecretResolver(environ=environ))
    assert store.get("env://HOOK", "token") == "hook-token"
    assert store.get("env://MISSING", "token") is None  # logged, naming it
    assert store.keys("env://APPROVERS") == {"alice": "a-token", "bob": ""}
    assert store.keys("env://HOOK") == {}  # not a JSON object: logged, no tokens


def test_a_changed_operatorconfig_reconfigures_the_resolver() -> None:
    """In a cluster the controller hands the resolver each new OperatorConfig: its rotation
    settings apply at once, and a new secretManager empties the cache."""
    environ = {"TOKEN": "first"}
    resolver = SecretResolver.for_config(None, environ=environ)
    assert resolver.resolve("env://TOKEN", "server") == "first"
    environ["TOKEN"] = "second"
    rotation = {"secretRotation": {"enabled": True, "checkInterval": "5m", "gracePeriod": "1m"}}
    resolver.configure(OperatorConfigSpec.model_validate(rotation))
    assert (resolver.ttl, resolver.grace) == (300.0, 60.0)
    assert resolver.resolve("env://TOKEN", "server") == "first"  # same manager: still cached
    vault = {"secretManager": {"type": "vault", "endpoint": "http://127.0.0.1:8200"}}
    resolver.configure(OperatorConfigSpec.model_validate(vault))
    assert resolver.resolve("env://TOKEN", "server") == "second"
    assert resolver.providers["vault"].address == "http://127.0.0.1:8200"  # type: ignore[attr-defined]
