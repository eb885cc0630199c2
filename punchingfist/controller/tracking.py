"""Run tracking: each watch event of an Argo Workflow we start is recorded.

`track(workflow, sessions, metrics)` reads one Argo Workflow object (as the API server returns
it) as a `RunObservation` and hands it to `punchingfist.runs.recording`, which writes the run,
step, approval and alert records (the same code records local runs). `register(registry, ...)`
adds the Kopf event handler that calls it for every Workflow labelled `punchingfist.io/workflow`;
the operator calls it while it builds its registry.
"""

from __future__ import annotations

import logging
from typing import Any, TypedDict

import kopf
from sqlalchemy.orm import Session, sessionmaker

from punchingfist.api.runspec import RunParameters
from punchingfist.compiler.naming import (
    ANNOTATION_STOPPED,
    LABEL_FINGERPRINT,
    LABEL_SOURCE,
    LABEL_WORKFLOW,
)
from punchingfist.controller.stalls import Watchdog, argo_time
from punchingfist.runs.metrics import Metrics
from punchingfist.runs.recording import NodeObservation, Recorded, RunObservation, observe

log = logging.getLogger("punchingfist.tracking")

TASK_NODES = frozenset({"Pod", "Suspend", "Skipped", "Retry", "Container", "Plugin"})


class ArgoNode(TypedDict, total=False):
    id: str
    displayName: str
    templateName: str
    type: str
    phase: str
    message: str
    startedAt: str | None
    finishedAt: str | None
    outputs: dict[str, Any]


class ArgoWorkflowStatus(TypedDict, total=False):
    phase: str
    message: str
    startedAt: str | None
    finishedAt: str | None
    nodes: dict[str, ArgoNode]


class ArgoWorkflow(TypedDict, total=False):
    metadata: dict[str, Any]
    spec: dict[str, Any]
    status: ArgoWorkflowStatus


def track(
    workflow: ArgoWorkflow | dict[str, Any], sessions: sessionmaker[Session], metrics: Metrics
) -> Recorded | None:
    """Record what `workflow` (an Argo Workflow object) says; None when it is not ours."""
    observation = observation_of(workflow)
    if observation is None:
        return None
    return observe(sessions, observation, metrics)


def observation_of(workflow: ArgoWorkflow | dict[str, Any]) -> RunObservation | None:
    """`workflow` (an Argo Workflow object) as the recorder reads runs; None when not ours."""
    metadata: dict[str, Any] = workflow.get("metadata") or {}
    labels = metadata.get("labels") or {}
    if not labels.get(LABEL_WORKFLOW) or not metadata.get("name"):
        return None
    status: dict[str, Any] = dict(workflow.get("status") or {})
    annotations = metadata.get("annotations") or {}
    arguments = (workflow.get("spec") or {}).get("arguments") or {}
    given = {p["name"]: p.get("value") for p in arguments.get("parameters") or [] if "name" in p}
    parameters = RunParameters.of(given).stored()
    nodes = []
    for node in (status.get("nodes") or {}).values():
        name = _task_name(node)
        if name is None:
            continue
        nodes.append(
            NodeObservation(
                name=name,
                type=str(node.get("type") or ""),
                phase=str(node.get("phase") or "Pending"),
                message=str(node.get("message") or ""),
                started_at=argo_time(node.get("startedAt")),
                finished_at=argo_time(node.get("finishedAt")),
                parameters=_parameters(node),
            )
        )
    return RunObservation(
        name=metadata["name"],
        namespace=metadata.get("namespace") or "default",
        workflow=labels[LABEL_WORKFLOW],
        executor="argo",
        phase=status.get("phase") or "Pending",
        # the operator's reason for stopping it comes before Argo's message
        message=annotations.get(ANNOTATION_STOPPED) or status.get("message") or None,
        started_at=argo_time(status.get("startedAt")),
        finished_at=argo_time(status.get("finishedAt")),
        nodes=nodes,
        source=labels.get(LABEL_SOURCE),
        fingerprint=labels.get(LABEL_FINGERPRINT) or None,
        parameters=parameters,
    )


def register(
    registry: kopf.OperatorRegistry,
    *,
    sessions: sessionmaker[Session],
    metrics: Metrics,
    watchdog: Watchdog | None = None,
) -> None:
    """Add the run-tracking handler to `registry` (id `punchingfist-run-tracking`); with a
    `watchdog`, runs whose step pods cannot start are stopped too (stalls.py)."""

    @kopf.on.event(
        "argoproj.io",
        "v1alpha1",
        "workflows",
        id="punchingfist-run-tracking",
        labels={LABEL_WORKFLOW: kopf.PRESENT},
        registry=registry,
    )
    def track_workflow(event: kopf.RawEvent, logger: Any, **_: Any) -> None:
        """Every change of one of our Argo Workflows updates its records (deletion keeps them)."""
        if event.get("type") == "DELETED":
            return
        if watchdog is not None:
            watchdog.check(dict(event["object"]))
        tracked = track(dict(event["object"]), sessions, metrics)
        if tracked is not None and (tracked.created or tracked.steps):
            logger.info(
                "run %s: %s; steps changed: %s",
                tracked.run,
                tracked.status,
                ", ".join(tracked.steps) or "none",
            )


def _task_name(node: dict[str, Any]) -> str | None:
    """The DAG task a node stands for, or None (DAG nodes, retry attempts `task(1)`)."""
    name = str(node.get("displayName") or "")
    if node.get("type") not in TASK_NODES or not name:
        return None
    if node.get("type") == "Pod" and name.endswith(")") and "(" in name:
        return None  # one attempt of a retried task: its Retry node speaks for it
    return name


def _parameters(node: dict[str, Any]) -> dict[str, str]:
    return {
        str(p["name"]): str(p["value"])
        for p in (node.get("outputs") or {}).get("parameters") or []
        if p.get("name") and p.get("value") is not None
    }
