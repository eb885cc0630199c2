"""e2e: the Kopf controller on the real control plane.

Workflow CRs become WorkflowTemplates (server-side applied, owned by the CR), status and
Events say what happened, Sinks recompile their users, admission refuses what the compiler
refuses, a restart changes nothing, and `punchingfist serve --in-cluster` serves the Sources it
finds in the cluster.

There is no kube-controller-manager in the test control plane, so Kubernetes' garbage
collector never runs here: the tests check the ownerReference it would follow, and the
controller's own cleanup on a DELETED event.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from hack.pki import Authority
from punchingfist.api import load_resources
from punchingfist.compiler import compile_resources
from punchingfist.controller import (
    AdmissionOptions,
    ControllerOptions,
    OperatorThread,
    connect,
)
from tests.e2e.controlplane import ROOT, ControlPlane, free_port

pytestmark = pytest.mark.timeout(300)

NAMESPACE = "pf-controller"
EXAMPLES = ROOT / "examples"
T = TypeVar("T")


def eventually(check: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    """Poll `check` until it returns something truthy (the API server has no push for us)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def webhook_certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A CA and a serving certificate for 127.0.0.1, as the API server must verify them."""
    authority = Authority(tmp_path_factory.mktemp("webhook-pki"), "punchingfist-webhook-ca")
    cert, key = authority.issue(
        "serving", "127.0.0.1", server=True, dns=["localhost"], ips=["127.0.0.1"]
    )
    return {"ca": str(authority.path("ca.crt")), "cert": str(cert), "key": str(key)}


@pytest.fixture(scope="module")
def operator(
    control_plane: ControlPlane, webhook_certs: dict[str, str]
) -> Iterator[OperatorThread]:
    """The controller in this process: namespace NAMESPACE, admission on a loopback port."""
    control_plane.kubectl("create", "namespace", NAMESPACE)
    managed = f"e2e-{uuid.uuid4().hex[:8]}.punchingfist.io"  # webhooks: <kind>.<managed>
    options = ControllerOptions(
        namespaces=(NAMESPACE,),
        admission=AdmissionOptions(
            addr="127.0.0.1",
            port=free_port(),
            host="127.0.0.1",
            certfile=webhook_certs["cert"],
            pkeyfile=webhook_certs["key"],
            cafile=webhook_certs["ca"],
            managed=managed,
        ),
    )
    thread = OperatorThread(connect(control_plane.kubeconfig, options=options))
    try:
        thread.start(timeout=60)
        # Admission is in force once a server-side dry run of a bad Workflow is refused.
        eventually(
            lambda: (
                "denied the request" in _apply(control_plane, BROKEN_WORKFLOW, dry_run=True).stderr
            ),
            "the validating webhook to be registered and reachable",
        )
        yield thread
    finally:
        thread.stop()
        # A webhook nobody serves (failurePolicy: Fail) would block the other e2e tests.
        control_plane.kubectl("delete", "validatingwebhookconfiguration", managed, check=False)
        control_plane.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def _apply(
    plane: ControlPlane, document: str, *, dry_run: bool = False, namespace: str = NAMESPACE
) -> subprocess.CompletedProcess[str]:
    args = ["apply", "-n", namespace, "-f", "-"]
    if dry_run:
        args.append("--dry-run=server")
    return plane.kubectl(*args, stdin=document, check=False)


def _get(plane: ControlPlane, kind: str, name: str, namespace: str = NAMESPACE) -> Any:
    result = plane.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def _ready(body: Any) -> dict[str, Any] | None:
    for condition in (body or {}).get("status", {}).get("conditions", []):
        if condition["type"] == "Ready":
            return dict(condition)
    return None


def _compile_locally(*paths: Path, edits: dict[str, Any] | None = None) -> dict[str, Any]:
    """What `punchingfist compile` makes of the same files: WorkflowTemplate specs by name."""
    files = [
        p for path in paths for p in ([path] if path.is_file() else sorted(path.glob("*.yaml")))
    ]
    text = "\n---\n".join(p.read_text() for p in files)
    documents = list(yaml.safe_load_all(text))
    for document in documents:
        if document and edits and document["metadata"]["name"] in edits:
            document["spec"] = edits[document["metadata"]["name"]]
    resources = load_resources(yaml.safe_dump_all([d for d in documents if d]))
    return {c.workflow.name: c for c in compile_resources(resources)}


BROKEN_WORKFLOW = """
apiVersion: punchingfist.io/v1alpha1
kind: Workflow
metadata: {name: broken-reference}
spec:
  steps:
    - name: first
      type: cli
      command: echo hi
    - name: second
      type: agent
      goal: "Explain {{ .steps.nonexistent.result }}"
