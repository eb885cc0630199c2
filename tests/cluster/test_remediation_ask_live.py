"""Safe remediation (#25) with `onFailure: ask`, through Argo on the real cluster: the operator
compiles the Workflow, `fix-preview` offers a fix that breaks a healthy Deployment (an image
tag that does not exist), `punchingfist approve --step fix` lets it through, `fix` applies it
and its post-check fails, and the run then waits at the second gate, `fix-rollback-approval`,
with the broken image still in place. `punchingfist approve --step fix-rollback` answers that
gate and `fix-rollback` puts the saved template back and verifies it.

Real: the node, Argo's DAG and suspend nodes, the API server, the Deployment controller's
rollout to an image that cannot be pulled, the remediator's RBAC, `punchingfist approve`
against the cluster with the admin kubeconfig.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.cluster.support import NAMESPACE, LiveCluster, ready_template, unique, workflow
from tests.cluster.test_remediation_live import (
    SHOP,
    _available,
    _container,
    _healthy,
    _node,
    _output,
    _until,
)


def _waits_at(cluster: LiveCluster, run: str, gate: str, timeout: float) -> dict[str, Any]:
    """The Argo Workflow once its suspend node `gate` is Running (the run waits there)."""

    def waiting() -> dict[str, Any] | None:
        found = cluster.argo_workflow(run)
        nodes = (found.get("status") or {}).get("nodes") or {}
        at = any(
            n.get("displayName") == gate and n.get("phase") == "Running" for n in nodes.values()
        )
        return found if at else None

    return cluster.wait(
        waiting, f"{run} to wait at {gate}", timeout, lambda: cluster.describe_run(run)
    )


def _approve(cluster: LiveCluster, run: str, step: str) -> str:
    """`punchingfist approve RUN --step STEP` against the cluster; what it printed."""
    argv = [sys.executable, "-m", "punchingfist.cli", "approve", run, "--step", step]
    argv += ["-n", NAMESPACE, "--kubeconfig", str(cluster.layout.kubeconfig)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def _unpulled(cluster: LiveCluster, app: str, image: str) -> bool:
    """A pod of `app` with `image` waits, unable to pull it (ErrImagePull, ImagePullBackOff)."""
    for pod in cluster.get("pods", "-n", SHOP, "-l", f"app={app}")["items"]:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (status.get("state") or {}).get("waiting") or {}
            if status.get("image") == image and "ImagePull" in str(waiting.get("reason")):
                return True
    return False


def _record(workflow_: dict[str, Any], task: str) -> dict[str, Any]:
    """The step record task `task` wrote (its `result` output)."""
    record: dict[str, Any] = json.loads(_output(_node(workflow_, task), "result"))
    return record


@pytest.mark.timeout(600)
def test_through_argo_a_broken_fix_waits_at_its_rollback_gate_and_is_rolled_back_once_approved(
    cluster: LiveCluster,
) -> None:
    app, image, broken = _healthy(cluster, "argo-ask")
    name = unique("ask-fix")
    step = {
        "name": "fix",
        "type": "remediation",
        "approvalTimeoutMinutes": 10,
        "remediation": {
            "action": {
                "action": "set-image",
                "target": {"kind": "Deployment", "namespace": SHOP, "name": app},
                "container": "app",
                "image": broken,
            },
            "policy": {"namespaces": [SHOP]},
            "check": {"readySeconds": 5, "timeoutSeconds": 30},
            "onFailure": "ask",
        },
    }
    cluster.apply(workflow(name, [step]))
    ready_template(cluster, name, timeout=120)
    run = cluster.submit(name)

    _waits_at(cluster, run, "fix-approval", 300)
    assert _container(cluster, app)["image"] == image, "nothing applied before the approval"
    shown = _approve(cluster, run, "fix")
    assert f"+        image: {broken}" in shown, "the preview is shown before the answer"
    assert f"approved: {run} / fix-approval" in shown

    # The fix is applied, its post-check fails: the run waits for the rollback's approval.
    waiting = _waits_at(cluster, run, "fix-rollback-approval", 300)
    applied = _record(waiting, "fix")
    assert _node(waiting, "fix")["phase"] == "Succeeded", "the rollback task decides"
    assert _output(_node(waiting, "fix"), "rollback") == "true"
    assert applied["result"]["outcome"] == "made worse, rollback awaits approval", applied
    assert applied["result"]["applied"] is True and applied["result"]["rollback_pending"] is True
    assert _container(cluster, app)["image"] == broken, "nothing rolled back before approval"
    assert _unpulled(cluster, app, broken), "the new pod cannot pull its image"

    answered = _approve(cluster, run, "fix-rollback")
    # before it answers, the approver sees what failed and what the rollback puts back
    assert f"{run} / fix-rollback-approval: the rollback to approve" in answered, answered
    assert f"Failed fix:       set container app of deployment {SHOP}/{app}" in answered
    assert "Post-check:       made worse" in answered and "Rollback:" in answered
    assert f"approved: {run} / fix-rollback-approval" in answered

    finished = cluster.finished(run, timeout=300)
    # A fix that made things worse fails the run, rolled back or not (the rollback task exits 1).
    assert finished["status"]["phase"] == "Failed", cluster.describe_run(run)
    assert _node(finished, "fix-rollback")["phase"] == "Failed"
    record = _record(finished, "fix-rollback")
    assert record["step"] == "fix" and record["success"] is False, record
    assert record["result"]["outcome"] == "made worse, rolled back", record
    assert record["result"]["verdict"] == "made worse"
    assert record["result"]["rolled_back"] is True
    assert record["result"]["rollback_verified"] is True
    assert record["result"]["rollback_pending"] is False
    assert _container(cluster, app)["image"] == image, "the previous template is back"
    # The operator's record of the run: both gates answered, the rollback's final outcome.
    recorded = cluster.run_record(run, lambda r: r["finished_at"] is not None)
    assert recorded["status"] == "failed", recorded["error"]
    steps = {s["name"]: s for s in recorded["steps"]}
    assert steps["fix-rollback"]["result"]["result"]["outcome"] == "made worse, rolled back"
    answers = {a["gate"]: a["decision"] for a in recorded["approvals"]}
    assert answers == {"fix-approval": "approved", "fix-rollback-approval": "approved"}
    _until(f"{app} to be available again", lambda: _available(cluster, app), timeout=60)
