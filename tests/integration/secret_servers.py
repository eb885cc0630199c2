"""Real secret-manager servers on loopback for the secret-reference tests (issue #26).

- `vault_dev()`: the real Vault server (`make vault` builds it into ~/.cache/punchingfist) in
  dev mode: in memory, unsealed, KV v2 mounted at `secret/`, a random root token.
- `moto_server()`: moto's AWS server (the `moto[server]` dev dependency), which speaks the
  Secrets Manager API boto3 uses.
- `azure_keyvault_fake()`: an HTTPS server speaking the Key Vault REST protocol of
  azure-keyvault-secrets (the bearer challenge, then GET/PUT /secrets/...) and, on the same port,
  the Entra ID token endpoint azure-identity's ClientSecretCredential asks (an authority host)
  and the instance metadata (IMDS) token endpoint its ManagedIdentityCredential asks.
- `connect_proxy()`: an HTTPS (CONNECT) proxy that tunnels every host to one loopback port, so
  a client given a real vault's name (`company-vault.vault.azure.net`) reaches the fake.

Each is a context manager. One that cannot be had at all (Vault not built, moto not installed)
raises `Unavailable`, which the tests turn into a skip, or a failure when CI is set
(`tests/integration/conftest.py::_unavailable`); one that is there but does not start raises
RuntimeError (it exited) or TimeoutError with its log, a failure everywhere.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import importlib.util
import json
import os
import secrets
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.e2e.controlplane import CACHE, Component, free_port, read_env, wait_for
from tests.fakes.saas import send_json
from tests.integration.servers import Unavailable

VAULT_ENV_FILE = CACHE / "vault.env"
"""Written by hack/vault/build.sh (`make vault`): VAULT=<path of the binary>, VAULT_VERSION."""

START_TIMEOUT = 60.0


def _http_json(
    method: str, url: str, body: Any = None, headers: Mapping[str, str] | None = None
) -> Any:
    """One JSON request. An HTTP error stays an HTTPError (an OSError, which `wait_for` takes
    for "not ready yet") with the server's answer in its message."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
    except urllib.error.HTTPError as error:
        answer = error.read().decode(errors="replace")
        message = f"{method} {url}: {error.code} {answer}"
        raise urllib.error.HTTPError(url, error.code, message, error.headers, None) from error
    return json.loads(text) if text else None


@contextlib.contextmanager
def _server(argv: list[str], name: str, env: Mapping[str, str]) -> Iterator[Component]:
    """Run ARGV in a temporary directory with its output in NAME.log there; stopped on exit."""
    with tempfile.TemporaryDirectory(prefix=f"pf-{name}-") as directory:
        log = Path(directory) / f"{name}.log"
        handle = log.open("wb")
        process = subprocess.Popen(
            argv, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, **env}, cwd=directory
        )
        component = Component(name, process, log, handle)
        try:
            yield component
        finally:
            component.stop()


# Vault ---------------------------------------------------------------------------------------


def vault_binary() -> str:
    """The vault binary `make vault` built; `Unavailable` when it is not there."""
    path = os.environ.get("VAULT") or read_env(VAULT_ENV_FILE).get("VAULT", "")
    if not path or not Path(path).is_file():
        raise Unavailable(
            f"the vault binary is not built ({VAULT_ENV_FILE} names none): `make vault` builds "
            "it from the Go module proxy (hack/vault/build.sh)"
        )
    return path


