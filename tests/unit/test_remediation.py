"""Remediation steps (#25): the diff an approver reads, the revision rollout-undo goes back to,
the verdict of a fix, the rollback patch, the step's validation and its compiled shape, and the
refusals that happen before kubectl is ever run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hera.workflows.models import WorkflowTemplate as ArgoWorkflowTemplate
from pydantic import TypeAdapter

from punchingfist.api import Workflow
from punchingfist.api.actions import Action, ActionPolicy, AnyAction
from punchingfist.api.runspec import RemediationTask, TaskSpec, result_env
from punchingfist.api.workflows import RemediationCheck
from punchingfist.compiler import compile_workflow
from punchingfist.compiler.verifying import verify
from punchingfist.errors import CompileError, PunchingFistError
from punchingfist.runtime.remediation import apply, preview, rollback
from punchingfist.runtime.remediation.diffing import (
    LAST_APPLIED,
    bare,
    diff,
    digest,
    expectation_holds,
    revision_template,
    verdict,
)
from punchingfist.runtime.remediation.kube import Kube
from punchingfist.runtime.remediation.steps import rollback_patch
from tests.builders import make_workflow
from tests.conftest import EXAMPLES

PUNCHINGFIST = str(Path(sys.executable).with_name("punchingfist"))
NO_KUBECTL = Kube(env={"PATH": "/nonexistent"}, binary="/nonexistent/kubectl")
"""A Kube that cannot run anything: the refusals below must never reach kubectl."""


def deployment(memory: str = "512Mi", image: str = "shop/web:1.0") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "uid": "u-1",
            "resourceVersion": "41",
            "generation": 3,
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{"manager": "kubectl"}],
            "annotations": {LAST_APPLIED: "{...}", "team": "shop"},
        },
        "spec": {
            "replicas": 2,
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": image,
                            "resources": {"limits": {"memory": memory}},
                        }
                    ]
                },
            },
        },
        "status": {"readyReplicas": 0, "replicas": 2},
    }


def action(**given: Any) -> AnyAction:
    value: AnyAction = TypeAdapter(Action).validate_python(given)
    return value


# -- what an approver reads -----------------------------------------------------------------


def test_bare_leaves_out_status_and_bookkeeping_but_keeps_the_content() -> None:
    plain = bare(deployment())
    assert "status" not in plain
    assert set(plain["metadata"]) == {"name", "namespace", "annotations"}
    assert plain["metadata"]["annotations"] == {"team": "shop"}
    assert plain["spec"]["replicas"] == 2


def test_the_diff_shows_the_memory_limit_change_and_nothing_else() -> None:
    shown = diff(deployment("512Mi"), deployment("1Gi"), "deployment shop/web")
    changed = [
        line for line in shown.splitlines() if line[:1] in "+-" and line[:3] not in ("---", "+++")
    ]
    assert [line.replace(" ", "") for line in changed] == ["-memory:512Mi", "+memory:1Gi"]
    assert "--- deployment shop/web (now)" in shown


def test_the_diff_ignores_a_moved_version_and_status() -> None:
    moved = deployment()
    moved["metadata"]["resourceVersion"] = "99"
    moved["status"] = {"readyReplicas": 2}
    assert diff(deployment(), moved, "x") == ""
    assert digest(deployment()) == digest(moved)
    assert digest(deployment()) != digest(deployment("1Gi"))


def test_a_deletion_diff_removes_the_whole_object() -> None:
    shown = diff(deployment(), None, "pod shop/web-1")
    removed = [line for line in shown.splitlines()[3:]]
    assert "-kind: Deployment" in removed and all(line.startswith("-") for line in removed)


# -- rollout-undo's revision ----------------------------------------------------------------


def replicaset(revision: int, image: str) -> dict[str, Any]:
    return {
        "metadata": {"annotations": {"deployment.kubernetes.io/revision": str(revision)}},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": "web", "pod-template-hash": f"h{revision}"}},
                "spec": {"containers": [{"name": "web", "image": image}]},
            }
        },
    }


def test_undo_goes_back_to_the_previous_revision_without_the_template_hash() -> None:
    sets = [replicaset(1, "web:1"), replicaset(3, "web:3"), replicaset(4, "web:4")]
    revision, template = revision_template(sets, current=4, wanted=None)
    assert revision == 3
    assert template["spec"]["containers"][0]["image"] == "web:3"
    assert template["metadata"]["labels"] == {"app": "web"}
    assert revision_template(sets, current=4, wanted=1)[0] == 1


@pytest.mark.parametrize(
    ("current", "wanted", "message"),
    [(1, None, "no revision before"), (4, 2, "no revision 2"), (4, 4, "the current one")],
)
def test_undo_without_such_a_revision_says_so(
    current: int, wanted: int | None, message: str
) -> None:
    sets = [replicaset(1, "web:1"), replicaset(4, "web:4")]
    with pytest.raises(ValueError, match=message):
        revision_template(sets if current > 1 else sets[:1], current=current, wanted=wanted)


# -- the verdict --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("passed", "before", "after", "rolled_out", "expected"),
    [
        (True, 0, 2, True, "fixed"),
        (False, 2, 2, True, "not fixed"),
        (False, 2, 1, True, "made worse"),
        (False, 1, 1, False, "made worse"),
        (False, 0, 0, True, "not fixed"),
    ],
)
def test_the_verdict(
    passed: bool, before: int, after: int, rolled_out: bool, expected: str
) -> None:
    assert verdict(passed, before, after, rolled_out) == expected


@pytest.mark.parametrize(
    ("values", "expect", "holds"),
    [
        ([], "empty", True),
        ([0.0], "empty", False),
        ([0.0, 0.0], "== 0", True),
        ([0.0, 2.0], "== 0", False),
        ([], "== 0", False),
        ([3.0], "< 5", True),
        ([7.0], ">= 7", True),
    ],
)
def test_promql_expectations(values: list[float], expect: str, holds: bool) -> None:
    assert expectation_holds(values, expect) is holds


# -- rollback -----------------------------------------------------------------------------


def test_a_template_fix_is_rolled_back_by_template_and_replicas_guarded_by_generation() -> None:
    fix = action(
        action="set-image",
        target={"kind": "Deployment", "namespace": "shop", "name": "web"},
        container="web",
        image="shop/web:nope",
    )
    saved = bare(deployment())
    body = rollback_patch(fix, saved, 4)
    assert body[0] == {"op": "test", "path": "/metadata/generation", "value": 4}
    assert body[1] == {
        "op": "replace",
        "path": "/spec/template",
        "value": saved["spec"]["template"],
    }
    assert body[2] == {"op": "replace", "path": "/spec/replicas", "value": 2}


def test_cordon_and_a_configmap_patch_are_rolled_back_to_what_was_saved() -> None:
    cordon = action(action="cordon", target={"kind": "Node", "name": "n1"})
    assert rollback_patch(cordon, {"spec": {}}, None) == [
        {"op": "add", "path": "/spec/unschedulable", "value": False}
    ]
    patch = action(
        action="patch",
        target={"kind": "ConfigMap", "namespace": "shop", "name": "cfg"},
        patch={"data": {"mode": "fast"}},
    )
    saved = {
        "kind": "ConfigMap",
        "metadata": {"name": "cfg", "labels": {"a": "b"}},
        "data": {"mode": "safe"},
    }
    body = rollback_patch(patch, saved, None)
    assert {"op": "add", "path": "/data", "value": {"mode": "safe"}} in body
    assert {"op": "add", "path": "/metadata/labels", "value": {"a": "b"}} in body


# -- the step as written --------------------------------------------------------------------


INVESTIGATE = {"name": "investigate", "type": "agent", "goal": "why?"}


def remediation(**fields: Any) -> dict[str, Any]:
    return {"name": "fix", "type": "remediation", "remediation": fields}


def test_a_remediation_names_exactly_one_fix() -> None:
    with pytest.raises(PunchingFistError, match="exactly one of `fixFrom` and `action`"):
        make_workflow([INVESTIGATE, remediation()])
    with pytest.raises(PunchingFistError, match="exactly one of `fixFrom` and `action`"):
        make_workflow([INVESTIGATE, remediation(fixFrom="investigate", action={"action": "scale"})])


def test_a_remediation_is_never_retried() -> None:
    retried = {"policy": {"retryPolicy": {"maxAttempts": 3}}}
    with pytest.raises(PunchingFistError, match=r"never retried .* remove policy\.retryPolicy"):
        make_workflow([INVESTIGATE, {**remediation(fixFrom="investigate"), **retried}])


def test_a_declared_action_on_a_secret_is_refused_when_the_workflow_is_read() -> None:
    secret = {
        "action": "patch",
        "target": {"kind": "Secret", "namespace": "shop", "name": "db"},
        "patch": {"data": {"password": "x"}},
    }
    with pytest.raises(PunchingFistError, match="a Secret is never patched"):
        make_workflow([remediation(action=secret)])


def test_fix_from_must_be_an_earlier_step() -> None:
    workflow = make_workflow([remediation(fixFrom="investigate"), INVESTIGATE])
    with pytest.raises(CompileError, match="fixFrom 'investigate' is no earlier step"):
        compile_workflow(workflow, {}, None)


def compiled(workflow: Workflow) -> dict[str, dict[str, Any]]:
    manifest = compile_workflow(workflow, {}, None).manifest
    return {t["name"]: t for t in manifest["spec"]["templates"]}


def dag(templates: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in templates["main"]["dag"]["tasks"]}


def spec_of(template: dict[str, Any]) -> TaskSpec:
    env = {e["name"]: e.get("value") for e in template["container"]["env"]}
    return TaskSpec.decode(env["PF_SPEC"])


def test_a_remediation_compiles_to_preview_gate_and_fix_as_the_remediator() -> None:
    policy = {"policy": {"safety": {"allowedNamespaces": ["shop"]}}}
    workflow = make_workflow([INVESTIGATE, {**remediation(fixFrom="investigate"), **policy}])
    templates = compiled(workflow)
    tasks = dag(templates)
    assert list(tasks) == [
        "investigate",
        "fix-preview",
        "fix-approval-request",
        "fix-approval",
        "fix",
    ]
    offered = "'{{tasks.fix-preview.outputs.parameters.offered}}' == 'true'"
    assert tasks["fix-approval-request"]["when"] == offered
    assert tasks["fix"]["when"] == (
        offered + " && '{{tasks.fix-approval.outputs.parameters.approved}}' == 'true'"
    )
    assert tasks["fix"]["depends"] == "fix-approval"
    for name in ("fix-preview", "fix"):
        assert templates[name]["serviceAccountName"] == "punchingfist-remediator"
        assert "retryStrategy" not in templates[name], "a fix is never retried by itself"
    assert templates["fix-preview"]["container"]["command"] == ["pf-runtime", "remediation-preview"]
    preview_spec, fix_spec = spec_of(templates["fix-preview"]), spec_of(templates["fix"])
    assert fix_spec.kind == "remediation" and fix_spec.gated
    assert fix_spec.inputs == ["investigate", "fix-preview"]
    task = fix_spec.remediation
    assert task is not None and task == preview_spec.remediation
    assert task.fix_from == "investigate" and task.preview == "fix-preview"
    assert task.policy.namespaces == ["shop"], "namespaces default to allowedNamespaces"
    assert task.on_failure == "rollback" and not task.dry_run
    outputs = {p["name"] for p in templates["fix-preview"]["outputs"]["parameters"]}
    assert outputs == {"result", "offered", "preview"}


def test_a_dry_run_workflow_has_no_gate_and_only_previews() -> None:
    workflow = make_workflow([INVESTIGATE, remediation(fixFrom="investigate")], dryRun=True)
    templates = compiled(workflow)
    tasks = dag(templates)
    assert list(tasks) == ["investigate", "fix-preview", "fix"]
    assert "when" not in tasks["fix"]
    task = spec_of(templates["fix"]).remediation
    assert task is not None and task.dry_run


def test_ask_adds_a_rollback_gate_run_only_when_the_failed_fix_waits() -> None:
    workflow = make_workflow([INVESTIGATE, remediation(fixFrom="investigate", onFailure="ask")])
    manifest = compile_workflow(workflow, {}, None).manifest
    argo = ArgoWorkflowTemplate.model_validate(manifest)
    assert argo.model_dump(by_alias=True, exclude_none=True, mode="json") == manifest
    verify(manifest, resource=workflow.ref)
    templates = compiled(workflow)
    tasks = dag(templates)
    assert list(tasks)[-3:] == [
        "fix-rollback-approval-request",
        "fix-rollback-approval",
        "fix-rollback",
    ]
    waits = "'{{tasks.fix.outputs.parameters.rollback}}' == 'true'"
    assert tasks["fix-rollback-approval-request"]["depends"] == "fix"
    assert tasks["fix-rollback-approval-request"]["when"] == waits
    assert tasks["fix-rollback"]["when"] == (
        waits + " && '{{tasks.fix-rollback-approval.outputs.parameters.approved}}' == 'true'"
    )
    fix_outputs = {p["name"] for p in templates["fix"]["outputs"]["parameters"]}
    assert fix_outputs == {"result", "rollback"}
    rollback = templates["fix-rollback"]
    assert rollback["container"]["command"] == ["pf-runtime", "remediation-rollback"]
    assert rollback["serviceAccountName"] == "punchingfist-remediator"
    (result,) = rollback["outputs"]["parameters"]
    assert result["globalName"] == "pf_result_fix", "its result is the step's final one"
    request = spec_of(templates["fix-rollback-approval-request"])
    assert request.approval is not None and request.approval.gate == "fix-rollback-approval"
    assert "roll back the fix of step fix" in request.approval.summary
    assert spec_of(rollback).inputs == ["investigate", "fix-preview", "fix"]


# -- refusals before kubectl ---------------------------------------------------------------


def task_spec(
    given: Any, policy: ActionPolicy | None = None, dry_run: bool = False
) -> tuple[TaskSpec, dict[str, str]]:
    task = RemediationTask(
        fix_from="investigate",
        policy=policy or ActionPolicy(namespaces=["shop"]),
        check=RemediationCheck(),
        dry_run=dry_run,
        account="punchingfist-remediator",
        preview="fix-preview",
    )
    spec = TaskSpec(
        kind="remediation-preview",
        workflow="wf",
        step="fix",
        inputs=["investigate"],
        remediation=task,
    )
    answer = {"step": "investigate", "kind": "agent", "success": True, "result": {"fix": given}}
    return spec, {result_env("investigate"): json.dumps(answer), "PF_NAMESPACE": "pf"}


WEB = {"kind": "Deployment", "namespace": "shop", "name": "web"}
SET_MEMORY: dict[str, Any] = {
    "action": "set-resources",
    "target": WEB,
    "container": "web",
    "limits": {"memory": "1Gi"},
}


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        (
            {
                "action": "patch",
                "target": {"kind": "Secret", "namespace": "shop", "name": "db"},
                "patch": {"data": {}},
            },
            "not a valid action: Value error, a Secret is never patched",
        ),
        (
            {"action": "delete-namespace", "target": {"kind": "Namespace", "name": "shop"}},
            "not a valid action",
        ),
        (
            {**SET_MEMORY, "target": {**WEB, "namespace": "kube-system"}},
            "kube-system is outside",
        ),
        ({**SET_MEMORY, "action": "scale", "replicas": 2, "container": None}, "not a valid action"),
    ],
)
def test_an_action_outside_the_policy_is_never_offered(
    given: Any, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, environ = task_spec(given)
    result = preview(spec, environ, NO_KUBECTL)
    shown = result["result"]["preview"]
    assert result["result"]["offered"] is False and shown["offered"] is False
    assert reason in shown["refused"]
    assert "NOT offered" in capsys.readouterr().out
    applied = apply(
        spec.model_copy(update={"kind": "remediation"}),
        {**environ, result_env("fix-preview"): json.dumps(result), "PF_APPROVED": "true"},
        NO_KUBECTL,
    )
    assert applied["success"] is False and applied["result"]["applied"] is False
    assert applied["result"]["outcome"] == "not applied" and "not offered" in applied["error"]


def test_no_fix_proposed_skips_the_fix() -> None:
    spec, environ = task_spec(None)
    result = preview(spec, environ, NO_KUBECTL)
    assert result["result"] == {"offered": False, "skipped": True}
    applied = apply(spec, {**environ, result_env("fix-preview"): json.dumps(result)}, NO_KUBECTL)
    assert applied["success"] is True and applied["result"]["outcome"] == "no fix"


def offered_preview() -> dict[str, Any]:
    """The result of a preview task that offered SET_MEMORY."""
    shown = {"action": SET_MEMORY, "description": "d", "command": "c", "target": "t"}
    offered = {"preview": {**shown, "offered": True}, "offered": True}
    kind = "remediation-preview"
    return {"step": "fix-preview", "kind": kind, "success": True, "result": offered}


def test_a_dry_run_records_the_preview_and_applies_nothing() -> None:
    spec, environ = task_spec(SET_MEMORY, dry_run=True)
    previewed = offered_preview()
    applied = apply(spec, {**environ, result_env("fix-preview"): json.dumps(previewed)}, NO_KUBECTL)
    assert applied["success"] is True
    assert (
        applied["result"]["outcome"] == "previewed (dry run)"
        and applied["result"]["applied"] is False
    )


def test_a_rollback_runs_only_for_a_waiting_fix_and_only_when_approved() -> None:
    spec, environ = task_spec(SET_MEMORY)
    rolling = spec.model_copy(update={"kind": "remediation-rollback"})
    record = {"preview": offered_preview()["result"]["preview"], "verdict": "made worse"}
    for waiting, approved, reason in (
        (False, "true", "does not wait for a rollback"),
        (True, "false", "rollback was not approved"),
    ):
        fixed = {"step": "fix", "kind": "remediation", "success": False}
        fixed["result"] = {**record, "rollback_pending": waiting}
        answer = {**environ, result_env("fix"): json.dumps(fixed), "PF_APPROVED": approved}
        done = rollback(rolling, answer, NO_KUBECTL)
        assert done["success"] is False and reason in done["error"]


def test_an_unapproved_fix_is_not_applied() -> None:
    spec, environ = task_spec(SET_MEMORY)
    gated = spec.model_copy(update={"gated": True})
    previewed = offered_preview()
    applied = apply(
        gated,
        {**environ, result_env("fix-preview"): json.dumps(previewed), "PF_APPROVED": "false"},
        NO_KUBECTL,
    )
    assert applied["success"] is False and "not approved" in applied["error"]


def test_punchingfist_run_dry_run_previews_and_never_asks(tmp_path: Path) -> None:
    declared = {**SET_MEMORY, "container": "{{ .source.data.alert.labels.container }}"}
    workflow = {
        "apiVersion": "punchingfist.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "fix-it"},
        "spec": {"steps": [remediation(action=declared)]},
    }
    (tmp_path / "wf.yaml").write_text(yaml.safe_dump(workflow))
    alert = str(EXAMPLES / "alerts" / "pod-crashlooping.json")
    args = ["run", "-f", str(tmp_path / "wf.yaml"), "--event", alert]
    environ = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": "/nonexistent"}
    runs = {}
    for mode in ("--dry-run", "--approve"):
        done = subprocess.run(
            [PUNCHINGFIST, *args, mode, "-o", "json", "-q"],
            capture_output=True,
            text=True,
            env=environ,
            timeout=120,
            check=False,
        )
        runs[mode] = json.loads(done.stdout)
    dry = {step["step"]: step for step in runs["--dry-run"]["steps"]}
    assert runs["--dry-run"]["approvals"] == [], "a dry run has no gate"
    outcome = dry["fix"]["result"]["outcome"]
    assert outcome.startswith("previewed (dry run), not offered: ")
    assert dry["fix"]["result"]["preview"]["action"]["container"] == "my-app", "rendered"
    assert dry["fix"]["result"]["applied"] is False
    # Without --dry-run the same fix, which no API server could dry-run here, is never offered:
    # no approval is asked and the fix task does not run.
    wet = {step["step"]: step for step in runs["--approve"]["steps"]}
    assert runs["--approve"]["approvals"] == []
    assert wet["fix"]["phase"] == "Skipped", wet["fix"]
