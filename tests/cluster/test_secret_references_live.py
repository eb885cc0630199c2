"""Secret references (#26) on the real cluster: a Slack Sink whose bot token is
`k8s://<another namespace>/<secret>#token`. An alert at the operator's webhook Source starts the
run; the operator (its own ServiceAccount, the chart's RBAC) reads the referenced Secret and
writes the value into the run's Secret `<run>-secrets`, owned by the Argo Workflow; the sink's
pod reads it from there (Argo fills in `{{workflow.name}}`) and posts with it to a fake Slack on
the pod bridge, which refuses any other token. The value is nowhere in the WorkflowTemplate, the
Argo Workflow, the step logs or the operator's run record. Deleting the Argo Workflow deletes the
run's Secret: the cluster's kube-controller-manager garbage-collects it through its owner.

Real: the node, the operator's pod and its RBAC, Argo, the kubelet's secretKeyRef, the garbage
collector. Fake: Slack (a real HTTP server speaking its Web API).
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

import pytest

from hack.cluster.layout import NODE_IP
from punchingfist.compiler.credentials import reference_key
from tests.cluster.support import NAMESPACE, LiveCluster, ready_template, unique, workflow
from tests.cluster.test_lifecycle import _notification
from tests.fakes.saas import FakeSlack

CHANNEL = "C0PSREFS01"


def _resource(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A punchingfist resource of `kind` in the operator's namespace."""
    return {
        "apiVersion": "punchingfist.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": spec,
    }


def _resources(name: str, reference: str, slack: str) -> list[dict[str, Any]]:
    """A Slack Sink reading its token from `reference`, a Workflow of one cli step reporting
    to it, and a webhook Source starting that Workflow."""
    config = {"channel": "#ops-refs", "botTokenSecret": {"secretRef": reference}}
    flow = workflow(
        name,
        [{"name": "say", "type": "cli", "command": 'echo \'{"said": "refs-ok"}\''}],
        environment={"SLACK_API_URL": f"{slack}/api/"},
    )
    flow["spec"]["sinks"] = [name]
    webhook = {"type": "webhook", "config": {"path": f"/webhook/{name}"}, "triggerWorkflow": name}
    return [
        _resource("Sink", name, {"type": "slack", "config": config}),
        flow,
        _resource("Source", name, webhook),
    ]


def _secret(cluster: LiveCluster, name: str) -> dict[str, Any] | None:
    found = cluster.kubectl("get", "secret", name, "-n", NAMESPACE, "-o", "json", check=False)
    if not found.lstrip().startswith("{"):
        return None
    secret: dict[str, Any] = json.loads(found)
    return secret


@pytest.mark.timeout(420)
def test_a_k8s_reference_reaches_the_sink_pod_only_through_the_runs_secret_which_dies_with_the_run(
    cluster: LiveCluster,
) -> None:
    token = f"xoxb-{secrets.token_hex(16)}"
    other = unique("refs-src")
    cluster.kubectl("create", "namespace", other)
    cluster.created_elsewhere.append(("namespace", other, NAMESPACE))
    cluster.kubectl(
        "create", "secret", "generic", "slack-bot", "-n", other, f"--from-literal=token={token}"
    )
    reference = f"k8s://{other}/slack-bot#token"
    name = unique("refs")

    slack = FakeSlack(token, {CHANNEL: "ops-refs"}, host=NODE_IP)
    with slack:
        for document in _resources(name, reference, slack.url):
            cluster.apply(document)
        template = ready_template(cluster, name, timeout=120)
        (run,) = cluster.notify(f"/webhook/{name}", _notification(name))["runs"]
        finished = cluster.finished(run, timeout=300)
        assert finished["status"]["phase"] == "Succeeded", cluster.describe_run(run)
        # The sink's pod posted with the token: the fake answers any other with invalid_auth.
        posted = [m for m in slack.messages if m["channel"] == CHANNEL]
        assert posted, f"nothing reached Slack; requests: {slack.requests}"
        assert run in json.dumps(posted), "the run's report"

    secret = _secret(cluster, f"{run}-secrets")
    assert secret is not None, f"no Secret {run}-secrets"
    values = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert values == {reference_key(reference): token}
    (owner,) = secret["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "Workflow",
        run,
        finished["metadata"]["uid"],
    )
    references = json.loads(
        template["metadata"]["annotations"]["punchingfist.io/secret-references"]
    )
    assert references == {reference_key(reference): reference}

    pods = cluster.get("pods", "-n", NAMESPACE, "-l", f"workflows.argoproj.io/workflow={run}")
    read = {
        (variable["name"], variable["valueFrom"]["secretKeyRef"]["name"])
        for pod in pods["items"]
        for container in pod["spec"]["containers"]
        for variable in container.get("env") or []
        if "secretKeyRef" in (variable.get("valueFrom") or {})
    }
    assert read == {("SLACK_BOT_TOKEN", f"{run}-secrets")}, "only the sink reads it, from there"

    logs = cluster.argo("logs", run)
    assert "refs-ok" in logs, f"the steps' logs were read: {logs[-2000:]}"
    record = cluster.run_record(run, lambda r: r["finished_at"] is not None)
    shown = {
        "the WorkflowTemplate": json.dumps(template),
        "the Argo Workflow": json.dumps(cluster.argo_workflow(run)),
        "the run's pods": json.dumps(pods),
        "the steps' logs": logs,
        "the operator's run record": json.dumps(record),
    }
    for where, text in shown.items():
        assert token not in text, f"the token is in {where}"

    cluster.kubectl("delete", "workflows.argoproj.io", run, "-n", NAMESPACE, "--wait=true")
    cluster.wait(
        lambda: _secret(cluster, f"{run}-secrets") is None,
        f"the garbage collector to delete Secret {run}-secrets once its Workflow is gone",
        60,
        lambda: json.dumps((_secret(cluster, f"{run}-secrets") or {}).get("metadata")),
    )
