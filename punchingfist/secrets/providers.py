"""Readers of one secret manager each, through the manager's maintained client library.

Each provider reads one reference of its scheme and returns the value, or raises SecretError
naming the reference and what to do (never the value). Client libraries are imported when a
provider is first used, so a deployment that uses none of them pays nothing.

Settings come from OperatorConfig `spec.secretManager` (the design document's fields) and,
for what a cluster resource should not hold, the environment of the process that resolves:
    Vault   endpoint (else VAULT_ADDR); authMethod `kubernetes` logs in with `role` and the
            ServiceAccount token file, else token auth with VAULT_TOKEN; secretPath
            `MOUNT[/data][/PREFIX]` (default `secret`), the KV v2 mount and path prefix.
    AWS     region (else AWS_REGION / AWS_DEFAULT_REGION), secretPrefix; credentials as boto3
            finds them (IRSA's web identity, the instance role, AWS_* variables); AWS_ENDPOINT_URL
            points it elsewhere.
    Azure   vaultUrl (used for references to that vault), clientId (a managed identity's);
            ClientSecretCredential when AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET
            are set, else authMethod `managed-identity` logs in as that managed identity
            (ManagedIdentityCredential: IMDS, or AKS workload identity's federated token), else
            DefaultAzureCredential; AZURE_AUTHORITY_HOST names another Entra ID authority
            (sovereign clouds).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from punchingfist.api.operatorconfigs import SecretManagerConfig
from punchingfist.secrets.references import SecretError, SecretReference

TIMEOUT_SECONDS = 10
"""Most a manager may take to answer one request: an unreachable one fails the read (and the
run, naming the reference) instead of holding it for the libraries' minute-long defaults."""
SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
KEY_VAULT_DOMAINS = (
    ".vault.azure.net",
    ".vault.azure.cn",
    ".vault.usgovcloudapi.net",
    ".vault.microsoftazure.de",
)
KubernetesReader = Callable[[str, str, str], str | None]
"""(namespace, Secret name, key) -> the value, None when the Secret or key is missing."""


class Provider(Protocol):
    def read(self, ref: SecretReference) -> str: ...


def _missing(ref: SecretReference, where: str) -> SecretError:
    return SecretError(f"secret {ref.text}: not found ({where}); create it or fix the reference")