"""


# -- tests ----------------------------------------------------------------------------------


def test_examples_become_owned_ready_templates(
    control_plane: ControlPlane, operator: OperatorThread
) -> None:
    control_plane.kubectl(
        "apply",
        "-n",
        NAMESPACE,
        "-f",
        str(EXAMPLES / "operatorconfigs"),
        "-f",
        str(EXAMPLES / "sinks"),
        "-f",
        str(EXAMPLES / "sources"),
        "-f",
        str(EXAMPLES / "workflows"),
    )
    for kind in ("workflows", "sinks", "sources", "operatorconfigs"):
        control_plane.wait_condition(
            "Ready", "-n", NAMESPACE, f"{kind}.punchingfist.io", timeout=90
        )
    expected = _compile_locally(
        EXAMPLES / "workflows",
        EXAMPLES / "sinks",
        EXAMPLES / "operatorconfigs/punchingfist-config.yaml",
    )
    workflows = control_plane.get_json("workflows.punchingfist.io", "-n", NAMESPACE)["items"]
    assert sorted(w["metadata"]["name"] for w in workflows) == sorted(expected)
    for workflow in workflows:
        name, uid = workflow["metadata"]["name"], workflow["metadata"]["uid"]
        status = workflow["status"]
        assert status["templateName"] == name
        assert status["observedGeneration"] == workflow["metadata"]["generation"]
        assert status.get("lastError") is None
        types = {c["type"]: c for c in status["conditions"]}
        assert types["Compiled"]["status"] == "True"
        assert types["Ready"]["reason"] == "TemplateApplied"
        assert types["Ready"]["lastTransitionTime"]
        owner = {
            "apiVersion": "punchingfist.io/v1alpha1",
            "kind": "Workflow",
            "name": name,
            "uid": uid,
            "controller": True,
        }
        template = _get(control_plane, "workflowtemplates.argoproj.io", name)
        assert template["metadata"]["ownerReferences"] == [owner]
        assert template["spec"] == expected[name].manifest["spec"], name
        shown = control_plane.kubectl(
            "get",
            "workflowtemplates.argoproj.io",
            name,
            "-n",
            NAMESPACE,
            "-o",
            "json",
            "--show-managed-fields",
        ).stdout
        managers = {m["manager"] for m in json.loads(shown)["metadata"]["managedFields"]}
        assert managers == {"punchingfist"}
        for document in expected[name].objects:  # clear-text credentials moved to a Secret
            secret = _get(control_plane, "secret", document["metadata"]["name"])
            assert secret["metadata"]["ownerReferences"] == [owner]
            assert set(secret["data"]) == set(document["stringData"])
    assert any(expected[n].objects for n in expected), "no example exercises the Secret path"
    source = _get(control_plane, "sources.punchingfist.io", "alertmanager-critical")
    assert (
        "at /webhook/triage-workflow triggers Workflow alert-triage-workflow"
        in _ready(source)["message"]
    )


def test_editing_a_sink_recompiles_the_workflows_that_use_it(
    control_plane: ControlPlane, operator: OperatorThread
) -> None:
    _examples_applied(control_plane)
    sink = _get(control_plane, "sinks.punchingfist.io", "slack-investigation-results")
    users = [
        w["metadata"]["name"]
        for w in control_plane.get_json("workflows.punchingfist.io", "-n", NAMESPACE)["items"]
        if any(
            (s if isinstance(s, str) else s["name"]) == "slack-investigation-results"
            for s in w["spec"].get("sinks", [])
        )
    ]
    assert users, "no example Workflow uses the Sink"
    before = {n: _get(control_plane, "workflowtemplates.argoproj.io", n) for n in users}
    spec = dict(sink["spec"])
    spec["config"] = {**spec["config"], "channel": "#edited-by-e2e"}
    edit = {"spec": {"config": {"channel": "#edited-by-e2e"}}}
    control_plane.kubectl(
        "patch",
        "sinks.punchingfist.io",
        "slack-investigation-results",
        "-n",
        NAMESPACE,
        "--type=merge",
        "-p",
        json.dumps(edit),
    )
    expected = _compile_locally(
        EXAMPLES / "workflows",
        EXAMPLES / "sinks",
        EXAMPLES / "operatorconfigs/punchingfist-config.yaml",
        edits={"slack-investigation-results": spec},
    )
    for name in users:
        template = eventually(
            lambda name=name: (
                (t := _get(control_plane, "workflowtemplates.argoproj.io", name))
                and t["spec"] == expected[name].manifest["spec"]
                and t
            ),
            f"WorkflowTemplate {name} to be recompiled with the edited Sink",
        )
        assert template["spec"] != before[name]["spec"]
        assert "#edited-by-e2e" in _sink_specs(template)
        status = _get(control_plane, "workflows.punchingfist.io", name)["status"]
        assert (
            status["inputHash"]
            == template["metadata"]["annotations"]["punchingfist.io/inputs-sha256"]
        )


def _sink_specs(template: dict[str, Any]) -> str:
    """The decoded PF_SPEC of every sink task (where a Sink's config travels)."""
    specs = []
    for entry in template["spec"]["templates"]:
        for env in (entry.get("container") or {}).get("env", []):
            if env["name"] == "PF_SPEC" and entry["name"].startswith("sink-"):
                specs.append(base64.b64decode(env["value"]).decode())
    return "\n".join(specs)


def _examples_applied(control_plane: ControlPlane) -> None:
    """The examples are in place and Ready (a test run alone with -k applies them)."""
    if _get(control_plane, "workflows.punchingfist.io", "agent-alert-investigation") is None:
        control_plane.kubectl(
            "apply",
            "-n",
            NAMESPACE,
            "-f",
            str(EXAMPLES / "operatorconfigs"),
            "-f",
            str(EXAMPLES / "sinks"),
            "-f",
            str(EXAMPLES / "workflows"),
        )
    control_plane.wait_condition("Ready", "-n", NAMESPACE, "workflows.punchingfist.io", timeout=90)


def test_missing_sink_is_not_ready_with_an_event_until_it_exists(
    control_plane: ControlPlane, operator: OperatorThread
) -> None:
    workflow = """
apiVersion: punchingfist.io/v1alpha1
kind: Workflow
metadata: {name: needs-late-sink}
spec:
  steps:
    - {name: look, type: cli, command: "echo {{ .source.data.alert.alertname }}"}
  sinks: [late-sink]
"""
    result = _apply(control_plane, workflow)
    assert result.returncode == 0, result.stderr  # a Sink may come later: not refused
    ready = eventually(
        lambda: (
            (c := _ready(_get(control_plane, "workflows.punchingfist.io", "needs-late-sink")))
            and c["status"] == "False"
            and c
        ),
        "Ready=False on a Workflow whose Sink does not exist",
    )
    assert ready["reason"] == "SinkNotFound"
    assert "spec.sinks[0].name" in ready["message"] and "'late-sink'" in ready["message"]
    body = _get(control_plane, "workflows.punchingfist.io", "needs-late-sink")
    assert body["status"]["lastError"] == ready["message"]
    assert _get(control_plane, "workflowtemplates.argoproj.io", "needs-late-sink") is None
    events = eventually(
        lambda: control_plane.get_json(
            "events",
            "-n",
            NAMESPACE,
            "--field-selector",
            "involvedObject.name=needs-late-sink,reason=SinkNotFound",
        )["items"],
        "a Warning Event about the missing Sink",
    )
    assert events[0]["type"] == "Warning" and "'late-sink'" in events[0]["message"]
    sink = """
apiVersion: punchingfist.io/v1alpha1
kind: Sink
metadata: {name: late-sink}
spec:
  type: webhook
  config: {url: "https://hooks.example.com/late"}
"""
    assert _apply(control_plane, sink).returncode == 0
    control_plane.wait_condition(
        "Ready", "-n", NAMESPACE, "workflows.punchingfist.io/needs-late-sink", timeout=60
    )
    template = _get(control_plane, "workflowtemplates.argoproj.io", "needs-late-sink")
    assert "https://hooks.example.com/late" in _sink_specs(template)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (BROKEN_WORKFLOW, "spec.steps[1].goal: step 'second': there is no step 'nonexistent'"),
        (
            """
apiVersion: punchingfist.io/v1alpha1
kind: Workflow
metadata: {name: reserved-name}
spec:
  steps: [{name: main, type: cli, command: "echo hi"}]
""",
            "spec.steps[0].name: step name 'main' is reserved by the compiler; rename the step",
        ),
        (
            """
apiVersion: punchingfist.io/v1alpha1
kind: Sink
metadata: {name: broken-template}
spec:
  type: slack
  config: {channel: "#ops", template: "Alert {{ .source.data.alert.alertname "}
""",
            "Sink/broken-template: spec.config.template",
        ),
        (
            """
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: relative-path}
spec:
  type: webhook
  config: {path: "webhook/alerts"}
  triggerWorkflow: investigate-alert
""",
            "spec.config.path: 'webhook/alerts' must be an absolute URL path",
        ),
    ],
    ids=["unknown-step", "reserved-step-name", "sink-template", "source-path"],
)
def test_admission_refuses_what_the_compiler_refuses(
    control_plane: ControlPlane, operator: OperatorThread, document: str, message: str
) -> None:
    result = _apply(control_plane, document)
    assert result.returncode != 0
    assert "denied the request" in result.stderr
    assert message in result.stderr, result.stderr
    kind, name = (lambda d: (d["kind"], d["metadata"]["name"]))(yaml.safe_load(document))
    assert _get(control_plane, f"{kind.lower()}s.punchingfist.io", name) is None


