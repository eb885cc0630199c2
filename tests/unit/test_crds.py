"""CRDs are generated from the models: no drift, structural, helpful for `kubectl explain`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from punchingfist.api.crds import render_crds

CRDS = Path(__file__).resolve().parents[2] / "crds"


def test_crds_match_the_models() -> None:
    generated = render_crds()
    on_disk = {p.name: p.read_text() for p in CRDS.glob("*.yaml")}
    assert set(on_disk) == set(generated), "run `make crds` and commit crds/"
    for name, text in generated.items():
        assert on_disk[name] == text, f"crds/{name} is stale: run `make crds` and commit it"


def walk(schema: dict[str, Any], path: str) -> list[str]:
    problems = []
    if "type" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        problems.append(f"{path}: no type")
    named = not path.endswith(("[]", "{}"))
    if path != "spec" and named and not schema.get("description"):
        problems.append(f"{path}: no description")
    for forbidden in ("$ref", "anyOf", "oneOf", "allOf", "additionalProperties: false", "const"):
        if forbidden in schema:
            problems.append(f"{path}: {forbidden}")
    for name, child in schema.get("properties", {}).items():
        problems += walk(child, f"{path}.{name}")
    if "items" in schema:
        problems += walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        problems += walk(schema["additionalProperties"], f"{path}{{}}")
    return problems


@pytest.mark.parametrize("name", sorted(render_crds()))
def test_crd_schema_is_structural_and_described(name: str) -> None:
    crd = yaml.safe_load(render_crds()[name])
    (version,) = crd["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[-2:] == ["Ready", "Age"]
    assert crd["spec"]["names"]["shortNames"]
    assert crd["spec"]["names"]["categories"] == ["punchingfist"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert walk(spec, "spec") == []


def test_workflow_crd_accepts_rig_config_and_every_step_field() -> None:
    crd = yaml.safe_load(render_crds()["punchingfist.io_workflows.yaml"])
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    step = spec["properties"]["steps"]["items"]["properties"]
    assert step["type"]["enum"] == ["cli", "agent", "conditional", "remediation"]
    for field in (
        "command",
        "goal",
        "tools",
        "condition",
        "agent",
        "cli",
        "rigConfig",
        "policy",
        "approvalRequired",
        "serviceAccount",
        "timeoutMinutes",
        "maxIterations",
        "remediation",
    ):
        assert field in step, field
    assert spec["properties"]["steps"]["items"]["required"] == ["name", "type"]
