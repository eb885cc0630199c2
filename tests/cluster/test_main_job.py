"""The main job on the real cluster (#20): an alert comes in, the agent investigates workloads
that are really broken, an approved fix heals one, a denied one stays broken.

Real: the node, Argo, the operator (its chart), Debian's Alertmanager (on the pod bridge, so
that sink pods reach it through a Service `alertmanager` as an in-cluster one would be), the
Deployments that are OOM-killed and crash-loop, the kubectl calls the agent asks for, the
ServiceAccounts' RBAC. Fake: the model (`llm-service`, scripted) and Slack (its Web API). The
Workflow is the example `agent-alert-investigation`, with two changes a user makes for their
own workspace: Slack's API URL (the fake's) and its PagerDuty sink swapped for a `workflow`
sink that chains a run through the operator's trigger API (PagerDuty is covered on real pods
by the sink tests in tests/integration).

Alertmanager reaches the operator the way a user's laptop does: `kubectl port-forward` to the
operator's Service, with the bearer token of Secret `webhook-secret`. The Slack clicks are
signed with Secret `slack-signing-secret`, as Slack signs them.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import re
import subprocess
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack.cluster.layout import NODE_IP, WORKLOAD_NAMESPACE
from tests.cluster.support import (
    NAMESPACE,
    LiveCluster,
    host_service,
    port_of,
    ready_template,
    slack_click,
    unique,
    workflow,
)
from tests.conftest import EXAMPLES, unavailable
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.saas import FakeSlack
from tests.integration import servers

SHOP = WORKLOAD_NAMESPACE
SLACK_TOKEN = "xoxb-secret"  # the example OperatorConfig's botToken
APPROVALS_CHANNEL = "C1234567890"  # ... and its channelId
REPORTS_CHANNEL = "C0PSALERTS"  # `#ops-alerts` of Sink slack-investigation-results
OOM_LIMIT, FIXED_LIMIT = "48Mi", "256Mi"
ALLOCATE = (
    "import time; block = b'x' * (96 * 2**20); print('allocated 96 MiB', flush=True); "
    "time.sleep(10**6)"
)


# -- the broken workloads ------------------------------------------------------------------


def _deployment(name: str, tier: str, command: list[str], memory: str) -> dict[str, Any]:
    limits = {"memory": memory}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": SHOP},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "tier": tier}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "app",
                            "image": "",  # set by _deploy
                            "command": command,
                            "resources": {"limits": limits, "requests": limits},
                        }
                    ],
                },
            },
        },
    }


def _deploy(cluster: LiveCluster, document: dict[str, Any]) -> None:
    document["spec"]["template"]["spec"]["containers"][0]["image"] = cluster.images["RUNTIME"]
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(document))
    cluster.created_elsewhere.append(("deployment", document["metadata"]["name"], SHOP))


def _last_states(cluster: LiveCluster, app: str) -> list[dict[str, Any]]:
    pods = cluster.get("pods", "-n", SHOP, "-l", f"app={app}")["items"]
    return [
        status
        for pod in pods
        for status in (pod.get("status") or {}).get("containerStatuses") or []
    ]


def _terminated(cluster: LiveCluster, app: str, reason: str) -> bool:
    """A container of `app` has ended with `reason` and restarted at least once."""
    for status in _last_states(cluster, app):
        ended = [
            (status.get(which) or {}).get("terminated") or {} for which in ("state", "lastState")
        ]
        if status.get("restartCount", 0) >= 1 and any(t.get("reason") == reason for t in ended):
            return True
    return False


def _ready(cluster: LiveCluster, app: str) -> bool:
    """The Deployment's pods run the fixed limit and one of them is Ready."""
    pods = cluster.get("pods", "-n", SHOP, "-l", f"app={app}")["items"]
    for pod in pods:
        limit = pod["spec"]["containers"][0]["resources"]["limits"]["memory"]
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        if limit == FIXED_LIMIT and conditions.get("Ready") == "True":
            return True
    return False


