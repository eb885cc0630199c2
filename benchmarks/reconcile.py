"""The controller against a real API server (not a test: it prints figures).

Starts the e2e control plane (etcd + kube-apiserver + Argo's controller, tests/e2e/controlplane.py)
and `punchingfist controller` as its own process, applies 200 Workflow CRs at once and reports
the time until every one is Ready (its WorkflowTemplate applied); then edits the Sink they all
use and reports the time until every template is recompiled; then restarts the controller and
reports how long resuming 200 unchanged Workflows takes and that it rewrote nothing. Peak RSS
of the controller process is read from /proc (VmHWM).
Target: 200 Workflows Ready in < 30 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from tests.e2e.controlplane import ROOT, ControlPlane, read_binaries

COUNT = 200
NAMESPACE = "bench"
TARGET_SECONDS = 30.0
TIMEOUT = 300.0


def workflows() -> list[dict[str, Any]]:
    base = yaml.safe_load((ROOT / "examples/workflows/agent-alert-investigation.yaml").read_text())
    items = []
    for n in range(COUNT):
        item = json.loads(json.dumps(base))
        item["metadata"] = {"name": f"bench-{n:03d}", "namespace": NAMESPACE}
        items.append(item)
    return items


def ready_count(plane: ControlPlane) -> tuple[int, dict[str, str]]:
    items = plane.get_json("workflows.punchingfist.io", "-n", NAMESPACE)["items"]
    ready, hashes = 0, {}
    for item in items:
        status = item.get("status") or {}
        if any(
            c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
        ):
            ready += 1
        hashes[item["metadata"]["name"]] = status.get("inputHash", "")
    return ready, hashes


def template_hashes(plane: ControlPlane) -> dict[str, str]:
    items = plane.get_json("workflowtemplates.argoproj.io", "-n", NAMESPACE)["items"]
    return {
        t["metadata"]["name"]: t["metadata"]["annotations"].get("punchingfist.io/inputs-sha256", "")
        for t in items
    }


def wait(what: str, check: Any, started: float) -> float:
    while time.monotonic() - started < TIMEOUT:
        if check():
            return time.monotonic() - started
        time.sleep(0.25)
    raise SystemExit(f"{what}: not done after {TIMEOUT:.0f} s")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_controller(plane: ControlPlane, log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "punchingfist.cli",
            "controller",
            "--kubeconfig",
            str(plane.kubeconfig),
            "-n",
            NAMESPACE,
        ],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HOME": str(log.parent)},
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main() -> int:
    binaries = read_binaries()
    if binaries is None:
        print("reconcile benchmark skipped: the control plane is not built (make control-plane)")
        return 0
    with tempfile.TemporaryDirectory(prefix="pf-bench-reconcile-") as tmp:
        workdir = Path(tmp)
        plane = ControlPlane(binaries, workdir / "plane")
        plane.start()
        controller = None
        try:
            plane.kubectl("create", "namespace", NAMESPACE)
            config = ROOT / "examples/operatorconfigs/punchingfist-config.yaml"
            plane.kubectl(
                "apply", "-n", NAMESPACE, "-f", str(ROOT / "examples/sinks"), "-f", str(config)
            )
            log = workdir / "controller.log"
            controller = start_controller(plane, log)
            listing = {"apiVersion": "v1", "kind": "List", "items": workflows()}
            started = time.monotonic()
            plane.kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(listing))
            applied = time.monotonic() - started
            all_ready = wait("200 Workflows Ready", lambda: ready_count(plane)[0] == COUNT, started)
            _, hashes = ready_count(plane)
            rss_create = peak_rss_mib(controller.pid)
            cpu_create = cpu_seconds(controller.pid)

            patch = {"spec": {"config": {"channel": "#bench-edited"}}}
            started = time.monotonic()
            plane.kubectl(
                "patch",
                "sinks.punchingfist.io",
                "slack-investigation-results",
                "-n",
                NAMESPACE,
                "--type=merge",
                "-p",
                json.dumps(patch),
            )
            recompiled = wait(
                "200 templates recompiled after a Sink edit",
                lambda: (
                    all(h and h != hashes.get(n) for n, h in template_hashes(plane).items())
                    and len(template_hashes(plane)) == COUNT
                ),
                started,
            )
            rss_edit = peak_rss_mib(controller.pid)
            cpu_edit = cpu_seconds(controller.pid) - cpu_create
            versions = {
                t["metadata"]["name"]: t["metadata"]["resourceVersion"]
                for t in plane.get_json("workflowtemplates.argoproj.io", "-n", NAMESPACE)["items"]
            }
            stop(controller)
            offset = log.stat().st_size
            others = len(list((ROOT / "examples/sinks").glob("*.yaml"))) + 1  # + OperatorConfig
            started = time.monotonic()
            controller = start_controller(plane, log)

            def resumed_all() -> bool:
                text = log.read_bytes()[offset:].decode(errors="replace")
                return text.count("Resuming is processed") >= COUNT + others

            resumed = wait("200 Workflows resumed", resumed_all, started)
            after = {
                t["metadata"]["name"]: t["metadata"]["resourceVersion"]
                for t in plane.get_json("workflowtemplates.argoproj.io", "-n", NAMESPACE)["items"]
            }
            rewritten = sum(1 for name, v in after.items() if versions.get(name) != v)
        finally:
            if controller is not None:
                stop(controller)
            plane.stop()
    print(
        f"reconcile: {COUNT} Workflow CRs (agent-alert-investigation, 3 sinks each) on a real "
        "kube-apiserver"
    )
    print(f"  kubectl apply --server-side, {COUNT} CRs {applied:5.2f} s")
    print(
        f"  all {COUNT} Ready (apply included)     {all_ready:6.2f} s   "
        f"({COUNT / all_ready:.0f} Workflows/s; target < {TARGET_SECONDS:.0f} s: "
        f"{'met' if all_ready < TARGET_SECONDS else 'MISSED'})"
    )
    print(f"  Sink edit -> {COUNT} recompiled        {recompiled:6.2f} s")
    print(
        f"  restart -> {COUNT} resumed             {resumed:6.2f} s   "
        f"({rewritten} templates rewritten)"
    )
    print(
        f"  controller CPU time                {cpu_create:6.2f} s (create), "
        f"{cpu_edit:.2f} s (Sink edit); {os.cpu_count()} CPUs shared with the control plane"
    )
    print(
        f"  controller peak RSS                {max(rss_create, rss_edit):6.1f} MiB "
        f"(after create {rss_create:.1f}, after Sink edit {rss_edit:.1f})"
    )
    # Figures, not a gate: a missed target is printed above (the restart's rewrites are
    # asserted by tests/e2e/test_controller_reconcile.py).
    return 0


if __name__ == "__main__":
    sys.exit(main())
