"""Start a real control plane on loopback: etcd, kube-apiserver (RBAC on), Argo's controller.

Binaries come from `make control-plane` (hack/control-plane/build.sh), which records their
paths in ~/.cache/punchingfist/control-plane.env.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from hack.cluster.kube import all_conditions, all_established
from hack.pki import Authority
from punchingfist.api.workflows import INVESTIGATOR_ACCOUNT, REMEDIATOR_ACCOUNT

CACHE = Path(os.environ.get("PUNCHINGFIST_CACHE", Path.home() / ".cache" / "punchingfist"))
ENV_FILE = CACHE / "control-plane.env"
ROOT = Path(__file__).resolve().parents[2]


def read_env(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (the files hack/ writes and reads)."""
    lines = path.read_text().splitlines() if path.exists() else []
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def read_binaries() -> dict[str, str] | None:
    """Paths recorded by `make control-plane`, or None when it has not run (or is stale)."""
    values = read_env(ENV_FILE)
    wanted = read_env(ROOT / "hack/versions.env")
    versions = ("KUBERNETES_VERSION", "ETCD_VERSION", "ARGO_VERSION", "HELM_VERSION")
    if not values or any(values.get(key) != wanted.get(key) for key in versions):
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


class Pki(Authority):
    """The CA, the API server's serving certificate, an admin client and the SA signing key."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, "punchingfist-e2e-ca")
        self.issue(
            "server",
            "kube-apiserver",
            server=True,
            dns=["localhost", "kubernetes.default.svc"],
            ips=["127.0.0.1"],
        )
        self.issue("admin", "e2e-admin", organizations=["system:masters"], client=True)
        self.service_account_keys()


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
            self.workdir / "kubeconfig",
            self.server,
            "admin",
            namespace=self.namespace,
            cluster="e2e",
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
            argv,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=self.workdir,
        )
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
                "--data-dir",
                str(self.workdir / "etcd"),
                "--listen-client-urls",
                self.etcd_url,
                "--advertise-client-urls",
                self.etcd_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{peer}",
                "--listen-metrics-urls",
                f"http://127.0.0.1:{free_port()}",
                "--log-level",
                "warn",
                "--unsafe-no-fsync",
            ],
        )

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
                "--etcd-servers",
                self.etcd_url,
                "--bind-address",
                "127.0.0.1",
                "--advertise-address",
                "127.0.0.1",
                "--secure-port",
                str(port),
                "--cert-dir",
                str(self.workdir / "apiserver-certs"),
                "--tls-cert-file",
                self.pki.path("server.crt"),
                "--tls-private-key-file",
                self.pki.path("server.key"),
                "--client-ca-file",
                self.pki.path("ca.crt"),
                "--service-account-issuer",
                "https://kubernetes.default.svc",
                "--service-account-key-file",
                self.pki.path("sa.pub"),
                "--service-account-signing-key-file",
                self.pki.path("sa.key"),
                "--service-cluster-ip-range",
                "10.96.0.0/24",
                "--authorization-mode",
                "RBAC",
                "--enable-priority-and-fairness=false",
                "--endpoint-reconciler-type",
                "none",
                "--v",
                "1",
            ],
        )
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

    def wait_condition(self, condition: str, *objects: str, timeout: float = 90) -> None:
        """Poll until every object `kubectl get OBJECTS` finds has `condition` True."""

        def met() -> bool:
            found = self.kubectl("get", "-o", "json", *objects, check=False)
            return found.returncode == 0 and all_conditions(json.loads(found.stdout), condition)

        wait_for(met, f"waiting for {condition} of {' '.join(objects)}", timeout, self.apiserver)

    def _prepare_cluster(self) -> None:
        self.kubectl("create", "namespace", self.namespace)
        # No kube-controller-manager runs, so nothing creates the default ServiceAccount; the
        # step accounts compiled Workflows name are the chart's (step-accounts.yaml).
        for account in ("default", INVESTIGATOR_ACCOUNT, REMEDIATOR_ACCOUNT):
            self.kubectl("create", "serviceaccount", account, "-n", self.namespace)
        self.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        argo_crds = sorted(Path(self.binaries["ARGO_CRDS"]).glob("argoproj.io_*.yaml"))
        self.kubectl("apply", "--server-side", *[f"-f={path}" for path in argo_crds])
        crds = [
            "workflows.argoproj.io",
            "workflowtemplates.argoproj.io",
            "workflows.punchingfist.io",
            "sources.punchingfist.io",
        ]

        def established() -> bool:
            # Not `kubectl wait`: it errors out, rather than waiting, while a new CRD has no
            # conditions yet (a busy machine makes that window wide).
            found = self.kubectl("get", "crd", *crds, "-o", "json", check=False)
            return found.returncode == 0 and all_established(json.loads(found.stdout), crds)

        wait_for(established, f"waiting for the CRDs {', '.join(crds)}", 120, self.apiserver)

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
                "--kubeconfig",
                str(self.kubeconfig),
                "--namespaced",
                "--namespace",
                self.namespace,
                "--managed-namespace",
                self.namespace,
                "--configmap",
                "workflow-controller-configmap",
                "--executor-image",
                f"quay.io/argoproj/argoexec:{self.binaries['ARGO_VERSION']}",
                "--workflow-workers",
                "2",
                "--loglevel",
                "info",
            ],
            env={"LEADER_ELECTION_DISABLE": "true"},
        )

        def running() -> bool:
            text = controller.log.read_text(errors="replace")
            return "Starting Workflow Controller" in text

        wait_for(running, "waiting for the Argo workflow-controller", 90, controller)
        self.controller = controller
