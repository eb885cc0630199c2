"""The secret-manager servers of tests/integration/secret_servers.py answer the official clients:
a secret written to each is read back through hvac, boto3 and azure-keyvault-secrets. Without
them (Vault not built, moto not installed) these skip, and fail when CI is set."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, TypeVar

import pytest

from tests.integration.conftest import _unavailable
from tests.integration.secret_servers import (
    AzureKeyVaultFake,
    MotoServer,
    VaultDev,
    azure_keyvault_fake,
    moto_server,
    vault_dev,
)
from tests.integration.servers import Unavailable

T = TypeVar("T")


def _started(manager: contextlib.AbstractContextManager[T]) -> Iterator[T]:
    """Yield the server MANAGER starts; a missing server skips (fails in CI)."""
    try:
        with manager as server:
            yield server
    except Unavailable as error:
        _unavailable(str(error))


@pytest.fixture(scope="module")
def vault() -> Iterator[VaultDev]:
    yield from _started(vault_dev())


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    yield from _started(moto_server())


@pytest.fixture
def keyvault() -> Iterator[AzureKeyVaultFake]:
    yield from _started(azure_keyvault_fake())


def test_vault_dev_serves_kv_v2_secrets_to_hvac(vault: VaultDev) -> None:
    import hvac

    assert vault.put("team/db", {"password": "s3cret", "user": "app"}) == 1
    assert vault.put("team/db", {"password": "rotated", "user": "app"}) == 2

    client = hvac.Client(url=vault.url, token=vault.token)
    assert client.is_authenticated()
    latest = client.secrets.kv.v2.read_secret_version(path="team/db", raise_on_deleted_version=True)
    assert latest["data"]["data"] == {"password": "rotated", "user": "app"}
    first = client.secrets.kv.v2.read_secret_version(
        path="team/db", version=1, raise_on_deleted_version=True
    )
    assert first["data"]["data"]["password"] == "s3cret"
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.secrets.kv.v2.read_secret_version(path="team/none", raise_on_deleted_version=True)
    with pytest.raises(hvac.exceptions.Forbidden):
        hvac.Client(url=vault.url, token="wrong").secrets.kv.v2.read_secret_version(
            path="team/db", raise_on_deleted_version=True
        )


def test_vault_dev_has_the_kubernetes_auth_method(vault: VaultDev) -> None:
    """The build carries the Kubernetes auth method: it can be enabled and configured."""
    vault.api("POST", "sys/auth/kubernetes", {"type": "kubernetes"})
    # Outside a pod: no service account CA or token to read; the API server's CA from the system.
    config = {"kubernetes_host": "https://127.0.0.1:6443", "disable_local_ca_jwt": True}
    vault.api("POST", "auth/kubernetes/config", config)
    role = {"bound_service_account_names": ["pf"], "bound_service_account_namespaces": ["*"]}
    vault.api("POST", "auth/kubernetes/role/punchingfist", role)
    stored = vault.api("GET", "auth/kubernetes/config")["data"]
    assert stored["kubernetes_host"] == "https://127.0.0.1:6443"
    stored_role = vault.api("GET", "auth/kubernetes/role/punchingfist")["data"]
    assert stored_role["bound_service_account_names"] == ["pf"]
    assert vault.api("GET", "sys/auth")["data"]["kubernetes/"]["type"] == "kubernetes"


def test_moto_serves_secrets_manager_to_boto3(
    moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    import botocore.exceptions

    arn = moto.put("prod/slack", '{"token": "xoxb-1"}')
    assert arn.startswith("arn:aws:secretsmanager:us-east-1:")
    for key, value in moto.env.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("secretsmanager")  # endpoint, region and keys from moto.env alone
    assert client.get_secret_value(SecretId="prod/slack")["SecretString"] == '{"token": "xoxb-1"}'
    client.put_secret_value(SecretId="prod/slack", SecretString='{"token": "xoxb-2"}')
    assert client.get_secret_value(SecretId=arn)["SecretString"] == '{"token": "xoxb-2"}'
    with pytest.raises(botocore.exceptions.ClientError) as missing:
        client.get_secret_value(SecretId="prod/none")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"


def _secret_client(keyvault: AzureKeyVaultFake, credential: Any = None) -> Any:
    from azure.keyvault.secrets import SecretClient

    return SecretClient(
        keyvault.url, credential or keyvault.credential(), **keyvault.client_kwargs()
    )


def test_fake_key_vault_answers_azure_keyvault_secrets(keyvault: AzureKeyVaultFake) -> None:
    from azure.core.exceptions import ResourceNotFoundError

    version = keyvault.put("db-password", "s3cret")
    client = _secret_client(keyvault)
    secret = client.get_secret("db-password")
    assert (secret.name, secret.value, secret.properties.version) == (
        "db-password",
        "s3cret",
        version,
    )
    # The client's protocol: an anonymous request, the bearer challenge, then the token.
    assert keyvault.requests[:2] == [
        "GET /secrets/db-password/ anonymous",
        "GET /secrets/db-password/ authorized",
    ]
    assert len(keyvault.tokens) == 1

    written = client.set_secret("db-password", "rotated", content_type="text/plain")
    assert client.get_secret("db-password").value == "rotated"
    assert client.get_secret("db-password", version).value == "s3cret"
    assert client.get_secret("db-password", written.properties.version).value == "rotated"
    with pytest.raises(ResourceNotFoundError):
        client.get_secret("no-such-secret")


def test_fake_key_vault_token_comes_from_the_environment(
    keyvault: AzureKeyVaultFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EnvironmentCredential from keyvault.env gets a token from the fake authority host."""
    from azure.identity import EnvironmentCredential

    for key, value in keyvault.env.items():
        monkeypatch.setenv(key, value)
    keyvault.put("api-key", "k-1")
    credential = EnvironmentCredential(disable_instance_discovery=True)
    assert _secret_client(keyvault, credential).get_secret("api-key").value == "k-1"


def test_fake_key_vault_refuses_a_wrong_client_secret(keyvault: AzureKeyVaultFake) -> None:
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import ClientSecretCredential

    keyvault.put("api-key", "k-1")
    wrong = ClientSecretCredential(
        keyvault.tenant_id,
        keyvault.client_id,
        "not-the-secret",
        authority=keyvault.authority_host,
        disable_instance_discovery=True,
        connection_verify=keyvault.ca_file,
    )
    with pytest.raises(ClientAuthenticationError):
        _secret_client(keyvault, wrong).get_secret("api-key")
    assert not keyvault.tokens
