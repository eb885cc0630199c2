"""Bring the cluster up, find it again, tear it down.

`up` reuses a cluster whose processes all run and whose API answers; otherwise it cleans up
what an earlier one left and starts everything in order, each step waiting (with a deadline)
for the state the next one needs. What it started is written to the state file as it goes, so
`down` can stop it even after a failed `up`. Then it pushes the images and installs CoreDNS,
Argo, the chart and the examples (`helm upgrade`: a rebuilt image rolls the operator).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hack.cluster import cleanup, installs, layout, network
from hack.cluster.components import Components
from hack.cluster.kube import Kubectl, node_ready
from hack.cluster.layout import CACHE, Layout, read_env
from hack.cluster.processes import NotUp, Process, start, wait_for

STOP_ORDER = [
    "kubelet",
    "kube-proxy",
    "kube-scheduler",
    "kube-controller-manager",
    "containerd",
    "kube-apiserver",
    "etcd",
    "registry",
]
"""The kubelet first, so that it restarts nothing while the rest goes away."""
DEPLOY_TIMEOUT = 300.0


def say(message: str) -> None:
    print(f"[cluster] {message}", flush=True)


@dataclass
class State:
    """The state file: what `up` started and what it found on the machine before it."""

    processes: dict[str, Process] = field(default_factory=dict)
    ip_forward: str | None = None
    kubelet_dir_created: bool = False
    images: dict[str, str] = field(default_factory=dict)
    ready_at: float | None = None

    @classmethod
    def load(cls, path: Path) -> State | None:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        processes = {p["name"]: Process(**p) for p in data.pop("processes", [])}
        return cls(processes=processes, **data)

    def save(self, path: Path) -> None:
        data: dict[str, Any] = {
            "processes": [p.as_dict() for p in self.processes.values()],
            "ip_forward": self.ip_forward,
            "kubelet_dir_created": self.kubelet_dir_created,
            "images": self.images,
            "ready_at": self.ready_at,
        }
        path.write_text(json.dumps(data, indent=2))


class Cluster:
    def __init__(self) -> None:
        self.layout = Layout()
        self.kubectl: Kubectl | None = None

    # -- reading --------------------------------------------------------------------------

    def state(self) -> State | None:
        return State.load(self.layout.state_file)

    def _api_ready(self) -> bool:
        pki = self.layout.pki
        context = ssl.create_default_context(cafile=os.fspath(pki / "ca.crt"))
        context.load_cert_chain(pki / "admin.crt", pki / "admin.key")
        url = f"{layout.api_server_url()}/readyz"
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            return bool(response.status == 200)

    def running(self) -> list[str]:
        """Why the recorded cluster is not fully up ([] when it is)."""
        state = self.state()
        if state is None or state.ready_at is None:
            return ["no cluster was started (or its start did not finish)"]
        problems = [f"{p.name} is not running" for p in state.processes.values() if not p.alive()]
        if not problems:
            try:
                if not self._api_ready():
                    problems.append("the API server is not ready")
            except OSError as error:
                problems.append(f"the API server does not answer: {error}")
        return problems

    # -- up -------------------------------------------------------------------------------

    def up(self, *, install: bool = True) -> None:
        binaries = read_env(CACHE / "cluster.env")
        images = read_env(CACHE / "cluster-images.env")
        if not binaries or not images:
            raise NotUp("the cluster is not built: run hack/cluster/build.sh (make cluster-up)")
        self.kubectl = Kubectl(binaries["KUBECTL"], self.layout.kubeconfig)
        problems = self.running()
        if not problems:
            say("reusing the running cluster")
        else:
            if self.layout.state.exists():
                say(f"starting afresh: {'; '.join(problems)}")
                self.down(quiet=True)
            self._start(binaries, images)
        state = self.state()
        assert state is not None
        if install:
            started = time.monotonic()
            pushed = installs.push_images(images, say)
            state.images = pushed
            state.save(self.layout.state_file)
            self._install(binaries, pushed)
            say(
                f"installed CoreDNS, Argo, the chart and the examples in "
                f"{time.monotonic() - started:.0f} s"
            )

    def _preflight(self) -> None:
        if os.geteuid() != 0:
            raise NotUp("the cluster needs root (network bridge, iptables, mounts, cgroups)")
        for tool in ("ip", "iptables", "runc", "docker-registry", "buildah"):
            if shutil.which(tool) is None:
                raise NotUp(f"{tool} is not installed: run `make system-deps`")
        if not Path("/usr/lib/cni/bridge").exists():
            raise NotUp("the CNI plugins are not installed: run `make system-deps`")
        ports = [
            ("127.0.0.1", p)
            for p in (
                layout.ETCD_CLIENT_PORT,
                layout.ETCD_PEER_PORT,
                layout.ETCD_METRICS_PORT,
                layout.KUBELET_HEALTHZ_PORT,
                layout.PROXY_METRICS_PORT,
                layout.PROXY_HEALTHZ_PORT,
                int(layout.REGISTRY.rsplit(":", 1)[1]),
            )
        ]
        for host, port in ports:
            with socket.socket() as probe:
                if probe.connect_ex((host, port)) == 0:
                    raise NotUp(f"{host}:{port} is in use; the cluster needs it (layout.py)")

    def _start(self, binaries: dict[str, str], images: dict[str, str]) -> None:
        began = time.monotonic()
        self._preflight()
        self.layout.state.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.layout.logs, ignore_errors=True)
        state = State(
            ip_forward=network.read_ip_forward(),
            kubelet_dir_created=not cleanup.KUBELET_DEFAULT_DIR.exists(),
        )
        state.save(self.layout.state_file)
        sandbox = installs.registry_name(images["IMAGE_PAUSE"])
        parts = Components(self.layout, binaries, sandbox)
        logs = self.layout.logs

        started: list[Process] = []

        def launch(
            name: str,
            argv: list[str],
            ready: Callable[[], bool],
            timeout: float,
            env: dict[str, str] | None = None,
        ) -> None:
            """Start one process, record its pid, wait until `ready` (every process started
            so far must keep running meanwhile)."""
            process = start(name, argv, logs, env=env, cwd=self.layout.state)
            state.processes[name] = process
            state.save(self.layout.state_file)
            started.append(process)
            wait_for(ready, f"starting {name}", timeout, watch=started)

        kubectl = self.kubectl
        assert kubectl is not None
        ctr = [binaries["CTR"], "--address", os.fspath(self.layout.containerd_socket), "version"]
        containerd_argv, containerd_env = parts.containerd()

        say(f"state in {self.layout.state}, logs in {logs}")
        parts.pki()
        network.create_bridge()
        network.write_cni_config(self.layout.cni / "net.d", self.layout.cni / "ipam")
        launch("registry", parts.registry(), _ok(f"http://{layout.REGISTRY}/v2/"), 60)
        launch("etcd", parts.etcd(), _ok(f"http://127.0.0.1:{layout.ETCD_CLIENT_PORT}/health"), 120)
        launch("kube-apiserver", parts.apiserver(), self._api_ready, 240)
        say(f"API server ready at {layout.api_server_url()} ({time.monotonic() - began:.0f} s)")
        # The API server calls kubelets as this user (logs, exec, port-forward).
        kubectl(
            "create",
            "clusterrolebinding",
            "kube-apiserver-kubelet-client",
            "--clusterrole",
            "system:kubelet-api-admin",
            "--user",
            "kube-apiserver-kubelet-client",
        )
        launch(
            "containerd",
            containerd_argv,
            lambda: subprocess.run(ctr, capture_output=True).returncode == 0,
            120,
            env=containerd_env,
        )
        kubelet_health = f"http://127.0.0.1:{layout.KUBELET_HEALTHZ_PORT}/healthz"
        launch("kubelet", parts.kubelet(), _ok(kubelet_health), 120)
        launch("kube-controller-manager", parts.controller_manager(), lambda: True, 0)
        launch("kube-scheduler", parts.scheduler(), lambda: True, 0)
        launch("kube-proxy", parts.kube_proxy(), lambda: True, 0)
        wait_for(
            lambda: node_ready(kubectl.json("node", layout.NODE_NAME)),
            f"waiting for node {layout.NODE_NAME} to be Ready",
            240,
            watch=started,
        )
        wait_for(
            lambda: bool(kubectl.json("serviceaccount", "default")),
            "waiting for the default ServiceAccount (kube-controller-manager)",
            120,
            watch=started,
        )
        state.ready_at = time.time()
        state.save(self.layout.state_file)
        say(f"node {layout.NODE_NAME} Ready {time.monotonic() - began:.0f} s after start")

    def _install(self, binaries: dict[str, str], images: dict[str, str]) -> None:
        assert self.kubectl is not None
        kubectl = self.kubectl
        installs.install_coredns(kubectl, images["COREDNS"])
        installs.install_argo(
            kubectl, binaries["ARGO_SRC"], images["WORKFLOW_CONTROLLER"], images["ARGOEXEC"]
        )
        installs.wait_deployments(kubectl, "kube-system", ["coredns"], DEPLOY_TIMEOUT)
        installs.wait_deployments(
            kubectl, layout.ARGO_NAMESPACE, ["workflow-controller"], DEPLOY_TIMEOUT
        )
        say("CoreDNS and Argo's workflow-controller are running")
        installs.install_chart(
            kubectl,
            binaries["HELM"],
            self.layout.kubeconfig,
            images["RUNTIME"],
            timeout=DEPLOY_TIMEOUT,
        )
        installs.wait_deployments(
            kubectl, layout.OPERATOR_NAMESPACE, ["punchingfist"], DEPLOY_TIMEOUT
        )
        installs.apply_examples(kubectl)
        say(
            f"the operator runs {images['RUNTIME']}; the examples are applied in "
            f"namespace {layout.OPERATOR_NAMESPACE}"
        )

    # -- down -----------------------------------------------------------------------------

    def down(self, *, quiet: bool = False) -> None:
        """Stop what `up` started (by pid), remove what it made outside its state, then the
        state itself. Safe after a failed `up` and when nothing runs. Raises NotUp naming
        what is left behind, if anything is."""
        began = time.monotonic()
        state = self.state() or State()
        report: list[str] = []
        processes = state.processes
        if "kubelet" in processes:
            processes["kubelet"].stop()
        killed = cleanup.kill_pod_processes()
        if killed:
            report.append(f"{killed} container processes killed")
        for name in STOP_ORDER:
            if name in processes:
                processes[name].stop()
        shims = cleanup.kill_shims(self.layout.containerd_socket)
        if shims:
            report.append(f"{shims} shims killed")
        report.append(f"{cleanup.unmount_under(self.layout.state)} mounts removed")
        report.append(f"{cleanup.remove_pod_cgroups()} pod cgroups removed")
        chains = network.remove_chains()
        report.append(f"{len(chains)} iptables chains removed")
        network.remove_cni_results()
        network.delete_bridge()
        network.restore_ip_forward(state.ip_forward)
        cleanup.remove_container_log_links(self.layout.pod_logs)
        cleanup.remove_kubelet_default_dir(state.kubelet_dir_created)
        shutil.rmtree(self.layout.state, ignore_errors=True)
        left = [f"{p.name} (pid {p.pid}) still runs" for p in processes.values() if p.alive()]
        left += cleanup.mounts_under(self.layout.state) + network.leftover_chains()
        left += [f"the bridge {layout.BRIDGE}"] if network.bridge_exists() else []
        left += [f"{self.layout.state}"] if self.layout.state.exists() else []
        if left:
            raise NotUp("the teardown left behind: " + "; ".join(left))
        if not quiet:
            say(
                f"stopped {len(processes)} processes; {', '.join(report)} "
                f"({time.monotonic() - began:.0f} s); logs kept in {self.layout.logs}"
            )


def _ok(url: str) -> Callable[[], bool]:
    """A check: `url` answers 200."""

    def check() -> bool:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)

    return check


def status_lines(cluster: Cluster) -> list[str]:
    state = cluster.state()
    if state is None:
        return ["no cluster (run `make cluster-up`)"]
    lines = [
        f"{p.name:<24} pid {p.pid:<8} {'running' if p.alive() else 'NOT RUNNING'}  {p.log}"
        for p in state.processes.values()
    ]
    problems = cluster.running()
    lines.append("ready" if not problems else "not ready: " + "; ".join(problems))
    lines.append(f"kubeconfig: {cluster.layout.kubeconfig}")
    return lines