def test_a_sink_edit_that_breaks_a_user_is_refused(
    control_plane: ControlPlane, operator: OperatorThread
) -> None:
    _examples_applied(control_plane)
    patch = {"spec": {"config": {"template": "{{ .workflow.outputs.no_such_output }}"}}}
    result = control_plane.kubectl(
        "patch",
        "sinks.punchingfist.io",
        "slack-investigation-results",
        "-n",
        NAMESPACE,
        "--type=merge",
        "-p",
        json.dumps(patch),
        check=False,
    )
    assert result.returncode != 0
    assert "there is no output 'no_such_output'" in result.stderr, result.stderr
    assert "uses this Sink" in result.stderr


def test_deleting_a_workflow_deletes_its_template(
    control_plane: ControlPlane, operator: OperatorThread
) -> None:
    workflow = """
apiVersion: punchingfist.io/v1alpha1
kind: Workflow
metadata: {name: short-lived}
spec:
  steps: [{name: look, type: cli, command: "echo hi"}]
"""
    assert _apply(control_plane, workflow).returncode == 0
    control_plane.wait_condition(
        "Ready", "-n", NAMESPACE, "workflows.punchingfist.io/short-lived", timeout=60
    )
    uid = _get(control_plane, "workflows.punchingfist.io", "short-lived")["metadata"]["uid"]
    template = _get(control_plane, "workflowtemplates.argoproj.io", "short-lived")
    assert [o["uid"] for o in template["metadata"]["ownerReferences"]] == [uid]
    control_plane.kubectl("delete", "-n", NAMESPACE, "workflows.punchingfist.io", "short-lived")
    eventually(
        lambda: _get(control_plane, "workflowtemplates.argoproj.io", "short-lived") is None,
        "the WorkflowTemplate of a deleted Workflow to go",
    )


