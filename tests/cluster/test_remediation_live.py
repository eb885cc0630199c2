"""Safe remediation (#25) on the real cluster: the runtime's two remediation tasks
(`pf-runtime remediation-preview`, then `pf-runtime remediation` as if approved), run as
processes with a TaskSpec, talking to the real API server as the chart's remediator account
(kubectl impersonates it, so its RBAC is the one the preview reports and the fix runs under).

Real: the node, the API server's server-side dry run, resourceVersion conflicts, the
Deployment controller's rollouts and ReplicaSets, the pods' OOM kills and image pulls, the
remediator's RBAC. The Argo path (preview -> approval gate -> fix as Argo tasks) is covered by
the compiler's tests, not here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack.cluster.layout import WORKLOAD_NAMESPACE
from punchingfist.api.actions import ActionPolicy
from punchingfist.api.runspec import RemediationTask, TaskSpec, result_env
from punchingfist.api.workflows import RemediationCheck
from tests.cluster.support import NAMESPACE, LiveCluster, ready_template, unique, workflow

SHOP = WORKLOAD_NAMESPACE
REMEDIATOR = "punchingfist-remediator"
OOM_LIMIT, FIXED_LIMIT = "48Mi", "256Mi"
ALLOCATE = (
    "import time; block = b'x' * (96 * 2**20); print('allocated', flush=True); time.sleep(10**6)"
)
SLEEP = "import time; time.sleep(10**6)"
PF_RUNTIME = str(Path(sys.executable).with_name("pf-runtime"))


def _deployment(cluster: LiveCluster, name: str, command: str, memory: str) -> None:
    limits = {"memory": memory}
    document = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": SHOP},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "app",
                            "image": cluster.images["RUNTIME"],
                            "command": ["python3", "-c", command],
                            "resources": {"limits": limits, "requests": limits},
                        }
                    ],
                },
            },
        },
    }
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(document))
    cluster.created_elsewhere.append(("deployment", name, SHOP))


def _until(what: str, probe: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout:g} s")
        time.sleep(2)


def _oom_killed(cluster: LiveCluster, app: str) -> bool:
    for pod in cluster.get("pods", "-n", SHOP, "-l", f"app={app}")["items"]:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            ended = [(status.get(k) or {}).get("terminated") or {} for k in ("state", "lastState")]
            if any(t.get("reason") == "OOMKilled" for t in ended):
                return True
    return False


def _available(cluster: LiveCluster, app: str) -> bool:
    deployment = cluster.get("deployment", app, "-n", SHOP)
    status = deployment.get("status") or {}
    return status.get("readyReplicas") == 1 and status.get("updatedReplicas") == 1


def _container(cluster: LiveCluster, app: str) -> dict[str, Any]:
    deployment = cluster.get("deployment", app, "-n", SHOP)
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


class Remediation:
    """The two tasks of one remediation step, run as pf-runtime processes."""

    def __init__(
        self, cluster: LiveCluster, tmp: Path, check: RemediationCheck, on_failure: str = "rollback"
    ) -> None:
        config = json.loads(Path(cluster.layout.kubeconfig).read_text())
        for user in config["users"]:
            user["user"]["as"] = f"system:serviceaccount:{NAMESPACE}:{REMEDIATOR}"
        kubeconfig = tmp / "remediator.kubeconfig"
        kubeconfig.write_text(json.dumps(config))
        self.tmp = tmp
        self.task = RemediationTask(
            fix_from="investigate",
            policy=ActionPolicy(namespaces=[SHOP]),
            check=check,
            on_failure=on_failure,
            account=REMEDIATOR,
            preview="fix-preview",
        )
        kubectl_dir = str(Path(cluster.binaries["KUBECTL"]).parent)
        self.environ = {
            "PATH": f"{kubectl_dir}:{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": str(tmp),
            "KUBECONFIG": str(kubeconfig),
            "PF_NAMESPACE": NAMESPACE,
            "PF_RUN_NAME": unique("remediation"),
            "PF_EVENT": "{}",
        }
        self.logs: list[str] = []

    def _run(self, kind: str, environ: dict[str, str], directory: str) -> dict[str, Any]:
        inputs = {
            "remediation-preview": ["investigate"],
            "remediation": ["investigate", "fix-preview"],
            "remediation-rollback": ["investigate", "fix-preview", "fix"],
        }[kind]
        spec = TaskSpec(
            kind=kind,
            workflow="safe-remediation",
            step="fix",
            inputs=inputs,
            gated=kind != "remediation-preview",
            remediation=self.task,
        )
        out = self.tmp / directory
        done = subprocess.run(
            [PF_RUNTIME, kind, "--result-dir", str(out)],
            env={**self.environ, **environ, "PF_SPEC": spec.encode()},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        self.logs.append(done.stdout + done.stderr)
        result: dict[str, Any] = json.loads((out / "result.json").read_text())
        result["exit_code"] = done.returncode
        result["log"] = done.stdout
        return result

    def preview(self, fix: Any) -> dict[str, Any]:
        answer = {"step": "investigate", "kind": "agent", "success": True, "result": {"fix": fix}}
        self.answer = {result_env("investigate"): json.dumps(answer)}
        return self._run("remediation-preview", self.answer, "preview")

    def apply(self, previewed: dict[str, Any]) -> dict[str, Any]:
        environ = {
            **self.answer,
            result_env("fix-preview"): json.dumps(_plain(previewed)),
            "PF_APPROVED": "true",
            "PF_APPROVER": "alice",
        }
        return self._run("remediation", environ, "apply")

    def rollback(self, previewed: dict[str, Any], applied: dict[str, Any]) -> dict[str, Any]:
        """The rollback task (onFailure ask), its gate approved."""
        environ = {
            **self.answer,
            result_env("fix-preview"): json.dumps(_plain(previewed)),
            result_env("fix"): json.dumps(_plain(applied)),
            "PF_APPROVED": "true",
            "PF_APPROVER": "bob",
        }
        return self._run("remediation-rollback", environ, "rollback")


def _plain(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k not in ("exit_code", "log")}


def _target(name: str) -> dict[str, str]:
    return {"kind": "Deployment", "namespace": SHOP, "name": name}


def _set_memory(name: str, memory: str) -> dict[str, Any]:
    return {
        "action": "set-resources",
        "target": _target(name),
        "container": "app",
        "limits": {"memory": memory},
    }


CHECK = RemediationCheck(ready_seconds=10, timeout_seconds=90)


@pytest.mark.timeout(420)
def test_an_oom_killed_deployment_is_previewed_approved_and_fixed(
    cluster: LiveCluster, tmp_path: Path
) -> None:
    app = unique("oom")
    _deployment(cluster, app, ALLOCATE, OOM_LIMIT)
    _until(f"{app} to be OOM-killed", lambda: _oom_killed(cluster, app))
    steps = Remediation(cluster, tmp_path, CHECK)
    fix = {**_set_memory(app, FIXED_LIMIT), "requests": {"memory": FIXED_LIMIT}}

    previewed = steps.preview(fix)
    shown = previewed["result"]["preview"]
    assert previewed["exit_code"] == 0 and shown["offered"] is True, previewed["log"]
    assert shown["dry_run"] == "accepted"
    assert shown["rbac"] == {
        "allowed": True,
        "account": f"system:serviceaccount:{NAMESPACE}:{REMEDIATOR}",
        "reason": "",
    }
    lines = shown["diff"].splitlines()
    removed = [line[1:].strip() for line in lines if line.startswith("-  ")]
    added = [line[1:].strip() for line in lines if line.startswith("+  ")]
    assert removed == [f"memory: {OOM_LIMIT}"] * 2 and added == [f"memory: {FIXED_LIMIT}"] * 2
    assert _container(cluster, app)["resources"]["limits"]["memory"] == OOM_LIMIT, "a dry run"
    assert shown["resource_version"], "the version the approver sees"

    applied = steps.apply(previewed)
    record = applied["result"]
    assert applied["exit_code"] == 0, applied["log"]
    assert record["outcome"] == "fixed" and record["verdict"] == "fixed"
    assert record["applied"] is True and "rolled_back" not in record
    assert record["saved"]["object"]["spec"]["template"]["spec"]["containers"][0]["resources"][
        "limits"
    ] == {"memory": OOM_LIMIT}
    assert any("Ready for 10 s" in line for line in record["check"]), record["check"]
    assert _container(cluster, app)["resources"]["limits"]["memory"] == FIXED_LIMIT
    assert _available(cluster, app)
    assert "approved by alice" in applied["log"]


def _healthy(cluster: LiveCluster, prefix: str) -> tuple[str, str, str]:
    """A Ready Deployment, its image and an image of the same repository that does not exist."""
    app = unique(prefix)
    _deployment(cluster, app, SLEEP, "64Mi")
    _until(f"{app} to be available", lambda: _available(cluster, app))
    image = cluster.images["RUNTIME"]
    return app, image, image.rsplit(":", 1)[0] + ":does-not-exist"


def _break(
    cluster: LiveCluster, tmp: Path, app: str, broken: str, on_failure: str
) -> tuple[Remediation, dict[str, Any]]:
    """The preview of a fix that sets the broken image (offered: the API server accepts it)."""
    check = RemediationCheck(ready_seconds=5, timeout_seconds=30)
    steps = Remediation(cluster, tmp, check, on_failure=on_failure)
    fix = {"action": "set-image", "target": _target(app), "container": "app", "image": broken}
    previewed = steps.preview(fix)
    assert previewed["result"]["offered"] is True, previewed["log"]
    return steps, previewed


@pytest.mark.timeout(420)
def test_a_fix_that_breaks_the_deployment_is_rolled_back(
    cluster: LiveCluster, tmp_path: Path
) -> None:
    app, image, broken = _healthy(cluster, "healthy")
    steps, previewed = _break(cluster, tmp_path, app, broken, "rollback")
    changed = [line for line in previewed["result"]["preview"]["diff"].splitlines()]
    assert f"+        image: {broken}" in changed and f"-        image: {image}" in changed

    applied = steps.apply(previewed)
    record = applied["result"]
    assert applied["exit_code"] == 1, applied["log"]
    assert record["verdict"] == "made worse"
    assert record["outcome"] == "made worse, rolled back", applied["log"]
    assert record["rolled_back"] is True and record["rollback_verified"] is True
    assert _container(cluster, app)["image"] == image, "the previous template is back"
    _until(f"{app} to be available again", lambda: _available(cluster, app), timeout=60)
    assert "rolling back" in applied["log"] and "rollback verified" in applied["log"]


@pytest.mark.timeout(420)
def test_with_on_failure_ask_the_broken_fix_waits_and_is_rolled_back_once_approved(
    cluster: LiveCluster, tmp_path: Path
) -> None:
    app, image, broken = _healthy(cluster, "ask")
    steps, previewed = _break(cluster, tmp_path, app, broken, "ask")

    applied = steps.apply(previewed)
    assert applied["exit_code"] == 0, "the rollback task decides"
    assert applied["result"]["outcome"] == "made worse, rollback awaits approval"
    assert (tmp_path / "apply" / "rollback").read_text() == "true"
    assert _container(cluster, app)["image"] == broken, "nothing rolled back before approval"

    rolled = steps.rollback(previewed, applied)
    record = rolled["result"]
    assert rolled["exit_code"] == 1, rolled["log"]
    assert record["outcome"] == "made worse, rolled back", rolled["log"]
    assert record["rolled_back"] is True and record["rollback_verified"] is True
    assert "approved by bob" in rolled["log"]
    assert _container(cluster, app)["image"] == image
    _until(f"{app} to be available again", lambda: _available(cluster, app), timeout=60)


@pytest.mark.timeout(300)
def test_a_deployment_edited_after_the_preview_is_not_changed(
    cluster: LiveCluster, tmp_path: Path
) -> None:
    app = unique("edited")
    _deployment(cluster, app, SLEEP, "64Mi")
    _until(f"{app} to be available", lambda: _available(cluster, app))
    steps = Remediation(cluster, tmp_path, CHECK)
    previewed = steps.preview(_set_memory(app, "128Mi"))
    assert previewed["result"]["offered"] is True, previewed["log"]
    # Someone changes the Deployment between the preview and the approval.
    cluster.kubectl("set", "resources", f"deployment/{app}", "-n", SHOP, "--limits=memory=96Mi")

    applied = steps.apply(previewed)
    record = applied["result"]
    assert applied["exit_code"] == 1, applied["log"]
    assert record["outcome"] == "conflict" and record["applied"] is False
    assert applied["error"] == "the object changed since the preview: re-run to ask again"
    assert _container(cluster, app)["resources"]["limits"]["memory"] == "96Mi", "not overwritten"


@pytest.mark.timeout(300)
def test_actions_outside_the_policy_are_never_offered_nor_applied(
    cluster: LiveCluster, tmp_path: Path
) -> None:
    secret = unique("db")
    cluster.kubectl(
        "create", "secret", "generic", secret, "-n", SHOP, "--from-literal=password=before"
    )
    cluster.created_elsewhere.append(("secret", secret, SHOP))
    proposals = {
        "patch a Secret": {
            "action": "patch",
            "target": {"kind": "Secret", "namespace": SHOP, "name": secret},
            "patch": {"stringData": {"password": "after"}},
        },
        "delete a namespace": {
            "action": "delete-namespace",
            "target": {"kind": "Namespace", "name": SHOP},
        },
        "a namespace outside the policy": {
            **_set_memory("coredns", "1Gi"),
            "target": {"kind": "Deployment", "namespace": "kube-system", "name": "coredns"},
        },
    }
    for label, fix in proposals.items():
        where = tmp_path / label.replace(" ", "-")
        where.mkdir()
        steps = Remediation(cluster, where, CHECK)
        previewed = steps.preview(fix)
        shown = previewed["result"]["preview"]
        assert previewed["result"]["offered"] is False and shown["offered"] is False, label
        assert shown["refused"], label
        assert shown["dry_run"] == "not run", f"{label}: the API server was never asked"
        applied = steps.apply(previewed)
        assert applied["exit_code"] == 1 and applied["result"]["applied"] is False, label
        assert "not offered" in applied["error"], label
    data = cluster.get("secret", secret, "-n", SHOP)["data"]
    assert data == {"password": "YmVmb3Jl"}, "the Secret still says `before`"
    assert SHOP in cluster.kubectl("get", "namespace", SHOP)


def _node(run: dict[str, Any], name: str) -> dict[str, Any]:
    nodes = (run.get("status") or {}).get("nodes") or {}
    found: list[dict[str, Any]] = [n for n in nodes.values() if n.get("displayName") == name]
    (node,) = found
    return node


def _output(node: dict[str, Any], name: str) -> str:
    parameters = (node.get("outputs") or {}).get("parameters") or []
    (value,) = [p.get("value") for p in parameters if p["name"] == name]
    return str(value)


@pytest.mark.timeout(600)
def test_through_argo_the_preview_the_gate_and_the_fix_heal_an_oom_killed_deployment(
    cluster: LiveCluster, tmp_path: Path
) -> None:
    app = unique("argo-oom")
    _deployment(cluster, app, ALLOCATE, OOM_LIMIT)
    _until(f"{app} to be OOM-killed", lambda: _oom_killed(cluster, app))
    name = unique("safe-fix")
    fix = {**_set_memory(app, FIXED_LIMIT), "requests": {"memory": FIXED_LIMIT}}
    step = {
        "name": "fix",
        "type": "remediation",
        "approvalTimeoutMinutes": 10,
        "remediation": {
            "action": fix,
            "policy": {"namespaces": [SHOP]},
            "check": {"readySeconds": 10, "timeoutSeconds": 120},
        },
    }
    cluster.apply(workflow(name, [step]))
    ready_template(cluster, name, timeout=120)
    run = cluster.submit(name)

    def waiting() -> bool:
        nodes = (cluster.argo_workflow(run).get("status") or {}).get("nodes") or {}
        return any(
            n.get("displayName") == "fix-approval" and n.get("phase") == "Running"
            for n in nodes.values()
        )

    cluster.wait(waiting, f"{run} to wait at fix-approval", 300, lambda: cluster.describe_run(run))
    preview = _node(cluster.argo_workflow(run), "fix-preview")
    assert _output(preview, "offered") == "true"
    shown = json.loads(_output(preview, "preview"))
    assert f"+            memory: {FIXED_LIMIT}" in shown["diff"].splitlines(), shown["diff"]
    assert shown["rbac"]["allowed"] is True
    # the account the API server saw (kubectl auth whoami in the step's pod)
    assert shown["rbac"]["account"] == f"system:serviceaccount:{NAMESPACE}:{REMEDIATOR}"
    assert _container(cluster, app)["resources"]["limits"]["memory"] == OOM_LIMIT, "not yet"

    argv = [sys.executable, "-m", "punchingfist.cli", "approve", run, "--step", "fix"]
    argv += ["-n", NAMESPACE, "--kubeconfig", str(cluster.layout.kubeconfig)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout

    finished = cluster.finished(run, timeout=400)
    assert finished["status"]["phase"] == "Succeeded", cluster.describe_run(run)
    record = json.loads(_output(_node(finished, "fix"), "result"))
    assert record["result"]["outcome"] == "fixed", record
    assert record["result"]["preview"]["resource_version"] == shown["resource_version"]
    assert _container(cluster, app)["resources"]["limits"]["memory"] == FIXED_LIMIT
    assert _available(cluster, app)


@pytest.mark.timeout(420)
def test_rollout_undo_goes_back_to_the_previous_revisions_template(
    cluster: LiveCluster, tmp_path: Path
) -> None:
    app, image, broken = _healthy(cluster, "undo")
    cluster.kubectl("set", "image", f"deployment/{app}", "-n", SHOP, f"app={broken}")
    steps = Remediation(cluster, tmp_path, CHECK)
    previewed = steps.preview({"action": "rollout-undo", "target": _target(app)})
    assert previewed["result"]["offered"] is True, previewed["log"]
    assert previewed["result"]["revision"] == 1
    changed = previewed["result"]["preview"]["diff"].splitlines()
    assert f"-        image: {broken}" in changed and f"+        image: {image}" in changed
    assert not any("pod-template-hash" in line for line in changed), "the hash is stripped"

    applied = steps.apply(previewed)
    assert applied["result"]["outcome"] == "fixed", applied["log"]
    assert _container(cluster, app)["image"] == image
    assert _available(cluster, app)


@pytest.mark.timeout(300)
def test_a_deleted_pod_is_replaced_and_cannot_be_rolled_back(
    cluster: LiveCluster, tmp_path: Path
) -> None:
    app, _, _ = _healthy(cluster, "delete")
    (pod,) = cluster.get("pods", "-n", SHOP, "-l", f"app={app}")["items"]
    name = pod["metadata"]["name"]
    steps = Remediation(cluster, tmp_path, CHECK)
    target = {"kind": "Pod", "namespace": SHOP, "name": name}
    previewed = steps.preview({"action": "delete-pod", "target": target})
    shown = previewed["result"]["preview"]
    assert shown["offered"] is True and shown["dry_run"] == "accepted", previewed["log"]
    assert f"-  name: {name}" in shown["diff"].splitlines(), "the whole pod, removed"
    assert cluster.get("pod", name, "-n", SHOP)["metadata"]["uid"] == pod["metadata"]["uid"]

    applied = steps.apply(previewed)
    assert applied["result"]["outcome"] == "fixed", applied["log"]
    (line,) = applied["result"]["check"]
    assert line.startswith(f"✔ replicaset {SHOP}/") and "1/1 pods Ready without it" in line
    assert name not in line, "the replacement, not the deleted pod"
    assert applied["result"]["saved"]["object"]["metadata"]["name"] == name
