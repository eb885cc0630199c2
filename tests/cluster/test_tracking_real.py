"""Run tracking from real runs on the node (#20): what the operator records of an Argo Workflow
while Argo runs it and after, shown by runs that reach each state for real (they replace the
e2e tests that wrote Argo's statuses by hand, or ran gates without their pods).

- An alert's run: while its first step sleeps the run is running, the alert is in triage and
  the operator counts an active task; its approval gate waits (a pending approval) until its
  deadline passes (a denial by timeout; the gated step is skipped); a retried step that keeps
  failing is one step record; the run fails naming that step, and its `workflow` sink,
  delivered, escalates the alert.
- Gates answered outside the server (`argo node set` + `argo resume`): recorded with their
  approver and channel `argo`; an approved step runs with the approver in its environment, a
  denied one is skipped. A gate answered through the operator's REST API by a Kubernetes user
  bound to `punchingfist-approver` is recorded as that user's, once; a forged Slack click
  changes nothing. An `argo submit`ted run gets its source and parameters in its record; a
Workflow that is not punchingfist's gets none.

The approval requests go nowhere (Slack's URL is a path the operator does not serve): a failed
request does not block its gate, which is answered here the other ways.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.cluster.support import (
    NAMESPACE,
    LiveCluster,
    ready_template,
    slack_click,
    unique,
    workflow,
)
from tests.conftest import EXAMPLES

NOWHERE = {"SLACK_API_URL": f"http://punchingfist.{NAMESPACE}.svc:8080/not-slack/"}
"""Approval requests fail at once (the operator answers 404): no Slack here."""
REPORT_APPROVAL = (
    'echo "{\\"approved\\": \\"$PF_APPROVED\\", \\"approver\\": \\"$PF_APPROVER\\", '
    '\\"comment\\": \\"$PF_APPROVAL_COMMENT\\"}"'
)
"""A gated step that prints, as its JSON result, the answer its gate passed it."""


def _nodes(cluster: LiveCluster, run: str) -> dict[str, dict[str, Any]]:
    nodes = (cluster.argo_workflow(run).get("status") or {}).get("nodes") or {}
    return {n.get("displayName", ""): n for n in nodes.values()}


def _waiting_at_gate(cluster: LiveCluster, run: str, gate: str = "fix-approval") -> None:
    cluster.wait(
        lambda: _nodes(cluster, run).get(gate, {}).get("phase") == "Running",
        f"{run} to wait at {gate}",
        180,
        lambda: cluster.describe_run(run),
    )


def _active_tasks(cluster: LiveCluster) -> float:
    with urllib.request.urlopen(f"{cluster.operator_url()}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.search(r"^punchingfist_active_tasks (\S+)$", text, re.MULTILINE)
    assert found, text[:2000]
    return float(found.group(1))


def _notification(alertname: str) -> dict[str, Any]:
    """Alertmanager's notification of one new firing alert named `alertname`."""
    payload: dict[str, Any] = json.loads(
        (EXAMPLES / "alerts" / "pod-crashlooping.json").read_text()
    )
    (alert,) = payload["alerts"]
    alert["labels"]["alertname"] = alertname
    alert["fingerprint"] = uuid.uuid4().hex[:16]
    alert["startsAt"] = datetime.now(UTC).isoformat()
    payload["groupKey"] = f'{{}}:{{alertname="{alertname}"}}'
    return payload