def test_resync_puts_back_a_template_deleted_behind_its_back(control_plane: ControlPlane) -> None:
    """Nothing about the Workflow changes, so only the periodic check can notice that its
    WorkflowTemplate is gone (deleted by hand, or by a namespace cleanup tool)."""
    namespace = "pf-resync"
    control_plane.kubectl("create", "namespace", namespace)
    options = ControllerOptions(namespaces=(namespace,), resync=1.0)
    thread = OperatorThread(connect(control_plane.kubeconfig, options=options))
    thread.start(timeout=60)
    try:
        workflow = """
apiVersion: punchingfist.io/v1alpha1
kind: Workflow
metadata: {name: kept}
spec:
  steps: [{name: look, type: cli, command: "echo hi"}]
"""
        assert _apply(control_plane, workflow, namespace=namespace).returncode == 0
        control_plane.wait_condition(
            "Ready", "-n", namespace, "workflows.punchingfist.io/kept", timeout=60
        )
        first = _get(control_plane, "workflowtemplates.argoproj.io", "kept", namespace)
        control_plane.kubectl("delete", "-n", namespace, "workflowtemplates.argoproj.io", "kept")
        again = eventually(
            lambda: _get(control_plane, "workflowtemplates.argoproj.io", "kept", namespace),
            "the resync to apply the template again",
            timeout=30,
        )
        assert again["metadata"]["uid"] != first["metadata"]["uid"]
        assert again["spec"] == first["spec"]
        resynced = thread.controller.outcomes["unchanged"]
        eventually(
            lambda: thread.controller.outcomes["unchanged"] > resynced,
            "a resync that finds nothing to do",
            timeout=30,
        )
        assert (
            _get(control_plane, "workflowtemplates.argoproj.io", "kept", namespace)["metadata"][
                "resourceVersion"
            ]
            == again["metadata"]["resourceVersion"]
        )
        finalizers = _get(control_plane, "workflows.punchingfist.io", "kept", namespace)[
            "metadata"
        ].get("finalizers", [])
        assert finalizers == ["punchingfist.io/controller"]  # Kopf's, for its timer
    finally:
        thread.stop()
    # Started once without the resync, the controller takes its finalizer off again.
    plain = OperatorThread(
        connect(
            control_plane.kubeconfig,
            options=ControllerOptions(namespaces=(namespace,), resync=None),
        )
    )
    plain.start(timeout=60)
    try:
        eventually(
            lambda: (
                not _get(control_plane, "workflows.punchingfist.io", "kept", namespace)[
                    "metadata"
                ].get("finalizers")
            ),
            "the finalizer to go",
            timeout=30,
        )
    finally:
        plain.stop()
        control_plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


