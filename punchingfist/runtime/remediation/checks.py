"""The post-check of a fix: the workload rolled out and its pods stay Ready, a replacement pod
is Ready, the node's schedulability; optionally the alert resolved and a PromQL condition."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from punchingfist.api.actions import (
    POD_CONTROLLERS,
    WORKLOADS,
    AnyAction,
    Cordon,
    DeletePod,
    Target,
)
from punchingfist.api.base import duration_seconds
from punchingfist.api.workflows import RemediationCheck
from punchingfist.runtime.remediation.diffing import expectation_holds
from punchingfist.runtime.remediation.kube import Kube, KubeError

POLL_SECONDS = 3.0
ALERT_POLL_SECONDS = 15.0
"""How often Alertmanager is asked whether the alert still fires."""


@dataclass
class Report:
    """What a check saw: `passed`, whether the rollout completed, ready replicas after, and a
    line per thing checked (printed and kept in the result)."""

    passed: bool = True
    rolled_out: bool = True
    ready: int = 0
    lines: list[str] = field(default_factory=list)

    def note(self, ok: bool, line: str) -> None:
        self.passed = self.passed and ok
        self.lines.append(("✔ " if ok else "✘ ") + line)
        print(f"  {'✔' if ok else '✘'} {line}", flush=True)


def ready_counts(obj: Mapping[str, Any]) -> tuple[int, int]:
    """(ready, desired) replicas of a workload, as its status says."""
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if obj.get("kind") == "DaemonSet":
        return int(status.get("numberReady") or 0), int(status.get("desiredNumberScheduled") or 0)
    desired = spec.get("replicas")
    return int(status.get("readyReplicas") or 0), int(1 if desired is None else desired)


def _selector(obj: Mapping[str, Any]) -> str:
    labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def restarts(kube: Kube, obj: Mapping[str, Any]) -> int:
    """Container restarts of the workload's pods (an OOM-killed container restarts)."""
    selector = _selector(obj)
    namespace = (obj.get("metadata") or {}).get("namespace") or ""
    if not selector:
        return 0
    total = 0
    for pod in kube.list("pods", namespace, selector):
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            total += int(container.get("restartCount") or 0)
    return total


def workload(kube: Kube, target: Target, check: RemediationCheck, report: Report) -> None:
    """The rollout completes within the timeout, then every desired pod stays Ready and no
    container restarts for `readySeconds`."""
    if target.kind != "ReplicaSet":
        done, message = kube.rollout_status(target, check.timeout_seconds)
        report.rolled_out = done
        report.note(done, f"rollout of {target}: {message}")
        if not done:
            report.ready = ready_counts(kube.get(target, quiet=True))[0]
            return
    obj = kube.get(target, quiet=True)
    baseline = restarts(kube, obj)
    deadline = time.monotonic() + check.ready_seconds
    while True:
        ready, desired = ready_counts(obj)
        report.ready = ready
        now_restarts = restarts(kube, obj)
        if ready < desired or now_restarts > baseline:
            why = f"{ready}/{desired} ready" + (
                f", {now_restarts - baseline} container restart(s)"
                if now_restarts > baseline
                else ""
            )
            report.note(False, f"pods of {target} did not stay Ready: {why}")
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(POLL_SECONDS)
        obj = kube.get(target, quiet=True)
    report.note(True, f"{ready}/{desired} pods of {target} Ready for {check.ready_seconds} s")


def replacement(kube: Kube, deleted: Mapping[str, Any], check: RemediationCheck, r: Report) -> None:
    """A deleted pod's controller has as many Ready pods as it wants again, the deleted one
    not among them (a replacement is Ready)."""
    metadata = deleted.get("metadata") or {}
    why = unreplaced(deleted)
    if why is not None:
        r.note(False, why)
        return
    namespace = metadata.get("namespace")
    (controller,) = [o for o in metadata.get("ownerReferences") or [] if o.get("controller")]
    owner = Target(kind=controller["kind"], namespace=namespace, name=controller["name"])
    deadline = time.monotonic() + check.timeout_seconds
    while True:
        obj = kube.get(owner, quiet=True)
        desired = ready_counts(obj)[1]
        ready = [
            pod
            for pod in kube.list("pods", namespace or "", _selector(obj))
            if (pod.get("metadata") or {}).get("uid") != metadata.get("uid") and _is_ready(pod)
        ]
        r.ready = len(ready)
        if len(ready) >= desired:
            names = ", ".join(p["metadata"]["name"] for p in ready) or "none needed"
            r.note(True, f"{owner} has {len(ready)}/{desired} pods Ready without it ({names})")
            return
        if time.monotonic() >= deadline:
            r.rolled_out = False
            r.note(
                False,
                f"{owner} has {len(ready)}/{desired} pods Ready after {check.timeout_seconds} s",
            )
            return
        time.sleep(POLL_SECONDS)


