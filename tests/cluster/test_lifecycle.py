"""One alert, two executors, the same lifecycle: the alert fired at the operator on the real
cluster (its run: Argo, pods of the runtime image) and at an embedded server (`serve --executor
local`: the local engine on this machine) ends in the same recorded state, because both runs are
recorded by `punchingfist.runs.recording`.

Two Workflows: one whose only step succeeds and whose outputs say it fixed the problem (the alert
is resolved, auto-resolved), one whose step fails (the alert stays in triage)."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from punchingfist.api import load_resources
from punchingfist.compiler import compile_resources
from punchingfist.executors.local import LocalExecutor
from punchingfist.server import ServerState, create_app
from punchingfist.store import upgrade
from tests.cluster.support import NAMESPACE, LiveCluster, ready_template, unique, workflow
from tests.conftest import EXAMPLES
from tests.integration.test_embedded_runs import environ

LIFECYCLE = (
    "status",
    "auto_resolved",
    "escalated_to",
    "triage_started",
    "triage_completed",
    "resolved",
)
"""What the runs decide about an alert (times as whether they are set: the runs differ)."""
STEPS = {
    "fixed": ("echo '{\"restarted\": true}'", "resolved"),
    "failing": ("echo 'cannot reach the workload' >&2; exit 3", "triaging"),
}


def _lifecycle(alert: dict[str, Any]) -> dict[str, Any]:
    found = {key: alert.get(key) for key in ("status", "auto_resolved", "escalated_to")}
    for key in ("triage_started", "triage_completed", "resolved"):
        found[key] = alert.get(f"{key}_at") is not None
    return found


def _resources(name: str, command: str, path: str) -> list[dict[str, Any]]:
    flow = workflow(name, [{"name": "act", "type": "cli", "command": command}])
    flow["spec"]["outputs"] = [
        {"name": "auto_fixed", "value": "{{ .steps.act.success | default false }}"}
    ]
    source = {
        "apiVersion": "punchingfist.io/v1alpha1",
        "kind": "Source",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"type": "webhook", "config": {"path": path}, "triggerWorkflow": name},
    }
    return [flow, source]


def _notification(name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(
        (EXAMPLES / "alerts" / "pod-crashlooping.json").read_text()
    )
    alert = payload["alerts"][0]
    alert["labels"] = {**alert["labels"], "alertname": name}
    alert["fingerprint"] = uuid.uuid4().hex[:16]
    payload["groupKey"] = f'{{}}:{{alertname="{name}"}}'
    payload["alerts"] = [alert]
    return payload


def _wait(what: str, probe: Callable[[], Any], timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Callable[[list[dict[str, Any]]], TestClient]]:
    """An embedded server (local executor, SQLite) serving the given resources."""
    clients: list[tuple[TestClient, ServerState]] = []

    def start(documents: list[dict[str, Any]]) -> TestClient:
        url = f"sqlite:///{tmp_path / 'embedded.db'}"
        upgrade(url)
        resources = load_resources(yaml.safe_dump_all(documents))
        state = ServerState.from_resources(resources, url, dispatch_interval=0.1)
        state.executor = LocalExecutor(
            {c.workflow.name: c for c in compile_resources(resources)},
            state.sessions,
            tmp_path / "runs",
            environ={**os.environ, **environ(tmp_path)},
            metrics=state.metrics,
        )
        client = TestClient(create_app(state), headers=state.access.headers())
        client.__enter__()
        clients.append((client, state))
        return client

    yield start
    for client, state in clients:
        client.__exit__(None, None, None)
        state.engine.dispose()


@pytest.mark.parametrize("case", sorted(STEPS))
def test_an_argo_run_and_an_embedded_run_leave_the_alert_in_the_same_state(
    cluster: LiveCluster, embedded: Callable[[list[dict[str, Any]]], TestClient], case: str
) -> None:
    command, expected_status = STEPS[case]
    name = unique(f"life-{case}")
    path = f"/webhook/{name}"
    documents = _resources(name, command, path)
    payload = _notification(name)

    # The cluster: kubectl apply, the operator compiles and serves the Source; Alertmanager's
    # POST goes to the operator's Service.
    for document in documents:
        cluster.apply(document)
    ready_template(cluster, name)

    (argo_run,) = cluster.notify(path, payload)["runs"]
    record = cluster.run_record(argo_run, lambda r: r["finished_at"] is not None, timeout=240)
    argo_alert = cluster.operator_get(f"/api/v1/alerts/{record['alert_id']}")

    # The embedded server: the same resources, the same notification.
    client = embedded(documents)
    answer = client.post(path, json=payload)
    assert answer.status_code == 200, answer.text
    (local_run,) = answer.json()["runs"]

    def local_finished() -> dict[str, Any] | None:
        run: dict[str, Any] = client.get(f"/api/v1/runs/{local_run}").json()
        return run if run.get("finished_at") else None

    local = _wait("the embedded run to finish", local_finished, 120)
    local_alert = client.get(f"/api/v1/alerts/{local['alert_id']}").json()

    assert record["status"] == local["status"] == ("succeeded" if case == "fixed" else "failed")
    assert _lifecycle(argo_alert) == _lifecycle(local_alert), (argo_alert, local_alert)
    assert _lifecycle(local_alert)["status"] == expected_status
    assert _lifecycle(local_alert)["triage_started"] is True
    assert _lifecycle(local_alert)["auto_resolved"] is (case == "fixed")
    steps = lambda run: {s["name"]: s["phase"] for s in run["steps"]}  # noqa: E731
    assert steps(record) == steps(local), (record["steps"], local["steps"])