@pytest.mark.timeout(900)
def test_an_alerts_run_is_tracked_running_gated_past_its_deadline_failed_and_escalated(
    cluster: LiveCluster,
) -> None:
    name, chained = unique("tracked"), unique("escalated-to")
    path = f"/webhook/{name}"
    pf = {"apiVersion": "punchingfist.io/v1alpha1"}
    cluster.apply(workflow(chained, [{"name": "take-over", "type": "cli", "command": "echo ok"}]))
    cluster.apply(
        {
            **pf,
            "kind": "Source",
            "metadata": {"name": chained},
            "spec": {"type": "api", "triggerWorkflow": chained},
        }
    )
    cluster.apply(
        {
            **pf,
            "kind": "Sink",
            "metadata": {"name": chained},
            "spec": {"type": "workflow", "config": {"workflowName": chained}},
        }
    )
    steps: list[dict[str, Any]] = [
        {"name": "look", "type": "cli", "command": "sleep 20; echo '{\"looked\": true}'"},
        {
            "name": "fix",
            "type": "cli",
            "command": "echo fixed",
            "approvalRequired": True,
            "approvalTimeoutMinutes": 0.5,
        },
        {
            "name": "check",
            "type": "cli",
            "command": "echo 'the workload is still down' >&2; exit 3",
            "policy": {"retryPolicy": {"maxAttempts": 2, "backoff": "fixed", "initialDelay": "1s"}},
        },
    ]
    document = workflow(name, steps, environment=NOWHERE)
    document["spec"]["outputs"] = [
        {"name": "auto_fixed", "value": "{{ .steps.fix.success | default false }}"}
    ]
    document["spec"]["sinks"] = [{"name": chained, "condition": "{{ not .outputs.auto_fixed }}"}]
    cluster.apply(document)
    cluster.apply(
        {
            **pf,
            "kind": "Source",
            "metadata": {"name": name},
            "spec": {"type": "webhook", "config": {"path": path}, "triggerWorkflow": name},
        }
    )
    ready_template(cluster, name)
    ready_template(cluster, chained)

    (run,) = cluster.notify(path, _notification(name))["runs"]
    cluster.created.append(("workflows.argoproj.io", run))

    # While `look` sleeps: the run is running, its alert in triage, an active task counted.
    def looking(record: dict[str, Any]) -> bool:
        return any(s["name"] == "look" and s["phase"] == "Running" for s in record["steps"])

    record = cluster.run_record(run, looking, timeout=180)
    assert record["status"] == "running" and record["started_at"], record
    assert record["finished_at"] is None and record["approvals"] == [], record
    alert = cluster.operator_get(f"/api/v1/alerts/{record['alert_id']}")
    assert alert["status"] == "triaging" and alert["triage_started_at"], alert
    assert alert["triage_completed_at"] is None and alert["resolved_at"] is None, alert
    assert _active_tasks(cluster) >= 1

    # The gate waits: a pending approval, until the deadline answers it.
    def gate_waits(record: dict[str, Any]) -> bool:
        return [a["decision"] for a in record["approvals"]] == ["pending"]

    record = cluster.run_record(run, gate_waits, timeout=120)
    assert record["status"] == "running"
    (pending,) = record["approvals"]
    assert pending["gate"] == "fix-approval" and pending["requested_at"], pending

    finished = cluster.finished(run, timeout=300)
    assert finished["status"]["phase"] == "Failed", cluster.describe_run(run)
    nodes = _nodes(cluster, run)
    assert nodes["fix"]["phase"] in ("Skipped", "Omitted"), nodes["fix"]
    assert {"check(0)", "check(1)"} <= set(nodes), sorted(nodes)  # Argo really retried it

    record = cluster.run_record(run, lambda r: r["status"] == "failed" and r["sink_deliveries"])
    assert "step 'check'" in record["error"], record["error"]
    phases = {s["name"]: (s["kind"], s["phase"]) for s in record["steps"]}
    assert phases["look"] == ("cli", "Succeeded"), phases
    assert phases["fix-approval"] == ("approval", "Succeeded"), phases
    assert phases["fix"][1] in ("Skipped", "Omitted"), phases
    # the retried step is one record, its Retry node: not one per attempt
    assert phases["check"][1] == "Failed" and not any(n.startswith("check(") for n in phases)
    (approval,) = record["approvals"]
    assert (approval["decision"], approval["approver"], approval["channel"]) == (
        "denied",
        None,
        "timeout",
    ), approval
    assert approval["comment"] == "no answer before the deadline" and approval["decided_at"]
    (delivery,) = [d for d in record["sink_deliveries"] if d["sink_name"] == chained]
    assert delivery["outcome"] == "delivered", record["sink_deliveries"]

    alert = cluster.operator_get(f"/api/v1/alerts/{record['alert_id']}")
    assert alert["status"] == "escalated" and alert["escalated_at"], alert
    assert alert["escalated_to"] == f"workflow:{chained}", alert
    assert alert["auto_resolved"] is False and alert["resolved_at"] is None, alert
    assert alert["triage_completed_at"] is None, alert  # no agent answered


