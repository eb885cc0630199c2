"""The Helm chart, rendered by a real helm (built by `make control-plane`) and installed on the
real API server: its objects are accepted, the server's command line is one `punchingfist`
takes, and the admission webhook, its Service and its certificate agree with each other."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml

from punchingfist.cli import _parser, _serve
from tests.e2e.controlplane import ROOT, ControlPlane

CHART = ROOT / "charts" / "punchingfist"


def helm(binaries: dict[str, str], *args: str) -> str:
    done = subprocess.run([binaries["HELM"], *args], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
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
    control_plane: ControlPlane, binaries: dict[str, str]
) -> None:
    namespace = "chart-install"
    control_plane.kubectl("create", "namespace", namespace)
    control_plane.kubectl("apply", "--server-side", "-f", str(CHART / "crds"))
    control_plane.wait_condition("Established", "crd/kopfpeerings.kopf.dev")
    objects = render(binaries, namespace, "admission.enabled=false",
                     "database.urlSecret.name=pf-database",
                     "secrets={approver-tokens,alertmanager-token}")  # fmt: skip
    manifest = yaml.safe_dump_all(objects)
    applied = control_plane.kubectl("apply", "--server-side", "-f", "-", stdin=manifest)
    assert "deployment.apps/punchingfist serverside-applied" in applied.stdout, applied.stdout
    deployment = control_plane.get_json("deployment", "punchingfist", "-n", namespace)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["serviceAccountName"] == "punchingfist"
    assert container["command"] == ["punchingfist"]
    args = _parser().parse_args(container["args"])
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
    args = _parser().parse_args(pod["containers"][0]["args"])
    assert args.admission_port == 9443
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    name = service["metadata"]["name"]
    for hook in webhook["webhooks"]:
        target = hook["clientConfig"]["service"]
        assert (target["name"], target["namespace"], target["port"]) == (
            name, namespace, ports["admission"])  # fmt: skip
    assert f"{name}.{namespace}.svc" in certificate["spec"]["dnsNames"]
    injected = webhook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    assert injected == f"{namespace}/{certificate['metadata']['name']}"
    (tls,) = [v for v in pod["volumes"] if v["name"] == "tls"]
    assert tls["secret"]["secretName"] == certificate["spec"]["secretName"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "tls"]
    assert args.admission_cert == f"{mount['mountPath']}/tls.crt"
    assert args.admission_key == f"{mount['mountPath']}/tls.key"
