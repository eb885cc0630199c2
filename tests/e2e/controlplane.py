"""Start a real control plane on loopback: etcd, kube-apiserver (RBAC on), Argo's controller.

Binaries come from `make control-plane` (hack/control-plane/build.sh), which records their
paths in ~/.cache/punchingfist/control-plane.env.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

CACHE = Path(os.environ.get("PUNCHINGFIST_CACHE", Path.home() / ".cache" / "punchingfist"))
ENV_FILE = CACHE / "control-plane.env"
ROOT = Path(__file__).resolve().parents[2]


def read_binaries() -> dict[str, str] | None:
    """Paths recorded by `make control-plane`, or None when it has not run (or is stale)."""
    if not ENV_FILE.exists():
        return None
    values = dict(line.split("=", 1) for line in ENV_FILE.read_text().splitlines() if "=" in line)
    wanted = dict(
        line.split("=", 1)
        for line in (ROOT / "hack/control-plane/versions.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    if any(values.get(key) != value for key, value in wanted.items()):
        return None
    for key in ("KUBE_APISERVER", "ETCD", "WORKFLOW_CONTROLLER", "ARGO", "HELM"):
        if not os.access(values.get(key, ""), os.X_OK):
            return None
    return values


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- certificates ---------------------------------------------------------------------------


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _certificate(
    subject: x509.Name,
    key: rsa.RSAPrivateKey,
    issuer: tuple[x509.Name, rsa.RSAPrivateKey] | None,
    *,
    ca: bool = False,
    sans: Sequence[x509.GeneralName] = (),
    client: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if not ca:
        usage = x509.oid.ExtendedKeyUsageOID
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([usage.CLIENT_AUTH if client else usage.SERVER_AUTH]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Pki:
    """A CA, the API server's serving certificate, an admin client and the SA signing key."""

    directory: Path

    def __post_init__(self) -> None:
        import ipaddress

        self.directory.mkdir(parents=True, exist_ok=True)
        ca_key = _key()
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "punchingfist-e2e-ca")])
        ca = _certificate(ca_name, ca_key, None, ca=True)
        server_key = _key()
        server = _certificate(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
            server_key,
            (ca_name, ca_key),
            sans=[
                x509.DNSName("localhost"),
                x509.DNSName("kubernetes.default.svc"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            ],
        )
        admin_key = _key()
        admin = _certificate(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "e2e-admin"),
                ]
            ),
            admin_key,
            (ca_name, ca_key),
            client=True,
        )
        sa_key = _key()
        files = {
            "ca.crt": _pem(ca),
            "server.crt": _pem(server),
            "server.key": _pem_key(server_key),
            "admin.crt": _pem(admin),
            "admin.key": _pem_key(admin_key),
            "sa.key": _pem_key(sa_key),
            "sa.pub": sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        }
        for name, data in files.items():
            (self.directory / name).write_bytes(data)

    def path(self, name: str) -> str:
        return str(self.directory / name)

    def kubeconfig(self, server: str, path: Path, namespace: str) -> Path:
        def data(name: str) -> str:
            return base64.b64encode((self.directory / name).read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "e2e", "cluster": {
                "server": server, "certificate-authority-data": data("ca.crt")}}],
            "users": [{"name": "admin", "user": {
                "client-certificate-data": data("admin.crt"),
                "client-key-data": data("admin.key")}}],
            "contexts": [{"name": "e2e", "context": {
                "cluster": "e2e", "user": "admin", "namespace": namespace}}],
            "current-context": "e2e",
        }  # fmt: skip
        path.write_text(json.dumps(config))
        return path


# -- processes ------------------------------------------------------------------------------


@dataclass
class Component:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    handle: IO[bytes]

    def tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.handle.close()


