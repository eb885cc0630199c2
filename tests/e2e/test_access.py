"""The control surface in the cluster (D13): bearer tokens checked by a real kube-apiserver's
TokenReview, each request authorized by its SubjectAccessReview, so RBAC decides who reads,
who approves, who reports and who triggers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from punchingfist.api import load_resources
from punchingfist.kube import kube_api_client
from punchingfist.server import ServerState, create_app
from punchingfist.server.access import KubernetesAccess
from punchingfist.store import WorkflowRun, upgrade
from tests.e2e.controlplane import ControlPlane
from tests.integration.test_approvals_api import ResumingExecutor

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ROLES = """
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pf-reader}
rules:
  - apiGroups: [punchingfist.io]
    resources: [alerts, incidents, runs, approvals]
    verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pf-approver}
rules:
  - apiGroups: [punchingfist.io]
    resources: [runs, approvals]
    verbs: [get, list, approve]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pf-reporter}
rules:
  - apiGroups: [punchingfist.io]
    resources: [runs]
    verbs: [report]
  - apiGroups: [punchingfist.io]
    resources: [sources]
    verbs: [trigger]
"""
ACCOUNTS = {
    "reader": "pf-reader",
    "approver": "pf-approver",
    "reporter": "pf-reporter",
    "nobody": None,
}
API_SOURCE = """
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: manual}
spec:
  type: api
  triggerWorkflow: agent-alert-investigation
"""


@pytest.fixture(scope="module")
def tokens(control_plane: ControlPlane) -> dict[str, str]:
    namespace = control_plane.namespace
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=ROLES)
    found = {}
    for account, role in ACCOUNTS.items():
        control_plane.kubectl("create", "serviceaccount", f"pf-{account}", "-n", namespace)
        if role:
            subject = f"--serviceaccount={namespace}:pf-{account}"
            control_plane.kubectl(
                "create", "rolebinding", f"pf-{account}", "-n", namespace, f"--role={role}", subject
            )
        made = control_plane.kubectl("create", "token", f"pf-{account}", "-n", namespace)
        found[account] = made.stdout.strip()
    return found


@pytest.fixture
def served(
    control_plane: ControlPlane, tmp_path: Path
) -> Iterator[tuple[TestClient, ResumingExecutor]]:
    url = f"sqlite:///{tmp_path / 'pf.db'}"
    upgrade(url)
    workflow = (EXAMPLES / "workflows" / "agent-alert-investigation.yaml").read_text()
    executor = ResumingExecutor()
    access = KubernetesAccess(
        kube_api_client(str(control_plane.kubeconfig)), control_plane.namespace
    )
    state = ServerState.from_resources(
        load_resources(API_SOURCE + "---\n" + workflow),
        url,
        namespace=control_plane.namespace,
        executor=executor,
        access=access,
    )
    with state.sessions.begin() as session:
        session.add(
            WorkflowRun(
                name="run-1",
                workflow_name="agent-alert-investigation",
                namespace=control_plane.namespace,
            )
        )
    with TestClient(create_app(state)) as http:
        yield http, executor
    state.engine.dispose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_rbac_decides_who_reads(
    served: tuple[TestClient, ResumingExecutor], tokens: dict[str, str]
) -> None:
    http, _ = served
    assert http.get("/api/v1/runs").status_code == 401
    assert http.get("/api/v1/runs", headers=bearer("not-a-token")).status_code == 401
    refused = http.get("/api/v1/alerts", headers=bearer(tokens["nobody"]))
    assert refused.status_code == 403
    assert (
        "system:serviceaccount:" in refused.text and "list alerts.punchingfist.io" in refused.text
    )
    for path in (
        "/api/v1/alerts",
        "/api/v1/incidents",
        "/api/v1/runs",
        "/api/v1/approvals",
        "/api/v1/runs/run-1",
    ):
        assert http.get(path, headers=bearer(tokens["reader"])).status_code == 200, path
    assert http.get("/api/v1/runs", headers=bearer(tokens["reporter"])).status_code == 403


def test_rbac_decides_who_approves_and_the_token_names_the_approver(
    served: tuple[TestClient, ResumingExecutor], tokens: dict[str, str], control_plane: ControlPlane
) -> None:
    http, executor = served
    url = "/api/v1/runs/run-1/approvals/resolution-attempt-approval"
    body: dict[str, Any] = {"decision": "approve", "comment": "ok"}
    assert http.post(url, json=body, headers=bearer(tokens["reader"])).status_code == 403
    lie = http.post(url, json=body | {"approver": "alice"}, headers=bearer(tokens["approver"]))
    assert lie.status_code == 403 and "cannot answer as 'alice'" in lie.text
    assert executor.resumed == []
    done = http.post(url, json=body, headers=bearer(tokens["approver"]))
    assert done.status_code == 200, done.text
    who = f"system:serviceaccount:{control_plane.namespace}:pf-approver"
    assert done.json()["approver"] == who
    assert executor.resumed == [("run-1", "resolution-attempt-approval", True, who, "ok")]


def test_rbac_decides_who_reports_and_triggers(
    served: tuple[TestClient, ResumingExecutor], tokens: dict[str, str]
) -> None:
    http, _ = served
    report = {"kind": "cli", "phase": "Succeeded", "success": True, "seconds": 1.5}
    url = "/api/v1/runs/run-1/steps/initial-context"
    assert http.post(url, json=report, headers=bearer(tokens["reader"])).status_code == 403
    assert http.post(url, json=report, headers=bearer(tokens["reporter"])).status_code == 200
    event = {"alert": {"alertname": "Manual"}}
    trigger = "/api/v1/trigger/manual"
    assert http.post(trigger, json=event, headers=bearer(tokens["approver"])).status_code == 403
    started = http.post(trigger, json=event, headers=bearer(tokens["reporter"]))
    assert started.status_code == 202 and started.json()["created"] is True