@dataclass(frozen=True)
class VaultDev:
    """A running `vault server -dev`: its address and root token."""

    url: str
    token: str

    @property
    def env(self) -> dict[str, str]:
        """What the vault CLI and hvac-based code read to reach this server."""
        return {"VAULT_ADDR": self.url, "VAULT_TOKEN": self.token}

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call /v1/PATH with the root token (e.g. enable an auth method:
        `api("POST", "sys/auth/kubernetes", {"type": "kubernetes"})`); the JSON answer."""
        headers = {"X-Vault-Token": self.token}
        return _http_json(method, f"{self.url}/v1/{path.lstrip('/')}", body, headers)

    def kubernetes_auth(
        self, host: str, ca_cert: str, namespace: str, account: str, roles: Mapping[str, list[str]]
    ) -> None:
        """Enable the Kubernetes auth method, reviewing login tokens with the API server at
        HOST (its CA certificate CA_CERT, PEM), and create ROLES (name -> token policies), each
        bound to ServiceAccount NAMESPACE/ACCOUNT."""
        self.api("POST", "sys/auth/kubernetes", {"type": "kubernetes"})
        config = {"kubernetes_host": host, "kubernetes_ca_cert": ca_cert}
        self.api("POST", "auth/kubernetes/config", config)
        for role, policies in roles.items():
            binding = {
                "bound_service_account_names": [account],
                "bound_service_account_namespaces": [namespace],
                "token_policies": policies,
                "token_ttl": "10m",
            }
            self.api("POST", f"auth/kubernetes/role/{role}", binding)

    def put(self, path: str, data: Mapping[str, str]) -> int:
        """Write a KV v2 secret at secret/PATH (the dev server's KV v2 mount); its version."""
        answer = self.api("POST", f"secret/data/{path.strip('/')}", {"data": dict(data)})
        version: int = answer["data"]["version"]
        return version


@contextlib.contextmanager
def vault_dev() -> Iterator[VaultDev]:
    """A Vault dev server on a free loopback port, with a random root token and its own HOME
    (the CLI writes ~/.vault-token there); yields once KV v2 is mounted at secret/."""
    binary = vault_binary()
    token = f"pf-root-{secrets.token_hex(8)}"
    url = f"http://127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory(prefix="pf-vault-home-") as home:
        argv = [
            binary,
            "server",
            "-dev",
            f"-dev-root-token-id={token}",
            f"-dev-listen-address={url.removeprefix('http://')}",
        ]
        env = {"HOME": home, "VAULT_ADDR": url, "VAULT_LOG_LEVEL": "warn"}
        with _server(argv, "vault", env) as component:
            vault = VaultDev(url=url, token=token)

            def ready() -> bool:
                _http_json("GET", f"{url}/v1/sys/health")  # 200: initialized, unsealed, active
                mount = vault.api("GET", "sys/mounts/secret")
                return bool(mount["type"] == "kv" and mount["options"].get("version") == "2")

            wait_for(ready, "waiting for KV v2 at secret/", START_TIMEOUT, component)
            yield vault


# AWS Secrets Manager (moto) ----------------------------------------------------------------


@dataclass(frozen=True)
class MotoServer:
    """A running moto server: its URL and the environment boto3 needs to use it."""

    url: str
    region: str = "us-east-1"

    @property
    def env(self) -> dict[str, str]:
        """Fake credentials (moto checks none) and the endpoint boto3 >= 1.28 reads."""
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.url,
        }

    def put(self, name: str, value: str) -> str:
        """Create the Secrets Manager secret NAME with VALUE (a string: JSON for #KEY
        references) through boto3; its ARN."""
        import boto3

        client = boto3.client(
            "secretsmanager",
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        arn: str = client.create_secret(Name=name, SecretString=value)["ARN"]
        return arn


@contextlib.contextmanager
def moto_server() -> Iterator[MotoServer]:
    """moto in server mode (`python -m moto.server`) on a free loopback port, empty."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        raise Unavailable("moto[server] is not installed (a dev dependency: `make install`)")
    port = free_port()
    server = MotoServer(url=f"http://127.0.0.1:{port}")
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with _server(argv, "moto", {}) as component:
        data = f"{server.url}/moto-api/data.json"
        wait_for(lambda: _http_json("GET", data) is not None, "starting", START_TIMEOUT, component)
        yield server


# Azure Key Vault (a fake speaking its REST protocol) ----------------------------------------

CHALLENGE_RESOURCE = "https://vault.azure.net"
IMDS_TOKEN_PATH = "/metadata/identity/oauth2/token"


@dataclass
class AzureKeyVaultFake:
    """A running fake Key Vault. `url` is the vault URL (https, a self-signed certificate that
    `ca_file` trusts); the same server is the Entra ID authority host (`authority_host`) where
    `client_id`/`client_secret` get a token for `tenant_id`, and the instance metadata service
    (`imds_host`, what AZURE_POD_IDENTITY_AUTHORITY_HOST names) where the managed identity
    `managed_identity_client_id` gets one. Clients of it need `verify_challenge_resource=False`
    (its host is not under vault.azure.net) and `connection_verify=ca_file`; `client_kwargs()`
    and `credential()` give both."""

    url: str
    ca_file: str
    tenant_id: str
    client_id: str
    client_secret: str
    managed_identity_client_id: str | None = None
    """The user-assigned managed identity IMDS issues tokens to; None: IMDS issues none."""
    secrets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """name -> its versions, oldest first (the bundles the server answers)."""
    tokens: set[str] = field(default_factory=set)
    """Access tokens the token endpoint issued; the vault accepts only these."""
    requests: list[str] = field(default_factory=list)
    """"METHOD /secrets/... authorized|anonymous" of each vault request (its path as sent), and
    "GET /metadata/identity/oauth2/token client_id=ID" of each IMDS token request with the
    Metadata header, for tests of the protocol."""

    @property
    def authority_host(self) -> str:
        return self.url

    @property
    def imds_host(self) -> str:
        return self.url

    @property
    def env(self) -> dict[str, str]:
        """What azure-identity's EnvironmentCredential reads, and the CA bundle requests uses
        (it replaces the system bundle: set it only for code that talks to this fake)."""
        return {
            "AZURE_TENANT_ID": self.tenant_id,
            "AZURE_CLIENT_ID": self.client_id,
            "AZURE_CLIENT_SECRET": self.client_secret,
            "AZURE_AUTHORITY_HOST": self.authority_host,
            "REQUESTS_CA_BUNDLE": self.ca_file,
        }

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for SecretClient(url, credential, **kwargs) against this fake."""
        return {"verify_challenge_resource": False, "connection_verify": self.ca_file}

    def credential(self) -> Any:
        """azure-identity's ClientSecretCredential against this fake's token endpoint (instance
        discovery, which asks login.microsoftonline.com, turned off)."""
        from azure.identity import ClientSecretCredential

        return ClientSecretCredential(
            self.tenant_id,
            self.client_id,
            self.client_secret,
            authority=self.authority_host,
            disable_instance_discovery=True,
            connection_verify=self.ca_file,
        )

    def put(self, name: str, value: str) -> str:
        """Store a new version of secret NAME directly (no HTTP); its version id."""
        return str(self.store(name, {"value": value})["id"]).rsplit("/", 1)[-1]

    def store(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Add a version of NAME from a SecretSetParameters body; the SecretBundle stored."""
        version = secrets.token_hex(16)
        now = int(time.time())
        bundle: dict[str, Any] = {
            "value": body["value"],
            "id": f"{self.url}/secrets/{name}/{version}",
            "attributes": {
                "enabled": True,
                "created": now,
                "updated": now,
                "recoveryLevel": "Recoverable+Purgeable",
                "recoverableDays": 90,
                **body.get("attributes", {}),
            },
            "tags": body.get("tags", {}),
        }
        if "contentType" in body:
            bundle["contentType"] = body["contentType"]
        self.secrets.setdefault(name, []).append(bundle)
        return bundle


def _self_signed(directory: Path, hosts: Sequence[str] = ()) -> tuple[Path, Path]:
    """A key and a self-signed certificate for 127.0.0.1, localhost and `hosts` (cert.pem is its
    own CA bundle)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "punchingfist fake key vault")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    *(x509.DNSName(host) for host in hosts),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _keyvault_handler(vault: AzureKeyVaultFake) -> type[BaseHTTPRequestHandler]:
    """The request handler: Entra ID's discovery and token endpoints, IMDS's token endpoint,
    then Key Vault's challenge and secrets endpoints (any api-version: 7.x or dated)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: `vault.requests` records what tests look at."""

        def _answer(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
            send_json(self, status, body, dict(headers or {}))

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _error(self, status: int, code: str, message: str) -> None:
            self._answer(status, {"error": {"code": code, "message": message}})

        def _route(self) -> None:
            method = self.command
            url = urllib.parse.urlsplit(self.path)
            parts = [urllib.parse.unquote(part) for part in url.path.strip("/").split("/")]
            if parts[:1] == [vault.tenant_id]:
                self._entra(method, parts[1:])
            elif url.path == IMDS_TOKEN_PATH:
                self._body()
                self._imds(method, urllib.parse.parse_qs(url.query))
            elif parts[:1] == ["secrets"] and 2 <= len(parts) <= 3:
                self._secrets(method, url.path, parts[1:], urllib.parse.parse_qs(url.query))
            else:
                self._body()
                self._error(404, "NotFound", f"no route for {method} {url.path}")

        do_GET = do_PUT = do_POST = _route

        def _entra(self, method: str, parts: list[str]) -> None:
            """OpenID configuration and the client-credentials token endpoint of the tenant."""
            base = f"{vault.url}/{vault.tenant_id}"
            body = self._body()
            if method == "GET" and parts == ["v2.0", ".well-known", "openid-configuration"]:
                self._answer(
                    200,
                    {
                        "issuer": f"{base}/v2.0",
                        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                        "token_endpoint": f"{base}/oauth2/v2.0/token",
                    },
                )
                return
            if method == "POST" and parts == ["oauth2", "v2.0", "token"]:
                form = urllib.parse.parse_qs(body.decode())
                basic = self.headers.get("Authorization", "")
                client_id = form.get("client_id", [""])[0]
                client_secret = form.get("client_secret", [""])[0]
                if basic.startswith("Basic "):
                    client_id, _, client_secret = (
                        base64.b64decode(basic[6:]).decode().partition(":")
                    )
                if (client_id, client_secret) != (vault.client_id, vault.client_secret):
                    self._answer(
                        401,
                        {"error": "invalid_client", "error_description": "wrong client secret"},
                    )
                    return
                token = f"pf-kv-{secrets.token_hex(16)}"
                vault.tokens.add(token)
                self._answer(
                    200, {"token_type": "Bearer", "expires_in": 3600, "access_token": token}
                )
                return
            self._error(404, "NotFound", f"no Entra ID endpoint {method} {'/'.join(parts)}")

        def _imds(self, method: str, query: dict[str, list[str]]) -> None:
            """The instance metadata token endpoint as Azure answers it (the fields are strings):
            only with the `Metadata: true` header and for the configured managed identity."""
            if method != "GET" or self.headers.get("Metadata") != "true":
                self._imds_error("invalid_request", "Required metadata header not specified")
                return
            resource = query.get("resource", [""])[0]
            client_id = query.get("client_id", [""])[0]
            vault.requests.append(f"{method} {IMDS_TOKEN_PATH} client_id={client_id}")
            if not query.get("api-version", [""])[0] or not resource:
                self._imds_error("invalid_request", "api-version and resource are required")
                return
            if vault.managed_identity_client_id is None or (
                client_id != vault.managed_identity_client_id
            ):
                self._imds_error("invalid_request", "Identity not found")
                return
            token = f"pf-mi-{secrets.token_hex(16)}"
            vault.tokens.add(token)
            now = int(time.time())
            self._answer(
                200,
                {
                    "access_token": token,
                    "client_id": client_id,
                    "expires_in": "3599",
                    "expires_on": str(now + 3599),
                    "ext_expires_in": "3599",
                    "not_before": str(now),
                    "resource": resource,
                    "token_type": "Bearer",
                },
            )

        def _imds_error(self, code: str, description: str) -> None:
            self._answer(400, {"error": code, "error_description": description})

        def _secrets(
            self, method: str, path: str, parts: list[str], query: dict[str, list[str]]
        ) -> None:
            """Key Vault: a bearer challenge for a request without a token it issued, then
            GET /secrets/NAME[/VERSION] and PUT /secrets/NAME."""
            body = self._body()
            authorization = self.headers.get("Authorization", "")
            authorized = authorization.removeprefix("Bearer ") in vault.tokens
            vault.requests.append(f"{method} {path} {'authorized' if authorized else 'anonymous'}")
            if not authorized:
                challenge = (
                    'Bearer authorization="https://login.microsoftonline.com/'
                    f'{vault.tenant_id}", resource="{CHALLENGE_RESOURCE}"'
                )
                self._answer(
                    401,
                    {"error": {"code": "Unauthorized", "message": "AKV10000: bearer required"}},
                    {"WWW-Authenticate": challenge},
                )
                return
            if not query.get("api-version", [""])[0]:  # 7.x or dated (2025-07-01, ...)
                self._error(400, "BadParameter", "the api-version query parameter is required")
                return
            name = parts[0]
            if method == "PUT" and len(parts) == 1:
                self._answer(200, vault.store(name, json.loads(body)))
                return
            if method != "GET":
                self._error(405, "BadParameter", f"{method} is not served by this fake")
                return
            versions = vault.secrets.get(name, [])
            wanted = parts[1] if len(parts) == 2 and parts[1] else None
            found = [bundle for bundle in versions if wanted in (None, bundle["id"][-32:])]
            if not found:
                message = (
                    f"A secret with (name/id) {'/'.join(parts)} was not found in this key vault."
                )
                self._error(404, "SecretNotFound", message)
                return
            self._answer(200, found[-1])

    return Handler


@contextlib.contextmanager
def azure_keyvault_fake(
    hosts: Sequence[str] = (), managed_identity_client_id: str | None = None
) -> Iterator[AzureKeyVaultFake]:
    """A fake Key Vault, Entra ID token endpoint and IMDS over HTTPS on a free loopback port,
    served from a thread of this process; no secrets until the test puts some. Its certificate
    also names `hosts` (a real vault's name reached through `connect_proxy`)."""
    with tempfile.TemporaryDirectory(prefix="pf-keyvault-") as directory:
        cert, key = _self_signed(Path(directory), hosts)
        server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
        vault = AzureKeyVaultFake(
            url=f"https://127.0.0.1:{server.server_address[1]}",
            ca_file=str(cert),
            tenant_id="00000000-0000-4000-8000-00000000c0de",
            client_id="00000000-0000-4000-8000-0000000c1e47",
            client_secret=secrets.token_urlsafe(16),
            managed_identity_client_id=managed_identity_client_id,
        )
        server.RequestHandlerClass = _keyvault_handler(vault)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        with _serving(server, "fake-keyvault"):
            yield vault


@contextlib.contextmanager
def _serving(server: socketserver.BaseServer, name: str) -> Iterator[None]:
    """Serve from a daemon thread of this process; shut down and closed on exit."""
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# An HTTPS proxy ----------------------------------------------------------------------------


@dataclass
class ConnectProxy:
    """A running CONNECT proxy: its URL (for HTTPS_PROXY) and the `host:port` of each tunnel
    a client asked for, in order."""

    url: str
    tunnels: list[str] = field(default_factory=list)


def _pipe(source: socket.socket, target: socket.socket) -> None:
    """Copy bytes from `source` to `target` until either side closes."""
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            target.sendall(chunk)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def connect_proxy(port: int) -> Iterator[ConnectProxy]:
    """An HTTP proxy on a free loopback port that answers `CONNECT HOST:PORT` by tunnelling to
    127.0.0.1:`port`, whatever the host: the client's TLS then meets the server on `port`,
    which must present a certificate for HOST. Other methods are refused (405)."""
    proxy = ConnectProxy(url="")

    class Tunnel(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            request = self.rfile.readline(8192).decode("latin-1").split()
            while self.rfile.readline(8192).strip():  # the request's headers
                continue
            if len(request) != 3 or request[0] != "CONNECT":
                self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            proxy.tunnels.append(request[1])
            with socket.create_connection(("127.0.0.1", port), timeout=10) as upstream:
                self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self.wfile.flush()
                back = threading.Thread(target=_pipe, args=(upstream, self.connection))
                back.start()
                _pipe(self.connection, upstream)
                back.join(timeout=30)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Tunnel)
    server.daemon_threads = True
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    with _serving(server, "connect-proxy"):
        yield proxy
