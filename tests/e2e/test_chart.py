"""The Helm chart, rendered by a real helm (built by `make control-plane`) and installed on the
real API server: its objects are accepted, the server's command line is one `punchingfist`
takes, and the admission webhook, its Service and its certificate agree with each other."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from punchingfist.cli.parser import build_parser
from punchingfist.cli.serve import _serve
from punchingfist.runtime.remediation.kube import Kube
from tests.actions_support import catalog
from tests.e2e.controlplane import ROOT, ControlPlane, free_port

CHART = ROOT / "charts" / "punchingfist"
PUNCHINGFIST = Path(sys.executable).parent / "punchingfist"


def helm(binaries: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [binaries["HELM"], *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"helm {' '.join(args)} failed:\n{done.stderr}{done.stdout}"
    return done.stdout


def render(binaries: dict[str, str], namespace: str, *values: str) -> list[dict[str, Any]]:
    settings = [part for value in values for part in ("--set", value)]
    text = helm(binaries, "template", "pf", str(CHART), "--namespace", namespace, *settings)
    return [document for document in yaml.safe_load_all(text) if document]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def test_the_chart_lints(binaries: dict[str, str]) -> None:
    assert "0 chart(s) failed" in helm(binaries, "lint", "--strict", str(CHART))


def test_the_chart_installs_and_runs_serve_in_cluster(
    control_plane: ControlPlane, binaries: dict[str, str], tmp_path: Path
) -> None:
    namespace = "chart-install"
    control_plane.kubectl("create", "namespace", namespace)
    control_plane.kubectl("apply", "--server-side", "-f", str(CHART / "crds"))
    control_plane.wait_condition("Established", "crd/kopfpeerings.kopf.dev")
    objects = render(
        binaries,
        namespace,
        "admission.enabled=false",
        "database.urlSecret.name=pf-database",
        "secrets={approver-tokens,alertmanager-token}",
    )
    manifest = yaml.safe_dump_all(objects)
    applied = control_plane.kubectl("apply", "--server-side", "-f", "-", stdin=manifest)
    assert "deployment.apps/punchingfist serverside-applied" in applied.stdout, applied.stdout
    deployment = control_plane.get_json("deployment", "punchingfist", "-n", namespace)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["serviceAccountName"] == "punchingfist"
    assert container["command"] == ["punchingfist"]
    args = build_parser().parse_args(container["args"])
    assert args.handler is _serve and args.in_cluster and args.namespace == namespace
    assert args.admission_port is None and args.intake_writers == 1
    assert args.resync_interval == 0
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    for secret in ("approver-tokens", "alertmanager-token"):
        assert mounts[f"secret-{secret}"] == f"{args.secrets_dir}/{secret}"
    (database,) = [e for e in container["env"] if e["name"] == "PUNCHINGFIST_DATABASE_URL"]
    assert database["valueFrom"]["secretKeyRef"] == {"name": "pf-database", "key": "url"}
    service = control_plane.get_json("service", "punchingfist", "-n", namespace)
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert [p["port"] for p in service["spec"]["ports"]] == [8080]
    peering = control_plane.get_json("kopfpeerings.kopf.dev", "-n", namespace)["items"]
    assert [p["metadata"]["name"] for p in peering] == [args.peering]
    # The pod's command line, run here as the chart's ServiceAccount (no kubelet in this tier):
    # it comes up ready with the chart's RBAC, and its API checks tokens with the API server.
    port = free_port()
    token = control_plane.kubectl("create", "token", "punchingfist", "-n", namespace).stdout
    kubeconfig = account_kubeconfig(control_plane, tmp_path, token.strip(), namespace)
    for secret in ("approver-tokens", "alertmanager-token"):
        (tmp_path / "secrets" / secret).mkdir(parents=True)
    local = [
        "--kubeconfig",
        str(kubeconfig),
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--database-url",
        f"sqlite:///{tmp_path / 'pf.db'}",
        "--secrets-dir",
        str(tmp_path / "secrets"),
    ]
    argv = [str(PUNCHINGFIST), *container["args"], *local]
    server = subprocess.Popen(
        argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        ready = wait_ready(f"http://127.0.0.1:{port}", server)
        assert ready == {"status": "ready"}
        stranger = control_plane.kubectl("create", "serviceaccount", "stranger", "-n", namespace)
        assert stranger.returncode == 0
        theirs = control_plane.kubectl("create", "token", "stranger", "-n", namespace).stdout
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            assert http.get("/api/v1/runs").status_code == 401
            refused = http.get(
                "/api/v1/runs", headers={"Authorization": f"Bearer {theirs.strip()}"}
            )
            assert refused.status_code == 403, refused.text
            assert f"system:serviceaccount:{namespace}:stranger" in refused.text
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert "Traceback" not in output, output


def account_kubeconfig(
    control_plane: ControlPlane, directory: Path, token: str, namespace: str
) -> Path:
    """What a pod of the ServiceAccount sees: the API server, its CA and the account's token."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "pod",
        "clusters": [
            {
                "name": "e2e",
                "cluster": {
                    "server": control_plane.server,
                    "certificate-authority": str(control_plane.pki.path("ca.crt")),
                },
            }
        ],
        "users": [{"name": "account", "user": {"token": token}}],
        "contexts": [
            {
                "name": "pod",
                "context": {"cluster": "e2e", "user": "account", "namespace": namespace},
            }
        ],
    }
    path = directory / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def wait_ready(url: str, server: subprocess.Popen[str], timeout: float = 90) -> Any:
    """/readyz's answer once it is 200; fails with the server's output if it exits or stalls."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"serve exited {server.returncode}:\n{server.communicate()[0]}")
        with contextlib.suppress(httpx.HTTPError):
            answer = httpx.get(f"{url}/readyz", timeout=5)
            if answer.status_code == 200:
                return answer.json()
        time.sleep(0.5)
    server.terminate()
    raise AssertionError(f"serve not ready in {timeout}s:\n{server.communicate(timeout=30)[0]}")


@pytest.mark.parametrize("namespace", ["ops"])
def test_the_admission_webhook_its_service_and_its_certificate_agree(
    binaries: dict[str, str], namespace: str
) -> None:
    objects = render(binaries, namespace)
    webhook = one(objects, "ValidatingWebhookConfiguration")
    service = one(objects, "Service")
    certificate = one(objects, "Certificate")
    deployment = one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    args = build_parser().parse_args(pod["containers"][0]["args"])
    assert args.admission_port == 9443
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    name = service["metadata"]["name"]
    for hook in webhook["webhooks"]:
        target = hook["clientConfig"]["service"]
        assert (target["name"], target["namespace"], target["port"]) == (
            name,
            namespace,
            ports["admission"],
        )
    assert f"{name}.{namespace}.svc" in certificate["spec"]["dnsNames"]
    injected = webhook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    assert injected == f"{namespace}/{certificate['metadata']['name']}"
    (tls,) = [v for v in pod["volumes"] if v["name"] == "tls"]
    assert tls["secret"]["secretName"] == certificate["spec"]["secretName"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "tls"]
    assert args.admission_cert == f"{mount['mountPath']}/tls.crt"
    assert args.admission_key == f"{mount['mountPath']}/tls.key"


RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


def test_the_remediator_may_make_every_request_of_every_action_and_no_more(
    control_plane: ControlPlane, binaries: dict[str, str], tmp_path: Path
) -> None:
    """#25: the chart's RBAC, installed on the real authorizer, lets the remediator make every
    request `required_access` lists for each action (asked the way the preview asks:
    `Kube.may_apply`, kubectl auth can-i as the account), Nodes (cordon) and DaemonSets
    included, and nothing outside its namespace, no workload deletion, no Secrets; it reads
    what the investigator reads."""
    namespace, elsewhere = "chart-rbac", "chart-rbac-other"
    for name in (namespace, elsewhere):
        control_plane.kubectl("create", "namespace", name)
    objects = [o for o in render(binaries, namespace) if o["kind"] in RBAC_KINDS]
    control_plane.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(objects))
    account = f"system:serviceaccount:{namespace}:punchingfist-remediator"

    def can(verb: str, what: str, *where: str) -> bool:
        said = control_plane.kubectl("auth", "can-i", verb, what, *where, user=account, check=False)
        assert said.stdout.strip() in ("yes", "no"), said.stderr
        return said.stdout.strip() == "yes"

    assert can("patch", "nodes") and can("get", "nodes")
    assert can("patch", "daemonsets.apps", "-n", namespace)
    assert can("list", "replicasets.apps", "-n", namespace)
    assert not can("delete", "nodes") and not can("update", "nodes")
    # it reads what the investigator reads, to investigate and verify in a gated agent step
    assert can("get", "pods", "--subresource=log", "-n", namespace)
    assert can("list", "events", "-n", namespace) and can("list", "nodes")
    assert not can("patch", "daemonsets.apps", "-n", elsewhere)
    assert not can("delete", "deployments.apps", "-n", namespace)
    assert not can("patch", "deployments.apps", "--subresource=scale", "-n", namespace)
    assert not can("get", "secrets", "-n", namespace)

    config = yaml.safe_load(Path(control_plane.kubeconfig).read_text())
    for user in config["users"]:
        user["user"]["as"] = account
    kubeconfig = tmp_path / "remediator.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    kube = Kube({"KUBECONFIG": str(kubeconfig), "PATH": os.environ["PATH"]})
    verdicts = {f"{a.action} {a.target}": kube.may_apply(a) for a in catalog(namespace)}
    assert verdicts == {name: (True, "") for name in verdicts}
    denied = kube.may_apply(catalog(elsewhere)[0])
    assert denied[0] is False and f"in {elsewhere}" in denied[1], denied
