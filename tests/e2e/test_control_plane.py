"""e2e: our CRDs, compiled templates and roles against a real API server and Argo."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from punchingfist.api import OperatorConfig, Sink, Workflow, load_resources
from punchingfist.compiler import compile_workflow
from tests.e2e.controlplane import ROOT, ControlPlane

pytestmark = pytest.mark.timeout(300)  # the first test also pays for starting the cluster
EXAMPLES = ROOT / "examples"
FOLDERS = ("sources", "workflows", "sinks", "operatorconfigs")


def compiled_examples() -> list[dict[str, Any]]:
    resources = []
    for folder in ("workflows", "sinks"):
        for path in sorted((EXAMPLES / folder).glob("*.yaml")):
            resources += load_resources(path.read_text())
    (config,) = load_resources((EXAMPLES / "operatorconfigs/punchingfist-config.yaml").read_text())
    assert isinstance(config, OperatorConfig)
    sinks = {r.name: r for r in resources if isinstance(r, Sink)}
    documents = []
    for workflow in (r for r in resources if isinstance(r, Workflow)):
        documents += compile_workflow(workflow, sinks, config.spec).documents
    return documents


def test_component_versions(binaries: dict[str, str]) -> None:
    def version(*argv: str) -> str:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
        return result.stdout + result.stderr

    assert f"Kubernetes {binaries['KUBERNETES_VERSION']}" in version(
        binaries["KUBE_APISERVER"], "--version"
    )
    assert binaries["ETCD_VERSION"].lstrip("v") in version(binaries["ETCD"], "--version")
    assert binaries["ARGO_VERSION"] in version(binaries["ARGO"], "version", "--short")


def test_every_compiled_example_passes_argo_lint(binaries: dict[str, str], tmp_path: Path) -> None:
    templates = [d for d in compiled_examples() if d["kind"] == "WorkflowTemplate"]
    assert len(templates) >= 6
    for template in templates:
        path = tmp_path / f"{template['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(template, sort_keys=False))
        result = subprocess.run(
            [binaries["ARGO"], "lint", "--offline", "--output", "simple", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"{path.name}:\n{result.stdout}{result.stderr}"


def test_argo_lint_catches_what_we_must_not_emit(binaries: dict[str, str], tmp_path: Path) -> None:
    """The linter is live: a template with a dangling task reference fails it."""
    (template,) = [
        d
        for d in compiled_examples()
        if d["kind"] == "WorkflowTemplate" and d["metadata"]["name"] == "tiered-investigation"
    ]
    template["spec"]["templates"][0]["dag"]["tasks"][1]["template"] = "no-such-template"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(template))
    result = subprocess.run(
        [binaries["ARGO"], "lint", "--offline", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "no-such-template" in result.stdout + result.stderr


def test_compiled_examples_are_accepted_by_the_api_server(control_plane: ControlPlane) -> None:
    documents = compiled_examples()
    control_plane.kubectl(
        "apply",
        "--server-side",
        "-n",
        control_plane.namespace,
        "-f",
        "-",
        stdin=yaml.safe_dump_all(documents),
    )
    names = {
        item["metadata"]["name"]
        for item in control_plane.get_json("workflowtemplates.argoproj.io")["items"]
    }
    assert {d["metadata"]["name"] for d in documents if d["kind"] == "WorkflowTemplate"} <= names


def test_examples_apply_against_our_crds(control_plane: ControlPlane) -> None:
    args = [arg for folder in FOLDERS for arg in ("-f", str(EXAMPLES / folder))]
    result = control_plane.kubectl("apply", "-n", control_plane.namespace, *args)
    assert "created" in result.stdout or "configured" in result.stdout
    listed = control_plane.get_json("workflows.punchingfist.io")["items"]
    assert {item["metadata"]["name"] for item in listed} >= {"agent-alert-investigation"}
    short = control_plane.kubectl("get", "pfwf", "-n", control_plane.namespace).stdout
    assert "agent-alert-investigation" in short and "READY" in short
    every = control_plane.kubectl("get", "punchingfist", "-n", control_plane.namespace).stdout
    assert "source.punchingfist.io/alertmanager-critical" in every
    explained = control_plane.kubectl("explain", "workflows.punchingfist.io.spec.steps").stdout
    assert "later steps read" in explained and "rigConfig" in explained


def resource(kind: str, name: str, spec: dict[str, Any]) -> str:
    return json.dumps(
        {
            "apiVersion": "punchingfist.io/v1alpha1",
            "kind": kind,
            "metadata": {"name": name},
            "spec": spec,
        }
    )


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            resource(
                "Workflow",
                "bad-field",
                {"steps": [{"name": "a", "type": "agent", "goal": "g", "maxIteratons": 3}]},
            ),
            'unknown field "spec.steps[0].maxIteratons"',
        ),
        (
            resource("Workflow", "bad-type", {"steps": [{"name": "a", "type": "shell"}]}),
            'Unsupported value: "shell"',
        ),
        (
            resource("Workflow", "no-goal", {"steps": [{"name": "a", "type": "agent"}]}),
            "an agent step needs `goal`",
        ),
        (
            resource(
                "Workflow",
                "two-actions",
                {
                    "steps": [
                        {
                            "name": "a",
                            "type": "conditional",
                            "condition": "{{ true }}",
                            "cli": {"command": "x"},
                            "agent": {"goal": "g"},
                        }
                    ]
                },
            ),
            "exactly one of `agent` or `cli`",
        ),
        (resource("Workflow", "no-steps", {"steps": []}), "spec.steps"),
        (
            resource(
                "Source",
                "no-cron",
                {"type": "schedule", "triggerWorkflow": "wf", "config": {"timezone": "UTC"}},
            ),
            "a schedule Source needs spec.config.cron",
        ),
        (
            resource("Sink", "pd", {"type": "pagerduty", "config": {"action": "trigger"}}),
            "a pagerduty Sink needs spec.config.routingKeySecret",
        ),
        (
            resource("Sink", "bad-action", {"type": "alertmanager", "config": {"action": "page"}}),
            'Unsupported value: "page"',
        ),
    ],
    ids=[
        "unknown-field",
        "bad-type",
        "no-goal",
        "two-actions",
        "no-steps",
        "no-cron",
        "pd-no-key",
        "bad-action",
    ],
)
def test_invalid_resources_are_rejected_with_readable_messages(
    control_plane: ControlPlane, document: str, expected: str
) -> None:
    result = control_plane.kubectl(
        "apply", "-n", control_plane.namespace, "-f", "-", stdin=document, check=False
    )
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr


def test_a_run_from_a_compiled_template_gets_its_first_pod(control_plane: ControlPlane) -> None:
    (workflow,) = load_resources(
        """