# -- things on the host, reached from pods through Services -------------------------------


@contextmanager
def _port_forward(cluster: LiveCluster) -> Iterator[str]:
    """`kubectl port-forward svc/punchingfist :8080`: the operator at a loopback URL."""
    argv = [cluster.binaries["KUBECTL"], "--kubeconfig", str(cluster.layout.kubeconfig)]
    argv += ["port-forward", "-n", NAMESPACE, "svc/punchingfist", ":8080"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert found, f"kubectl port-forward said: {line}"
        yield f"http://127.0.0.1:{found.group(1)}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _secret(cluster: LiveCluster, name: str, key: str) -> str:
    data = cluster.get("secret", name, "-n", NAMESPACE)["data"]
    return base64.b64decode(data[key]).decode()


def _fire(alertmanager: str, labels: dict[str, str], resolved: bool = False) -> None:
    """POST the alert to Alertmanager's own API, as Prometheus does."""
    now = datetime.now(UTC)
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": {"summary": f"{labels['deployment']} in {SHOP} keeps restarting"},
        "startsAt": (now - timedelta(minutes=1)).isoformat(),
    }
    if resolved:
        alert["endsAt"] = now.isoformat()
    request = urllib.request.Request(
        f"{alertmanager}/api/v2/alerts",
        data=json.dumps([alert]).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def _alerts_in(alertmanager: str, alertname: str) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"filter": f'alertname="{alertname}"'})
    with urllib.request.urlopen(f"{alertmanager}/api/v2/alerts?{query}", timeout=10) as answer:
        found: list[dict[str, Any]] = json.load(answer)
    return found


# -- Slack -----------------------------------------------------------------------------------


def _approval_request(slack: FakeSlack, run: str) -> dict[str, str] | None:
    """The Approve/Deny buttons' values of the approval request about `run`."""
    for message in slack.messages:
        if message["channel"] != APPROVALS_CHANNEL:
            continue
        for block in message.get("blocks") or []:
            values = {
                e.get("action_id"): e.get("value")
                for e in block.get("elements") or []
                if e.get("type") == "button"
            }
            if values and run in str(values):
                return values
    return None


def _gate_open(cluster: LiveCluster, run: str) -> bool:
    """The run waits at its gate (a human reads the request before clicking; a click before
    the gate opens is answered "try again")."""
    nodes = (cluster.argo_workflow(run).get("status") or {}).get("nodes") or {}
    return any(n.get("type") == "Suspend" and n.get("phase") == "Running" for n in nodes.values())


# -- the model's script ------------------------------------------------------------------------


def _final(
    summary: str, root_cause: str, fix: dict[str, Any] | None, evidence: list[str]
) -> dict[str, Any]:
    """A final answer; `fix` is a typed action (#25), never a command the model writes."""
    return {
        "kind": "final_answer",
        "summary": summary,
        "problem_summary": summary,
        "root_cause": root_cause,
        "can_auto_fix": fix is not None,
        "fix": fix,
        "confidence": 0.9,
        "escalation_notes": "See the evidence.",
        "severity_assessment": "critical",
        "recommendations": ["Raise the memory limit"],
        "evidence": evidence,
    }


def _set_memory(deployment: str) -> dict[str, Any]:
    return {
        "tool": "kubectl",
        "verb": "set-resources",
        "namespace": SHOP,
        "resource": "deployment",
        "name": deployment,
        "container": "app",
        "limits": {"memory": FIXED_LIMIT},
        "requests": {"memory": FIXED_LIMIT},
    }


def _memory_fix(deployment: str) -> dict[str, Any]:
    """The typed fix the agent proposes: raise the container's memory limit."""
    return {
        "action": "set-resources",
        "target": {"kind": "Deployment", "namespace": SHOP, "name": deployment},
        "container": "app",
        "limits": {"memory": FIXED_LIMIT},
        "requests": {"memory": FIXED_LIMIT},
    }


