"""e2e helpers: an approval gate run by the real Argo controller without pods.

No kubelet runs in the e2e tier, so the gate is reached without pods: the compiled gate and
action are run with the approval-request task left out. The gates themselves (answered with
`argo node set`, the REST API, a signed Slack click, or by their deadline) are tested with real
runs on the cluster: tests/cluster/test_tracking_real.py and test_main_job.py.
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

from punchingfist.compiler import compile_workflow
from tests.builders import make_workflow
from tests.e2e.controlplane import ControlPlane


def gated_run(name: str, timeout_minutes: float) -> dict[str, Any]:
    workflow = make_workflow(
        [
            {
                "name": "fix",
                "type": "cli",
                "command": "kubectl rollout restart deploy/x",
                "approvalRequired": True,
                "approvalTimeoutMinutes": timeout_minutes,
            }
        ],
        name="gated",
    )
    spec = copy.deepcopy(compile_workflow(workflow).manifest["spec"])
    main = next(t for t in spec["templates"] if t["name"] == "main")
    main["dag"]["tasks"] = [
        {k: v for k, v in task.items() if k != "depends"}
        if task["name"] == "fix-approval"
        else task
        for task in main["dag"]["tasks"]
        if task["name"] != "fix-approval-request"
    ]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": spec,
    }


def wait(control_plane: ControlPlane, name: str, check: Any, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        run = control_plane.get_json("workflows.argoproj.io", name, "-n", control_plane.namespace)
        nodes = {n["displayName"]: n for n in run.get("status", {}).get("nodes", {}).values()}
        if check(run, nodes):
            return nodes
        time.sleep(0.5)
    raise AssertionError(f"{what}: {json.dumps(run.get('status', {}), indent=1)[:3000]}")


def suspended(run: dict[str, Any], nodes: dict[str, Any]) -> bool:
    return nodes.get("fix-approval", {}).get("phase") == "Running"
