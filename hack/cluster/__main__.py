"""`python -m hack.cluster up|down|status`: the single-node cluster (make cluster-up/-down)."""

from __future__ import annotations

import argparse
import sys
import time

from hack.cluster.lifecycle import Cluster, say, status_lines
from hack.cluster.processes import NotUp

USAGE = """\
A single-node Kubernetes cluster on this machine, for the cluster test tier and for trying the
operator: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy,
containerd + runc, a CNI bridge (10.244.0.0/24 on pf0), CoreDNS, a registry on localhost:5000
with the images built here, Argo's workflow-controller and the Punching Fist chart. Build it
first with hack/cluster/build.sh (`make cluster-up` does both). Needs root.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hack.cluster", description=USAGE)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the cluster (or reuse the running one), install")
    up.add_argument(
        "--no-install",
        action="store_true",
        help="only the node: no CoreDNS, Argo, chart or examples",
    )
    commands.add_parser("down", help="stop every process it started, remove its state")
    commands.add_parser("status", help="its processes, and whether its API answers")
    args = parser.parse_args(argv)
    cluster = Cluster()
    began = time.monotonic()
    try:
        if args.command == "up":
            cluster.up(install=not args.no_install)
            say(f"ready in {time.monotonic() - began:.0f} s. Use it with:")
            print(f"  export KUBECONFIG={cluster.layout.kubeconfig}")
            print("  kubectl get pods -A")
            print("  make cluster-down   # stops it and removes its state")
        elif args.command == "down":
            cluster.down()
        else:
            print("\n".join(status_lines(cluster)))
            return 0 if not cluster.running() else 1
    except NotUp as error:
        say(f"error: {error}")
        if args.command == "up":
            say(
                "the processes started so far keep running for a look; `make cluster-down` "
                "stops them"
            )
        return 1
    except KeyboardInterrupt:
        say("interrupted; `make cluster-down` stops what was started")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
