"""What a Workflow gets where it names nothing: the operator's runtime image, the chart's step
ServiceAccounts (the remediator only behind an approval gate), and container resources."""

from __future__ import annotations

from typing import Any

import pytest

from punchingfist.api.workflows import DEFAULT_IMAGE
from punchingfist.compiler import Defaults, compile_workflow
from punchingfist.errors import CompileError, InvalidResource
from tests.builders import make_workflow

CLI = {"name": "look", "type": "cli", "command": "kubectl get pods"}
FIX = {
    "name": "fix",
    "type": "cli",
    "command": "kubectl rollout restart deploy/x",
    "approvalRequired": True,
}


def containers(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in manifest["spec"]["templates"] if "container" in t}


def test_steps_run_as_the_investigator_and_gated_steps_as_the_remediator() -> None:
    manifest = compile_workflow(make_workflow([CLI, FIX])).manifest
    assert manifest["spec"]["serviceAccountName"] == "punchingfist-investigator"
    templates = containers(manifest)
    assert "serviceAccountName" not in templates["look"]  # the workflow's
    assert templates["fix"]["serviceAccountName"] == "punchingfist-remediator"
    assert "serviceAccountName" not in templates["fix-approval-request"]


def test_accounts_the_workflow_names_win() -> None:
    named = make_workflow(
        [CLI, FIX | {"serviceAccount": "fixer"}], runtime={"serviceAccount": "mine"}
    )
    manifest = compile_workflow(named).manifest
    assert manifest["spec"]["serviceAccountName"] == "mine"
    assert containers(manifest)["fix"]["serviceAccountName"] == "fixer"
    everyone = make_workflow([CLI, FIX], runtime={"serviceAccount": "mine"})
    assert containers(compile_workflow(everyone).manifest)["fix"]["serviceAccountName"] == "mine"


def test_the_image_is_the_operators_unless_the_workflow_names_one() -> None:
    plain = make_workflow([CLI])
    assert containers(compile_workflow(plain).manifest)["look"]["container"]["image"] == (
        DEFAULT_IMAGE
    )
    ours = Defaults(image="localhost:5000/punchingfist/runtime:dev-1")
    manifest = compile_workflow(plain, defaults=ours).manifest
    assert {t["container"]["image"] for t in containers(manifest).values()} == {ours.image}
    pinned = make_workflow([CLI], runtime={"image": "registry.example/pf:v2"})
    manifest = compile_workflow(pinned, defaults=ours).manifest
    assert containers(manifest)["look"]["container"]["image"] == "registry.example/pf:v2"


def test_resources_of_the_runtime_and_of_a_step_add_up() -> None:
    workflow = make_workflow(
        [CLI | {"resources": {"limits": {"memory": "64Mi"}}}, FIX],
        runtime={"resources": {"requests": {"cpu": 0.1}, "limits": {"memory": "256Mi"}}},
    )
    templates = containers(compile_workflow(workflow).manifest)
    assert templates["look"]["container"]["resources"] == {
        "requests": {"cpu": "0.1"},
        "limits": {"memory": "64Mi"},
    }
    assert templates["fix"]["container"]["resources"] == {
        "requests": {"cpu": "0.1"},
        "limits": {"memory": "256Mi"},
    }
    assert (
        "resources"
        not in containers(compile_workflow(make_workflow([CLI])).manifest)["look"]["container"]
    )


def test_resources_that_kubernetes_would_refuse_are_errors_with_the_field() -> None:
    with pytest.raises(InvalidResource, match=r"'lots' is not a quantity; write e\.g\. 100m"):
        make_workflow([CLI | {"resources": {"limits": {"memory": "lots"}}}])
    with pytest.raises(InvalidResource, match=r"requests\.memory 1Gi is more than limits\.memory"):
        make_workflow(
            [CLI | {"resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "1Mi"}}}]
        )
    above = make_workflow(
        [CLI | {"resources": {"requests": {"memory": "1Gi"}}}],
        runtime={"resources": {"limits": {"memory": "256Mi"}}},
    )
    with pytest.raises(CompileError) as raised:
        compile_workflow(above)
    assert raised.value.field == "spec.steps[0].resources"
    assert "requests.memory 1Gi is more than limits.memory 256Mi" in str(raised.value)
