"""e2e: OperatorConfig concurrency `criticalBypass` on the real control plane.

With `criticalBypass: true` every Workflow gets a second WorkflowTemplate, `<name>-critical`,
its template without the semaphores. The controller applies it owned by the Workflow, names it
in the status, deletes it when the bypass is turned off and when the Workflow goes. Argo's own
workflow-controller then keeps a second warning run over the Workflow's limit Pending ("Waiting
for … lock") while a critical run, which the Argo executor starts from the critical template,
starts at once.

No kubelet runs here: a run's step pod stays Pending, so a run that got its lock stays Running
and holds it until it is deleted.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from punchingfist.api import load_resources
from punchingfist.api.limits import CONFIGMAP
from punchingfist.compiler import compile_resources
from punchingfist.controller import ControllerOptions, OperatorThread, connect
from punchingfist.executors.argo import ArgoExecutor
from punchingfist.runs.dispatching import RunSubmission
from tests.e2e.controlplane import ControlPlane
from tests.e2e.test_controller_reconcile import eventually

pytestmark = pytest.mark.timeout(300)

NAMESPACE = "pf-critical"
"""The controller's namespace (the Argo controller manages only `control_plane.namespace`)."""
TEMPLATES = "workflowtemplates.argoproj.io"
RESOURCES = """
apiVersion: punchingfist.io/v1alpha1
kind: OperatorConfig
metadata: {name: punchingfist-config}
spec:
  concurrency: {maxRunning: 5, perWorkflow: 1, criticalBypass: true}
---
apiVersion: punchingfist.io/v1alpha1
kind: Workflow
metadata: {name: %s}
spec:
  steps: [{name: look, type: cli, command: "echo looking"}]
"""


def _get(plane: ControlPlane, kind: str, name: str, namespace: str) -> Any:
    result = plane.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def _bypass(plane: ControlPlane, on: bool) -> None:
    patch = {"spec": {"concurrency": {"criticalBypass": on}}}
    plane.kubectl(
        "patch",
        "operatorconfigs.punchingfist.io",
        "punchingfist-config",
        "-n",
        NAMESPACE,
        "--type",
        "merge",
        "-p",
        json.dumps(patch),
    )


@pytest.fixture(scope="module")
def operator(control_plane: ControlPlane) -> Iterator[OperatorThread]:
    control_plane.kubectl("create", "namespace", NAMESPACE)
    options = ControllerOptions(namespaces=(NAMESPACE,))
    thread = OperatorThread(connect(control_plane.kubeconfig, options=options))
    try:
        thread.start(timeout=60)
        yield thread
    finally:
        thread.stop()
        control_plane.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def test_the_controller_keeps_the_critical_template_beside_the_workflows(
    control_plane: ControlPlane, operator: OperatorThread
) -> None:
    control_plane.kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=RESOURCES % "triage")
    control_plane.wait_condition(
        "Ready", "-n", NAMESPACE, "workflows.punchingfist.io/triage", timeout=60
    )
    workflow = _get(control_plane, "workflows.punchingfist.io", "triage", NAMESPACE)
    assert workflow["status"]["criticalTemplateName"] == "triage-critical"
    (expected,) = compile_resources(load_resources(RESOURCES % "triage"))
    assert expected.critical is not None
    own = _get(control_plane, TEMPLATES, "triage", NAMESPACE)
    critical = _get(control_plane, TEMPLATES, "triage-critical", NAMESPACE)
    assert critical["metadata"]["ownerReferences"] == own["metadata"]["ownerReferences"]
    assert [o["uid"] for o in own["metadata"]["ownerReferences"]] == [workflow["metadata"]["uid"]]
    assert critical["metadata"]["labels"]["punchingfist.io/workflow"] == "triage"
    assert critical["metadata"]["annotations"]["punchingfist.io/critical-bypass-of"] == "triage"
    assert critical["spec"] == expected.critical["spec"]
    assert "synchronization" not in critical["spec"] and own["spec"]["synchronization"]
    sizes = _get(control_plane, "configmap", CONFIGMAP, NAMESPACE)["data"]
    assert sizes == {"global": "5", "workflow.triage": "1"}  # no key for the critical one

    _bypass(control_plane, False)
    eventually(
        lambda: (
            _get(control_plane, TEMPLATES, "triage-critical", NAMESPACE) is None
            and "criticalTemplateName"
            not in _get(control_plane, "workflows.punchingfist.io", "triage", NAMESPACE)["status"]
        ),
        "the critical template to go with criticalBypass off, and the status to say so",
    )
    assert _get(control_plane, TEMPLATES, "triage", NAMESPACE)["spec"]["synchronization"]

    _bypass(control_plane, True)
    eventually(
        lambda: _get(control_plane, TEMPLATES, "triage-critical", NAMESPACE),
        "the critical template to come back with criticalBypass on",
    )
    control_plane.kubectl("delete", "-n", NAMESPACE, "workflows.punchingfist.io", "triage")
    eventually(
        lambda: (
            not [
                name
                for name in ("triage", "triage-critical")
                if _get(control_plane, TEMPLATES, name, NAMESPACE) is not None
            ]
        ),
        "both templates of a deleted Workflow to go",
    )


