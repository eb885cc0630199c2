"""The two tasks of a remediation step: `remediation-preview` (what the fix would change, for
the approver) and `remediation` (apply it once approved, check it, roll it back if it failed).

Their results are the audit trail: the action, the diff, the version approved, the state saved
before the fix, each check and its verdict, the rollback and its verification.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from punchingfist.api.actions import (
    WORKLOADS,
    Action,
    AnyAction,
    Change,
    Cordon,
    DeletePod,
    Preview,
    Rbac,
    RolloutUndo,
    as_command,
    change,
    describe,
    refusal,
)
from punchingfist.api.runspec import RemediationTask, StepResult, TaskSpec, result_env
from punchingfist.runtime.context import build_context, step_result
from punchingfist.runtime.remediation import checks
from punchingfist.runtime.remediation.diffing import (
    REVISION,
    bare,
    diff,
    digest,
    revision_template,
    verdict,
)
from punchingfist.runtime.remediation.kube import Kube, KubeError
from punchingfist.templating import compile_template

_ACTION = TypeAdapter(Action)
CONFLICT = "the object changed since the preview: re-run to ask again"
STATUS_RETRIES = 5
"""Attempts at a patch whose object moved only in its status since the preview."""


def _say(line: str) -> None:
    print(line, flush=True)


def _rendered(value: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return compile_template(value).render(context) if "{{" in value else value
    if isinstance(value, dict):
        return {k: _rendered(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [_rendered(v, context) for v in value]
    return value


def proposed(spec: TaskSpec, task: RemediationTask, environ: Mapping[str, str]) -> Any:
    """The action as given: the agent step's `result.fix`, or the declared one rendered (None
    when the agent proposed no fix)."""
    if task.fix_from is not None:
        answer = step_result(task.fix_from, environ.get(result_env(task.fix_from)))
        result = answer.get("result")
        return result.get("fix") if isinstance(result, dict) else None
    return _rendered(task.action, build_context(spec, environ))


def preview(spec: TaskSpec, environ: Mapping[str, str], kube: Kube) -> dict[str, Any]:
    """The preview: the policy's verdict, the object now, the server-side dry run's would-be
    object and their diff, and whether RBAC lets the remediator apply it."""
    task = spec.remediation
    assert task is not None and spec.step is not None
    name = f"{spec.step}-preview"
    given = proposed(spec, task, environ)
    if given is None:
        _say(f"no fix proposed by step {task.fix_from}: nothing to preview, the fix is skipped")
        return _result(name, "remediation-preview", True, {"offered": False, "skipped": True})
    try:
        action: AnyAction = _ACTION.validate_python(given)
    except ValidationError as error:
        problem = "; ".join(str(e["msg"]) for e in error.errors())
        _say(f"the proposed fix is not a valid action, never offered: {problem}")
        shown = given if isinstance(given, dict) else {"given": given}
        invalid = Preview(
            action=shown,
            description="an invalid action",
            command="",
            target="",
            refused=f"not a valid action: {problem}",
        )
        return _preview_result(name, invalid, {})
    base: dict[str, Any] = {
        "action": action.model_dump(mode="json", exclude_none=True),
        "description": describe(action),
        "command": as_command(action),
        "target": str(action.target),
    }
    _say(f"fix: {base['description']}\n  (as a command: {base['command']})")
    why = refusal(action, task.policy)
    if why is not None:
        _say(f"refused by the step's policy, never offered: {why}")
        return _preview_result(name, Preview(**base, refused=why), {})
    try:
        now = kube.get(action.target)
    except KubeError as error:
        _say(f"cannot read {action.target}: {error.message}")
        return _preview_result(
            name, Preview(**base, dry_run="rejected", dry_run_error=error.message), {}
        )
    lone = checks.unreplaced(now) if isinstance(action, DeletePod) else None
    if lone is not None:
        _say(f"never offered: {lone}")
        return _preview_result(name, Preview(**base, refused=lone), {})
    version = str((now.get("metadata") or {}).get("resourceVersion") or "") or None
    extra: dict[str, Any] = {"digest": digest(now), "uid": (now.get("metadata") or {}).get("uid")}
    try:
        template = None
        if isinstance(action, RolloutUndo):
            revision, template = _undo_template(kube, action, now)
            extra["revision"] = revision
            _say(f"  revision {revision}'s pod template read from its ReplicaSet")
        planned = change(action, template=template)
        after = _dry_run(kube, action, planned)
    except (KubeError, ValueError) as error:
        message = error.message if isinstance(error, KubeError) else str(error)
        _say(f"the API server rejects the dry run, never offered: {message}")
        return _preview_result(
            name,
            Preview(**base, resource_version=version, dry_run="rejected", dry_run_error=message),
            extra,
        )
    extra["change"] = planned.model_dump(mode="json")
    changes = diff(now, after, str(action.target))
    # who kubectl really is (the step's account in a pod, the kubeconfig's user in a local
    # run), else the account the step is compiled to run as
    account = kube.whoami() or (
        f"system:serviceaccount:{environ.get('PF_NAMESPACE', '')}:{task.account}"
    )
    try:
        allowed, reason = kube.may_apply(action)
    except KubeError as error:
        allowed, reason = False, error.message
    rbac = Rbac(allowed=allowed, account=account, reason=reason)
    _say(f"  RBAC for {account}: {'allowed' if allowed else 'denied: ' + reason}")
    result = Preview(
        **base,
        resource_version=version,
        diff=changes,
        dry_run="accepted",
        rbac=rbac,
        offered=allowed,
    )
    _say(f"server-side dry run accepted; the diff:\n{changes or '(no change)'}")
    return _preview_result(name, result, extra)


def _undo_template(kube: Kube, action: RolloutUndo, now: Mapping[str, Any]) -> tuple[int, Any]:
    metadata = now.get("metadata") or {}
    current = int((metadata.get("annotations") or {}).get(REVISION) or 0)
    namespace = action.target.namespace or ""
    owned = [
        rs
        for rs in kube.list("replicasets", namespace)
        if any(
            o.get("uid") == metadata.get("uid") for o in rs["metadata"].get("ownerReferences") or []
        )
    ]
    return revision_template(owned, current, action.revision)


def _dry_run(kube: Kube, action: AnyAction, planned: Change) -> dict[str, Any] | None:
    if planned.type == "delete":
        kube.delete(action.target, dry_run=True)
        return None
    return kube.patch(action.target, planned.type, planned.body, dry_run=True)


def _preview_result(name: str, shown: Preview, extra: dict[str, Any]) -> dict[str, Any]:
    value = {"preview": shown.model_dump(mode="json"), "offered": shown.offered, **extra}
    if not shown.offered:
        _say("the fix is NOT offered for approval")
    return _result(name, "remediation-preview", True, value)


def _result(
    step: str, kind: str, success: bool, value: dict[str, Any], error: str | None = None
) -> dict[str, Any]:
    return StepResult(
        step=step,
        kind=kind,
        success=success,
        phase="Succeeded" if success else "Failed",
        result=value,
        error=error,
    ).model_dump(mode="json")


# -- applying -----------------------------------------------------------------------------


def apply(spec: TaskSpec, environ: Mapping[str, str], kube: Kube) -> dict[str, Any]:
    """Apply the approved preview's change guarded by its resourceVersion, check it, and roll
    it back when the check fails (onFailure rollback)."""
    task = spec.remediation
    assert task is not None and spec.step is not None
    step = spec.step
    seen = step_result(task.preview, environ.get(result_env(task.preview)))
    previewed = seen.get("result") if isinstance(seen.get("result"), dict) else {}
    assert isinstance(previewed, dict)
    if previewed.get("skipped"):
        _say("no fix was proposed: nothing to apply")
        return _result(step, "remediation", True, {"outcome": "no fix", "applied": False})
    if not previewed.get("preview"):
        return _refused(step, {}, f"the preview ({task.preview}) did not run: nothing to apply")
    shown = Preview.model_validate(previewed["preview"])
    record: dict[str, Any] = {"preview": shown.model_dump(mode="json"), "applied": False}
    if task.dry_run:
        outcome = "previewed (dry run)"
        if not shown.offered:
            outcome += f", not offered: {_why_not(shown)}"
        _say(f"dry run (spec.dryRun): {shown.description}: {outcome}; nothing applied")
        return _result(step, "remediation", True, {**record, "outcome": outcome})
    if not shown.offered:
        return _refused(
            step, record, f"the fix was not offered ({_why_not(shown)}): nothing applied"
        )
    if spec.gated and environ.get("PF_APPROVED") != "true":
        return _refused(step, record, "the fix was not approved: nothing applied")
    action: AnyAction = _ACTION.validate_python(shown.action)
    planned = Change.model_validate(previewed["change"])
    who = environ.get("PF_APPROVER") or "(no approver recorded)"
    if environ.get("PF_APPROVER"):
        record["approver"] = environ["PF_APPROVER"]
    _say(f"applying the approved fix (approved by {who}): {shown.description}")
    try:
        before = kube.get(action.target)
    except KubeError as error:
        return _refused(step, record, f"cannot read {action.target}: {error.message}")
    ready_before = checks.ready_counts(before)[0] if action.target.kind in WORKLOADS else 0
    record["saved"] = {"object": bare(before), "ready_replicas": ready_before}
    record["saved"]["revision"] = ((before.get("metadata") or {}).get("annotations") or {}).get(
        REVISION
    )
    _say(f"  saved the state before the fix ({ready_before} ready replicas)")
    try:
        after = _apply(kube, action, planned, shown, previewed, before)
    except KubeError as error:
        if error.conflict:
            _say(f"CONFLICT: {CONFLICT} ({error.message})")
            return _result(step, "remediation", False, {**record, "outcome": "conflict"}, CONFLICT)
        return _refused(step, record, f"the API server refused the fix: {error.message}")
    record["applied"] = True
    record["generation"] = (after.get("metadata") or {}).get("generation") if after else None
    _say("applied; post-check:")
    report = checks.post_check(kube, action, task.check, before)
    context = build_context(spec, environ)
    query = _rendered(task.check.promql.query, context) if task.check.promql else None
    checks.declared(task.check, environ, _alertname(context), query, report)
    outcome = verdict(report.passed, ready_before, report.ready, report.rolled_out)
    record["check"] = report.lines
    record["verdict"] = outcome
    _say(f"post-check: {outcome}")
    final: str = outcome
    if outcome != "fixed":
        if task.on_failure == "rollback" or isinstance(action, DeletePod):
            final = _rollback(kube, action, task, record, outcome)
        elif task.on_failure == "ask":
            _say("onFailure is ask: the rollback waits for an approval (<step>-rollback-approval)")
            record["rollback_pending"] = True
            final = f"{outcome}, rollback awaits approval"
        else:
            _say("onFailure is leave: the fix stays as it is")
            final = f"{outcome}, left as it is"
    record["outcome"] = final
    _say(f"outcome: {final}")
    return _result(
        step, "remediation", outcome == "fixed", record, None if outcome == "fixed" else final
    )


def rollback(spec: TaskSpec, environ: Mapping[str, str], kube: Kube) -> dict[str, Any]:
    """onFailure ask, once the rollback is approved: put back the state the fix task saved
    (its result, PF_RESULT_<STEP>) and verify it."""
    task = spec.remediation
    assert task is not None and spec.step is not None
    fixed = step_result(spec.step, environ.get(result_env(spec.step)))
    record = dict(fixed.get("result") or {})
    if not record.get("rollback_pending"):
        return _refused(spec.step, record, "the fix does not wait for a rollback: nothing done")
    if environ.get("PF_APPROVED") != "true":
        return _refused(spec.step, record, "the rollback was not approved: nothing done")
    action: AnyAction = _ACTION.validate_python(record["preview"]["action"])
    who = environ.get("PF_APPROVER") or "(no approver recorded)"
    if environ.get("PF_APPROVER"):
        record["rollback_approver"] = environ["PF_APPROVER"]
    _say(f"rolling back the failed fix (approved by {who}): {describe(action)}")
    record["rollback_pending"] = False
    final = _rollback(kube, action, task, record, str(record.get("verdict")))
    record["outcome"] = final
    _say(f"outcome: {final}")
    return _result(spec.step, "remediation", False, record, final)


def _why_not(shown: Preview) -> str:
    return shown.refused or shown.dry_run_error or (shown.rbac.reason if shown.rbac else "")


def _refused(step: str, record: dict[str, Any], why: str) -> dict[str, Any]:
    _say(why)
    return _result(step, "remediation", False, {**record, "outcome": "not applied"}, why)


def _apply(
    kube: Kube,
    action: AnyAction,
    planned: Change,
    shown: Preview,
    previewed: Mapping[str, Any],
    before: Mapping[str, Any],
) -> dict[str, Any] | None:
    """Apply the change only to the object the approver saw. Its resourceVersion is the
    precondition; when only its status moved since (the same content, `digest`), the change
    is applied to the current version of that same content."""
    same = digest(before) == previewed.get("digest")
    if isinstance(action, DeletePod):
        uid = (before.get("metadata") or {}).get("uid")
        if not same or uid != previewed.get("uid"):
            raise KubeError(f"pod {action.target.name} is not the one previewed", conflict=True)
        kube.delete(action.target, dry_run=False)
        return None
    version = shown.resource_version
    for _ in range(STATUS_RETRIES):
        try:
            return kube.patch(action.target, planned.type, planned.guarded(version), dry_run=False)
        except KubeError as error:
            if not error.conflict:
                raise
            now = kube.get(action.target, quiet=True)
            if digest(now) != previewed.get("digest"):
                raise
            version = str((now.get("metadata") or {}).get("resourceVersion") or "")
            _say(f"  only the status changed since the preview: applying at version {version}")
    raise KubeError("the object's status kept changing: re-run to ask again", conflict=True)


def _alertname(context: Mapping[str, Any]) -> str | None:
    data = (context.get("source") or {}).get("data") or {}
    found = data.get("alert")
    alert: dict[str, Any] = found if isinstance(found, dict) else {}
    for holder in (alert, alert.get("labels"), data.get("labels"), data.get("commonLabels"), data):
        if isinstance(holder, dict) and isinstance(holder.get("alertname"), str):
            return str(holder["alertname"])
    return None


def _rollback(
    kube: Kube, action: AnyAction, task: RemediationTask, record: dict[str, Any], outcome: str
) -> str:
    """Put the saved state back, guarded by the fix's own generation (nobody changed the spec
    since), and verify it the same way as the fix."""
    if isinstance(action, DeletePod):
        _say("a deleted pod cannot be rolled back")
        record["rolled_back"] = False
        return f"{outcome}, not rolled back (a deleted pod cannot be)"
    saved = record["saved"]["object"]
    body = rollback_patch(action, saved, record.get("generation"))
    _say(f"rolling back: {len(body)} JSON patch operation(s) to the saved state")
    try:
        kube.patch(action.target, "json", body, dry_run=False)
    except KubeError as error:
        _say(f"ROLLBACK FAILED: {error.message}")
        record["rolled_back"] = False
        record["rollback_error"] = error.message
        return f"{outcome}, rollback failed"
    record["rolled_back"] = True
    report = checks.post_check(kube, action, task.check, saved)
    record["rollback_check"] = report.lines
    record["rollback_verified"] = report.passed
    _say(f"rollback {'verified' if report.passed else 'NOT verified'}")
    return f"{outcome}, rolled back" + ("" if report.passed else " (not verified)")


def rollback_patch(
    action: AnyAction, saved: Mapping[str, Any], generation: Any
) -> list[dict[str, Any]]:
    """The JSON patch that puts the saved state back: a workload's pod template and replicas,
    a node's schedulability, else the object's content (spec, data) and labels/annotations."""
    guard = (
        [{"op": "test", "path": "/metadata/generation", "value": generation}] if generation else []
    )
    spec = saved.get("spec") or {}
    if action.target.kind in WORKLOADS:
        ops = [{"op": "replace", "path": "/spec/template", "value": spec.get("template")}]
        if "replicas" in spec:
            ops.append({"op": "replace", "path": "/spec/replicas", "value": spec["replicas"]})
        return guard + ops
    if isinstance(action, Cordon):
        value = bool(spec.get("unschedulable"))
        return [{"op": "add", "path": "/spec/unschedulable", "value": value}]
    ops = [
        {"op": "add", "path": f"/{key}", "value": value}
        for key, value in saved.items()
        if key not in ("apiVersion", "kind", "metadata", "status")
    ]
    metadata = saved.get("metadata") or {}
    for key in ("labels", "annotations"):
        ops.append({"op": "add", "path": f"/metadata/{key}", "value": metadata.get(key) or {}})
    return guard + ops
