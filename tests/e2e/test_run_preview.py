"""`punchingfist run` against the real API server (#25): a remediation step's fix is previewed
as the chart's remediator account (server-side dry run, RBAC asked per request), and the
terminal prompt shows that preview (the diff, RBAC's verdict) before `approve step ...?`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import EXAMPLES
from tests.e2e.controlplane import ControlPlane
from tests.e2e.test_chart import RBAC_KINDS, render

PUNCHINGFIST = str(Path(sys.executable).with_name("punchingfist"))
HOME, SHOP = "run-pf", "run-shop"
ACCOUNT = f"system:serviceaccount:{HOME}:punchingfist-remediator"


WEB = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {SHOP}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
        - name: web
          image: registry.local/shop/web:1.4.2
          resources: {{limits: {{memory: 512Mi}}}}
"""
"""The Deployment the fix raises the memory limit of (no kubelet here: it never runs)."""


def test_the_run_prompt_shows_the_real_preview_before_asking(
    control_plane: ControlPlane, binaries: dict[str, str], tmp_path: Path
) -> None:
    for namespace in (HOME, SHOP):
        control_plane.kubectl("create", "namespace", namespace)
    chart = render(binaries, HOME, f"steps.remediator.namespaces={{{SHOP}}}")
    rbac = [o for o in chart if o["kind"] in RBAC_KINDS]
    control_plane.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(rbac))
    control_plane.kubectl("apply", "-f", "-", stdin=WEB)
    config = yaml.safe_load(Path(control_plane.kubeconfig).read_text())
    for user in config["users"]:
        user["user"]["as"] = ACCOUNT
    kubeconfig = tmp_path / "remediator.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    action = {
        "action": "set-resources",
        "target": {"kind": "Deployment", "namespace": SHOP, "name": "web"},
        "container": "web",
        "limits": {"memory": "1Gi"},
    }
    workflow = {
        "apiVersion": "punchingfist.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "fix-web"},
        "spec": {
            "steps": [{"name": "fix", "type": "remediation", "remediation": {"action": action}}]
        },
    }
    (tmp_path / "wf.yaml").write_text(yaml.safe_dump(workflow))
    alert = str(EXAMPLES / "alerts" / "pod-crashlooping.json")
    environ = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "KUBECONFIG": str(kubeconfig),
    }
    done = subprocess.run(
        [PUNCHINGFIST, "run", "-f", str(tmp_path / "wf.yaml"), "--event", alert, "-o", "json"],
        input="n not this time\n",
        capture_output=True,
        text=True,
        env=environ,
        timeout=300,
        check=False,
    )
    shown = done.stderr
    assert "approve step 'fix' of run" in shown, shown
    before = shown[: shown.index("approve step 'fix' of run")]
    assert "the fix to approve" in before
    assert (
        "Fix:              set container web of deployment run-shop/web to limits memory=1Gi"
        in before
    )
    assert "Dry run:          accepted" in before
    assert f"RBAC:             allowed for {ACCOUNT}" in before, "kubectl auth whoami"
    assert "-            memory: 512Mi\n+            memory: 1Gi\n" in before
    report = json.loads(done.stdout)
    (gate,) = report["approvals"]
    assert gate["approved"] is False and gate["comment"] == "not this time", gate
    container = control_plane.get_json("deployment", "web", "-n", SHOP)["spec"]["template"]
    limits = container["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"memory": "512Mi"}, "denied and only dry-run: nothing changed"