apiVersion: punchingfist.io/v1alpha1
kind: Workflow
metadata: {name: e2e-first-pod}
spec:
  steps:
    - name: initial-context
      type: cli
      command: 'echo "Alert: {{ .source.data.alert.alertname }}"'
    - name: investigate
      type: agent
      goal: "look at {{ .steps.initial-context.result }}"
"""
    )
    assert isinstance(workflow, Workflow)
    template = compile_workflow(workflow).manifest
    namespace = control_plane.namespace
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(template))
    event = {"alert": {"alertname": "PodCrashLooping $(touch /tmp/x)", "labels": {}}}
    run = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "e2e-first-pod-run", "namespace": namespace},
        "spec": {
            "workflowTemplateRef": {"name": "e2e-first-pod"},
            "arguments": {
                "parameters": [
                    {"name": "event", "value": json.dumps(event)},
                    {"name": "source", "value": "alertmanager-critical"},
                    {"name": "fingerprint", "value": "d4c3b2a1f0e9d8c7"},
                ]
            },
        },
    }
    control_plane.kubectl("create", "-f", "-", stdin=json.dumps(run))
    pods: list[dict[str, Any]] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not pods:
        pods = control_plane.get_json(
            "pods", "-n", namespace, "-l", "workflows.argoproj.io/workflow=e2e-first-pod-run"
        )["items"]
        time.sleep(0.5)
    assert pods, "the Argo controller created no pod"
    (pod,) = pods
    assert pod["status"].get("phase", "Pending") == "Pending"  # no kubelet here
    assert pod["metadata"]["labels"]["punchingfist.io/step"] == "initial-context"
    main = next(c for c in pod["spec"]["containers"] if c["name"] == "main")
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert json.loads(env["PF_EVENT"]) == event  # substituted by Argo, verbatim
    assert env["PF_SOURCE"] == "alertmanager-critical"
    labels = control_plane.get_json("workflows.argoproj.io", "e2e-first-pod-run", "-n", namespace)[
        "metadata"
    ]["labels"]
    assert labels["punchingfist.io/workflow"] == "e2e-first-pod"
    assert labels["punchingfist.io/source"] == "alertmanager-critical"
    assert labels["punchingfist.io/fingerprint"] == "d4c3b2a1f0e9d8c7"


ROLES = ROOT / "charts/punchingfist/templates/agent-roles.yaml"


@pytest.fixture(scope="module")
def agent_accounts(control_plane: ControlPlane) -> dict[str, str]:
    namespace = control_plane.namespace
    control_plane.kubectl("apply", "-f", str(ROLES))
    users = {}
    for role in ("investigator", "remediator"):
        account = f"punchingfist-{role}"  # made with the control plane, as the chart makes it
        control_plane.kubectl(
            "create",
            "clusterrolebinding",
            account,
            f"--clusterrole={account}",
            f"--serviceaccount={namespace}:{account}",
        )
        users[role] = f"system:serviceaccount:{namespace}:{account}"
    return users


@pytest.mark.parametrize(
    ("role", "verb", "target", "allowed"),
    [
        ("investigator", "get", "pods", True),
        ("investigator", "list", "pods", True),
        ("investigator", "get", "pods/log", True),
        ("investigator", "list", "events", True),
        ("investigator", "list", "deployments.apps", True),
        ("investigator", "delete", "pods", False),
        ("investigator", "patch", "deployments.apps", False),
        ("investigator", "patch", "deployments.apps/scale", False),
        ("investigator", "get", "secrets", False),
        ("investigator", "list", "secrets", False),
        ("remediator", "delete", "pods", True),
        ("remediator", "patch", "deployments.apps", True),
        ("remediator", "patch", "daemonsets.apps", True),
        ("remediator", "update", "deployments.apps", False),
        ("remediator", "delete", "deployments.apps", False),
        ("remediator", "get", "secrets", False),
    ],
)
def test_agent_roles_are_enforced_by_the_real_authorizer(
    control_plane: ControlPlane,
    agent_accounts: dict[str, str],
    role: str,
    verb: str,
    target: str,
    allowed: bool,
) -> None:
    result = control_plane.kubectl(
        "auth",
        "can-i",
        verb,
        target,
        "-n",
        control_plane.namespace,
        user=agent_accounts[role],
        check=False,
    )
    assert result.stdout.strip() == ("yes" if allowed else "no"), result.stderr


def test_argo_submit_from_a_compiled_template(
    control_plane: ControlPlane, binaries: dict[str, str]
) -> None:
    """What a user does for an ad-hoc investigation: `argo submit --from workflowtemplate/...`."""
    (workflow,) = load_resources((EXAMPLES / "workflows" / "investigate-alert.yaml").read_text())
    assert isinstance(workflow, Workflow)
    namespace = control_plane.namespace
    control_plane.kubectl(
        "apply", "-n", namespace, "-f", "-", stdin=json.dumps(compile_workflow(workflow).manifest)
    )
    event = json.dumps({"alert": {"alertname": "HighCPUUsage", "labels": {}}})
    result = subprocess.run(
        [
            binaries["ARGO"],
            "submit",
            "--from",
            "workflowtemplate/investigate-alert",
            "-n",
            namespace,
            "-p",
            f"event={event}",
            "-p",
            "source=manual",
            "-o",
            "json",
        ],
        env={
            "KUBECONFIG": str(control_plane.kubeconfig),
            "PATH": "/usr/bin:/bin",
            "HOME": str(control_plane.workdir),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    submitted = json.loads(result.stdout)
    assert submitted["spec"]["workflowTemplateRef"] == {"name": "investigate-alert"}
    name = submitted["metadata"]["name"]
    deadline = time.monotonic() + 90
    pods: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not pods:
        pods = control_plane.get_json(
            "pods", "-n", namespace, "-l", f"workflows.argoproj.io/workflow={name}"
        )["items"]
        time.sleep(0.5)
    assert [p["metadata"]["labels"]["punchingfist.io/step"] for p in pods] == ["investigate-alert"]