def unreplaced(pod: Mapping[str, Any]) -> str | None:
    """Why nothing verifiably replaces `pod` once deleted (no controller, or one whose
    replacement the post-check cannot follow: a Job, a Node's static pod, a custom
    controller), or None when its controller is a ReplicaSet, StatefulSet or DaemonSet."""
    owners = (pod.get("metadata") or {}).get("ownerReferences") or []
    controllers = [o for o in owners if o.get("controller")]
    if not controllers:
        return "the pod has no controller: nothing would replace it"
    kind = str(controllers[0].get("kind") or "?")
    if kind not in POD_CONTROLLERS or len(controllers) != 1:
        return (
            f"the pod's controller is a {kind}: its replacement cannot be checked (delete-pod "
            f"is offered for pods of a {', '.join(POD_CONTROLLERS[:-1])} or {POD_CONTROLLERS[-1]})"
        )
    return None


def _is_ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def alert_resolved(url: str, alertname: str, within: str, report: Report) -> None:
    """No active alert named `alertname` in Alertmanager (GET /api/v2/alerts) within `within`."""
    query = urllib.parse.urlencode(
        {"filter": f'alertname="{alertname}"', "active": "true", "silenced": "false"}
    )
    deadline = time.monotonic() + duration_seconds(within)
    while True:
        try:
            with urllib.request.urlopen(
                f"{url.rstrip('/')}/api/v2/alerts?{query}", timeout=10
            ) as r:
                firing = json.loads(r.read())
        except (urllib.error.URLError, OSError, ValueError) as error:
            report.note(False, f"Alertmanager at {url} did not answer: {error}")
            return
        if not firing:
            report.note(True, f"alert {alertname} is resolved in Alertmanager")
            return
        left = deadline - time.monotonic()
        if left <= 0:
            report.note(False, f"alert {alertname} still fires after {within}")
            return
        time.sleep(min(ALERT_POLL_SECONDS, left))


def promql(url: str, query: str, expect: str, report: Report) -> None:
    """The query's values meet `expect` (`empty` or a comparison such as `== 0`)."""
    data = urllib.parse.urlencode({"query": query}).encode()
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/v1/query", data=data, timeout=20) as r:
            body = json.loads(r.read())
        values = [float(item["value"][1]) for item in body["data"]["result"]]
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as error:
        report.note(False, f"Prometheus query failed: {error}")
        return
    ok = expectation_holds(values, expect)
    report.note(ok, f"{query} is {values or 'empty'} (expected {expect})")


def post_check(
    kube: Kube,
    action: AnyAction,
    check: RemediationCheck,
    before: Mapping[str, Any],
) -> Report:
    """The action's default check (unless `rollout: false`), then the declared ones are left
    to `declared` (they do not apply to a rollback's verification)."""
    report = Report()
    target = action.target
    if check.rollout is False:
        report.lines.append("no rollout check (check.rollout is false)")
    elif isinstance(action, DeletePod):
        replacement(kube, before, check, report)
    elif isinstance(action, Cordon):
        node = kube.get(target, quiet=True)
        wanted = action.action == "cordon"
        actual = bool((node.get("spec") or {}).get("unschedulable"))
        report.note(actual == wanted, f"{target} unschedulable is {str(actual).lower()}")
    elif target.kind in WORKLOADS:
        workload(kube, target, check, report)
    else:
        report.lines.append(f"no default check for a {target.kind}")
    return report


def declared(
    check: RemediationCheck,
    environ: Mapping[str, str],
    alertname: str | None,
    query: str | None,
    report: Report,
) -> None:
    """The optional checks: the alert resolved, the PromQL condition."""
    if check.alert_resolved is not None:
        url = environ.get("ALERTMANAGER_URL", "")
        name = check.alert_resolved.alertname or alertname
        if not url or not name:
            missing = "ALERTMANAGER_URL in runtime.environment" if not url else "the alert's name"
            report.note(False, f"alertResolved cannot be checked without {missing}")
        else:
            alert_resolved(url, name, check.alert_resolved.within, report)
    if check.promql is not None and query is not None:
        url = environ.get("PROMETHEUS_URL", "")
        if not url:
            report.note(False, "promql cannot be checked without PROMETHEUS_URL")
        else:
            promql(url, query, check.promql.expect, report)


__all__ = ["KubeError", "Report", "declared", "post_check", "ready_counts", "restarts"]
