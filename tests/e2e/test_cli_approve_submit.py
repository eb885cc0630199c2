"""e2e: `punchingfist approve` answers a real Argo suspend node (directly, or through the
server), and `punchingfist submit` starts a run from a compiled WorkflowTemplate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from punchingfist import cli
from punchingfist.api import Workflow, load_resources
from punchingfist.compiler import compile_workflow
from punchingfist.controller.tracking import track
from punchingfist.executors.argo import ArgoExecutor
from punchingfist.runs.metrics import Metrics
from punchingfist.server import ServerState, create_app
from punchingfist.store import WorkflowRun, upgrade
from tests.e2e.controlplane import ROOT, ControlPlane
from tests.e2e.gates import gated_run, suspended, wait
from tests.integration.servers import uvicorn_app

pytestmark = pytest.mark.timeout(300)


def start_gated(control_plane: ControlPlane, name: str) -> None:
    control_plane.kubectl(
        "create", "-n", control_plane.namespace, "-f", "-", stdin=json.dumps(gated_run(name, 60))
    )
    wait(control_plane, name, suspended, "the run never reached the approval gate")


def punchingfist(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def outputs(node: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p.get("value") for p in node["outputs"]["parameters"]}


def main_env(control_plane: ControlPlane, name: str) -> dict[str, str]:
    selector = f"workflows.argoproj.io/workflow={name}"
    (pod,) = control_plane.get_json("pods", "-n", control_plane.namespace, "-l", selector)["items"]
    main = next(c for c in pod["spec"]["containers"] if c["name"] == "main")
    return {e["name"]: e.get("value") for e in main["env"]}


def test_approve_resumes_the_gate_as_argo_resume_does(
    control_plane: ControlPlane, capsys: pytest.CaptureFixture[str]
) -> None:
    name, kubeconfig = "cli-approved", str(control_plane.kubeconfig)
    start_gated(control_plane, name)
    code, _, err = punchingfist(
        capsys,
        "approve",
        name,
        "--step",
        "nope",
        "--kubeconfig",
        kubeconfig,
        "-n",
        control_plane.namespace,
    )
    assert code == 1 and "not waiting at 'nope-approval' (it waits at fix-approval)" in err
    code, out, err = punchingfist(
        capsys,
        "approve",
        name,
        "--comment",
        "ship it",
        "--kubeconfig",
        kubeconfig,
        "-n",
        control_plane.namespace,
    )
    assert code == 0, err
    assert out.strip() == f"approved: {name} / fix-approval (as e2e-admin)"
    nodes = wait(control_plane, name, lambda r, n: "fix" in n, "the approved step never started")
    assert nodes["fix-approval"]["phase"] == "Succeeded"
    assert outputs(nodes["fix-approval"]) == {
        "approved": "true",
        "approver": "e2e-admin",
        "comment": "ship it",
    }
    env = main_env(control_plane, name)
    assert (env["PF_APPROVED"], env["PF_APPROVER"], env["PF_APPROVAL_COMMENT"]) == (
        "true",
        "e2e-admin",
        "ship it",
    )
    code, _, err = punchingfist(
        capsys, "approve", name, "--kubeconfig", kubeconfig, "-n", control_plane.namespace
    )
    assert code == 1 and "waits at no approval gate" in err


def test_deny_skips_the_gated_step(
    control_plane: ControlPlane, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "cli-denied"
    start_gated(control_plane, name)
    code, out, err = punchingfist(
        capsys,
        "approve",
        name,
        "--deny",
        "--step",
        "fix",
        "--kubeconfig",
        str(control_plane.kubeconfig),
    )
    assert code == 0, err  # the namespace is the kubeconfig context's
    assert out.strip() == f"denied: {name} / fix-approval (as e2e-admin)"
    nodes = wait(
        control_plane,
        name,
        lambda r, n: r.get("status", {}).get("phase") == "Succeeded",
        "the denied run did not finish",
    )
    assert outputs(nodes["fix-approval"])["approved"] == "false"
    assert nodes["fix"]["phase"] == "Skipped"


def test_approvers_of_the_operatorconfig_are_enforced(
    control_plane: ControlPlane, capsys: pytest.CaptureFixture[str]
) -> None:
    name, namespace = "cli-not-allowed", control_plane.namespace
    start_gated(control_plane, name)
    config = {
        "apiVersion": "punchingfist.io/v1alpha1",
        "kind": "OperatorConfig",
        "metadata": {"name": "approvers-only", "namespace": namespace},
        "spec": {"approvals": {"approvers": ["U0SOMEONE", "carol"]}},
    }
    control_plane.kubectl("apply", "-f", "-", stdin=json.dumps(config))
    try:
        code, _, err = punchingfist(
            capsys, "approve", name, "--kubeconfig", str(control_plane.kubeconfig), "-n", namespace
        )
    finally:
        control_plane.kubectl(
            "delete", "operatorconfigs.punchingfist.io", "approvers-only", "-n", namespace
        )
    assert code == 1 and "'e2e-admin' may not answer approval gates" in err
    nodes = wait(control_plane, name, suspended, "the gate must still wait")
    assert nodes["fix-approval"]["phase"] == "Running"


def test_approve_through_the_server(
    control_plane: ControlPlane, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    name, namespace = "cli-via-server", control_plane.namespace
    start_gated(control_plane, name)
    url = f"sqlite:///{tmp_path / 'pf.db'}"
    upgrade(url)
    state = ServerState.from_resources(
        [], url, namespace=namespace, executor=ArgoExecutor(str(control_plane.kubeconfig))
    )
    with state.sessions.begin() as session:
        session.add(WorkflowRun(name=name, namespace=namespace, workflow_name="gated"))
    # The run tracker lists the waiting gate as a pending approval: no --step needed.
    workflow = control_plane.get_json("workflows.argoproj.io", name, "-n", namespace)
    workflow["metadata"].setdefault("labels", {})["punchingfist.io/workflow"] = "gated"
    track(workflow, state.sessions, Metrics(CollectorRegistry()))
    token = tmp_path / "api-token"
    token.write_text(state.access.headers()["Authorization"].removeprefix("Bearer "))
    with uvicorn_app(create_app(state)) as server:
        answer = (
            "approve",
            name,
            "--server",
            server,
            "--token-file",
            str(token),
            "--approver",
            "carol",
        )
        code, out, err = punchingfist(capsys, *answer, "--comment", "via api")
        assert code == 0, err
        assert out.strip() == f"approved: {name} / fix-approval (as carol)"
        code, _, err = punchingfist(capsys, *answer, "--step", "fix")
        assert code == 1 and "the server refused (409)" in err
    nodes = wait(control_plane, name, lambda r, n: "fix" in n, "the approved step never started")
    assert outputs(nodes["fix-approval"]) == {
        "approved": "true",
        "approver": "carol",
        "comment": "via api",
    }
    state.engine.dispose()


def test_submit_starts_a_run_from_the_template(
    control_plane: ControlPlane, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    namespace, kubeconfig = control_plane.namespace, str(control_plane.kubeconfig)
    (workflow,) = load_resources((ROOT / "examples/workflows/investigate-alert.yaml").read_text())
    assert isinstance(workflow, Workflow)
    control_plane.kubectl(
        "apply", "-n", namespace, "-f", "-", stdin=json.dumps(compile_workflow(workflow).manifest)
    )
    # Its own fingerprint: other tests select the example alert's runs by fingerprint.
    payload = json.loads((ROOT / "examples/alerts/pod-crashlooping.json").read_text())
    payload["alerts"][0]["fingerprint"] = "5ab3177ed0adb0c0"
    alert = tmp_path / "alert.json"
    alert.write_text(json.dumps(payload))
    code, out, err = punchingfist(
        capsys,
        "submit",
        "investigate-alert",
        "--alert",
        str(alert),
        "--set",
        "context.ticket=OPS-1",
        "--set",
        "context.attempt=2",
        "--kubeconfig",
        kubeconfig,
        "--argo-ui",
        "https://argo.example.com/",
    )
    assert code == 0, err
    name, link = out.split()
    assert name.startswith("investigate-alert-") and len(name) == len("investigate-alert-") + 5
    assert link == f"https://argo.example.com/workflows/{namespace}/{name}"
    created = control_plane.get_json("workflows.argoproj.io", name, "-n", namespace)
    assert created["spec"]["workflowTemplateRef"] == {"name": "investigate-alert"}
    parameters = {p["name"]: p["value"] for p in created["spec"]["arguments"]["parameters"]}
    event = json.loads(parameters["event"])
    assert event["alert"]["alertname"] == "PodCrashLooping"
    assert event["context"] == {"ticket": "OPS-1", "attempt": 2}
    assert (parameters["source"], parameters["fingerprint"]) == ("manual", "5ab3177ed0adb0c0")
    assert created["metadata"]["labels"]["punchingfist.io/workflow"] == "investigate-alert"
    code, _, err = punchingfist(
        capsys,
        "submit",
        "no-such-workflow",
        "--set",
        "a=b",
        "--kubeconfig",
        kubeconfig,
        "-n",
        namespace,
    )
    assert code == 1 and "no WorkflowTemplate 'no-such-workflow' in namespace 'e2e'" in err
    code, _, err = punchingfist(
        capsys, "submit", "investigate-alert", "--set", "novalue", "--kubeconfig", kubeconfig
    )
    assert code == 1 and "write KEY=VALUE" in err
