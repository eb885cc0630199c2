"""Where the cluster lives: the cache and state paths, its addresses and ports, the build files.

One cluster per machine: the addresses and ports are fixed, so that the kubeconfig, the images'
names and what the tests expect stay the same from one `make cluster-up` to the next.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("PUNCHINGFIST_CACHE", Path.home() / ".cache" / "punchingfist"))
ROOT = Path(__file__).resolve().parents[2]

NODE_NAME = "pf-node"
BRIDGE = "pf0"
NODE_IP = "10.244.0.1"
"""The bridge's address: the pods' gateway, the node's InternalIP and the API server's."""
POD_SUBNET = "10.244.0.0/24"
POD_RANGE_START = "10.244.0.10"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
DNS_SERVICE_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"

API_PORT = 6443
ETCD_CLIENT_PORT, ETCD_PEER_PORT, ETCD_METRICS_PORT = 2379, 2380, 2381
REGISTRY = "localhost:5000"
"""The registry the node pulls from, on loopback (Debian's docker-registry)."""
KUBELET_PORT, KUBELET_HEALTHZ_PORT = 10250, 10248
PROXY_METRICS_PORT, PROXY_HEALTHZ_PORT = 10249, 10256

OPERATOR_NAMESPACE = "punchingfist"
"""Where the chart is installed (and the examples applied)."""
ARGO_NAMESPACE = "argo"
WORKLOAD_NAMESPACE = "shop"
"""Where the tests (and the README's walk) deploy broken workloads: the chart lets the
remediator change workloads here and in OPERATOR_NAMESPACE (`steps.remediator.namespaces`)."""


def read_env(path: Path) -> dict[str, str]:
    """KEY=VALUE lines: the files the build scripts under hack/ write."""
    lines = path.read_text().splitlines() if path.exists() else []
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


@dataclass(frozen=True)
class Layout:
    """The cluster's own directory (removed by `down`) and what lives in it."""

    state: Path = CACHE / "cluster"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def state_file(self) -> Path:
        """What `up` started (pids) and installed: read by `down`, `status` and the tests."""
        return self.state / "state.json"

    @property
    def logs(self) -> Path:
        """Kept by `down`: the last cluster's logs, for a look after a failure."""
        return CACHE / "logs" / "cluster"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def containerd(self) -> Path:
        return self.state / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.containerd / "containerd.sock"

    @property
    def kubelet(self) -> Path:
        return self.state / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.kubelet / "pod-logs"

    @property
    def cni(self) -> Path:
        return self.state / "cni"

    @property
    def registry_data(self) -> Path:
        """Kept by `down`, like the build cache: pushing an image again costs nothing."""
        return CACHE / "registry"

    def path(self, *parts: str) -> Path:
        return self.state.joinpath(*parts)


def api_server_url() -> str:
    return f"https://{NODE_IP}:{API_PORT}"