def _script(tier: str, web: str, crasher: str, api: str) -> list[dict[str, Any]]:
    """Run 1 reads both broken Deployments of the tier, then its fix raises web's limit;
    run 2 reads api and proposes the same fix, which is denied."""
    read = {"tool": "kubectl", "namespace": SHOP}
    return [
        {
            "thought": "Look at the tier's pods, the crashed container's log and the events.",
            "action": {
                "kind": "tool_calls",
                "calls": [
                    {
                        **read,
                        "verb": "describe",
                        "resource": "pods",
                        "label_selector": f"tier={tier}",
                    },
                    {
                        **read,
                        "verb": "logs",
                        "resource": "deployment",
                        "name": crasher,
                        "previous": True,
                    },
                    {**read, "verb": "events"},
                ],
            },
        },
        {
            "thought": f"{web} is OOMKilled at {OOM_LIMIT}; {crasher} exits after its token.",
            "action": _final(
                f"{web} is OOM-killed; {crasher} crash-loops.",
                f"{web} needs more than its {OOM_LIMIT} memory limit.",
                _memory_fix(web),
                ["call-1", "call-2", "call-3"],
            ),
        },
        {
            "thought": f"Raise {web}'s memory limit to {FIXED_LIMIT}.",
            "action": {"kind": "tool_calls", "calls": [_set_memory(web)]},
        },
        {
            "thought": "The Deployment accepted the new limit.",
            "action": _final(f"Raised {web}'s limit.", "memory limit", None, ["call-1"]),
        },
        {
            "thought": f"Look at {api}'s pods.",
            "action": {
                "kind": "tool_calls",
                "calls": [
                    {**read, "verb": "describe", "resource": "pods", "label_selector": f"app={api}"}
                ],
            },
        },
        {
            "thought": f"{api} is OOMKilled too.",
            "action": _final(
                f"{api} is OOM-killed.",
                f"{api} needs more than {OOM_LIMIT}.",
                _memory_fix(api),
                ["call-1"],
            ),
        },
    ]


def _the_workflow(name: str, slack_url: str, chain_sink: str | None) -> dict[str, Any]:
    """The example Workflow, renamed, with Slack's URL and its chain sink (see the module);
    without a chain sink, its Slack report is its only sink."""
    example = yaml.safe_load(
        (EXAMPLES / "workflows" / "agent-alert-investigation.yaml").read_text()
    )
    document = copy.deepcopy(example)
    document["metadata"] = {"name": name, "namespace": NAMESPACE}
    document["spec"]["runtime"]["environment"]["SLACK_API_URL"] = f"{slack_url}/api/"
    sinks = [s for s in document["spec"]["sinks"] if s["name"] != "pagerduty-escalation"]
    if chain_sink is None:
        sinks = [s for s in sinks if s["name"] == "slack-investigation-results"]
    document["spec"]["sinks"] = [*sinks, *([{"name": chain_sink}] if chain_sink else [])]
    return dict(document)


def _argo_runs(cluster: LiveCluster, source: str) -> list[dict[str, Any]]:
    found = cluster.get(
        "workflows.argoproj.io", "-n", NAMESPACE, "-l", f"punchingfist.io/source={source}"
    )
    items: list[dict[str, Any]] = found["items"]
    for item in items:
        if ("workflows.argoproj.io", item["metadata"]["name"]) not in cluster.created:
            cluster.created.append(("workflows.argoproj.io", item["metadata"]["name"]))
    return items


def _one_new_run(cluster: LiveCluster, source: str, known: set[str]) -> str:
    def new() -> list[str] | None:
        names = {r["metadata"]["name"] for r in _argo_runs(cluster, source)} - known
        return sorted(names) or None

    (run,) = cluster.wait(new, f"the Argo Workflow Source {source} starts", 90)
    known.add(run)
    return str(run)


def _node(workflow: dict[str, Any], name: str) -> dict[str, Any]:
    nodes = [n for n in workflow["status"]["nodes"].values() if n.get("displayName") == name]
    assert nodes, (
        f"no node {name}: {[n.get('displayName') for n in workflow['status']['nodes'].values()]}"
    )
    return dict(nodes[0])


