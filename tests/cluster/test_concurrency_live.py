"""Concurrency limits on the real cluster (#21): with OperatorConfig `spec.concurrency` set, the
operator writes the ConfigMap `punchingfist-concurrency` and recompiles every template with two
Argo semaphores; Argo's own workflow-controller keeps a run over the limit Pending ("Waiting
for … lock", in `argo list` and the run's `status.synchronization`) and starts it when the
first run has finished. The OperatorConfig is the cluster's shared one: the test puts it back
and waits until every template of the namespace holds no semaphore again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.cluster.support import NAMESPACE, LiveCluster, ready_template, unique, workflow

CONFIG = "operatorconfigs.punchingfist.io/punchingfist-config"


def _templates_hold_semaphores(cluster: LiveCluster) -> list[str]:
    found = cluster.get("workflowtemplates.argoproj.io", "-n", NAMESPACE)["items"]
    return [t["metadata"]["name"] for t in found if t["spec"].get("synchronization")]


@pytest.fixture
def one_run_per_workflow(cluster: LiveCluster) -> Iterator[None]:
    before = cluster.get(CONFIG, "-n", NAMESPACE)["spec"].get("concurrency")
    limits = {"concurrency": {"maxRunning": 10, "perWorkflow": 1}}
    cluster.kubectl(
        "patch", CONFIG, "-n", NAMESPACE, "--type", "merge", "-p", json.dumps({"spec": limits})
    )
    try:
        yield
    finally:
        if before is None:
            restore = ["--type", "json", "-p", '[{"op":"remove","path":"/spec/concurrency"}]']
        else:
            restore = ["--type", "merge", "-p", json.dumps({"spec": {"concurrency": before}})]
        cluster.kubectl("patch", CONFIG, "-n", NAMESPACE, *restore)
        if before is None:
            cluster.wait(
                lambda: not _templates_hold_semaphores(cluster) or None,
                "every template to be compiled without semaphores again",
                180,
                lambda: f"still holding them: {_templates_hold_semaphores(cluster)}",
            )


def _phase(cluster: LiveCluster, run: str) -> tuple[str, str]:
    status = cluster.argo_workflow(run).get("status") or {}
    return status.get("phase", ""), status.get("message", "")


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_a_run_over_the_workflow_limit_waits_in_argos_queue(
    cluster: LiveCluster, one_run_per_workflow: None
) -> None:
    name = unique("limited")
    cluster.apply(workflow(name, [{"name": "work", "type": "cli", "command": "sleep 8; echo ok"}]))
    template: dict[str, Any] = cluster.wait(
        lambda: (t := ready_template(cluster, name))["spec"].get("synchronization") and t,
        f"the template of {name} to hold its semaphores",
        120,
        lambda: json.dumps(cluster.get("workflowtemplates.argoproj.io", name, "-n", NAMESPACE)),
    )
    keys = [s["configMapKeyRef"] for s in template["spec"]["synchronization"]["semaphores"]]
    assert keys == [
        {"name": "punchingfist-concurrency", "key": "global"},
        {"name": "punchingfist-concurrency", "key": f"workflow.{name}"},
    ]
    sizes = cluster.get("configmap", "punchingfist-concurrency", "-n", NAMESPACE)["data"]
    assert (sizes["global"], sizes[f"workflow.{name}"]) == ("10", "1")

    first = cluster.submit(name)
    cluster.wait(
        lambda: _phase(cluster, first)[0] == "Running" or None,
        f"{first} to run",
        120,
        lambda: cluster.describe_run(first),
    )
    second = cluster.submit(name)
    phase, message = cluster.wait(
        lambda: (p := _phase(cluster, second))[1] and p,
        f"{second} to say why it waits",
        60,
        lambda: cluster.describe_run(second),
    )
    assert phase == "Pending" and "Waiting for" in message and "lock" in message, message
    waiting = cluster.argo_workflow(second)["status"]["synchronization"]["semaphore"]
    assert f"workflow.{name}" in json.dumps(waiting), waiting
    assert second in cluster.argo("list", "--status", "Pending", "-o", "name")

    done_first, done_second = cluster.finished(first), cluster.finished(second)
    assert done_first["status"]["phase"] == done_second["status"]["phase"] == "Succeeded"
    ran_first = cluster.step_node(done_first, "work")
    ran_second = cluster.step_node(done_second, "work")
    assert _time(ran_second["startedAt"]) >= _time(ran_first["finishedAt"]), (
        ran_first,
        ran_second,
    )
