"""Concurrency limits (OperatorConfig spec.concurrency): the model, the semaphores of the compiled
template and its ConfigMap, the engine reading them, the queue the local executor keeps, and
the controller writing the ConfigMap."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import yaml

from punchingfist.api import OperatorConfig, Workflow, load_resources
from punchingfist.api.limits import CONFIGMAP
from punchingfist.compiler import compile_resources, compile_workflow
from punchingfist.controller.concurrency import LimitsConfigMaps
from punchingfist.engine import read_manifest
from punchingfist.engine.synchronization import Semaphores, UnknownSemaphore
from punchingfist.errors import CompileError, InvalidResource, NotSupportedYet

WORKFLOWS = """
apiVersion: punchingfist.io/v1alpha1
kind: Workflow
metadata: {name: triage, namespace: ops}
spec:
  steps: [{name: look, type: cli, command: "echo hi"}]
---
apiVersion: punchingfist.io/v1alpha1
kind: Workflow
metadata: {name: escalate, namespace: ops}
spec:
  steps: [{name: page, type: cli, command: "echo page"}]
"""


def config(concurrency: Any = None) -> OperatorConfig:
    spec = {} if concurrency is None else {"concurrency": concurrency}
    body = {
        "apiVersion": "punchingfist.io/v1alpha1",
        "kind": "OperatorConfig",
        "metadata": {"name": "punchingfist-config", "namespace": "ops"},
        "spec": spec,
    }
    (resource,) = load_resources(yaml.safe_dump(body))
    assert isinstance(resource, OperatorConfig)
    return resource


def workflows() -> list[Workflow]:
    return [r for r in load_resources(WORKFLOWS) if isinstance(r, Workflow)]


# -- the model --------------------------------------------------------------------------------


def test_unset_means_no_limits_and_an_empty_section_the_defaults() -> None:
    assert config().spec.concurrency is None
    limits = config({}).spec.concurrency
    assert limits is not None and (limits.max_running, limits.per_workflow) == (10, 3)
    assert limits.sizes(["b", "a"]) == {"global": "10", "workflow.a": "3", "workflow.b": "3"}


@pytest.mark.parametrize("field", ["maxRunning", "perWorkflow"])
def test_a_limit_below_one_is_refused_naming_the_field(field: str) -> None:
    with pytest.raises(InvalidResource, match=rf"spec\.concurrency\.{field}: .*greater than"):
        config({field: 0})


def test_critical_bypass_is_refused_as_not_supported_yet_with_the_fix() -> None:
    with pytest.raises(InvalidResource) as caught:
        config({"criticalBypass": True})
    message = str(caught.value)
    assert "spec.concurrency.criticalBypass: not supported yet" in message
    assert "set it to false" in message
    assert config({"criticalBypass": False}).spec.concurrency is not None


# -- the compiled template --------------------------------------------------------------------


def test_the_template_holds_a_global_and_a_per_workflow_semaphore() -> None:
    triage = workflows()[0]
    spec = config({"maxRunning": 5, "perWorkflow": 2}).spec
    manifest = compile_workflow(triage, {}, spec).manifest
    assert manifest["spec"]["synchronization"] == {
        "semaphores": [
            {"configMapKeyRef": {"name": CONFIGMAP, "key": "global"}},
            {"configMapKeyRef": {"name": CONFIGMAP, "key": "workflow.triage"}},
        ]
    }
    assert "synchronization" not in compile_workflow(triage, {}, config().spec).manifest["spec"]
    assert "synchronization" not in compile_workflow(triage, {}, None).manifest["spec"]


def test_compile_emits_the_configmap_once_before_the_templates() -> None:
    compiled = compile_resources([*workflows(), config({"maxRunning": 4, "perWorkflow": 1})])
    documents = [d for c in compiled for d in c.documents]
    maps = [d for d in documents if d["kind"] == "ConfigMap"]
    assert documents[0] is maps[0] and len(maps) == 1
    assert maps[0]["metadata"]["name"] == CONFIGMAP and maps[0]["metadata"]["namespace"] == "ops"
    assert maps[0]["data"] == {"global": "4", "workflow.escalate": "1", "workflow.triage": "1"}
    assert all(c.concurrency is not None for c in compiled)
    plain = compile_resources([*workflows(), config()])
    assert not [d for c in plain for d in c.documents if d["kind"] == "ConfigMap"]


def test_a_workflow_name_too_long_for_a_configmap_key_is_refused() -> None:
    (long,) = load_resources(
        WORKFLOWS.split("---")[0].replace("name: triage", "name: " + "a" * 250)
    )
    assert isinstance(long, Workflow)
    with pytest.raises(CompileError, match="at most 244 characters"):
        compile_workflow(long, {}, config({}).spec)


# -- the engine ------------------------------------------------------------------------------


def test_the_engine_reads_the_semaphores_and_refuses_other_locks() -> None:
    manifest = compile_workflow(workflows()[0], {}, config({}).spec).manifest
    plan = read_manifest(manifest)
    assert [(s.configmap, s.key) for s in plan.semaphores] == [
        (CONFIGMAP, "global"),
        (CONFIGMAP, "workflow.triage"),
    ]
    manifest["spec"]["synchronization"]["mutexes"] = [{"name": "one"}]
    with pytest.raises(NotSupportedYet, match=r"spec\.synchronization\.mutexes"):
        read_manifest(manifest)


# -- the queue -------------------------------------------------------------------------------


def test_runs_start_in_order_and_never_above_a_limit() -> None:
    waiting: list[int] = []
    slots = Semaphores({"global": 2, "workflow.a": 1, "workflow.b": 2}, on_waiting=waiting.append)
    plan = [("a1", "a"), ("a2", "a"), ("b1", "b"), ("b2", "b"), ("a3", "a"), ("b3", "b")]
    tickets = [(name, slots.enqueue(name, ["global", f"workflow.{wf}"])) for name, wf in plan]
    assert slots.waiting == 6 and waiting[-1] == 6
    started: list[str] = []
    running: dict[str, int] = {"global": 0, "a": 0, "b": 0}
    most = dict(running)
    lock = threading.Lock()

    def run(name: str, ticket: Any) -> None:
        assert slots.acquire(ticket, timeout=10)
        with lock:
            started.append(name)
            for key in ("global", name[0]):
                running[key] += 1
                most[key] = max(most[key], running[key])
        time.sleep(0.05)
        with lock:
            for key in ("global", name[0]):
                running[key] -= 1
        slots.release(ticket)

    threads = [threading.Thread(target=run, args=item) for item in reversed(tickets)]
    for thread in threads:  # started newest first: the queue, not the threads, sets the order
        thread.start()
    for thread in threads:
        thread.join(15)
    assert started == [name for name, _ in plan]
    assert (most["global"], most["a"]) == (2, 1) and most["b"] <= 2
    assert slots.waiting == 0 and waiting[-1] == 0


def test_a_run_waits_while_it_is_not_first_in_line() -> None:
    slots = Semaphores({"global": 5, "workflow.a": 1})
    first = slots.enqueue("a1", ["global", "workflow.a"])
    assert slots.acquire(first, timeout=1)
    blocked = slots.enqueue("a2", ["global", "workflow.a"])
    behind = slots.enqueue("b1", ["global"])  # Argo's rule: a2 is first in line for global
    assert not slots.acquire(behind, timeout=0.1)
    assert slots.status("global") == "1/5"
    slots.cancel(blocked)
    assert slots.acquire(behind, timeout=1)
    with pytest.raises(UnknownSemaphore, match=r"'workflow\.x' has no size"):
        slots.enqueue("x1", ["global", "workflow.x"])


# -- the controller's ConfigMap -------------------------------------------------------------


class RecordingKube:
    def __init__(self) -> None:
        self.applied: list[dict[str, Any]] = []

    def apply(self, document: dict[str, Any], plural: str | None = None) -> dict[str, Any]:
        self.applied.append(document)
        return document


def body(concurrency: Any) -> dict[str, Any]:
    return {
        "apiVersion": "punchingfist.io/v1alpha1",
        "kind": "OperatorConfig",
        "metadata": {"name": "punchingfist-config", "namespace": "ops", "uid": "u1"},
        "spec": {} if concurrency is None else {"concurrency": concurrency},
    }


def test_the_controller_writes_the_configmap_when_its_data_changes() -> None:
    kube = RecordingKube()
    maps = LimitsConfigMaps(kube)  # type: ignore[arg-type]
    names = ["triage"]
    maps.ensure("ops", body({"maxRunning": 3}), lambda: names)
    maps.ensure("ops", body({"maxRunning": 3}), lambda: names)
    assert len(kube.applied) == 1
    (document,) = kube.applied
    assert document["metadata"] == {
        "name": CONFIGMAP,
        "namespace": "ops",
        "labels": {"app.kubernetes.io/managed-by": "punchingfist"},
    }
    assert "ownerReferences" not in document["metadata"]  # the operator's, not a Workflow's
    assert document["data"] == {"global": "3", "workflow.triage": "3"}
    names.append("escalate")
    maps.ensure("ops", body({"maxRunning": 3}), lambda: names)
    assert kube.applied[-1]["data"] == {
        "global": "3",
        "workflow.escalate": "3",
        "workflow.triage": "3",
    }
    maps.ensure("ops", body(None), lambda: names)
    maps.ensure("ops", None, lambda: names)
    maps.ensure("ops", body({"maxRunning": 0}), lambda: names)  # invalid: its compile says so
    assert len(kube.applied) == 2