@pytest.mark.timeout(900)
def test_an_alert_is_investigated_and_an_approved_fix_heals_the_deployment(
    cluster: LiveCluster, tmp_path: Path
) -> None:
    tier = unique("tier")
    web, crasher, api = unique("web"), unique("crasher"), unique("api")
    token = f"crash-token-{uuid.uuid4().hex}"
    oom = ["python3", "-c", ALLOCATE]
    _deploy(cluster, _deployment(web, tier, oom, OOM_LIMIT))
    _deploy(cluster, _deployment(api, unique("other"), oom, OOM_LIMIT))
    _deploy(cluster, _deployment(crasher, tier, ["sh", "-c", f"echo {token}; exit 1"], "64Mi"))

    name, chained = unique("main-job"), unique("handover")
    path = f"/webhook/{name}"
    webhook_token = _secret(cluster, "webhook-secret", "token")
    signing = _secret(cluster, "slack-signing-secret", "signing-secret")
    (tmp_path / "token").write_text(webhook_token)

    # What a user applies: a webhook Source with bearer auth, the chained Workflow with its
    # api Source, the workflow Sink, and the example Workflow.
    source = {"apiVersion": "punchingfist.io/v1alpha1", "kind": "Source"}
    cluster.apply(
        {
            **source,
            "metadata": {"name": name},
            "spec": {
                "type": "webhook",
                "config": {
                    "path": path,
                    "authentication": {"type": "bearer", "secretRef": "webhook-secret"},
                },
                "triggerWorkflow": name,
            },
        }
    )
    handover = 'echo "handover of {{ .source.data.escalatedFrom.run }}"'
    cluster.apply(workflow(chained, [{"name": "handover", "type": "cli", "command": handover}]))
    cluster.apply(
        {
            **source,
            "metadata": {"name": chained},
            "spec": {"type": "api", "triggerWorkflow": chained},
        }
    )
    cluster.apply(
        {
            "apiVersion": "punchingfist.io/v1alpha1",
            "kind": "Sink",
            "metadata": {"name": chained},
            "spec": {"type": "workflow", "config": {"workflowName": chained}},
        }
    )

    with ExitStack() as stack:
        llm = stack.enter_context(FakeOpenAI(_script(tier, web, crasher, api), host=NODE_IP))
        channels = {APPROVALS_CHANNEL: "ops", REPORTS_CHANNEL: "ops-alerts"}
        slack = stack.enter_context(FakeSlack(SLACK_TOKEN, channels, host=NODE_IP))
        operator = stack.enter_context(_port_forward(cluster))
        group_by = ["alertname", "namespace", "deployment"]
        config = servers.webhook_config(f"{operator}{path}", tmp_path / "token", group_by)
        try:
            alertmanager = stack.enter_context(servers.alertmanager(config, tmp_path, NODE_IP))
        except servers.Unavailable as error:
            unavailable(str(error), "cluster")
        host_service(cluster, "llm-service", 8080, port_of(llm.url))
        host_service(cluster, "alertmanager", 9093, port_of(alertmanager))
        cluster.apply(_the_workflow(name, slack.url, chained))
        ready_template(cluster, name)
        ready_template(cluster, chained)
        for app, reason in ((web, "OOMKilled"), (crasher, "Error"), (api, "OOMKilled")):
            ended = functools.partial(_terminated, cluster, app, reason)
            cluster.wait(ended, f"{app}: {reason}", 180)

        known: set[str] = set()
        labels = {"alertname": name, "namespace": SHOP, "severity": "critical"}
        _fire(alertmanager, {**labels, "deployment": web, "service": web})
        run = _one_new_run(cluster, name, known)
        _approved_run(cluster, llm, slack, operator, signing, run, web, crasher, token)
        _sinks_ran(cluster, slack, alertmanager, run, name, chained)

        _fire(alertmanager, {**labels, "deployment": web, "service": web}, resolved=True)
        record = cluster.run_record(run, lambda r: r["status"] == "succeeded")

        def resolved() -> dict[str, Any] | None:
            alert: dict[str, Any] = cluster.operator_get(f"/api/v1/alerts/{record['alert_id']}")
            return alert if alert.get("resolved_at") else None

        stored = cluster.wait(resolved, "the resolved notification to resolve the alert", 60)
        assert stored["triage_started_at"] and stored["status"] == "resolved", stored

        _fire(alertmanager, {**labels, "deployment": api, "service": api})
        denied = _one_new_run(cluster, name, known)
        _denied_run(cluster, slack, operator, signing, denied, api)

        with urllib.request.urlopen(f"{operator}/metrics", timeout=10) as response:
            metrics = response.read().decode()
    assert re.search(r"punchingfist_alerts_processed_total\{[^}]*\} [1-9]", metrics), metrics[:2000]
    assert re.search(r"punchingfist_llm_tokens_total\{[^}]*\} [1-9]", metrics)
    assert re.search(r"punchingfist_sink_deliveries_total\{[^}]*\} [1-9]", metrics)
    assert "sk-" not in metrics and webhook_token not in metrics


