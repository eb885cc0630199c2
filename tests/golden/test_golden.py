"""Golden files: each example Workflow beside the Argo YAML it must compile to.

The expected files live in tests/golden/expected/<workflow>.yaml. PF_SPEC (base64 JSON) is
decoded in them so a review diff shows what changed. Regenerate with `make golden`
(PF_UPDATE_GOLDEN=1); never in CI.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from punchingfist.api import OperatorConfig, Sink, Workflow
from punchingfist.compiler import compile_workflow

EXPECTED = Path(__file__).parent / "expected"
UPDATE = os.environ.get("PF_UPDATE_GOLDEN") == "1"
WORKFLOWS = sorted(
    p.stem for p in (Path(__file__).parents[2] / "examples/workflows").glob("*.yaml")
)


def normalise(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    documents = json.loads(json.dumps(documents))
    for document in documents:
        for template in document.get("spec", {}).get("templates", []):
            for variable in template.get("container", {}).get("env", []):
                if variable["name"] == "PF_SPEC":
                    variable["value"] = {"decoded": json.loads(base64.b64decode(variable["value"]))}
    return documents


def test_not_updating_in_ci() -> None:
    assert not (UPDATE and os.environ.get("CI")), "golden files are never regenerated in CI"


@pytest.mark.golden
@pytest.mark.parametrize("name", WORKFLOWS)
def test_example_matches_golden(
    name: str,
    example_workflows: dict[str, Workflow],
    example_sinks: dict[str, Sink],
    example_config: OperatorConfig,
) -> None:
    compiled = compile_workflow(example_workflows[name], example_sinks, example_config.spec)
    actual = normalise(compiled.documents)
    path = EXPECTED / f"{name}.yaml"
    if UPDATE:
        EXPECTED.mkdir(exist_ok=True)
        header = f"# Golden output of examples/workflows/{name}.yaml (PF_SPEC decoded).\n"
        path.write_text(header + yaml.safe_dump_all(actual, sort_keys=False, width=100))
    assert path.exists(), f"no golden file for {name}; run `make golden` and review it"
    expected = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert actual == expected
