"""`punchingfist.runs.recording`, the one writer of run outcomes: the same observation recorded
through the step report endpoint's path and the executors' path counts once; the alert's lifecycle
follows from the run whatever the executor; a replayed model's answer is no triage.

Observations are written here as the executors build them (the cluster tier compares a real Argo
run with a real local one: tests/cluster/test_lifecycle.py); the store is SQLite."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from punchingfist.runs.metrics import Metrics
from punchingfist.runs.recording import (
    NodeObservation,
    Recorder,
    RunObservation,
    observe,
    step_result,
)
from punchingfist.store import Alert, RunStep, SinkDelivery, WorkflowRun
from punchingfist.store.models import Approval

T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
ANSWER = {"summary": "my-app is OOM-killed", "confidence": 0.9}


def _node(name: str, result: dict[str, Any] | None, phase: str = "Succeeded", **more: Any) -> Any:
    parameters = {"result": json.dumps(result)} if result is not None else {}
    return NodeObservation(
        name=name,
        type=more.pop("type", "Pod"),
        phase=phase,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=5) if phase != "Running" else None,
        parameters={**parameters, **more.pop("parameters", {})},
    )


def _run(executor: str, phase: str, *nodes: NodeObservation) -> RunObservation:
    return RunObservation(
        name="wf-1",
        namespace="ops",
        workflow="wf",
        executor=executor,
        phase=phase,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=30) if phase not in ("Running", "Pending") else None,
        nodes=nodes,
    )


@pytest.fixture
def alerted(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """Run `wf-1`, queued for an alert received a minute before it started."""
    with sessions.begin() as session:
        alert = Alert(
            status="received",
            severity="warning",
            alert_name="PodCrashLooping",
            received_at=T0 - timedelta(minutes=1),
        )
        session.add(alert)
        session.flush()
        session.add(
            WorkflowRun(
                name="wf-1",
                namespace="ops",
                workflow_name="wf",
                parameters={},
                alert_id=alert.id,
                status="submitted",
            )
        )
    return sessions


def _alert(sessions: sessionmaker[Session]) -> Alert:
    with sessions() as session:
        return session.scalars(select(Alert)).one()


AGENT = {"kind": "agent", "success": True, "result": ANSWER, "usage": {"prompt_tokens": 90}}
FIXED = {"kind": "outputs", "success": True}
SLACK = {"kind": "sink", "success": True, "outcome": "delivered", "type": "slack"}
PAGER = {"kind": "sink", "success": True, "outcome": "delivered", "type": "pagerduty"}


@pytest.mark.parametrize("executor", ["argo", "local"])
def test_the_alert_lifecycle_follows_the_run_whatever_the_executor(
    alerted: sessionmaker[Session], executor: str
) -> None:
    metrics = Metrics(CollectorRegistry())
    observe(alerted, _run(executor, "Running", _node("look", None, "Running")), metrics)
    alert = _alert(alerted)
    assert (alert.status, alert.triage_started_at is not None) == ("triaging", True)
    outputs = _node("pf-outputs", FIXED, parameters={"outputs": '{"auto_fixed": "true"}'})
    observe(alerted, _run(executor, "Succeeded", _node("look", AGENT), outputs), metrics)
    observe(alerted, _run(executor, "Succeeded", _node("look", AGENT), outputs), metrics)
    alert = _alert(alerted)
    assert alert.status == "resolved" and alert.auto_resolved is True
    assert alert.ai_analysis == ANSWER and alert.ai_confidence == 0.9
    (count,) = [s for s in metrics.triage_seconds.collect()[0].samples if s.name.endswith("_count")]
    assert count.value == 1  # once, although two observations saw the answer


def test_an_escalating_sink_escalates_the_alert(alerted: sessionmaker[Session]) -> None:
    nodes = (_node("sink-chat", SLACK), _node("sink-pager", PAGER))
    observe(alerted, _run("local", "Succeeded", *nodes), None)
    alert = _alert(alerted)
    assert (alert.status, alert.escalated_to) == ("escalated", "pagerduty:sink-pager")
    with alerted() as session:
        assert len(session.scalars(select(SinkDelivery)).all()) == 2


def test_a_replayed_answer_is_no_triage(alerted: sessionmaker[Session]) -> None:
    replayed = {**AGENT, "replayed": True}
    observe(alerted, _run("local", "Succeeded", _node("look", replayed)), None)
    alert = _alert(alerted)
    assert alert.triage_completed_at is None and alert.ai_analysis is None
    assert alert.status == "triaging"


def test_a_report_and_the_executor_seeing_the_same_step_count_it_once(
    alerted: sessionmaker[Session],
) -> None:
    metrics = Metrics(CollectorRegistry())
    with alerted.begin() as session:
        run = WorkflowRun.named(session, "wf-1")
        assert run is not None
        recorder = Recorder(session, metrics)
        recorder.report_step(run, "look", AGENT, T0)
        recorder.report_step(run, "look", AGENT, T0)  # a retried report
        recorder.report_delivery(run, "chat", {**SLACK, "sink": "chat"}, T0)
    observe(alerted, _run("argo", "Succeeded", _node("look", AGENT)), metrics)
    with alerted() as session:
        run = WorkflowRun.named(session, "wf-1")
        assert run is not None and run.tokens_total == 90
        (step,) = session.scalars(select(RunStep)).all()
        assert (step.kind, step.phase, step.prompt_tokens) == ("agent", "Succeeded", 90)
        assert len(session.scalars(select(SinkDelivery)).all()) == 1
    labels = {"workflow": "wf", "model": "default"}
    tokens = metrics.registry.get_sample_value(
        "punchingfist_llm_tokens_total", labels | {"direction": "input"}
    )
    assert tokens == 90


def test_a_gate_answered_in_the_executor_records_its_channel(
    alerted: sessionmaker[Session],
) -> None:
    waiting = _node("fix-approval", None, "Running", type="Suspend")
    observe(alerted, _run("local", "Running", waiting), None)
    answer = {"approved": "true", "approver": "carol", "comment": "go"}
    passed = _node("fix-approval", None, type="Suspend", parameters=answer)
    observe(alerted, _run("local", "Running", passed), None)
    with alerted() as session:
        (gate,) = session.scalars(select(Approval)).all()
        assert (gate.decision, gate.approver, gate.channel) == ("approved", "carol", "local")


def test_a_result_that_is_not_a_step_result_is_kept_but_counts_nothing() -> None:
    assert step_result({"kind": "cli", "success": "maybe"}, "look") is None
    typed = step_result({"kind": "agent", "success": True, "usage": {"prompt_tokens": 3}}, "x")
    assert typed is not None and typed.usage is not None and typed.usage.prompt_tokens == 3
