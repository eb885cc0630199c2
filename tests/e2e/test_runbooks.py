"""e2e: the runbook tool reads runbooks from ConfigMaps on a real kube-apiserver, by label
selector and by name, with kubectl as step pods run it."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from punchingfist.api.runspec import RunbookConfigMaps, RunbooksTask
from punchingfist.runtime.tools import runbook
from tests.e2e.controlplane import ControlPlane

pytestmark = pytest.mark.timeout(300)
NS = "runbooks"
CRASH = """---
title: Pod crash looping
alertname: KubePodCrashLooping
labels: {namespace: payments}
---
Read the previous container's logs.
"""
DISK = "---\ntitle: Disk full\nalertname: NodeDiskFull\n---\nFree space.\n"
ALERT = {"alertname": "KubePodCrashLooping", "labels": {"namespace": "payments"}}


@pytest.fixture(scope="module")
def plane(control_plane: ControlPlane) -> ControlPlane:
    control_plane.kubectl("create", "namespace", NS)
    maps = [
        ("team-runbooks", {"punchingfist.io/runbook": "true"}, {"crash.md": CRASH}),
        ("node-runbooks", {"punchingfist.io/runbook": "true"}, {"disk.md": DISK}),
        ("unrelated", {}, {"crash.md": CRASH.replace("Pod crash", "Not labelled")}),
    ]
    for name, labels, data in maps:
        manifest = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": NS, "labels": labels},
            "data": data,
        }
        control_plane.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    return control_plane


def tool(plane: ControlPlane, source: RunbookConfigMaps) -> runbook.RunbookTool:
    env = {"PATH": os.environ["PATH"], "KUBECONFIG": str(plane.kubeconfig)}
    env["HOME"] = str(plane.workdir)
    reader = runbook.kubectl_reader("kubectl", env, 30)
    return runbook.RunbookTool(RunbooksTask(config_maps=source), ALERT, {}, reader, env)


def listed(result: Any) -> list[str]:
    assert result.status == "ok", result.error
    return [r["name"] for r in json.loads(result.output)["runbooks"]]


def test_a_label_selector_finds_the_labelled_configmaps(plane: ControlPlane) -> None:
    rb = tool(plane, RunbookConfigMaps(namespace=NS, selector={"punchingfist.io/runbook": "true"}))
    assert [r.name for r in rb.load().runbooks] == [
        "configmap/node-runbooks/disk.md",
        "configmap/team-runbooks/crash.md",
    ]
    assert listed(rb.run("list", None)) == ["configmap/team-runbooks/crash.md"]
    content = rb.run("read", "configmap/team-runbooks/crash.md")
    assert content.status == "ok" and "previous container's logs" in content.output


def test_names_find_those_configmaps(plane: ControlPlane) -> None:
    rb = tool(plane, RunbookConfigMaps(namespace=NS, names=["unrelated", "node-runbooks"]))
    assert listed(rb.run("list", None)) == ["configmap/unrelated/crash.md"]
    assert rb.run("read", "configmap/team-runbooks/crash.md").status == "refused"


def test_a_missing_configmap_is_an_error_the_model_reads(plane: ControlPlane) -> None:
    result = tool(plane, RunbookConfigMaps(namespace=NS, names=["no-such"])).run("list", None)
    assert result.status == "error" and "no-such" in (result.error or "")