# -- punchingfist serve --in-cluster ----------------------------------------------------------


def test_serve_in_cluster_serves_sources_it_finds(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    namespace = "pf-serve"
    control_plane.kubectl("create", "namespace", namespace, check=False)
    port = free_port()
    env = {**os.environ, "HOME": str(tmp_path)}
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "punchingfist.cli",
            "serve",
            "--in-cluster",
            "--kubeconfig",
            str(control_plane.kubeconfig),
            "--namespace",
            namespace,
            "--port",
            str(port),
            "--database-url",
            f"sqlite:///{tmp_path / 'pf.db'}",
            "--executor",
            "none",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        eventually(lambda: _http(f"{base}/readyz")[0] == 200, "the server to be ready", 90)
        assert _http(f"{base}/healthz") == (200, {"status": "ok"})
        payload = json.loads((EXAMPLES / "alerts/pod-crashlooping.json").read_text())
        assert _http(f"{base}/hooks/late", payload)[0] == 404  # no Source serves it yet
        source = """
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: late-hook}
spec:
  type: webhook
  config: {path: /hooks/late}
  triggerWorkflow: investigate-alert
"""
        assert _apply(control_plane, source, namespace=namespace).returncode == 0
        control_plane.kubectl(
            "apply", "-n", namespace, "-f", str(EXAMPLES / "workflows/investigate-alert.yaml")
        )
        control_plane.wait_condition(
            "Ready", "-n", namespace, "workflows.punchingfist.io/investigate-alert", timeout=60
        )
        _, body = eventually(
            lambda: (r := _http(f"{base}/hooks/late", payload))[0] == 200 and r,
            "the new Source's path to be served",
        )
        assert len(body["runs"]) == 1 and body["runs"][0].startswith("investigate-alert-")
        assert _get(control_plane, "workflowtemplates.argoproj.io", "investigate-alert", namespace)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        log.close()
        control_plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    text = (tmp_path / "serve.log").read_text(errors="replace")
    assert "controller on namespace pf-serve" in text
    assert "punchingfist: controller stopped" in text


def _http(url: str, payload: Any = None) -> tuple[int, Any]:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, None
    except OSError:
        return 0, None


# -- the chart's RBAC -------------------------------------------------------------------------


def test_the_charts_controller_role_is_enough(control_plane: ControlPlane, tmp_path: Path) -> None:
    """The controller, authenticated as a ServiceAccount bound only to the chart's ClusterRole,
    compiles, applies (template and Secret), writes status and Events, and cleans up (the
    generated Secret when its credential moves to a Secret reference, the template on
    deletion)."""
    namespace, binding = "pf-rbac", f"pf-rbac-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl("create", "namespace", namespace)
    control_plane.kubectl("create", "serviceaccount", "punchingfist", "-n", namespace)
    role = ROOT / "charts/punchingfist/templates/controller-rbac.yaml"
    control_plane.kubectl("apply", "-f", str(role))
    control_plane.kubectl(
        "create",
        "clusterrolebinding",
        binding,
        "--clusterrole=punchingfist-controller",
        f"--serviceaccount={namespace}:punchingfist",
    )
    token = control_plane.kubectl("create", "token", "punchingfist", "-n", namespace).stdout
    kubeconfig = tmp_path / "sa-kubeconfig"
    ca = base64.b64encode(Path(control_plane.pki.path("ca.crt")).read_bytes()).decode()
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "sa",
                "clusters": [
                    {
                        "name": "e2e",
                        "cluster": {
                            "server": control_plane.server,
                            "certificate-authority-data": ca,
                        },
                    }
                ],
                "users": [{"name": "sa", "user": {"token": token.strip()}}],
                "contexts": [{"name": "sa", "context": {"cluster": "e2e", "user": "sa"}}],
            }
        )
    )
    thread = OperatorThread(connect(kubeconfig, options=ControllerOptions(namespaces=(namespace,))))
    resources = """
apiVersion: punchingfist.io/v1alpha1
kind: Sink
metadata: {name: slack-clear-text}
spec:
  type: slack
  config: {channel: "#ops", botToken: "xoxb-e2e-clear-text"}
---
apiVersion: punchingfist.io/v1alpha1
kind: Workflow
metadata: {name: least-privilege}
spec:
  steps: [{name: look, type: cli, command: "echo {{ .source.data.alert.alertname }}"}]
  sinks: [slack-clear-text]
"""
    try:
        thread.start(timeout=60)
        assert _apply(control_plane, resources, namespace=namespace).returncode == 0
        control_plane.wait_condition(
            "Ready",
            "-n",
            namespace,
            "workflows.punchingfist.io/least-privilege",
            "sinks.punchingfist.io/slack-clear-text",
            timeout=60,
        )
        secret = _get(control_plane, "secret", "least-privilege-punchingfist", namespace)
        assert secret["metadata"]["ownerReferences"][0]["name"] == "least-privilege"
        assert _get(control_plane, "workflowtemplates.argoproj.io", "least-privilege", namespace)
        warnings = eventually(
            lambda: control_plane.get_json(
                "events",
                "-n",
                namespace,
                "--field-selector",
                "involvedObject.name=least-privilege,reason=CompilerWarning",
            )["items"],
            "the compiler's clear-text warning as an Event",
        )
        assert "xoxb-e2e-clear-text" not in json.dumps(warnings)
        # The credential moves to a Secret reference: the generated Secret is deleted.
        config = {"botToken": None, "botTokenSecret": {"secretRef": "slack", "key": "token"}}
        control_plane.kubectl(
            "patch",
            "sinks.punchingfist.io",
            "slack-clear-text",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"config": config}}),
        )
        eventually(
            lambda: (
                _get(control_plane, "secret", "least-privilege-punchingfist", namespace) is None
            ),
            "the generated Secret to go once no credential is in clear text",
        )
        control_plane.kubectl(
            "delete", "-n", namespace, "workflows.punchingfist.io", "least-privilege"
        )
        eventually(
            lambda: (
                _get(control_plane, "workflowtemplates.argoproj.io", "least-privilege", namespace)
                is None
            ),
            "the template of the deleted Workflow to go",
        )
    finally:
        thread.stop()
        control_plane.kubectl("delete", "clusterrolebinding", binding, check=False)
        control_plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_admission_passes_compiler_warnings_to_kubectl(
    control_plane: ControlPlane, operator: OperatorThread
) -> None:
    sink = """
apiVersion: punchingfist.io/v1alpha1
kind: Sink
metadata: {name: slack-token-inline}
spec:
  type: slack
  config: {channel: "#ops", botToken: "xoxb-inline-e2e"}
"""
    assert _apply(control_plane, sink).returncode == 0
    # Ready is written by the controller after its index has the Sink (admission reads the index).
    control_plane.wait_condition(
        "Ready", "-n", NAMESPACE, "sinks.punchingfist.io/slack-token-inline", timeout=60
    )
    workflow = """
apiVersion: punchingfist.io/v1alpha1
kind: Workflow
metadata: {name: warned}
spec:
  steps: [{name: look, type: cli, command: "echo hi"}]
  sinks: [slack-token-inline]
"""
    result = _apply(control_plane, workflow)
    assert result.returncode == 0, result.stderr
    assert "Warning:" in result.stderr and "botToken" in result.stderr, result.stderr
    assert "xoxb-inline-e2e" not in result.stderr


