"""e2e: an Alertmanager notification becomes an Argo Workflow on the real control plane."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from punchingfist.api import Workflow, load_resources
from punchingfist.compiler import compile_workflow
from punchingfist.executors.argo import ArgoExecutor
from punchingfist.server import ServerState, create_app
from punchingfist.store import upgrade
from tests.e2e.controlplane import ROOT, ControlPlane

pytestmark = pytest.mark.timeout(300)

SOURCE = """
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: alertmanager-critical}
spec:
  type: webhook
  config: {path: /webhook/alerts}
  triggerWorkflow: investigate-alert
"""


def test_webhook_to_argo_workflow_once(control_plane: ControlPlane, tmp_path: Path) -> None:
    (workflow,) = load_resources((ROOT / "examples/workflows/investigate-alert.yaml").read_text())
    assert isinstance(workflow, Workflow)
    control_plane.kubectl(
        "apply",
        "-n",
        control_plane.namespace,
        "-f",
        "-",
        stdin=json.dumps(compile_workflow(workflow).manifest),
    )
    url = f"sqlite:///{tmp_path / 'pf.db'}"
    upgrade(url)
    state = ServerState.from_resources(
        load_resources(SOURCE),
        url,
        namespace=control_plane.namespace,
        executor=ArgoExecutor(str(control_plane.kubeconfig)),
        dispatch_interval=0.2,
    )
    payload = json.loads((ROOT / "examples/alerts/pod-crashlooping.json").read_text())
    with TestClient(create_app(state), headers=state.access.headers()) as http:
        (name,) = http.post("/webhook/alerts", json=payload).json()["runs"]
        run: dict[str, Any] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and run.get("status") != "submitted":
            run = http.get(f"/api/v1/runs/{name}").json()
            time.sleep(0.2)
        assert run["status"] == "submitted", run
        for _ in range(3):  # Alertmanager retries: no second Workflow
            assert http.post("/webhook/alerts", json=payload).json()["runs"] == []
        time.sleep(1)
    fingerprint = payload["alerts"][0]["fingerprint"]
    selector = (
        f"punchingfist.io/workflow=investigate-alert,punchingfist.io/fingerprint={fingerprint}"
    )
    created = control_plane.get_json(
        "workflows.argoproj.io", "-n", control_plane.namespace, "-l", selector
    )["items"]
    assert [w["metadata"]["name"] for w in created] == [name]
    spec = created[0]["spec"]
    assert spec["workflowTemplateRef"] == {"name": "investigate-alert"}
    parameters = {p["name"]: p["value"] for p in spec["arguments"]["parameters"]}
    assert json.loads(parameters["event"])["alert"]["alertname"] == "PodCrashLooping"
    assert parameters["source"] == "alertmanager-critical"
    assert parameters["fingerprint"] == payload["alerts"][0]["fingerprint"]
    state.engine.dispose()