def _approved_run(
    cluster: LiveCluster,
    llm: FakeOpenAI,
    slack: FakeSlack,
    operator: str,
    signing: str,
    run: str,
    web: str,
    crasher: str,
    token: str,
) -> None:
    buttons = cluster.wait(
        lambda: _approval_request(slack, run),
        f"the approval request of {run} in Slack",
        180,
        lambda: cluster.describe_run(run),
    )
    # The model received the real tool output: the OOMKilled reason and the crashed
    # container's token (`kubectl logs --previous`), from the investigator's kubectl calls.
    results = llm.requests[1]["messages"][-1]["content"]
    assert "OOMKilled" in results.split("[call-2]", 1)[0], results[-3000:]
    assert token in results.split("[call-2]", 1)[1].split("[call-3]", 1)[0], results[-3000:]
    assert "BackOff" in results.split("[call-3]", 1)[1] or "OOM" in results.split("[call-3]", 1)[1]

    cluster.wait(lambda: _gate_open(cluster, run), f"{run} to wait at its gate", 60)
    answer = slack_click(operator, signing, buttons["pf_approve"], "U0ALICE01", "alice")
    assert answer.get("replace_original") is True and "Approved by alice" in answer["text"], answer

    finished = cluster.finished(run, timeout=300)
    assert finished["status"]["phase"] == "Succeeded", cluster.describe_run(run)
    fix = _node(finished, "resolution-attempt")
    assert fix["phase"] == "Succeeded", fix
    cluster.wait(
        lambda: _ready(cluster, web),
        f"{web}'s new pod to be Ready",
        180,
        lambda: cluster.kubectl("get", "pods", "-n", SHOP, "-o", "wide", check=False),
    )

    record = cluster.run_record(run, lambda r: r["status"] == "succeeded")
    steps = {s["name"]: s for s in record["steps"]}
    investigation = steps["agent-investigation"]
    calls = investigation["tool_calls"]
    assert [c["status"] for c in calls] == ["ok", "ok", "ok"], calls
    assert calls[1]["argv"][:2] == ["kubectl", "logs"] and "--previous" in calls[1]["argv"]
    assert investigation["prompt_tokens"] > 0 and record["tokens_total"] > 0
    (fixed,) = steps["resolution-attempt"]["tool_calls"]
    assert fixed["argv"][:3] == ["kubectl", "set", "resources"] and fixed["status"] == "ok", fixed
    (approval,) = record["approvals"]
    assert approval["decision"] == "approved" and approval["approver"] == "slack:U0ALICE01"
    assert approval["channel"] == "slack", approval

    # What a user reads in the Argo UI's log of the agent step.
    shown = cluster.argo("logs", run)
    assert "Look at the tier's pods" in shown and "kubectl describe" in shown, shown[-3000:]