def _approve_by_rest(cluster: LiveCluster, run: str, body: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"{cluster.operator_url()}/api/v1/runs/{run}/approvals/fix-approval",
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {cluster.token('approver')}",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def _step_result(record: dict[str, Any], step: str) -> Any:
    (found,) = [s for s in record["steps"] if s["name"] == step]
    return (found["result"] or {}).get("result")


@pytest.mark.timeout(900)
def test_gates_answered_with_argo_and_through_the_operators_api(cluster: LiveCluster) -> None:
    name = unique("gated")
    steps = [{"name": "fix", "type": "cli", "command": REPORT_APPROVAL, "approvalRequired": True}]
    cluster.apply(workflow(name, steps, environment=NOWHERE))
    ready_template(cluster, name)
    event = {"alert": {"alertname": "Manual"}, "context": {}}
    approved, denied, by_api = (
        cluster.submit(name, f"event={json.dumps(event)}", "source=manual") for _ in range(3)
    )
    not_ours = _plain_argo_run(cluster)

    selector = ("--node-field-selector", "displayName=fix-approval")
    for run, answer, approver in ((approved, "true", "alice"), (denied, "false", "bob")):
        _waiting_at_gate(cluster, run)
        cluster.argo(
            "node",
            "set",
            run,
            *selector,
            "--output-parameter",
            f"approved={answer}",
            "--output-parameter",
            f"approver={approver}",
            "--output-parameter",
            "comment=from the argo CLI",
        )
        cluster.argo("resume", run, *selector)

    _waiting_at_gate(cluster, by_api)
    operator = cluster.operator_url()
    click = json.dumps({"run": by_api, "gate": "fix-approval", "decision": "approve"})
    with pytest.raises(urllib.error.HTTPError) as forged:
        slack_click(operator, "not-the-signing-secret", click, "U0MALLORY", "mallory")
    assert forged.value.code == 401
    assert _nodes(cluster, by_api)["fix-approval"]["phase"] == "Running"
    status, answer = _approve_by_rest(cluster, by_api, {"decision": "approve", "comment": "ok"})
    assert status == 200, answer
    status, answer = _approve_by_rest(cluster, by_api, {"decision": "approve"})
    assert status == 409 and "already approved" in answer, answer

    user = f"system:serviceaccount:{NAMESPACE}:pf-test-approver"
    for run, decision, approver, channel in (
        (approved, "approved", "alice", "argo"),
        (denied, "denied", "bob", "argo"),
        (by_api, "approved", user, "api"),
    ):
        finished = cluster.finished(run)
        assert finished["status"]["phase"] == "Succeeded", cluster.describe_run(run)
        record = cluster.run_record(run, lambda r: r["status"] == "succeeded")
        (gate,) = record["approvals"]
        assert (gate["decision"], gate["approver"], gate["channel"]) == (
            decision,
            approver,
            channel,
        ), gate
        (fix,) = [s for s in record["steps"] if s["name"] == "fix"]
        if decision == "denied":
            assert fix["phase"] in ("Skipped", "Omitted"), fix
            assert "fix" not in {
                n for n, node in _nodes(cluster, run).items() if node.get("type") == "Pod"
            }
        else:
            assert fix["phase"] == "Succeeded", fix
            assert _step_result(record, "fix") == {
                "approved": "true",
                "approver": approver,
                "comment": gate["comment"],
            }
        # started with `argo submit`: its source and parameters are in its record
        assert (record["workflow_name"], record["source_name"]) == (name, "manual"), record
        assert record["alert_id"] is None and record["parameters"]["event"] == event, record
    assert _approve_by_rest(cluster, approved, {"decision": "deny"})[0] == 409

    # A Workflow that is not punchingfist's (no `punchingfist.io/workflow` label) is not tracked.
    assert cluster.finished(not_ours)["status"]["phase"] == "Succeeded"
    assert cluster.operator_get(f"/api/v1/runs/{not_ours}")["status"] == 404


def _plain_argo_run(cluster: LiveCluster) -> str:
    """An Argo Workflow someone else runs in the namespace: one container, no labels of ours."""
    name = unique("not-ours")
    run = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "entrypoint": "say",
            "serviceAccountName": "punchingfist-investigator",
            "templates": [
                {
                    "name": "say",
                    "container": {"image": cluster.images["RUNTIME"], "command": ["echo", "hi"]},
                }
            ],
        },
    }
    cluster.kubectl("create", "-f", "-", stdin=json.dumps(run))
    cluster.created.append(("workflows.argoproj.io", name))
    return name
