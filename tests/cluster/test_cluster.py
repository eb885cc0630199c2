"""The cluster as `make cluster-up` leaves it: Argo's controller and the operator running from
the images built here, pulled from the registry on loopback, with the chart's step accounts;
cluster DNS; and nothing it runs listening beyond loopback and its bridge."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from hack.cluster import layout
from hack.cluster.lifecycle import Cluster
from tests.cluster.support import NAMESPACE, LiveCluster, unique


def _app(labels: dict[str, str]) -> str | None:
    return labels.get("app") or labels.get("app.kubernetes.io/name") or labels.get("k8s-app")


def test_argo_and_the_operator_run_from_the_images_built_here(cluster: LiveCluster) -> None:
    pods = cluster.get("pods", "-A")["items"]
    running = {
        (p["metadata"]["namespace"], _app(p["metadata"].get("labels") or {})): p
        for p in pods
        if p["status"].get("phase") == "Running"  # pods of other tests may have no labels
    }
    for key, image in (
        ((layout.ARGO_NAMESPACE, "workflow-controller"), "WORKFLOW_CONTROLLER"),
        ((NAMESPACE, "punchingfist"), "RUNTIME"),
        (("kube-system", "kube-dns"), "COREDNS"),
    ):
        assert key in running, f"{key} is not running: {sorted(running)}"
        (container,) = running[key]["status"]["containerStatuses"]
        assert container["ready"], container
        assert container["image"] == cluster.images[image]
        assert container["image"].startswith(f"{layout.REGISTRY}/punchingfist/")
    controller = cluster.get("deployment", "workflow-controller", "-n", layout.ARGO_NAMESPACE)
    args = controller["spec"]["template"]["spec"]["containers"][0]["args"]
    assert cluster.images["ARGOEXEC"] in args


def test_the_chart_makes_the_step_accounts_and_their_policy(cluster: LiveCluster) -> None:
    accounts = {
        a["metadata"]["name"] for a in cluster.get("serviceaccounts", "-n", NAMESPACE)["items"]
    }
    assert {"punchingfist-investigator", "punchingfist-remediator"} <= accounts
    can = "auth", "can-i", "-n", NAMESPACE
    investigator = f"--as=system:serviceaccount:{NAMESPACE}:punchingfist-investigator"
    remediator = f"--as=system:serviceaccount:{NAMESPACE}:punchingfist-remediator"
    for who in (investigator, remediator):
        assert cluster.kubectl(*can, "create", "workflowtaskresults.argoproj.io", who) == "yes\n"
        assert cluster.kubectl(*can, "get", "secrets", who, check=False).startswith("no")
    assert cluster.kubectl(*can, "get", "pods/log", "-A", investigator) == "yes\n"
    assert cluster.kubectl(*can, "delete", "pods", investigator, check=False).startswith("no")
    assert cluster.kubectl(*can, "patch", "deployments", remediator) == "yes\n"
    assert cluster.kubectl(
        *can, "patch", "deployments", "-n", "default", remediator, check=False
    ).startswith("no")
    policy = cluster.get("networkpolicy", "punchingfist-steps", "-n", NAMESPACE)["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["podSelector"]["matchExpressions"][0]["key"] == "punchingfist.io/task"


def test_service_names_resolve_in_pods(cluster: LiveCluster) -> None:
    """CoreDNS answers for Services: a step can address the operator by name. (The pod's log
    is read once it has finished: `kubectl run -i` can miss the output of a pod that ends
    before it attaches.)"""
    name = unique("dns-check")
    cluster.kubectl(
        "run",
        name,
        "-n",
        NAMESPACE,
        "--restart=Never",
        f"--image={cluster.images['RUNTIME']}",
        "--command",
        "--",
        "python3",
        "-c",
        "import socket; print(socket.gethostbyname("
        f"'punchingfist.{NAMESPACE}.svc.{layout.CLUSTER_DOMAIN}'))",
    )
    cluster.created.append(("pod", name))

    def finished() -> str | None:
        phase = cluster.get("pod", name, "-n", NAMESPACE).get("status", {}).get("phase")
        return phase if phase in ("Succeeded", "Failed") else None

    def described() -> str:
        return cluster.kubectl("describe", "pod", name, "-n", NAMESPACE, check=False)

    phase = cluster.wait(finished, f"pod {name} to finish", 180, described)
    output = cluster.kubectl("logs", name, "-n", NAMESPACE)
    service = cluster.get("service", "punchingfist", "-n", NAMESPACE)
    assert phase == "Succeeded", output
    assert output.strip().splitlines()[-1] == service["spec"]["clusterIP"]


def _listening() -> dict[int, str]:
    """Socket inode -> local address, for every TCP socket in LISTEN and every bound UDP one."""
    found = {}
    for table in ("tcp", "tcp6", "udp", "udp6"):
        lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], int(fields[9])
            if table.startswith("tcp") and state != "0A":  # LISTEN
                continue
            address, port = local.split(":")
            raw = bytes.fromhex(address)  # 32-bit words in the host's (little-endian) order
            ip = ipaddress.ip_address(b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4)))
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            found[inode] = f"{ip}:{int(port, 16)}"
    return found


def test_nothing_the_cluster_runs_listens_beyond_loopback_and_the_bridge(
    cluster: LiveCluster,
) -> None:
    state = Cluster().state()
    assert state is not None
    listening = _listening()
    allowed = {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
        ipaddress.ip_address(layout.NODE_IP),
    }
    seen: dict[str, list[str]] = {}
    for process in state.processes.values():
        for fd in Path(f"/proc/{process.pid}/fd").iterdir():
            target = os.readlink(fd) if fd.is_symlink() else ""
            if target.startswith("socket:["):
                address = listening.get(int(target[8:-1]))
                if address:
                    seen.setdefault(process.name, []).append(address)
    assert {"kube-apiserver", "kubelet", "etcd", "registry"} <= set(seen), seen
    outside = {
        name: [a for a in addresses if ipaddress.ip_address(a.rsplit(":", 1)[0]) not in allowed]
        for name, addresses in seen.items()
    }
    assert not any(outside.values()), f"listening beyond loopback and {layout.NODE_IP}: {outside}"


def test_the_operator_api_lets_rbac_decide_who_reads(cluster: LiveCluster) -> None:
    """The chart's operator checks tokens with TokenReview and asks SubjectAccessReviews (its
    auth-delegator binding): no token is a 401, a token without a binding a 403, a token bound
    to punchingfist-viewer reads."""
    assert cluster.operator_get("/api/v1/runs", token=None)["status"] == 401
    # Bound to a ClusterRole that does not exist: a binding that grants nothing.
    refused = cluster.operator_get("/api/v1/runs", token="nothing")
    assert refused["status"] == 403 and "list runs.punchingfist.io" in refused["body"]
    assert "items" in cluster.operator_get("/api/v1/runs")
