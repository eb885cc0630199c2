"""Golden files: each example Workflow beside the Argo YAML it must compile to.

The expected files live in tests/golden/expected/<workflow>.yaml. PF_SPEC (base64 JSON) is
decoded in them so a review diff shows what changed, and the package version (the
compiler-version annotation, the default runtime image's tag) reads `<version>`, so that a
release changes no golden file. Regenerate with `make golden` (PF_UPDATE_GOLDEN=1); never in CI.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import punchingfist
from punchingfist.api import OperatorConfig, Sink, Workflow
from punchingfist.compiler import Defaults, building, compile_workflow, naming

EXPECTED = Path(__file__).parent / "expected"
UPDATE = os.environ.get("PF_UPDATE_GOLDEN") == "1"
WORKFLOWS = sorted(
    p.stem for p in (Path(__file__).parents[2] / "examples/workflows").glob("*.yaml")
)
VERSION = "<version>"
"""What the package version reads in the golden files."""


def normalise(documents: list[dict[str, Any]], version: str) -> list[dict[str, Any]]:
    """The documents as the golden files hold them: PF_SPEC decoded, `version` as `<version>`
    wherever it stands alone (not inside a longer dotted number)."""
    alone = re.compile(rf"(?<![\d.]){re.escape(version)}(?![\d.])")
    documents = json.loads(alone.sub(VERSION, json.dumps(documents)))
    for document in documents:
        for template in document.get("spec", {}).get("templates", []):
            for variable in template.get("container", {}).get("env", []):
                if variable["name"] == "PF_SPEC":
                    variable["value"] = {"decoded": json.loads(base64.b64decode(variable["value"]))}
    return documents


@dataclass(frozen=True)
class Examples:
    workflows: dict[str, Workflow]
    sinks: dict[str, Sink]
    config: OperatorConfig


@pytest.fixture
def examples(
    example_workflows: dict[str, Workflow],
    example_sinks: dict[str, Sink],
    example_config: OperatorConfig,
) -> Examples:
    return Examples(example_workflows, example_sinks, example_config)


def compiled(
    name: str, examples: Examples, defaults: Defaults | None = None
) -> list[dict[str, Any]]:
    """An example compiled and normalised with the package version of the moment."""
    workflow, sinks, spec = examples.workflows[name], examples.sinks, examples.config.spec
    result = compile_workflow(workflow, sinks, spec, defaults or Defaults())
    return normalise(result.documents, punchingfist.__version__)


def expected(name: str) -> list[dict[str, Any]]:
    path = EXPECTED / f"{name}.yaml"
    assert path.exists(), f"no golden file for {name}; run `make golden` and review it"
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_not_updating_in_ci() -> None:
    assert not (UPDATE and os.environ.get("CI")), "golden files are never regenerated in CI"


@pytest.mark.golden
@pytest.mark.parametrize("name", WORKFLOWS)
def test_example_matches_golden(name: str, examples: Examples) -> None:
    actual = compiled(name, examples)
    if UPDATE:
        EXPECTED.mkdir(exist_ok=True)
        header = f"# Golden output of examples/workflows/{name}.yaml (PF_SPEC decoded).\n"
        path = EXPECTED / f"{name}.yaml"
        path.write_text(header + yaml.safe_dump_all(actual, sort_keys=False, width=100))
    assert actual == expected(name)


@pytest.mark.golden
@pytest.mark.parametrize("name", WORKFLOWS)
def test_a_new_version_alone_changes_no_golden_file(
    name: str, examples: Examples, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A release: the package version, the compiler's annotation and the default image's tag
    all change (the image is passed, since `Defaults` took `DEFAULT_IMAGE` at import)."""
    new = "10.20.30"
    monkeypatch.setattr(punchingfist, "__version__", new)
    monkeypatch.setattr(building, "__version__", new)
    image = f"punchingfist/runtime:v{new}"
    release = compile_workflow(
        examples.workflows[name], examples.sinks, examples.config.spec, Defaults(image=image)
    )
    annotations = release.manifest["metadata"]["annotations"]
    assert annotations[naming.ANNOTATION_COMPILER] == new  # the compiler took the new version
    assert compiled(name, examples, Defaults(image=image)) == expected(name)

    # Anything else that changes still fails the comparison, next to the version too.
    other_registry = Defaults(image=f"registry.example.com/punchingfist/runtime:v{new}")
    assert compiled(name, examples, other_registry) != expected(name)
    other_account = Defaults(image=image, investigator="another-investigator")
    assert compiled(name, examples, other_account) != expected(name)
