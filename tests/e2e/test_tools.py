"""e2e: the kubectl tool and the debug-pod script against the real kube-apiserver."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from punchingfist.runtime.tools import kubectl
from punchingfist.runtime.tools.kubectl import KubectlPolicy
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
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "my-app-pod-xyz", "namespace": NS,
         "labels": {"app": "my-app"}}, "spec": {"containers": [{"name": "my-app",
         "image": "my-app:1.5.0"}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "my-app",
         "namespace": NS}, "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "my-app"}},
         "template": {"metadata": {"labels": {"app": "my-app"}}, "spec": {"containers": [
             {"name": "my-app", "image": "my-app:1.5.0"}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "user-auth-service",
         "namespace": NS}, "spec": {"ports": [{"port": 8080, "targetPort": 8080}],
         "selector": {"app": "user-auth"}}},
        {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "my-app-pod-xyz.oom",
         "namespace": NS}, "involvedObject": {"kind": "Pod", "name": "my-app-pod-xyz",
         "namespace": NS}, "reason": "OOMKilling", "message": "Memory cgroup out of memory",
         "type": "Warning"},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-password",
         "namespace": NS}, "stringData": {"password": "hunter2"}},
    ]  # fmt: skip
    for manifest in manifests:
        control_plane.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    return control_plane


def env(plane: ControlPlane, kubeconfig: Path | None = None) -> dict[str, str]:
    # HOME: kubectl keeps its discovery cache there; never in the checkout.
    return {"PATH": os.environ["PATH"], "KUBECONFIG": str(kubeconfig or plane.kubeconfig),
            "HOME": str(plane.workdir)}  # fmt: skip


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["get", "pods", "-n", NS], "my-app-pod-xyz"),
        (["get", "deployments.apps", "-n", NS, "-o", "wide"], "my-app"),
        (["get", "svc", "user-auth-service", "-n", NS], "8080/TCP"),
        (["get", "events", "-n", NS], "OOMKilling"),
        (["describe", "pod", "my-app-pod-xyz", "-n", NS], "my-app:1.5.0"),
        # no kube-controller-manager runs, so there are no ReplicaSets and no revisions
        (["rollout", "history", "deployment/my-app", "-n", NS], "deployment.apps/my-app"),
        (["auth", "can-i", "list", "pods", "-n", NS], "yes"),
    ],
)
def test_read_verbs_reach_the_server(objects: ControlPlane, args: list[str], expected: str) -> None:
    result = kubectl.run(args, KubectlPolicy(), env(objects))
    assert result.status == "ok", result.error
    assert expected in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["delete", "pod", "my-app-pod-xyz", "-n", NS],
        ["scale", "deployment/my-app", "--replicas=0", "-n", NS],
        ["get", "secrets", "-n", NS],
        ["get", "secret", "db-password", "-n", NS, "-o", "yaml"],
    ],
)
def test_writes_and_secrets_are_refused_and_nothing_reaches_the_server(
    objects: ControlPlane, args: list[str]
) -> None:
    result = kubectl.run(args, KubectlPolicy(), env(objects))
    assert result.status == "refused" and "hunter2" not in result.output
    assert objects.get_json("pod", "my-app-pod-xyz", "-n", NS)["metadata"]["name"]
    assert objects.get_json("deployment", "my-app", "-n", NS)["spec"]["replicas"] == 1


def test_logs_argv_and_error_path(objects: ControlPlane) -> None:
    # No kubelet: the unscheduled pod has no logs to give, which the model is told plainly.
    empty = kubectl.run(["logs", "my-app-pod-xyz", "-n", NS, "--tail=50"], KubectlPolicy(),
                        env(objects))  # fmt: skip
    assert empty.status == "ok" and empty.for_model() == "status: ok\n(no output)"
    missing = kubectl.run(["logs", "nope", "-n", NS, "--previous"], KubectlPolicy(), env(objects))
    assert missing.status == "error"
    assert 'pods "nope" not found' in (missing.error or "")


def test_timeout(objects: ControlPlane) -> None:
    result = kubectl.run(["get", "pods", "-n", NS], KubectlPolicy(timeout=0.001), env(objects))
    assert result.status == "timeout"


def test_rbac_is_the_real_boundary(objects: ControlPlane, tmp_path: Path) -> None:
    """As the investigator ServiceAccount, an 'approved' delete still fails on RBAC."""
    objects.kubectl("apply", "-f", str(ROOT / "charts/punchingfist/templates/agent-roles.yaml"))
    objects.kubectl("create", "serviceaccount", "investigator", "-n", NS)
    objects.kubectl("create", "rolebinding", "investigator", "-n", NS,
                    "--clusterrole=punchingfist-investigator",
                    f"--serviceaccount={NS}:investigator")  # fmt: skip
    token = objects.kubectl("create", "token", "investigator", "-n", NS).stdout.strip()
    config = json.loads(objects.kubeconfig.read_text())
    config["users"] = [{"name": "admin", "user": {"token": token}}]
    kubeconfig = tmp_path / "investigator"
    kubeconfig.write_text(json.dumps(config))
    read = kubectl.run(["get", "pods", "-n", NS], KubectlPolicy(), env(objects, kubeconfig))
    assert read.status == "ok", read.error
    write = kubectl.run(["delete", "pod", "my-app-pod-xyz", "-n", NS],
                        KubectlPolicy(approved=True), env(objects, kubeconfig))  # fmt: skip
    assert write.status == "error" and "forbidden" in (write.error or "")
    assert objects.get_json("pod", "my-app-pod-xyz", "-n", NS)


def test_debug_pod_script(objects: ControlPlane) -> None:
    result = subprocess.run(
        [str(DEBUG_POD), "my-app-pod-xyz", NS], capture_output=True, text=True, timeout=120,
        env=env(objects), check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for section in ("=== pod ===", "=== status ===", "=== events ===", "=== logs"):
        assert section in result.stdout
    assert "my-app-pod-xyz" in result.stdout and "OOMKilling" in result.stdout
    missing = subprocess.run([str(DEBUG_POD), "nope", NS], capture_output=True, text=True,
                             timeout=60, env=env(objects), check=False)  # fmt: skip
    assert missing.returncode == 1 and "not found" in missing.stderr
    bad = subprocess.run([str(DEBUG_POD), "x;id"], capture_output=True, text=True, timeout=60,
                         env=env(objects), check=False)  # fmt: skip
    assert bad.returncode == 2