def _status(plane: ControlPlane, run: str) -> dict[str, Any]:
    found = _get(plane, "workflows.argoproj.io", run, plane.namespace)
    return dict((found or {}).get("status") or {})


def test_a_critical_run_does_not_wait_for_the_lock_a_warning_run_waits_for(
    control_plane: ControlPlane,
) -> None:
    namespace = control_plane.namespace
    name = f"bypass-{uuid.uuid4().hex[:8]}"
    compiled = compile_resources(load_resources(RESOURCES % name))
    documents = [d for c in compiled for d in c.documents]
    assert [d["metadata"]["name"] for d in documents] == [CONFIGMAP, name, f"{name}-critical"]
    control_plane.kubectl(
        "apply",
        "--server-side",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": documents}),
    )
    argo = ArgoExecutor(str(control_plane.kubeconfig))
    runs: list[str] = []

    def submit(severity: str) -> str:
        run = f"{name}-{severity}-{len(runs)}"
        event = {"alert": {"alertname": "Down", "severity": severity, "labels": {}}}
        argo.submit(RunSubmission(run, namespace, name, {"event": event, "source": "e2e"}))
        runs.append(run)
        return run

    try:
        holder = submit("warning")
        eventually(
            lambda: _status(control_plane, holder).get("phase") == "Running",
            f"{holder} to take the Workflow's only slot",
        )
        waiting = submit("warning")
        status = eventually(
            lambda: (s := _status(control_plane, waiting)).get("message") and s,
            f"{waiting} to say why it waits",
        )
        key = f"workflow.{name}"
        assert status["phase"] == "Pending", status
        assert "Waiting for" in status["message"] and f"{key} lock" in status["message"], status
        assert key in json.dumps(status["synchronization"]["semaphore"])

        critical = submit("critical")
        run = _get(control_plane, "workflows.argoproj.io", critical, namespace)
        assert run["spec"]["workflowTemplateRef"] == {"name": f"{name}-critical"}
        assert run["metadata"]["labels"]["punchingfist.io/workflow"] == name
        started = eventually(
            lambda: (s := _status(control_plane, critical)).get("phase") == "Running" and s,
            f"{critical} to start while the Workflow's slot is taken",
        )
        assert "Waiting for" not in started.get("message", ""), started
        assert not started.get("synchronization"), started  # it holds no lock
        # It took no slot either: the warning run still waits for the first one's.
        status = _status(control_plane, waiting)
        assert status["phase"] == "Pending" and f"{key} lock" in status["message"], status

        control_plane.kubectl("delete", "-n", namespace, "workflows.argoproj.io", holder)
        eventually(
            lambda: _status(control_plane, waiting).get("phase") == "Running",
            f"{waiting} to start once the slot is free",
        )
    finally:
        control_plane.kubectl(
            "delete", "-n", namespace, "workflows.argoproj.io", *runs, "--wait=false", check=False
        )
        control_plane.kubectl(
            "delete", "-n", namespace, TEMPLATES, name, f"{name}-critical", check=False
        )
        control_plane.kubectl("delete", "-n", namespace, "configmap", CONFIGMAP, check=False)
