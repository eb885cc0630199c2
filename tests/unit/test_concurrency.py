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
from punchingfist.api.limits import CONFIGMAP, is_critical
from punchingfist.compiler import compile_resources, compile_workflow
from punchingfist.compiler.naming import critical_template
from punchingfist.controller.concurrency import LimitsConfigMaps
from punchingfist.controller.reconciling import Inputs, Outcome, reconcile_workflow
from punchingfist.engine import read_manifest
from punchingfist.engine.synchronization import Semaphores, UnknownSemaphore
from punchingfist.errors import CompileError, InvalidResource, NotSupportedYet
from punchingfist.executors.argo import ArgoExecutor
from punchingfist.runs.dispatching import RunSubmission

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


def test_critical_bypass_is_accepted_and_off_by_default() -> None:
    limits = config({"criticalBypass": True}).spec.concurrency
    assert limits is not None and limits.critical_bypass
    default = config({}).spec.concurrency
    assert default is not None and not default.critical_bypass


@pytest.mark.parametrize(
    ("alert", "critical"),
    [
        ({"severity": "critical", "labels": {"severity": "critical"}}, True),
        ({"labels": {"severity": "critical"}}, True),  # an event built by hand
        ({"severity": "critical"}, True),
        ({"severity": "warning", "labels": {"severity": "warning"}}, False),
        ({"severity": "", "labels": {}}, False),
        ("critical", False),
        (None, False),
    ],
)
def test_a_run_is_critical_when_its_alert_is(alert: Any, critical: bool) -> None:
    assert is_critical({"alert": alert, "severity": "critical"}) is critical


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


def test_critical_bypass_adds_the_same_template_without_semaphores() -> None:
    triage = workflows()[0]
    compiled = compile_workflow(triage, {}, config({"criticalBypass": True}).spec)
    critical = compiled.critical
    assert critical is not None
    assert critical["metadata"]["name"] == "triage-critical"
    assert critical["metadata"]["labels"] == compiled.manifest["metadata"]["labels"]
    assert critical["metadata"]["labels"]["punchingfist.io/workflow"] == "triage"
    assert critical["metadata"]["annotations"] == {
        **compiled.manifest["metadata"]["annotations"],
        "punchingfist.io/critical-bypass-of": "triage",
    }
    assert "synchronization" in compiled.manifest["spec"]  # the Workflow's own keeps them
    assert critical["spec"] == {
        k: v for k, v in compiled.manifest["spec"].items() if k != "synchronization"
    }
    # Its runs are the Workflow's runs: Argo labels them as such from workflowMetadata.
    assert critical["spec"]["workflowMetadata"]["labels"]["punchingfist.io/workflow"] == "triage"
    assert compiled.documents[-2:] == [compiled.manifest, critical]
    assert compiled.manifest_for(critical=True) is critical
    assert compiled.manifest_for(critical=False) is compiled.manifest
    for plain in (config({}), config({"criticalBypass": False}), config()):
        without = compile_workflow(triage, {}, plain.spec)
        assert without.critical is None and without.manifest_for(critical=True) is without.manifest
        assert [d["kind"] for d in without.documents] == ["WorkflowTemplate"]


def test_compile_prints_each_critical_template_after_its_workflows() -> None:
    compiled = compile_resources([*workflows(), config({"criticalBypass": True})])
    documents = [d for c in compiled for d in c.documents]
    assert [(d["kind"], d["metadata"]["name"]) for d in documents] == [
        ("ConfigMap", CONFIGMAP),
        ("WorkflowTemplate", "triage"),
        ("WorkflowTemplate", "triage-critical"),
        ("WorkflowTemplate", "escalate"),
        ("WorkflowTemplate", "escalate-critical"),
    ]
    # The ConfigMap has no key for the critical templates: they hold no semaphore.
    assert documents[0]["data"] == {
        "global": "10",
        "workflow.escalate": "3",
        "workflow.triage": "3",
    }


def test_a_critical_template_name_taken_by_another_workflow_is_refused() -> None:
    taken = WORKFLOWS.replace("name: escalate", "name: triage-critical")
    resources = [*load_resources(taken), config({"criticalBypass": True})]
    with pytest.raises(CompileError, match=r"named 'triage-critical', which is Workflow"):
        compile_resources(resources)
    assert len(compile_resources([*load_resources(taken), config({})])) == 2


def test_a_long_workflow_name_gets_a_short_critical_template_name() -> None:
    assert critical_template("triage") == "triage-critical"
    assert critical_template("a" * 54) == "a" * 54 + "-critical"  # 63: as it is
    long, other = "a" * 55, "a" * 54 + "b"
    name = critical_template(long)
    assert len(name) == 63 and name.endswith("-critical") and name.startswith("a" * 45 + "-")
    assert name == critical_template(long) != critical_template(other)
    assert critical_template("a" * 44 + "-" + "b" * 30)[:45] == "a" * 44 + "-"
    assert "--" not in critical_template("a" * 44 + "-" + "b" * 30)


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