class EnvProvider:
    """`env://NAME`: a variable of the resolving process's environment."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def read(self, ref: SecretReference) -> str:
        value = self.environ.get(ref.path)
        if not value:
            raise _missing(ref, f"{ref.path} is not set in the environment of this process")
        return value


class KubernetesProvider:
    """`k8s://NAMESPACE/NAME#KEY`, through a reader the caller gives (punchingfist.kube)."""

    def __init__(self, reader: KubernetesReader | None) -> None:
        self.reader = reader

    def read(self, ref: SecretReference) -> str:
        if self.reader is None:
            raise SecretError(
                f"secret {ref.text}: this process has no Kubernetes client (embedded mode without "
                "--in-cluster); use env://, vault://, aws:// or azure://, or a Secret in "
                "--secrets-dir"
            )
        namespace, name = ref.path.split("/", 1)
        value = self.reader(namespace, name, ref.key or "")
        if value is None:
            raise _missing(ref, f"no key {ref.key!r} in Secret {namespace}/{name}")
        return value


class VaultProvider:
    """`vault://PATH#KEY`: a key of a KV v2 secret, read with hvac."""

    def __init__(self, config: SecretManagerConfig | None, environ: Mapping[str, str]) -> None:
        ours = config if config is not None and config.type == "vault" else None
        self.address = (ours.endpoint if ours else None) or environ.get("VAULT_ADDR")
        self.kubernetes = ours is not None and ours.auth_method == "kubernetes"
        self.role = ours.role if ours else None
        self.token = environ.get("VAULT_TOKEN")
        self.token_file = Path(environ.get("PUNCHINGFIST_VAULT_JWT_FILE") or SERVICE_ACCOUNT_TOKEN)
        self.auth_mount = environ.get("PUNCHINGFIST_VAULT_AUTH_MOUNT") or "kubernetes"
        self.mount, self.prefix = vault_mount(ours.secret_path if ours else None)
        self._client: Any = None
        self._lock = threading.Lock()

    def _login(self) -> Any:
        import hvac  # type: ignore[import-untyped]

        if not self.address:
            raise SecretError(
                "Vault: no address: set OperatorConfig spec.secretManager.endpoint (type vault) "
                "or VAULT_ADDR"
            )
        client = hvac.Client(url=self.address, timeout=TIMEOUT_SECONDS)
        if self.kubernetes:
            if not self.role:
                raise SecretError("Vault kubernetes auth needs spec.secretManager.role")
            try:
                jwt = self.token_file.read_text().strip()
            except OSError as error:
                raise SecretError(
                    f"Vault kubernetes auth: cannot read the ServiceAccount token "
                    f"{self.token_file}: {error.strerror}"
                ) from error
            client.auth.kubernetes.login(self.role, jwt, mount_point=self.auth_mount)
        elif self.token:
            client.token = self.token
        else:
            raise SecretError(
                "Vault: no credentials: set VAULT_TOKEN (token auth), or spec.secretManager "
                "authMethod: kubernetes with a role"
            )
        return client

    def read(self, ref: SecretReference) -> str:
        import hvac.exceptions  # type: ignore[import-untyped]
        import requests

        path = f"{self.prefix}/{ref.path}" if self.prefix else ref.path
        where = f"Vault {self.address} KV v2 mount {self.mount!r} path {path!r}"
        for attempt in (1, 2):
            with self._lock:
                if self._client is None:
                    try:
                        self._client = self._login()
                    except SecretError as error:
                        raise SecretError(f"secret {ref.text}: {error}") from None
                    except (hvac.exceptions.VaultError, requests.RequestException) as error:
                        raise SecretError(
                            f"secret {ref.text}: Vault login failed ({type(error).__name__}); "
                            "check the address, role or token"
                        ) from None
                client = self._client
            try:
                answer = client.secrets.kv.v2.read_secret_version(
                    path=path, mount_point=self.mount, raise_on_deleted_version=True
                )
                break
            except hvac.exceptions.InvalidPath:
                raise _missing(ref, where) from None
            except hvac.exceptions.Forbidden:
                with self._lock:
                    self._client = None  # an expired login: log in again, once
                if attempt == 2 or not self.kubernetes:
                    raise SecretError(
                        f"secret {ref.text}: Vault refused to read {where}; give the token or "
                        "role a policy that may read it"
                    ) from None
            except (hvac.exceptions.VaultError, requests.RequestException) as error:
                raise SecretError(
                    f"secret {ref.text}: cannot read {where}: {type(error).__name__}"
                ) from None
        data = ((answer or {}).get("data") or {}).get("data") or {}
        if ref.key not in data:
            raise _missing(ref, f"{where} has no key {ref.key!r}")
        return str(data[ref.key])


def vault_mount(secret_path: str | None) -> tuple[str, str]:
    """(KV v2 mount, path prefix) of `secretPath`: `secret/data/punchingfist` and
    `secret/punchingfist` both mean mount `secret`, prefix `punchingfist`."""
    parts = [p for p in (secret_path or "secret").split("/") if p]
    mount, rest = parts[0], parts[1:]
    if rest[:1] == ["data"]:
        rest = rest[1:]
    return mount, "/".join(rest)


class AwsProvider:
    """`aws://NAME[#KEY]`: an AWS Secrets Manager secret's string (or one key of its JSON)."""

    def __init__(self, config: SecretManagerConfig | None, environ: Mapping[str, str]) -> None:
        ours = config if config is not None and config.type == "aws-secrets" else None
        self.region = (
            (ours.region if ours else None)
            or environ.get("AWS_REGION")
            or environ.get("AWS_DEFAULT_REGION")
        )
        self.prefix = (ours.secret_prefix if ours else None) or ""
        self.endpoint = environ.get("AWS_ENDPOINT_URL") or None
        self._client: Any = None
        self._lock = threading.Lock()

    def read(self, ref: SecretReference) -> str:
        import boto3  # type: ignore[import-untyped]
        import botocore.config  # type: ignore[import-untyped]
        import botocore.exceptions  # type: ignore[import-untyped]

        name = self.prefix + ref.path
        with self._lock:
            if self._client is None:
                self._client = boto3.client(
                    "secretsmanager",
                    region_name=self.region,
                    endpoint_url=self.endpoint,
                    config=botocore.config.Config(
                        connect_timeout=TIMEOUT_SECONDS,
                        read_timeout=TIMEOUT_SECONDS,
                        retries={"max_attempts": 2},
                    ),
                )
        try:
            answer = self._client.get_secret_value(SecretId=name)
        except botocore.exceptions.ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":
                raise _missing(ref, f"AWS Secrets Manager has no secret {name!r}") from None
            raise SecretError(
                f"secret {ref.text}: AWS Secrets Manager refused {name!r} ({code}); check the "
                "role's secretsmanager:GetSecretValue permission"
            ) from None
        except botocore.exceptions.BotoCoreError as error:
            raise SecretError(
                f"secret {ref.text}: cannot reach AWS Secrets Manager: {type(error).__name__} "
                "(check the region and credentials)"
            ) from None
        text = answer.get("SecretString")
        if text is None:
            raise SecretError(f"secret {ref.text}: {name!r} is binary; store it as a string")
        if ref.key is None:
            return str(text)
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise SecretError(
                f"secret {ref.text}: {name!r} is not a JSON object, so it has no key "
                f"{ref.key!r}; drop '#{ref.key}' to read the whole string"
            )
        if ref.key not in data:
            raise _missing(ref, f"AWS secret {name!r} has no key {ref.key!r}")
        return str(data[ref.key])