# -- last: a restart (stops the module's controller) ------------------------------------------


def test_restarting_the_controller_changes_nothing(
    control_plane: ControlPlane, operator: OperatorThread
) -> None:
    """Last in this file: it stops the module's controller (tests are run in file order)."""
    _examples_applied(control_plane)
    workflows = control_plane.get_json("workflows.punchingfist.io", "-n", NAMESPACE)["items"]
    templates = control_plane.get_json("workflowtemplates.argoproj.io", "-n", NAMESPACE)["items"]
    versions = {t["metadata"]["name"]: t["metadata"]["resourceVersion"] for t in templates}
    statuses = {w["metadata"]["name"]: w["status"] for w in workflows}
    operator.stop()
    options = ControllerOptions(namespaces=(NAMESPACE,))
    again = OperatorThread(connect(control_plane.kubeconfig, options=options))
    again.start(timeout=60)
    try:
        eventually(
            lambda: sum(again.controller.outcomes.values()) >= len(workflows),
            "the restarted controller to resume every Workflow",
        )
        assert again.controller.outcomes["applied"] == 0, again.controller.outcomes
        after = control_plane.get_json("workflowtemplates.argoproj.io", "-n", NAMESPACE)["items"]
        assert {t["metadata"]["name"]: t["metadata"]["resourceVersion"] for t in after} == versions
        now = control_plane.get_json("workflows.punchingfist.io", "-n", NAMESPACE)["items"]
        assert {w["metadata"]["name"]: w["status"] for w in now} == statuses
    finally:
        again.stop()
