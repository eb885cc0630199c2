"""Run records say why a run did not succeed: the operator's reason for stopping it, a step's
stuck reason kept when Argo fails the node, an OOM kill. Argo Workflow objects are written here
as Argo writes them (the cluster tier checks the same against real pods); the store is SQLite,
which gives back naive datetimes, as it does in the operator's pod."""

from __future__ import annotations

import copy
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session, sessionmaker

from punchingfist.controller.tracking import track
from punchingfist.runs.metrics import Metrics
from punchingfist.store import RunStep, WorkflowRun

PULL = 'ErrImagePull: failed to pull image "localhost:5000/nope:v1": not found'


def argo(phase: str, nodes: dict[str, dict[str, Any]], **metadata: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "wf-1",
            "namespace": "ops",
            "labels": {"punchingfist.io/workflow": "wf"},
            **metadata,
        },
        "status": {
            "phase": phase,
            "startedAt": "2026-12-02T10:00:00Z",
            **({"finishedAt": "2026-12-02T10:01:00Z"} if phase == "Failed" else {}),
            "nodes": nodes,
        },
    }


def pod(phase: str, message: str = "", finished: bool = False) -> dict[str, Any]:
    node = {
        "id": "n1",
        "name": "wf-1.look",
        "displayName": "look",
        "type": "Pod",
        "phase": phase,
        "message": message,
        "startedAt": "2026-12-02T10:00:01Z",
    }
    if finished:
        node["finishedAt"] = "2026-12-02T10:01:00Z"
    return node


def test_a_stopped_run_keeps_why_its_step_could_not_start(
    sessions: sessionmaker[Session],
) -> None:
    metrics = Metrics(CollectorRegistry())
    track(argo("Running", {"n1": pod("Pending", PULL)}), sessions, metrics)
    stopped = argo(
        "Failed",
        {"n1": pod("Failed", "Stopped with strategy 'Stop'", finished=True)},
        annotations={"punchingfist.io/stopped-because": f"step 'look' could not start: {PULL}"},
    )
    stopped["status"]["message"] = "Stopped with strategy 'Stop'"
    tracked = track(stopped, sessions, metrics)  # a second event: started_at read back naive
    assert tracked is not None and tracked.status == "failed"
    with sessions() as session:
        run = WorkflowRun.named(session, "wf-1")
        assert run is not None and run.error is not None
        assert run.error.startswith(f"step 'look' could not start: {PULL}")
        (step,) = session.query(RunStep).filter(RunStep.run_id == run.id).all()
        assert step.error == f"Stopped with strategy 'Stop' ({PULL})"
        assert run.error.endswith(f"step 'look': {step.error}")


def test_a_step_that_started_after_a_pull_error_forgets_it(
    sessions: sessionmaker[Session],
) -> None:
    metrics = Metrics(CollectorRegistry())
    track(argo("Running", {"n1": pod("Pending", PULL)}), sessions, metrics)
    track(argo("Running", {"n1": pod("Running")}), sessions, metrics)
    done = argo("Failed", {"n1": pod("Failed", "OOMKilled (exit code 137)", finished=True)})
    track(copy.deepcopy(done), sessions, metrics)
    with sessions() as session:
        run = WorkflowRun.named(session, "wf-1")
        assert run is not None
        assert run.error == "step 'look': OOMKilled (exit code 137)"
