"""e2e: run tracking reads Argo Workflows from the real API server into the store.

No kubelet runs here, so pods never finish. A run submitted for real is tracked as far as the
Argo controller takes it (Running); finished runs are Workflow objects that the Argo controller
ignores (another controller instance id), whose status is written through the API as Argo
writes it, then read back and tracked.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from punchingfist.api import Workflow, load_resources
from punchingfist.compiler import compile_workflow
from punchingfist.controller.tracking import track
from punchingfist.executors.argo import ArgoExecutor
from punchingfist.runs.dispatching import dispatch_pending
from punchingfist.runs.metrics import Metrics
from punchingfist.server import ServerState, create_app
from punchingfist.store import Alert, Approval, RunStep, SinkDelivery, WorkflowRun, upgrade
from tests.e2e.controlplane import ROOT, ControlPlane

pytestmark = pytest.mark.timeout(300)

SOURCE = """
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: tracking-alerts}
spec:
  type: webhook
  config: {path: /webhook/alerts}
  triggerWorkflow: %s
"""
IGNORED_BY_ARGO = {"workflows.argoproj.io/controller-instanceid": "not-this-controller"}
ANSWER = {
    "summary": "my-app is OOM-killed",
    "root_cause": "512Mi limit too low",
    "can_auto_fix": True,
    "fix_command": "kubectl set resources ...",
    "confidence": 0.86,
    "escalation_notes": "",
    "recommendations": ["raise the limit"],
    "evidence": [],
}


@dataclass
class Setup:
    state: ServerState
    http: TestClient
    metrics: Metrics
    payload: dict[str, Any]


@pytest.fixture
def setup(
    control_plane: ControlPlane,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Setup]:
    url = f"sqlite:///{tmp_path / 'pf.db'}"
    upgrade(url)
    state = ServerState.from_resources(
        load_resources(SOURCE % "agent-alert-investigation"), url, namespace=control_plane.namespace
    )
    payload = json.loads((ROOT / "examples/alerts/pod-crashlooping.json").read_text())
    alert = payload["alerts"][0]
    # Unique per test: the control plane lives for the whole session.
    alert["fingerprint"] = f"{abs(hash(request.node.nodeid)):016x}"[:16]
    alert["startsAt"] = f"2026-01-01T00:{len(request.node.nodeid) % 60:02d}:00Z"
    with TestClient(create_app(state), headers=state.access.headers()) as http:
        yield Setup(state, http, Metrics(CollectorRegistry()), payload)
    state.engine.dispose()


def queue_alert(setup: Setup) -> str:
    (name,) = setup.http.post("/webhook/alerts", json=setup.payload).json()["runs"]
    return str(name)


def node(
    name: str, type_: str, phase: str, started: str, finished: str | None, **outputs: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"id-{name}",
        "name": f"run.{name}",
        "displayName": name,
        "templateName": name,
        "type": type_,
        "phase": phase,
        "startedAt": started,
    }
    if finished:
        body["finishedAt"] = finished
    if outputs:
        body["outputs"] = {
            "parameters": [
                {"name": k, "value": v if isinstance(v, str) else json.dumps(v)}
                for k, v in outputs.items()
            ]
        }
    return body


def result(step: str, kind: str, success: bool = True, **extra: Any) -> dict[str, Any]:
    phase = "Succeeded" if success else "Failed"
    return {
        "step": step,
        "kind": kind,
        "success": success,
        "phase": phase,
        "error": None,
        "result": None,
        **extra,
    }


def write_run(
    control_plane: ControlPlane, name: str, workflow: str, status: dict[str, Any]
) -> dict[str, Any]:
    """Create the Workflow (the Argo controller leaves it alone), write its status as Argo
    does, and read it back from the API server."""
    namespace = control_plane.namespace
    manifest = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"punchingfist.io/workflow": workflow, **IGNORED_BY_ARGO},
        },
        "spec": {"workflowTemplateRef": {"name": workflow}},
    }
    control_plane.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    control_plane.kubectl(
        "patch",
        "workflows.argoproj.io",
        name,
        "-n",
        namespace,
        "--type",
        "merge",
        "-p",
        json.dumps({"status": status}),
    )
    found: dict[str, Any] = control_plane.get_json("workflows.argoproj.io", name, "-n", namespace)
    assert found["status"]["phase"] == status["phase"]
    return found


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_submitted_run_is_tracked_while_argo_runs_it(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
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
        load_resources(SOURCE % "investigate-alert"), url, namespace=control_plane.namespace
    )
    payload = json.loads((ROOT / "examples/alerts/pod-crashlooping.json").read_text())
    payload["alerts"][0]["fingerprint"] = "7a3c0ffee0tracked"
    metrics = Metrics(CollectorRegistry())
    with TestClient(create_app(state), headers=state.access.headers()) as http:
        (name,) = http.post("/webhook/alerts", json=payload).json()["runs"]
    assert dispatch_pending(state.sessions, ArgoExecutor(str(control_plane.kubeconfig))) == 1
    deadline = time.monotonic() + 90
    found: dict[str, Any] = {}
    while time.monotonic() < deadline:
        found = control_plane.get_json("workflows.argoproj.io", name, "-n", control_plane.namespace)
        nodes = found.get("status", {}).get("nodes", {})
        if found.get("status", {}).get("phase") == "Running" and len(nodes) > 1:
            break
        time.sleep(0.5)
    assert found.get("status", {}).get("phase") == "Running", found.get("status")
    tracked = track(found, state.sessions, metrics)
    assert tracked is not None and (tracked.run, tracked.status) == (name, "running")
    with state.sessions() as session:
        run = WorkflowRun.named(session, name)
        assert run is not None and run.started_at is not None and run.finished_at is None
        alert = session.get(Alert, run.alert_id)
        assert alert is not None and alert.status == "triaging"
        assert alert.triage_started_at is not None and alert.triage_completed_at is None
        steps = {s.name: s for s in session.scalars(select(RunStep))}
    # The agent step has a retry strategy: its Retry node stands for the task, not `(0)`.
    assert set(steps) == {"investigate-alert"}
    assert (steps["investigate-alert"].kind, steps["investigate-alert"].phase) in {
        ("step", "Pending"),
        ("step", "Running"),
    }
    assert sample(metrics, "punchingfist_active_tasks") == 1
    state.engine.dispose()


def test_a_finished_run_updates_run_steps_approval_alert_and_metrics(
    control_plane: ControlPlane, setup: Setup
) -> None:
    name = queue_alert(setup)
    agent = result(
        "agent-investigation",
        "agent",
        result=ANSWER,
        seconds=42.5,
        usage={"prompt_tokens": 1200, "completion_tokens": 300, "cost_usd": 0.01},
        tool_calls=[{"id": "call-1", "tool": "kubectl"}],
    )
    outputs = {"investigation_summary": ANSWER["summary"], "auto_fixed": True}
    slack = result(
        "slack-investigation-results",
        "sink",
        sink="slack-investigation-results",
        type="slack",
        outcome="delivered",
        attempts=1,
    )
    t = "2026-03-01T10:00:%02dZ"
    status = {
        "phase": "Succeeded",
        "startedAt": t % 0,
        "finishedAt": t % 50,
        "nodes": {
            n["id"]: n
            for n in [
                node(name, "DAG", "Succeeded", t % 0, t % 40),
                node(
                    "initial-context",
                    "Pod",
                    "Succeeded",
                    t % 1,
                    t % 3,
                    result=result("initial-context", "cli", exit_code=0),
                ),
                node("agent-investigation", "Pod", "Succeeded", t % 4, t % 30, result=agent),
                node(
                    "resolution-attempt-condition",
                    "Pod",
                    "Succeeded",
                    t % 31,
                    t % 32,
                    condition="true",
                ),
                node(
                    "resolution-attempt-approval",
                    "Suspend",
                    "Succeeded",
                    t % 33,
                    t % 35,
                    approved="true",
                    approver="alice",
                    comment="go ahead",
                ),
                node(
                    "resolution-attempt",
                    "Pod",
                    "Succeeded",
                    t % 36,
                    t % 40,
                    result=result("resolution-attempt", "cli"),
                ),
                node("pf-outputs", "Pod", "Succeeded", t % 41, t % 42, outputs=outputs),
                node(
                    "sink-slack-investigation-results",
                    "Pod",
                    "Succeeded",
                    t % 43,
                    t % 45,
                    result=slack,
                ),
                node("sink-pagerduty-escalation", "Skipped", "Skipped", t % 43, t % 43),
            ]
        },
    }
    finished = write_run(control_plane, name, "agent-alert-investigation", status)
    running = copy.deepcopy(finished)  # an older event, replayed after the newer one
    running["status"] = {"phase": "Running", "startedAt": t % 0, "nodes": {}}
    for event in (finished, finished, running):
        track(event, setup.state.sessions, setup.metrics)
    with setup.state.sessions() as session:
        run = WorkflowRun.named(session, name)
        assert run is not None
        assert (run.status, run.outputs, run.tokens_total) == ("succeeded", outputs, 1500)
        assert run.cost_usd == pytest.approx(0.01)
        steps = {
            s.name: s for s in session.scalars(select(RunStep).where(RunStep.run_id == run.id))
        }
        assert set(steps) == {
            "initial-context",
            "agent-investigation",
            "resolution-attempt-condition",
            "resolution-attempt-approval",
            "resolution-attempt",
            "pf-outputs",
            "sink-slack-investigation-results",
            "sink-pagerduty-escalation",
        }
        step = steps["agent-investigation"]
        assert (step.kind, step.phase, step.prompt_tokens, step.completion_tokens) == (
            "agent",
            "Succeeded",
            1200,
            300,
        )
        assert step.result == agent and step.tool_calls == agent["tool_calls"]
        assert steps["resolution-attempt-approval"].kind == "approval"
        assert steps["sink-pagerduty-escalation"].phase == "Skipped"
        (approval,) = session.scalars(select(Approval))
        assert (
            approval.gate,
            approval.decision,
            approval.approver,
            approval.comment,
            approval.channel,
        ) == ("resolution-attempt-approval", "approved", "alice", "go ahead", "argo")
        (delivery,) = session.scalars(select(SinkDelivery))
        assert (delivery.sink_name, delivery.outcome) == (
            "slack-investigation-results",
            "delivered",
        )
        alert = session.get(Alert, run.alert_id)
        assert alert is not None
        assert (alert.status, alert.auto_resolved, alert.ai_confidence) == ("resolved", True, 0.86)
        assert alert.ai_analysis == ANSWER
        stamps = [alert.triage_started_at, alert.triage_completed_at, alert.resolved_at]
        assert [s.replace(tzinfo=None).isoformat() for s in stamps if s] == [
            "2026-03-01T10:00:00",
            "2026-03-01T10:00:30",
            "2026-03-01T10:00:50",
        ]
    metrics = setup.metrics
    assert (
        sample(metrics, "punchingfist_llm_tokens_total", workflow="agent-alert-investigation")
        == 1500
    )
    assert sample(metrics, "punchingfist_alert_triage_seconds_count") == 1
    assert (
        sample(metrics, "punchingfist_task_duration_seconds_count", kind="agent", phase="Succeeded")
        == 1
    )
    assert (
        sample(metrics, "punchingfist_task_duration_seconds_sum", kind="agent", phase="Succeeded")
        == 42.5
    )
    assert (
        sample(
            metrics,
            "punchingfist_sink_deliveries_total",
            sink="slack-investigation-results",
            outcome="delivered",
        )
        == 1
    )
    assert sample(metrics, "punchingfist_active_tasks") == 0


def test_a_failed_run_escalates_and_a_gate_deadline_is_a_denial(
    control_plane: ControlPlane, setup: Setup
) -> None:
    name = queue_alert(setup)
    pager = result(
        "pagerduty-escalation",
        "sink",
        sink="pagerduty-escalation",
        type="pagerduty",
        outcome="delivered",
    )
    t = "2026-03-02T10:00:%02dZ"
    status = {
        "phase": "Failed",
        "message": "child 'resolution-attempt' failed",
        "startedAt": t % 0,
        "finishedAt": t % 59,
        "nodes": {
            n["id"]: n
            for n in [
                node(
                    "agent-investigation",
                    "Pod",
                    "Failed",
                    t % 1,
                    t % 20,
                    result=result(
                        "agent-investigation",
                        "agent",
                        success=False,
                        error="the model gave no answer",
                        usage={"prompt_tokens": 10},
                    ),
                ),
                node(
                    "resolution-attempt-approval",
                    "Suspend",
                    "Succeeded",
                    t % 21,
                    t % 51,
                    approved="false",
                    approver="",
                    comment="",
                ),
                node(
                    "pf-outputs", "Pod", "Succeeded", t % 52, t % 53, outputs={"auto_fixed": False}
                ),
                node("sink-pagerduty-escalation", "Pod", "Succeeded", t % 54, t % 56, result=pager),
            ]
        },
    }
    track(
        write_run(control_plane, name, "agent-alert-investigation", status),
        setup.state.sessions,
        setup.metrics,
    )
    with setup.state.sessions() as session:
        run = WorkflowRun.named(session, name)
        assert run is not None and run.status == "failed"
        assert run.error == (
            "child 'resolution-attempt' failed; step 'agent-investigation': the model gave no "
            "answer"
        )
        (approval,) = session.scalars(select(Approval))
        assert (approval.decision, approval.approver, approval.channel) == (
            "denied",
            None,
            "timeout",
        )
        alert = session.get(Alert, run.alert_id)
        assert alert is not None
        assert (alert.status, alert.auto_resolved, alert.resolved_at) == ("escalated", False, None)
        assert alert.escalated_to == "pagerduty:pagerduty-escalation"
        assert alert.escalated_at is not None and alert.triage_completed_at is None
        step = session.scalars(select(RunStep).where(RunStep.name == "agent-investigation")).one()
        assert (step.phase, step.error) == ("Failed", "the model gave no answer")


def test_a_run_started_outside_the_server_gets_a_record(
    control_plane: ControlPlane, setup: Setup
) -> None:
    event = {"alert": {"alertname": "Manual"}, "context": {}}
    namespace = control_plane.namespace
    manifest = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "name": "adhoc-tracked",
            "namespace": namespace,
            "labels": {
                "punchingfist.io/workflow": "investigate-alert",
                "punchingfist.io/source": "manual",
                **IGNORED_BY_ARGO,
            },
        },
        "spec": {
            "workflowTemplateRef": {"name": "investigate-alert"},
            "arguments": {
                "parameters": [
                    {"name": "event", "value": json.dumps(event)},
                    {"name": "source", "value": "manual"},
                ]
            },
        },
    }
    control_plane.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    found = control_plane.get_json("workflows.argoproj.io", "adhoc-tracked", "-n", namespace)
    tracked = track(found, setup.state.sessions, setup.metrics)
    assert tracked is not None and tracked.created and tracked.status == "submitted"
    assert track(found, setup.state.sessions, setup.metrics) == type(tracked)(
        run="adhoc-tracked", status="submitted"
    )
    with setup.state.sessions() as session:
        run = WorkflowRun.named(session, "adhoc-tracked")
        assert run is not None
        assert (run.workflow_name, run.source_name, run.alert_id) == (
            "investigate-alert",
            "manual",
            None,
        )
        assert run.parameters["event"] == event
    other = copy.deepcopy(found)
    other["metadata"]["labels"] = {"app": "not-ours"}
    assert track(other, setup.state.sessions, setup.metrics) is None