def wait_for(check: Callable[[], bool], what: str, timeout: float, component: Component) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if component.process.poll() is not None:
            raise RuntimeError(f"{component.name} exited while {what}:\n{component.tail()}")
        with contextlib.suppress(OSError):  # not listening yet
            if check():
                return
        time.sleep(0.25)
    raise TimeoutError(f"{what} took longer than {timeout} s:\n{component.tail()}")


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + Argo workflow-controller, with an admin kubeconfig."""

    binaries: dict[str, str]
    workdir: Path
    namespace: str = "e2e"
    components: list[Component] = field(default_factory=list)

    def start(self) -> None:
        self.pki = Pki(self.workdir / "pki")
        self._start_etcd()
        self._start_apiserver()
        self.kubeconfig = self.pki.kubeconfig(
            self.server, self.workdir / "kubeconfig", self.namespace
        )
        self._prepare_cluster()
        self._start_argo()

    def stop(self) -> None:
        for component in reversed(self.components):
            component.stop()

    def logs(self) -> dict[str, str]:
        return {c.name: c.tail() for c in self.components}

    # --

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Component:
        log = self.workdir / f"{name}.log"
        handle = log.open("wb")
        process = subprocess.Popen(
            argv, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
            cwd=self.workdir,
        )  # fmt: skip
        component = Component(name, process, log, handle)
        self.components.append(component)
        return component

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        etcd = self._spawn(
            "etcd",
            [
                self.binaries["ETCD"],
                "--data-dir", str(self.workdir / "etcd"),
                "--listen-client-urls", self.etcd_url,
                "--advertise-client-urls", self.etcd_url,
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", f"default=http://127.0.0.1:{peer}",
                "--listen-metrics-urls", f"http://127.0.0.1:{free_port()}",
                "--log-level", "warn",
                "--unsafe-no-fsync",
            ],
        )  # fmt: skip

        def healthy() -> bool:
            with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as response:
                return bool(json.load(response).get("health") == "true")

        wait_for(healthy, "waiting for etcd", 60, etcd)

    def _start_apiserver(self) -> None:
        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        apiserver = self._spawn(
            "kube-apiserver",
            [
                self.binaries["KUBE_APISERVER"],
                "--etcd-servers", self.etcd_url,
                "--bind-address", "127.0.0.1",
                "--advertise-address", "127.0.0.1",
                "--secure-port", str(port),
                "--cert-dir", str(self.workdir / "apiserver-certs"),
                "--tls-cert-file", self.pki.path("server.crt"),
                "--tls-private-key-file", self.pki.path("server.key"),
                "--client-ca-file", self.pki.path("ca.crt"),
                "--service-account-issuer", "https://kubernetes.default.svc",
                "--service-account-key-file", self.pki.path("sa.pub"),
                "--service-account-signing-key-file", self.pki.path("sa.key"),
                "--service-cluster-ip-range", "10.96.0.0/24",
                "--authorization-mode", "RBAC",
                "--enable-priority-and-fairness=false",
                "--endpoint-reconciler-type", "none",
                "--v", "1",
            ],
        )  # fmt: skip
        context = ssl.create_default_context(cafile=self.pki.path("ca.crt"))
        context.load_cert_chain(self.pki.path("admin.crt"), self.pki.path("admin.key"))

        def ready() -> bool:
            with urllib.request.urlopen(f"{self.server}/readyz", timeout=2, context=context) as r:
                return bool(r.status == 200)

        wait_for(ready, "waiting for kube-apiserver /readyz", 120, apiserver)
        self.apiserver = apiserver

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, user: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = ["kubectl", "--kubeconfig", str(self.kubeconfig), *args]
        if user:
            argv += ["--as", user]
        result = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=120, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", "-o", "json", *args).stdout)

    def _prepare_cluster(self) -> None:
        self.kubectl("create", "namespace", self.namespace)
        # No kube-controller-manager runs, so nothing creates the default ServiceAccount.
        self.kubectl("create", "serviceaccount", "default", "-n", self.namespace)
        self.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        argo_crds = sorted(Path(self.binaries["ARGO_CRDS"]).glob("argoproj.io_*.yaml"))
        self.kubectl("apply", "--server-side", *[f"-f={path}" for path in argo_crds])
        for crd in ("workflows.argoproj.io", "workflowtemplates.argoproj.io",
                    "workflows.punchingfist.io", "sources.punchingfist.io"):  # fmt: skip
            self.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")

    def _start_argo(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "workflow-controller-configmap", "namespace": self.namespace},
            "data": {
                "executor": "imagePullPolicy: IfNotPresent\n",
                # Loopback ports are shared with other test servers: no metrics listener.
                "metricsConfig": "enabled: false\n",
                "telemetryConfig": "enabled: false\n",
            },
        }
        self.kubectl("apply", "-f", "-", stdin=json.dumps(config))
        controller = self._spawn(
            "workflow-controller",
            [
                self.binaries["WORKFLOW_CONTROLLER"],
                "--kubeconfig", str(self.kubeconfig),
                "--namespaced",
                "--namespace", self.namespace,
                "--managed-namespace", self.namespace,
                "--configmap", "workflow-controller-configmap",
                "--executor-image", f"quay.io/argoproj/argoexec:{self.binaries['ARGO_VERSION']}",
                "--workflow-workers", "2",
                "--loglevel", "info",
            ],
            env={"LEADER_ELECTION_DISABLE": "true"},
        )  # fmt: skip

        def running() -> bool:
            text = controller.log.read_text(errors="replace")
            return "Starting Workflow Controller" in text

        wait_for(running, "waiting for the Argo workflow-controller", 90, controller)
        self.controller = controller
