"""e2e: the kubectl tool's typed calls and the debug-pod script on a real kube-apiserver."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from punchingfist.runtime.tools import kubectl
from punchingfist.runtime.tools.kubectl import KubectlPolicy
from punchingfist.runtime.tools.kubectl_calls import KubectlCall
from tests.e2e.controlplane import ROOT, ControlPlane

pytestmark = pytest.mark.timeout(300)
NS = "tools"
DEBUG_POD = ROOT / "runtime-image" / "bin" / "debug-pod.sh"


@pytest.fixture(scope="module")
def objects(control_plane: ControlPlane) -> ControlPlane:
    """A namespace with a pod, a deployment, a service, an event and a secret."""
    control_plane.kubectl("create", "namespace", NS)
    control_plane.kubectl("create", "serviceaccount", "default", "-n", NS)
    manifests = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "my-app-pod-xyz", "namespace": NS, "labels": {"app": "my-app"}},
            "spec": {"containers": [{"name": "my-app", "image": "my-app:1.5.0"}]},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "my-app", "namespace": NS},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "my-app"}},
                "template": {
                    "metadata": {"labels": {"app": "my-app"}},
                    "spec": {"containers": [{"name": "my-app", "image": "my-app:1.5.0"}]},
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "user-auth-service", "namespace": NS},
            "spec": {
                "ports": [{"port": 8080, "targetPort": 8080}],
                "selector": {"app": "user-auth"},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "my-app-pod-xyz.oom", "namespace": NS},
            "involvedObject": {"kind": "Pod", "name": "my-app-pod-xyz", "namespace": NS},
            "reason": "OOMKilling",
            "message": "Memory cgroup out of memory",
            "type": "Warning",
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db-password", "namespace": NS},
            "stringData": {"password": "hunter2"},
        },
    ]
    for manifest in manifests:
        control_plane.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    return control_plane


def env(plane: ControlPlane, kubeconfig: Path | None = None) -> dict[str, str]:
    # HOME: kubectl keeps its discovery cache there; never in the checkout.
    return {
        "PATH": os.environ["PATH"],
        "KUBECONFIG": str(kubeconfig or plane.kubeconfig),
        "HOME": str(plane.workdir),
    }


def call(**fields: Any) -> KubectlCall:
    return KubectlCall.model_validate({"tool": "kubectl", "namespace": NS, **fields})


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"verb": "get", "resource": "pods"}, "my-app-pod-xyz"),
        ({"verb": "get", "resource": "deployments.apps", "output": "wide"}, "my-app"),
        (
            {"verb": "get", "resource": "pods", "label_selector": "app=my-app", "output": "name"},
            "pod/my-app-pod-xyz",
        ),
        ({"verb": "get", "resource": "svc", "name": "user-auth-service"}, "8080/TCP"),
        ({"verb": "events"}, "OOMKilling"),
        (
            {"verb": "events", "name": "my-app-pod-xyz", "field_selector": "type=Warning"},
            "OOMKilling",
        ),
        ({"verb": "describe", "resource": "pod", "name": "my-app-pod-xyz"}, "my-app:1.5.0"),
        # no kube-controller-manager runs, so there are no ReplicaSets and no revisions
        (
            {"verb": "rollout-history", "resource": "deployment", "name": "my-app"},
            "deployment.apps/my-app",
        ),
    ],
)
def test_read_verbs_reach_the_server(
    objects: ControlPlane, fields: dict[str, Any], expected: str
) -> None:
    result = kubectl.run(call(**fields), KubectlPolicy(), env(objects))
    assert result.status == "ok", (result.error, result.details)
    assert expected in result.output


@pytest.mark.parametrize(
    "fields",
    [
        {"verb": "delete", "resource": "pod", "name": "my-app-pod-xyz"},
        {"verb": "scale", "resource": "deployment", "name": "my-app", "replicas": 0},
        {"verb": "get", "resource": "pods", "namespace": "kube-system"},
    ],
)
def test_writes_and_other_namespaces_are_refused_and_nothing_reaches_the_server(
    objects: ControlPlane, fields: dict[str, Any]
) -> None:
    policy = KubectlPolicy(allowed_namespaces=frozenset({NS}))
    result = kubectl.run(call(**fields), policy, env(objects))
    assert result.status == "refused"
    assert objects.get_json("pod", "my-app-pod-xyz", "-n", NS)["metadata"]["name"]
    assert objects.get_json("deployment", "my-app", "-n", NS)["spec"]["replicas"] == 1


@pytest.mark.parametrize("resource", ["secrets", "secret", "secrets.v1", "all"])
def test_secrets_cannot_be_asked_for(resource: str) -> None:
    with pytest.raises(ValidationError, match="Secrets are never readable"):
        call(verb="get", resource=resource, output="yaml")


def test_an_approved_write_runs_the_argv_we_built(objects: ControlPlane) -> None:
    scale = call(verb="scale", resource="deployment", name="my-app", replicas=2)
    result = kubectl.run(scale, KubectlPolicy(approved=True), env(objects))
    assert result.status == "ok", result.error
    assert result.details["argv"] == [
        "kubectl",
        "scale",
        f"--namespace={NS}",
        "--replicas=2",
        "--",
        "deployment",
        "my-app",
    ]
    assert objects.get_json("deployment", "my-app", "-n", NS)["spec"]["replicas"] == 2
    back = call(verb="scale", resource="deployment", name="my-app", replicas=1)
    assert kubectl.run(back, KubectlPolicy(approved=True), env(objects)).status == "ok"


def test_logs_argv_and_error_path(objects: ControlPlane) -> None:
    # No kubelet: the unscheduled pod has no logs to give, which the model is told plainly.
    logs = call(verb="logs", name="my-app-pod-xyz", tail=50)
    empty = kubectl.run(logs, KubectlPolicy(), env(objects))
    assert empty.status == "ok" and empty.for_model() == "status: ok\n(no output)"
    previous = call(verb="logs", name="nope", previous=True)
    missing = kubectl.run(previous, KubectlPolicy(), env(objects))
    assert missing.status == "error"
    assert 'pods "nope" not found' in (missing.error or "")


def test_timeout(objects: ControlPlane) -> None:
    pods = call(verb="get", resource="pods")
    result = kubectl.run(pods, KubectlPolicy(timeout=0.001), env(objects))
    assert result.status == "timeout"


def test_rbac_is_the_real_boundary(objects: ControlPlane, tmp_path: Path) -> None:
    """As the investigator ServiceAccount, an 'approved' delete still fails on RBAC."""
    objects.kubectl("apply", "-f", str(ROOT / "charts/punchingfist/templates/agent-roles.yaml"))
    objects.kubectl("create", "serviceaccount", "investigator", "-n", NS)
    objects.kubectl(
        "create",
        "rolebinding",
        "investigator",
        "-n",
        NS,
        "--clusterrole=punchingfist-investigator",
        f"--serviceaccount={NS}:investigator",
    )
    token = objects.kubectl("create", "token", "investigator", "-n", NS).stdout.strip()
    config = json.loads(objects.kubeconfig.read_text())
    config["users"] = [{"name": "admin", "user": {"token": token}}]
    kubeconfig = tmp_path / "investigator"
    kubeconfig.write_text(json.dumps(config))
    pods = call(verb="get", resource="pods")
    read = kubectl.run(pods, KubectlPolicy(), env(objects, kubeconfig))
    assert read.status == "ok", read.error
    delete = call(verb="delete", resource="pod", name="my-app-pod-xyz")
    write = kubectl.run(delete, KubectlPolicy(approved=True), env(objects, kubeconfig))
    assert write.status == "error" and "forbidden" in (write.error or "")
    assert objects.get_json("pod", "my-app-pod-xyz", "-n", NS)


def test_debug_pod_script(objects: ControlPlane) -> None:
    result = subprocess.run(
        [str(DEBUG_POD), "my-app-pod-xyz", NS],
        capture_output=True,
        text=True,
        timeout=120,
        env=env(objects),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for section in ("=== pod ===", "=== status ===", "=== events ===", "=== logs"):
        assert section in result.stdout
    assert "my-app-pod-xyz" in result.stdout and "OOMKilling" in result.stdout
    missing = subprocess.run(
        [str(DEBUG_POD), "nope", NS],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(objects),
        check=False,
    )
    assert missing.returncode == 1 and "not found" in missing.stderr
    bad = subprocess.run(
        [str(DEBUG_POD), "x;id"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(objects),
        check=False,
    )
    assert bad.returncode == 2
