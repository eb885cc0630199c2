"""Each process of the cluster: its certificates, configuration files and command line.

`Components(layout, binaries, images)` knows where everything is; `pki()` issues what the
components present to each other, and each `<component>()` method writes that component's
files and returns its argv. The flags that matter on this machine are explained where they are
set (see also shared/notes/running-a-node.md).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from hack.cluster import layout
from hack.cluster.layout import Layout
from hack.pki import Authority


@dataclass(frozen=True)
class Components:
    layout: Layout
    binaries: dict[str, str]
    """cluster.env: the paths hack/cluster/build.sh recorded."""
    sandbox_image: str
    """The pause image, as the node pulls it from the registry."""

    # -- certificates ---------------------------------------------------------------------

    def pki(self) -> None:
        """A CA and, signed by it, each component's identity (user from the CN, groups from O)."""
        ca = Authority(self.layout.pki, "punchingfist-cluster-ca")
        node, api = layout.NODE_NAME, layout.api_server_url()
        ca.issue(
            "apiserver",
            "kube-apiserver",
            server=True,
            dns=[
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                f"kubernetes.default.svc.{layout.CLUSTER_DOMAIN}",
                "localhost",
            ],
            ips=[layout.KUBERNETES_SERVICE_IP, layout.NODE_IP, "127.0.0.1"],
        )
        ca.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", client=True)
        ca.issue("kubelet", node, server=True, dns=[node], ips=[layout.NODE_IP])
        ca.service_account_keys()
        clients = {
            "admin": ("punchingfist-admin", ["system:masters"]),
            "kubelet-client": (f"system:node:{node}", ["system:nodes"]),
            "kube-controller-manager": ("system:kube-controller-manager", []),
            "kube-scheduler": ("system:kube-scheduler", []),
            "kube-proxy": ("system:kube-proxy", []),
        }
        for name, (user, groups) in clients.items():
            ca.issue(name, user, organizations=groups, client=True)
            target = self.layout.kubeconfig if name == "admin" else self._kubeconfig(name)
            ca.kubeconfig(target, api, name)

    def _pki(self, name: str) -> str:
        return os.fspath(self.layout.pki / name)

    def _kubeconfig(self, name: str) -> Path:
        return self.layout.pki / f"{name}.kubeconfig"

    # -- control plane --------------------------------------------------------------------

    def etcd(self) -> list[str]:
        client = f"http://127.0.0.1:{layout.ETCD_CLIENT_PORT}"
        peer = f"http://127.0.0.1:{layout.ETCD_PEER_PORT}"
        return [
            self.binaries["ETCD"],
            "--name=default",
            f"--data-dir={self.layout.path('etcd')}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            f"--listen-metrics-urls=http://127.0.0.1:{layout.ETCD_METRICS_PORT}",
            "--log-level=warn",
            # A throwaway cluster: nothing has to survive a crash, and fsync on a busy disk
            # slows every API write (docs/operations.md, 'Performance decisions').
            "--unsafe-no-fsync",
        ]

    def apiserver(self) -> list[str]:
        return [
            self.binaries["KUBE_APISERVER"],
            f"--etcd-servers=http://127.0.0.1:{layout.ETCD_CLIENT_PORT}",
            # Pods cannot reach 127.0.0.1 (it is their own): serve on the bridge's address.
            f"--bind-address={layout.NODE_IP}",
            f"--advertise-address={layout.NODE_IP}",
            f"--secure-port={layout.API_PORT}",
            f"--cert-dir={self.layout.path('apiserver')}",
            f"--tls-cert-file={self._pki('apiserver.crt')}",
            f"--tls-private-key-file={self._pki('apiserver.key')}",
            f"--client-ca-file={self._pki('ca.crt')}",
            f"--kubelet-client-certificate={self._pki('apiserver-kubelet-client.crt')}",
            f"--kubelet-client-key={self._pki('apiserver-kubelet-client.key')}",
            f"--kubelet-certificate-authority={self._pki('ca.crt')}",
            # The node's hostname resolves to 127.0.0.1 here; the kubelet listens on the bridge.
            "--kubelet-preferred-address-types=InternalIP",
            f"--service-account-issuer=https://kubernetes.default.svc.{layout.CLUSTER_DOMAIN}",
            f"--service-account-key-file={self._pki('sa.pub')}",
            f"--service-account-signing-key-file={self._pki('sa.key')}",
            f"--service-cluster-ip-range={layout.SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--profiling=false",
            "--v=1",
        ]

    def controller_manager(self) -> list[str]:
        return [
            self.binaries["KUBE_CONTROLLER_MANAGER"],
            f"--kubeconfig={self._kubeconfig('kube-controller-manager')}",
            # Publishes kube-root-ca.crt in every namespace (the pods' projected CA).
            f"--root-ca-file={self._pki('ca.crt')}",
            f"--service-account-private-key-file={self._pki('sa.key')}",
            "--use-service-account-credentials",
            f"--cluster-signing-cert-file={self._pki('ca.crt')}",
            f"--cluster-signing-key-file={self._pki('ca.key')}",
            f"--service-cluster-ip-range={layout.SERVICE_CIDR}",
            "--cluster-name=punchingfist",
            "--leader-elect=false",
            "--secure-port=0",
            "--v=1",
        ]

    def scheduler(self) -> list[str]:
        return [
            self.binaries["KUBE_SCHEDULER"],
            f"--kubeconfig={self._kubeconfig('kube-scheduler')}",
            "--leader-elect=false",
            "--secure-port=0",
            "--v=1",
        ]

    # -- node ------------------------------------------------------------------------------

    def containerd(self) -> tuple[list[str], dict[str, str]]:
        """containerd with its own root, state and socket; the shim it starts must be ours
        (v2), so its directory leads PATH (Debian's 1.6 shim may be installed too)."""
        root = self.layout.containerd
        hosts = root / "certs.d" / layout.REGISTRY
        hosts.mkdir(parents=True, exist_ok=True)
        (hosts / "hosts.toml").write_text(
            f'server = "http://{layout.REGISTRY}"\n\n'
            f'[host."http://{layout.REGISTRY}"]\n  capabilities = ["pull", "resolve"]\n'
        )
        config = f"""\
version = 3
root = "{root / "root"}"
state = "{root / "state"}"

[grpc]
  address = "{self.layout.containerd_socket}"

[ttrpc]
  address = "{self.layout.containerd_socket}.ttrpc"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    # Nothing can be pulled from outside this machine: our own pause image, from our registry.
    sandbox = "{self.sandbox_image}"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "{root / "certs.d"}"

[plugins.'io.containerd.cri.v1.runtime']
  # Root lacks CAP_SYS_RESOURCE here: runc cannot lower oom_score_adj, and every sandbox
  # failed with "can't get final child's PID from pipe: EOF" until this was set.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
    SystemdCgroup = false
    Root = "{root / "runc"}"
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "{self.layout.cni / "net.d"}"

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""
        path = root / "config.toml"
        path.write_text(config)
        shim_dir = os.path.dirname(self.binaries["CONTAINERD_SHIM"])
        env = {"PATH": f"{shim_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
        return [self.binaries["CONTAINERD"], "--config", os.fspath(path)], env

    def kubelet(self) -> list[str]:
        directory = self.layout.kubelet
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": layout.NODE_IP,
            "port": layout.KUBELET_PORT,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": layout.KUBELET_HEALTHZ_PORT,
            "tlsCertFile": self._pki("kubelet.crt"),
            "tlsPrivateKeyFile": self._pki("kubelet.key"),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": self._pki("ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            # cgroups v1 and no systemd on this machine: warnings only with these.
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.layout.containerd_socket}",
            "clusterDomain": layout.CLUSTER_DOMAIN,
            "clusterDNS": [layout.DNS_SERVICE_IP],
            "podLogsDir": os.fspath(self.layout.pod_logs),
            "serializeImagePulls": False,
            # The machine's disk is shared with builds: evict only when it is really full.
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "2%",
                "imagefs.available": "2%",
                "nodefs.inodesFree": "2%",
            },
            "imageGCHighThresholdPercent": 98,
            "imageGCLowThresholdPercent": 95,
            "shutdownGracePeriod": "0s",
        }
        path = directory / "config.json"
        path.write_text(json.dumps(config, indent=2))
        return [
            self.binaries["KUBELET"],
            f"--config={path}",
            f"--kubeconfig={self._kubeconfig('kubelet-client')}",
            f"--root-dir={directory / 'root'}",
            f"--cert-dir={directory / 'pki'}",
            # A loopback node IP is refused; the bridge's is reachable from pods too.
            f"--node-ip={layout.NODE_IP}",
            f"--hostname-override={layout.NODE_NAME}",
            # Two dead instances per container, not one: while a crash-looping container
            # backs off, this kubelet reports the instance that just exited as its state and
            # the one before as its last state, which `kubectl logs --previous` reads.
            "--maximum-dead-containers-per-container=2",
            "--v=1",
        ]

    def kube_proxy(self) -> list[str]:
        return [
            self.binaries["KUBE_PROXY"],
            f"--kubeconfig={self._kubeconfig('kube-proxy')}",
            f"--hostname-override={layout.NODE_NAME}",
            "--proxy-mode=iptables",
            f"--cluster-cidr={layout.CLUSTER_CIDR}",
            # NodePorts only on the bridge: nothing is reachable from beyond this machine.
            f"--nodeport-addresses={layout.NODE_IP}/32",
            # Keep off the host's sysctls (conntrack sizes).
            "--conntrack-max-per-core=0",
            "--conntrack-tcp-timeout-established=0",
            "--conntrack-tcp-timeout-close-wait=0",
            f"--metrics-bind-address=127.0.0.1:{layout.PROXY_METRICS_PORT}",
            f"--healthz-bind-address=127.0.0.1:{layout.PROXY_HEALTHZ_PORT}",
            "--v=1",
        ]

    # -- registry ---------------------------------------------------------------------------

    def registry(self) -> list[str]:
        """Debian's docker-registry (distribution 2.8) on loopback, its blobs in the cache."""
        data = self.layout.registry_data
        data.mkdir(parents=True, exist_ok=True)
        port = layout.REGISTRY.rsplit(":", 1)[1]
        config = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": os.fspath(data)},
                "delete": {"enabled": True},
            },
            "http": {
                "addr": f"127.0.0.1:{port}",
                "headers": {"X-Content-Type-Options": ["nosniff"]},
            },
        }
        path = self.layout.path("registry.json")
        path.write_text(json.dumps(config))  # YAML is a superset of JSON
        return ["docker-registry", "serve", os.fspath(path)]
