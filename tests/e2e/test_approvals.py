"""e2e: the approval gate (D5) against the real Argo controller, resumed the way users do it.

No kubelet runs here, so the gate is reached without pods: the compiled gate and action are
run with the approval-request task left out. Approving with `argo node set` + `argo resume`
starts the action's pod; denying or letting the deadline pass skips the action.
"""

from __future__ import annotations

import copy
import json
import subprocess
import time
from typing import Any

import pytest

from punchingfist.compiler import compile_workflow
from tests.builders import make_workflow
from tests.e2e.controlplane import ControlPlane

pytestmark = pytest.mark.timeout(300)


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


def argo(binaries: dict[str, str], control_plane: ControlPlane, *args: str) -> None:
    result = subprocess.run(
        [binaries["ARGO"], *args, "-n", control_plane.namespace],
        env={
            "KUBECONFIG": str(control_plane.kubeconfig),
            "PATH": "/usr/bin:/bin",
            "HOME": str(control_plane.workdir),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("decision", ["true", "false"])
def test_gate_resumed_with_argo_node_set(
    control_plane: ControlPlane, binaries: dict[str, str], decision: str
) -> None:
    name = f"gate-{'approved' if decision == 'true' else 'denied'}"
    control_plane.kubectl(
        "create", "-n", control_plane.namespace, "-f", "-", stdin=json.dumps(gated_run(name, 60))
    )
    wait(control_plane, name, suspended, "the run never reached the approval gate")
    selector = "displayName=fix-approval"
    argo(
        binaries,
        control_plane,
        "node",
        "set",
        name,
        "--node-field-selector",
        selector,
        "--output-parameter",
        f"approved={decision}",
        "--output-parameter",
        "approver=alice",
        "--output-parameter",
        "comment=e2e",
    )
    argo(binaries, control_plane, "resume", name, "--node-field-selector", selector)
    if decision == "true":
        nodes = wait(
            control_plane, name, lambda r, n: "fix" in n, "the approved step never started"
        )
        assert nodes["fix"]["phase"] in ("Pending", "Running")
        pods = control_plane.get_json(
            "pods", "-n", control_plane.namespace, "-l", f"workflows.argoproj.io/workflow={name}"
        )["items"]
        (pod,) = pods
        main = next(c for c in pod["spec"]["containers"] if c["name"] == "main")
        env = {e["name"]: e.get("value") for e in main["env"]}
        assert (env["PF_APPROVED"], env["PF_APPROVER"]) == ("true", "alice")
    else:
        nodes = wait(
            control_plane,
            name,
            lambda r, n: r.get("status", {}).get("phase") == "Succeeded",
            "the denied run did not finish",
        )
        assert nodes["fix"]["phase"] == "Skipped"


def test_gate_deadline_means_denied(control_plane: ControlPlane) -> None:
    name = "gate-timeout"
    control_plane.kubectl(
        "create", "-n", control_plane.namespace, "-f", "-", stdin=json.dumps(gated_run(name, 0.05))
    )  # 3 seconds
    nodes = wait(
        control_plane,
        name,
        lambda r, n: r.get("status", {}).get("phase") == "Succeeded",
        "the run did not finish after the approval deadline",
    )
    assert nodes["fix-approval"]["phase"] == "Succeeded"
    outputs = {p["name"]: p.get("value") for p in nodes["fix-approval"]["outputs"]["parameters"]}
    assert outputs["approved"] == "false"
    assert nodes["fix"]["phase"] == "Skipped"


def test_gate_answered_through_the_server_api(control_plane: ControlPlane, tmp_path: Any) -> None:
    """The REST approval endpoint resumes the real suspend node (ArgoExecutor.resume)."""
    from fastapi.testclient import TestClient

    from punchingfist.executors.argo import ArgoExecutor
    from punchingfist.server import ServerState, create_app
    from punchingfist.store import WorkflowRun, upgrade

    name = "gate-rest"
    control_plane.kubectl(
        "create", "-n", control_plane.namespace, "-f", "-", stdin=json.dumps(gated_run(name, 60))
    )
    wait(control_plane, name, suspended, "the run never reached the approval gate")
    url = f"sqlite:///{tmp_path / 'pf.db'}"
    upgrade(url)
    state = ServerState.from_resources(
        [],
        url,
        namespace=control_plane.namespace,
        executor=ArgoExecutor(str(control_plane.kubeconfig)),
    )
    with state.sessions.begin() as session:
        session.add(
            WorkflowRun(name=name, namespace=control_plane.namespace, workflow_name="gated")
        )
    with TestClient(create_app(state), headers=state.access.headers()) as http:
        answer = {"decision": "approve", "approver": "carol", "comment": "ship it"}
        response = http.post(f"/api/v1/runs/{name}/approvals/fix-approval", json=answer)
        assert response.status_code == 200, response.text
        nodes = wait(
            control_plane, name, lambda r, n: "fix" in n, "the approved step never started"
        )
        assert nodes["fix-approval"]["phase"] == "Succeeded"
        selector = f"workflows.argoproj.io/workflow={name}"
        pods = control_plane.get_json("pods", "-n", control_plane.namespace, "-l", selector)
        pod = pods["items"][0]
        main = next(c for c in pod["spec"]["containers"] if c["name"] == "main")
        env = {e["name"]: e.get("value") for e in main["env"]}
        assert (env["PF_APPROVED"], env["PF_APPROVER"], env["PF_APPROVAL_COMMENT"]) == (
            "true",
            "carol",
            "ship it",
        )
        again = http.post(f"/api/v1/runs/{name}/approvals/fix-approval", json=answer)
        assert again.status_code == 409
    state.engine.dispose()


def test_gate_answered_by_a_signed_slack_button(control_plane: ControlPlane, tmp_path: Any) -> None:
    """A Slack Approve click (signed with the app's signing secret) resumes the real suspend
    node the way `argo resume` does; a click with a bad signature changes nothing."""
    from fastapi.testclient import TestClient

    from punchingfist.executors.argo import ArgoExecutor
    from punchingfist.server import ServerState, create_app
    from punchingfist.store import WorkflowRun, upgrade
    from tests.integration.test_approvals_api import slack_request

    name = "gate-slack"
    secret = "e2e-signing-secret"
    control_plane.kubectl(
        "create", "-n", control_plane.namespace, "-f", "-", stdin=json.dumps(gated_run(name, 60))
    )
    wait(control_plane, name, suspended, "the run never reached the approval gate")
    url = f"sqlite:///{tmp_path / 'pf.db'}"
    upgrade(url)
    state = ServerState.from_resources(
        [],
        url,
        namespace=control_plane.namespace,
        slack_signing_secret=secret,
        approvers=frozenset({"U0ALICE"}),
        executor=ArgoExecutor(str(control_plane.kubeconfig)),
    )
    with state.sessions.begin() as session:
        session.add(
            WorkflowRun(name=name, namespace=control_plane.namespace, workflow_name="gated")
        )
    click = {
        "type": "block_actions",
        "user": {"id": "U0ALICE", "username": "alice"},
        "actions": [
            {
                "action_id": "approve",
                "value": json.dumps({"run": name, "gate": "fix-approval", "decision": "approve"}),
            }
        ],
    }
    with TestClient(create_app(state), headers=state.access.headers()) as http:
        forged, headers = slack_request(click, secret="not-the-secret")
        assert http.post("/slack/interactions", content=forged, headers=headers).status_code == 401
        run = control_plane.get_json("workflows.argoproj.io", name, "-n", control_plane.namespace)
        nodes = {n["displayName"]: n for n in run["status"]["nodes"].values()}
        assert suspended(run, nodes), "a forged click must not resume the gate"
        body, headers = slack_request(click, secret=secret)
        response = http.post("/slack/interactions", content=body, headers=headers)
        assert response.status_code == 200 and "Approved by alice" in response.text
        nodes = wait(
            control_plane, name, lambda r, n: "fix" in n, "the approved step never started"
        )
    gate = nodes["fix-approval"]
    assert gate["phase"] == "Succeeded"
    outputs = {p["name"]: p.get("value") for p in gate["outputs"]["parameters"]}
    # the fixed Slack user id is the approver; the changeable name only shows in the comment
    assert (outputs["approved"], outputs["approver"]) == ("true", "slack:U0ALICE")
    assert outputs["comment"] == "via Slack by alice"
    state.engine.dispose()