def test_a_ticket_ahead_passes_the_waiting_runs_but_no_limit() -> None:
    slots = Semaphores({"run": 2, "global": 1})
    first = slots.enqueue("a1", ["run", "global"])
    assert slots.acquire(first, timeout=1)
    slots.enqueue("a2", ["run", "global"])  # waits for global, first in line for run
    behind = slots.enqueue("b1", ["run"])
    assert not slots.acquire(behind, timeout=0.1)  # Argo's rule holds it up
    slots.cancel(behind)
    critical = slots.enqueue("c1", ["run"], ahead=True)
    assert slots.acquire(critical, timeout=1)
    assert slots.status("run") == "2/2"
    second, third = (slots.enqueue(name, ["run"], ahead=True) for name in ("c2", "c3"))
    assert not slots.acquire(third, timeout=0.1)  # run is full, and c2 is first in line
    slots.release(critical)
    assert not slots.acquire(third, timeout=0.1)
    assert slots.acquire(second, timeout=1)


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


# -- critical runs skip the limits (criticalBypass) -----------------------------------------


class TemplateKube(RecordingKube):
    """WorkflowTemplates by name, as the API server keeps them (apply merges no fields)."""

    api_client = None

    def __init__(self) -> None:
        super().__init__()
        self.templates: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []
        self.reads: list[str] = []

    def apply(self, document: dict[str, Any], plural: str | None = None) -> dict[str, Any]:
        if document["kind"] == "WorkflowTemplate":
            self.templates[document["metadata"]["name"]] = document
        return super().apply(document, plural)

    def find(self, api_version: str, plural: str, namespace: str, name: str) -> Any:
        assert plural == "workflowtemplates"
        self.reads.append(name)
        return self.templates.get(name)

    def get_template(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.templates.get(name)

    def delete_template(self, namespace: str, name: str) -> None:
        del self.templates[name]

    def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        raise AssertionError(f"these runs reference no Secret, yet {namespace}/{name} was read")

    def get_secret_owners(self, namespace: str, name: str) -> None:
        return None

    def create(
        self, api_version: str, plural: str, namespace: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        self.created.append(body)
        return body


def run_about(severity: str, workflow: str = "triage") -> RunSubmission:
    event = {"alert": {"alertname": "Down", "severity": severity, "labels": {}}}
    return RunSubmission(f"{workflow}-{severity}", "ops", workflow, {"event": event})


def test_argo_starts_a_critical_run_from_the_critical_template_when_there_is_one() -> None:
    kube = TemplateKube()
    argo = ArgoExecutor(kube=kube)  # type: ignore[arg-type]

    def submitted(run: RunSubmission) -> str:
        argo.submit(run)
        manifest = kube.created[-1]
        assert manifest["metadata"]["labels"]["punchingfist.io/workflow"] == run.workflow
        return str(manifest["spec"]["workflowTemplateRef"]["name"])

    assert submitted(run_about("critical")) == "triage"  # no critical template: no bypass
    for compiled in compile_resources([*workflows(), config({"criticalBypass": True})]):
        for document in compiled.documents:
            kube.apply(document)
    kube.reads.clear()
    assert submitted(run_about("warning")) == "triage"
    # a run that is not critical reads only its own template (for its secret references)
    assert kube.reads == ["triage"]
    assert submitted(run_about("critical")) == "triage-critical"
    assert submitted(run_about("critical", "escalate")) == "escalate-critical"
    # A template of that name that is not the Workflow's critical copy is never used.
    kube.templates["triage-critical"] = kube.templates["escalate"]
    assert submitted(run_about("critical")) == "triage"


def reconciled(kube: TemplateKube, concurrency: Any, previous: Any = None) -> Outcome:
    workflow = {
        **yaml.safe_load(WORKFLOWS.split("---")[0]),
        "status": previous or {},
    }
    workflow["metadata"] |= {"uid": "wf-uid", "generation": 1}
    return reconcile_workflow(kube, Inputs(workflow=workflow, config=body(concurrency)))  # type: ignore[arg-type]


def test_the_controller_applies_and_removes_the_critical_template_with_the_workflows() -> None:
    kube = TemplateKube()
    outcome = reconciled(kube, {"criticalBypass": True})
    assert outcome.applied and outcome.status is not None
    assert outcome.status["criticalTemplateName"] == "triage-critical"
    assert "critical alerts: triage-critical" in outcome.status["conditions"][-1]["message"]
    assert sorted(kube.templates) == ["triage", "triage-critical"]
    for template in kube.templates.values():
        (owner,) = template["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"]) == ("Workflow", "wf-uid")
    assert "synchronization" not in kube.templates["triage-critical"]["spec"]
    # Unchanged: nothing is written; a critical template deleted behind its back comes back.
    assert reconciled(kube, {"criticalBypass": True}, outcome.status).status is None
    del kube.templates["triage-critical"]
    again = reconciled(kube, {"criticalBypass": True}, outcome.status)
    assert again.applied and "triage-critical" in kube.templates
    # criticalBypass off: the critical template goes.
    off = reconciled(kube, {}, outcome.status)
    assert off.status is not None and off.status["criticalTemplateName"] is None
    assert sorted(kube.templates) == ["triage"]


def test_the_controller_never_takes_another_template_for_the_critical_one() -> None:
    kube = TemplateKube()
    kube.templates["triage-critical"] = {
        "kind": "WorkflowTemplate",
        "metadata": {"name": "triage-critical", "labels": {"punchingfist.io/workflow": "x"}},
    }
    outcome = reconciled(kube, {"criticalBypass": True})
    assert outcome.status is not None and not outcome.applied
    assert "WorkflowTemplate triage-critical exists and is not the template" in str(
        outcome.status["lastError"]
    )
    assert (
        kube.templates["triage-critical"]["metadata"]["labels"]["punchingfist.io/workflow"] == "x"
    )
