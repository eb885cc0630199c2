"""Sources on the real cluster, each starting real runs on the node: Alertmanager's retries and
repeats of one alert start one Argo Workflow and its resolved notification resolves the alert
and its incident; a schedule Source's CronWorkflow really runs; a kubernetes Source fires on a
real pod being created."""

from __future__ import annotations

import copy
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.cluster.support import NAMESPACE, LiveCluster, ready_template, unique, workflow
from tests.conftest import EXAMPLES

LABEL_SOURCE = "punchingfist.io/source"


def _source(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "punchingfist.io/v1alpha1",
        "kind": "Source",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {**spec, "triggerWorkflow": name},
    }


def _echo(cluster: LiveCluster, name: str) -> None:
    """Workflow `name`: one cli step printing what started it."""
    command = 'echo "{\\"source\\": \\"$PF_SOURCE\\"}"'
    cluster.apply(workflow(name, [{"name": "say", "type": "cli", "command": command}]))
    ready_template(cluster, name)


def _argo_runs(cluster: LiveCluster, source: str) -> list[dict[str, Any]]:
    found = cluster.get("workflows.argoproj.io", "-n", NAMESPACE, "-l", f"{LABEL_SOURCE}={source}")
    items: list[dict[str, Any]] = found["items"]
    for item in items:
        cluster.created.append(("workflows.argoproj.io", item["metadata"]["name"]))
    return items


def _succeeded(cluster: LiveCluster, source: str) -> list[dict[str, Any]] | None:
    runs = _argo_runs(cluster, source)
    done = [r for r in runs if (r.get("status") or {}).get("phase") == "Succeeded"]
    return done or None


@pytest.mark.timeout(300)
def test_alertmanager_repeats_start_one_run_and_the_resolved_one_resolves(
    cluster: LiveCluster,
) -> None:
    name = unique("repeats")
    _echo(cluster, name)
    path = f"/webhook/{name}"
    cluster.apply(_source(name, {"type": "webhook", "config": {"path": path}}))
    firing: dict[str, Any] = json.loads((EXAMPLES / "alerts" / "pod-crashlooping.json").read_text())
    firing["groupKey"] = f'{{}}:{{alertname="{name}"}}'  # its own group, so its own incident
    alert = firing["alerts"][0]
    alert["labels"] = {**alert["labels"], "alertname": name}
    alert["fingerprint"] = uuid.uuid4().hex[:16]
    alert["startsAt"] = datetime.now(UTC).isoformat()

    (run,) = cluster.notify(path, firing)["runs"]
    # Alertmanager's retry of the same notification, then its repeat after repeat_interval.
    assert cluster.notify(path, firing)["runs"] == []
    repeat = copy.deepcopy(firing)
    repeat["alerts"][0]["annotations"] = {**alert["annotations"], "note": "still firing"}
    assert cluster.notify(path, repeat)["runs"] == []

    record = cluster.run_record(run, lambda r: r["status"] == "succeeded", timeout=240)
    assert [r["metadata"]["name"] for r in _argo_runs(cluster, name)] == [run]

    resolved = copy.deepcopy(firing)
    resolved["status"] = "resolved"
    resolved["alerts"][0]["status"] = "resolved"
    resolved["alerts"][0]["endsAt"] = datetime.now(UTC).isoformat()
    answer = cluster.notify(path, resolved)
    assert answer["resolved"] == 1 and answer["runs"] == [], answer
    stored = cluster.operator_get(f"/api/v1/alerts/{record['alert_id']}")
    assert stored["status"] == "resolved" and stored["resolved_at"], stored
    incident = cluster.operator_get(f"/api/v1/incidents/{stored['incident_id']}")
    assert incident["status"] == "resolved", incident
    assert [r["metadata"]["name"] for r in _argo_runs(cluster, name)] == [run]


@pytest.mark.timeout(300)
def test_a_schedule_source_runs_on_its_schedule(cluster: LiveCluster) -> None:
    name = unique("every-minute")
    _echo(cluster, name)
    cluster.apply(_source(name, {"type": "schedule", "config": {"cron": "* * * * *"}}))
    cron = cluster.wait(
        lambda: cluster.kubectl("get", "cronworkflows.argoproj.io", name, check=False).strip(),
        f"the CronWorkflow of Source {name}",
        60,
    )
    assert name in cron
    (run, *_) = cluster.wait(
        lambda: _succeeded(cluster, name),
        f"a scheduled run of {name} to succeed",
        150,
        lambda: json.dumps([r.get("status", {}).get("phase") for r in _argo_runs(cluster, name)]),
    )
    record = cluster.run_record(
        run["metadata"]["name"], lambda r: r["status"] == "succeeded", timeout=60
    )
    (step,) = [s for s in record["steps"] if s["name"] == "say"]
    assert step["result"]["result"] == {"source": name}


@pytest.mark.timeout(300)
def test_a_kubernetes_source_fires_on_a_real_pod(cluster: LiveCluster) -> None:
    name = unique("pod-created")
    _echo(cluster, name)
    label = f"pf-test={name}"
    config = {"resource": "pods", "event": "created", "labelSelector": label}
    cluster.apply(
        _source(name, {"type": "kubernetes", "config": {**config, "namespace": NAMESPACE}})
    )
    # The watch starts some time after the Source is applied, and a pod that exists when it
    # lists is no change: create pods until one starts a run.
    pods: list[str] = []
    created: list[float] = []

    def started() -> list[dict[str, Any]] | None:
        if not _argo_runs(cluster, name) and (not created or time.monotonic() - created[-1] > 10):
            pod = unique("watched")
            cluster.kubectl(
                "run",
                pod,
                "-n",
                NAMESPACE,
                f"--image={cluster.images['RUNTIME']}",
                "--restart=Never",
                f"--labels={label}",
                "--command",
                "--",
                "sleep",
                "1",
            )
            cluster.created.append(("pod", pod))
            pods.append(pod)
            created.append(time.monotonic())
            return None
        return _succeeded(cluster, name)

    (run, *_) = cluster.wait(
        started,
        "a run started by a pod being created",
        180,
        lambda: json.dumps([r.get("status", {}).get("phase") for r in _argo_runs(cluster, name)]),
    )
    record = cluster.run_record(
        run["metadata"]["name"], lambda r: r["status"] == "succeeded", timeout=60
    )
    assert record["source_name"] == name
    assert record["parameters"]["event"]["object"]["metadata"]["name"] in pods