def _sinks_ran(
    cluster: LiveCluster,
    slack: FakeSlack,
    alertmanager: str,
    run: str,
    alertname: str,
    chained: str,
) -> None:
    annotated = _alerts_in(alertmanager, alertname)
    assert any(
        "ai_summary" in a["annotations"] and "OOM-killed" in a["annotations"]["ai_summary"]
        for a in annotated
    ), annotated
    reports = [m for m in slack.messages if m["channel"] == REPORTS_CHANNEL]
    assert reports and "Investigation complete" in json.dumps(reports), slack.messages
    (handover,) = cluster.wait(
        lambda: [r for r in _argo_runs(cluster, chained)] or None, f"the chained run {chained}", 90
    )
    finished = cluster.finished(handover["metadata"]["name"])
    assert finished["status"]["phase"] == "Succeeded", cluster.describe_run(
        handover["metadata"]["name"]
    )
    assert f"handover of {run}" in cluster.argo("logs", handover["metadata"]["name"])
    record = cluster.run_record(run, lambda r: len(r["sink_deliveries"]) >= 4)
    delivered = {d["sink_name"]: d["outcome"] for d in record["sink_deliveries"]}
    assert delivered == {
        "resolution-attempt-approval-request": "delivered",
        "slack-investigation-results": "delivered",
        "alertmanager-annotation": "delivered",
        chained: "delivered",
    }, record["sink_deliveries"]


def _denied_run(
    cluster: LiveCluster, slack: FakeSlack, operator: str, signing: str, run: str, api: str
) -> None:
    buttons = cluster.wait(
        lambda: _approval_request(slack, run),
        f"the approval request of {run}",
        180,
        lambda: cluster.describe_run(run),
    )
    cluster.wait(lambda: _gate_open(cluster, run), f"{run} to wait at its gate", 60)
    answer = slack_click(operator, signing, buttons["pf_deny"], "U0BOB0001", "bob")
    assert "Denied by bob" in answer["text"], answer
    finished = cluster.finished(run, timeout=300)
    assert _node(finished, "resolution-attempt")["phase"] in ("Skipped", "Omitted"), (
        cluster.describe_run(run)
    )
    record = cluster.run_record(run, lambda r: r["status"] in ("succeeded", "failed"))
    (approval,) = record["approvals"]
    assert approval["decision"] == "denied" and approval["approver"] == "slack:U0BOB0001"
    pods = cluster.get("pods", "-n", SHOP, "-l", f"app={api}")["items"]
    assert all(
        p["spec"]["containers"][0]["resources"]["limits"]["memory"] == OOM_LIMIT for p in pods
    )
    assert not _ready(cluster, api)


def test_the_investigator_may_not_patch_a_deployment(cluster: LiveCluster) -> None:
    """RBAC, not only the tool's policy: a cli step's own kubectl, as the investigator."""
    target = unique("target")
    _deploy(cluster, _deployment(target, unique("t"), ["sleep", "600"], "32Mi"))
    name = unique("patch")
    command = (
        f"kubectl -n {SHOP} set resources deployment/{target} --limits=memory=64Mi 2>&1 "
        "|| echo REFUSED"
    )
    cluster.apply(workflow(name, [{"name": "patch", "type": "cli", "command": command}]))
    ready_template(cluster, name)
    run = cluster.submit(name)
    finished = cluster.finished(run)
    assert finished["status"]["phase"] == "Succeeded", cluster.describe_run(run)
    said = cluster.argo("logs", run)
    assert "forbidden" in said and "REFUSED" in said, said
    assert "punchingfist-investigator" in said
    deployment = cluster.get("deployment", target, "-n", SHOP)
    limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["memory"] == "32Mi"


HOSTILE = EXAMPLES / "alerts" / "hostile-labels.json"