class AzureProvider:
    """`azure://VAULT/NAME`: a secret of an Azure Key Vault, read with azure-keyvault-secrets."""

    def __init__(self, config: SecretManagerConfig | None, environ: Mapping[str, str]) -> None:
        ours = config if config is not None and config.type == "azure-keyvault" else None
        self.vault_url = ours.vault_url if ours else None
        self.client_id = ours.client_id if ours else None
        self.managed_identity = ours is not None and ours.auth_method == "managed-identity"
        self.environ = environ
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def url(self, vault: str) -> str:
        """The configured vaultUrl for references to its vault (the first label of its host),
        else `https://VAULT.vault.azure.net/`."""
        if self.vault_url and (urlsplit(self.vault_url).hostname or "").split(".")[0] == vault:
            return self.vault_url
        return f"https://{vault}.vault.azure.net/"

    def _credential(self) -> Any:
        from azure.identity import (
            ClientSecretCredential,
            DefaultAzureCredential,
            ManagedIdentityCredential,
        )

        env = self.environ
        authority = env.get("AZURE_AUTHORITY_HOST")
        # A sovereign or private authority host: its metadata is not asked of the public cloud.
        where: dict[str, Any] = (
            {"authority": authority, "disable_instance_discovery": True} if authority else {}
        )
        principal = self._service_principal()
        if principal is not None:
            return ClientSecretCredential(*principal, **where)
        if self.managed_identity:
            # Only the identity the config names: no fallback to developer logins (Azure CLI,
            # PowerShell...), which would hide why the managed identity got no token.
            return ManagedIdentityCredential(client_id=self.client_id)
        return DefaultAzureCredential(managed_identity_client_id=self.client_id, **where)

    def _service_principal(self) -> tuple[str, str, str] | None:
        """(tenant, client id, client secret) of the environment, when all three are set."""
        tenant, client, secret = (
            self.environ.get(name) or ""
            for name in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET")
        )
        return (tenant, client, secret) if tenant and client and secret else None

    def _login(self) -> str:
        """Who `_credential()` logs in as, for an error message (never the secret)."""
        principal = self._service_principal()
        if principal is not None:
            return f"service principal AZURE_CLIENT_ID={principal[1]}"
        if self.managed_identity:
            identity = f"clientId {self.client_id}" if self.client_id else "system-assigned"
            return f"managed identity ({identity}); is it assigned to this pod or node?"
        return "DefaultAzureCredential (none of the credentials it tries got a token)"

    def read(self, ref: SecretReference) -> str:
        from azure.core.exceptions import (
            AzureError,
            ClientAuthenticationError,
            ResourceNotFoundError,
        )
        from azure.keyvault.secrets import SecretClient

        vault, name = ref.path.split("/", 1)
        url = self.url(vault)
        with self._lock:
            if url not in self._clients:
                # The vault's bearer challenge must name Key Vault's resource, except for a
                # vaultUrl on another domain (a private endpoint's name) that the admin chose.
                verify = (urlsplit(url).hostname or "").endswith(KEY_VAULT_DOMAINS)
                self._clients[url] = SecretClient(
                    url,
                    self._credential(),
                    verify_challenge_resource=verify,
                    connection_timeout=TIMEOUT_SECONDS,
                    read_timeout=TIMEOUT_SECONDS,
                    retry_total=2,
                )
            client = self._clients[url]
        try:
            value = client.get_secret(name).value
        except ResourceNotFoundError:
            raise _missing(ref, f"Key Vault {url} has no secret {name!r}") from None
        except ClientAuthenticationError:
            raise SecretError(
                f"secret {ref.text}: cannot log in to Key Vault {url} as {self._login()}"
            ) from None
        except AzureError as error:
            raise SecretError(
                f"secret {ref.text}: cannot read it from Key Vault {url}: {type(error).__name__} "
                "(check the identity's 'get' permission on secrets)"
            ) from None
        if value is None:
            raise _missing(ref, f"Key Vault {url} secret {name!r} has no value")
        return str(value)
