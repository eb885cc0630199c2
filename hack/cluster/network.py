"""The pod network: a bridge made before anything starts, the CNI config that uses it, and the
cleanup of what the CNI plugins and kube-proxy leave in the kernel (iptables chains, sysctls).

Pods get addresses from POD_SUBNET on the bridge; the bridge's own address is the node's, so
the API server, the kubelet and test servers that pods must reach listen there. Nothing is
masqueraded: pods reach this machine and each other, not the outside.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

from hack.cluster import layout
from hack.cluster.processes import NotUp

CHAIN_PREFIXES = ("KUBE-", "CNI-")
NETWORK = "punchingfist"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise NotUp(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")
    return done


def bridge_exists() -> bool:
    return _ip("link", "show", layout.BRIDGE, check=False).returncode == 0


def create_bridge() -> None:
    """The bridge with the node's address, up (idempotent)."""
    if not bridge_exists():
        _ip("link", "add", layout.BRIDGE, "type", "bridge")
    prefix = layout.POD_SUBNET.split("/")[1]
    addresses = _ip("-o", "-4", "addr", "show", "dev", layout.BRIDGE).stdout
    if f"{layout.NODE_IP}/{prefix}" not in addresses:
        _ip("addr", "add", f"{layout.NODE_IP}/{prefix}", "dev", layout.BRIDGE)
    _ip("link", "set", layout.BRIDGE, "up")


def delete_bridge() -> None:
    if bridge_exists():
        _ip("link", "delete", layout.BRIDGE, check=False)


def write_cni_config(directory: Path, ipam_dir: Path) -> Path:
    """bridge (the pods' gateway, hairpin for Services that lead back to the same pod),
    host-local IPAM with its leases in the cluster's state, portmap for hostPorts."""
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": layout.BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(ipam_dir),
                    "ranges": [
                        [
                            {
                                "subnet": layout.POD_SUBNET,
                                "rangeStart": layout.POD_RANGE_START,
                                "gateway": layout.NODE_IP,
                            }
                        ]
                    ],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    path = directory / "10-punchingfist.conflist"
    path.write_text(json.dumps(config, indent=2))
    return path


def read_ip_forward() -> str:
    return IP_FORWARD.read_text().strip()


def restore_ip_forward(value: str | None) -> None:
    """The bridge plugin turns forwarding on; put back what the machine had."""
    if value in ("0", "1") and read_ip_forward() != value:
        IP_FORWARD.write_text(value)


def leftover_chains() -> list[str]:
    """Our chains still in the kernel (after `remove_chains`, none should be)."""
    found = []
    for tool in ("iptables-save", "ip6tables-save"):
        listing = subprocess.run([tool], capture_output=True, text=True)
        found += [
            f"{tool}: {line[1:].split()[0]}"
            for line in listing.stdout.splitlines()
            if line.startswith(":") and line[1:].startswith(CHAIN_PREFIXES)
        ]
    return found


def remove_chains() -> list[str]:
    """Delete the KUBE-* and CNI-* chains (and the rules that jump to them) from every table,
    for IPv4 and IPv6. Returns what it removed, for the teardown's report."""
    removed = []
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            removed += _remove_chains(tool, table)
    return removed


def _remove_chains(tool: str, table: str) -> list[str]:
    listing = subprocess.run([tool, "-t", table, "-S"], capture_output=True, text=True)
    if listing.returncode != 0:
        return []
    ours = []
    for line in listing.stdout.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "-N" and words[1].startswith(CHAIN_PREFIXES):
            ours.append(words[1])
    for line in listing.stdout.splitlines():
        words = shlex.split(line)  # comments are quoted: "kubernetes forwarding rules"
        if len(words) > 2 and words[0] == "-A" and not words[1].startswith(CHAIN_PREFIXES):
            target = words[words.index("-j") + 1] if "-j" in words else ""
            if target.startswith(CHAIN_PREFIXES):
                subprocess.run([tool, "-t", table, "-D", *words[1:]], capture_output=True)
    for chain in ours:
        subprocess.run([tool, "-t", table, "-F", chain], capture_output=True)
    for chain in ours:
        subprocess.run([tool, "-t", table, "-X", chain], capture_output=True)
    return [f"{tool}/{table}/{chain}" for chain in ours]


def remove_cni_results() -> int:
    """libcni's cache of our network's attachments (/var/lib/cni/results, outside the state)."""
    results = Path("/var/lib/cni/results")
    count = 0
    for path in results.glob(f"{NETWORK}-*"):
        path.unlink(missing_ok=True)
        count += 1
    return count