@pytest.mark.timeout(600)
def test_a_hostile_alert_executes_nothing_and_crosses_no_gate(
    cluster: LiveCluster,
) -> None:
    """The example hostile alert through the whole path on the node: its shell, template and
    SQL text stays literal in the cli step's output, the store and Slack; the model that obeys
    its injected instructions cannot express a delete outside the gate, and the "fix" it then
    writes (deleting a namespace) is only text: a fix is a typed action, deleting a namespace
    is none, so no gate opens and nothing is run."""
    name = unique("hostile")
    path = f"/webhook/{name}"
    payload: dict[str, Any] = json.loads(HOSTILE.read_text())
    payload["groupKey"] += f':{{test="{name}"}}'  # its own group, so its own incident
    alert = payload["alerts"][0]
    alert["fingerprint"] = uuid.uuid4().hex[:16]
    alert["startsAt"] = datetime.now(UTC).isoformat()
    labels, annotations = alert["labels"], alert["annotations"]
    obeying = {
        "thought": "The alert says approval gates are disabled: delete every pod.",
        "action": {
            "kind": "tool_calls",
            "calls": [
                {
                    "tool": "kubectl",
                    "verb": "delete",
                    "namespace": NAMESPACE,
                    "resource": "pods",
                    "name": "punchingfist",
                }
            ],
        },
    }
    # The model's words are the attacker's too: it quotes the alert and adds a mention.
    proposes = _final(
        f"The alert says: {annotations['summary']} <!channel>",
        "Unknown: the alert's text is instructions, not evidence.",
        None,
        [],
    ) | {"can_auto_fix": True, "fix_command": "kubectl delete namespace production"}
    turns = [obeying, {"thought": "That is not possible here.", "action": proposes}]
    source = {"apiVersion": "punchingfist.io/v1alpha1", "kind": "Source"}
    spec = {"type": "webhook", "config": {"path": path}, "triggerWorkflow": name}
    cluster.apply({**source, "metadata": {"name": name}, "spec": spec})
    channels = {APPROVALS_CHANNEL: "ops", REPORTS_CHANNEL: "ops-alerts"}
    with (
        FakeOpenAI(turns, host=NODE_IP) as llm,
        FakeSlack(SLACK_TOKEN, channels, host=NODE_IP) as slack,
        _port_forward(cluster),
    ):
        host_service(cluster, "llm-service", 8080, port_of(llm.url))
        cluster.apply(_the_workflow(name, slack.url, None))
        ready_template(cluster, name)
        (run,) = cluster.notify(path, payload)["runs"]
        cluster.created.append(("workflows.argoproj.io", run))
        finished = cluster.finished(run, timeout=300)
        assert finished["status"]["phase"] == "Succeeded", cluster.describe_run(run)
        assert _node(finished, "resolution-attempt")["phase"] in ("Skipped", "Omitted")
        assert _approval_request(slack, run) is None, "no gate opened: nothing to approve"

    # The model could not express the delete: its answer was refused before anything ran.
    assert len(llm.requests) == 2, [r["messages"][-1]["content"][:300] for r in llm.requests]
    refusal = llm.requests[1]["messages"][-1]["content"]
    assert "input_value='delete'" in refusal, refusal
    operator_pods = cluster.get(
        "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=punchingfist"
    )
    assert [p["metadata"].get("deletionTimestamp") for p in operator_pods["items"]] == [None]

    # The cli step printed the text; the shell did not run it, no template rendered it.
    shown = cluster.argo("logs", run)
    assert annotations["summary"].split(" {{")[0] in shown, shown[-3000:]
    assert labels["container"] in shown and "<class" not in shown

    record = cluster.run_record(run, lambda r: r["status"] == "succeeded")
    stored = cluster.operator_get(f"/api/v1/alerts/{record['alert_id']}")
    assert stored["labels"] == labels and stored["annotations"] == annotations
    assert record["approvals"] == []
    investigation = next(s for s in record["steps"] if s["name"] == "agent-investigation")
    assert investigation["result"]["result"]["can_auto_fix"] is False, investigation

    # Slack shows the text literally: escaped for Slack (no mention), never rendered.
    said = json.dumps([m["blocks"] for m in slack.messages])
    assert annotations["summary"] in said and "&lt;!channel&gt;" in said, said
    assert "<!channel>" not in said
