"""e2e: run tracking of watch events a real run cannot produce on demand.

What Argo writes while it really runs a Workflow, and what the operator records of it (a run
tracked while a step runs, an approval gate passing its deadline, a retried step, a failed run
escalating its alert, runs started outside the server, gates answered with `argo node set`), is
shown by real runs on the cluster: tests/cluster/test_tracking_real.py, test_main_job.py,
test_lifecycle.py, test_runs.py and test_faults.py.

What stays here are events in an order no real run produces when asked: the watch delivering
the same finished Workflow twice and then an older version of it (kopf re-lists after a dropped
connection or a restart of the operator, and an event queued before the re-list can arrive
after it). The Workflow is an object the Argo controller ignores (another controller instance
id), its status written through the API server as Argo writes it, then read back and tracked.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from punchingfist.api import load_resources
from punchingfist.controller.tracking import track
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


def test_a_finished_run_seen_again_and_then_an_older_event_of_it_change_nothing(
    control_plane: ControlPlane, setup: Setup
) -> None:
    """Hand-written statuses: a real run cannot be made to deliver its watch events twice and
    out of order on demand (a re-list does, at a moment no test chooses). The finished run is
    recorded once (tokens, deliveries, triage and durations counted once), and an older
    Running event of it replayed afterwards does not take the run, its steps, its approval or
    its alert back."""
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
    first = track(finished, setup.state.sessions, setup.metrics)
    assert first is not None and first.status == "succeeded" and len(first.steps) == 8
    for replayed in (finished, running):
        again = track(replayed, setup.state.sessions, setup.metrics)
        assert again is not None and (again.status, again.steps) == ("succeeded", [])
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
    tokens = {"workflow": "agent-alert-investigation", "model": "default"}
    assert sample(metrics, "punchingfist_llm_tokens_total", **tokens, direction="input") == 1200
    assert sample(metrics, "punchingfist_llm_tokens_total", **tokens, direction="output") == 300
    assert sample(metrics, "punchingfist_llm_cost_usd_total", **tokens) == pytest.approx(0.01)
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
