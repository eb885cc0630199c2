"""OperatorConfig fields nothing implements yet are refused by compile and by admission, naming
the field, instead of being accepted and ignored; `kubectl explain` says so too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from punchingfist.api import crds, load_resources
from punchingfist.controller import status as st
from punchingfist.controller.admission import Rejected, review_plain
from punchingfist.controller.reconciling import validate_resource
from punchingfist.errors import InvalidResource

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
FIXTURES = ROOT / "tests" / "fixtures" / "not-supported-yet"
"""The design document's OperatorConfigs that use those fields (kept to test the refusal)."""
REFUSED = {"database.yaml": ["spec.database"]}
MANAGERS = ["vault.yaml", "aws-secrets.yaml", "azure-keyvault.yaml"]
"""The design document's secret managers, supported since #26 (examples/operatorconfigs)."""


def example(name: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((FIXTURES / name).read_text())
    return body


def test_every_example_of_an_unsupported_field_is_listed() -> None:
    assert {p.name for p in (FIXTURES).glob("*.yaml")} == set(REFUSED)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_loading_refuses_each_field_by_its_path(name: str) -> None:
    with pytest.raises(InvalidResource) as caught:
        load_resources((FIXTURES / name).read_text())
    problems = dict(caught.value.problems)
    assert sorted(problems) == sorted(REFUSED[name])
    assert all(message.startswith("not supported yet: ") for message in problems.values())


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_admission_refuses_and_the_status_says_why(name: str) -> None:
    body = example(name)
    with pytest.raises(Rejected) as caught:
        review_plain(body)
    for field in REFUSED[name]:
        assert f"{field}: not supported yet: " in str(caught.value)
    ready = st.condition(validate_resource(body).status or {}, "Ready")
    assert ready is not None and ready["status"] == "False" and ready["reason"] == "InvalidSpec"
    assert f"{REFUSED[name][0]}: not supported yet" in ready["message"]


def compile_cli(*files: Path) -> subprocess.CompletedProcess[str]:
    """`punchingfist compile` of the example alert-triage Workflow with `files`."""
    inputs = [arg for file in files for arg in ("-f", str(file))]
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "punchingfist.cli",
            "compile",
            "-f",
            str(EXAMPLES / "workflows" / "alert-triage.yaml"),
            *inputs,
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )


def test_compile_refuses_an_unsupported_field() -> None:
    done = compile_cli(FIXTURES / "database.yaml")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "spec.database: not supported yet: " in done.stderr
    assert "--database-url" in done.stderr  # the fix


def test_what_works_is_accepted() -> None:
    for file in (EXAMPLES / "operatorconfigs").glob("*.yaml"):
        (config,) = load_resources(file.read_text())
        review_plain(yaml.safe_load(file.read_text()))
        assert config.spec.database is None


@pytest.mark.parametrize("name", MANAGERS)
def test_the_secret_managers_are_accepted_and_compile(name: str) -> None:
    """The design document's Vault, AWS and Azure OperatorConfigs: admission and compile accept
    them, and their references reach the template's annotation (resolved when a run starts)."""
    file = EXAMPLES / "operatorconfigs" / name
    review_plain(yaml.safe_load(file.read_text()))
    done = compile_cli(EXAMPLES / "sinks", file)
    assert done.returncode == 0, done.stderr
    assert "punchingfist.io/secret-references" in done.stdout
    assert "{{workflow.name}}-secrets" in done.stdout


def test_kubectl_explain_says_not_supported_yet() -> None:
    (crd,) = [yaml.safe_load(t) for n, t in crds.render_crds().items() if "operatorconfigs" in n]
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["database"]["description"].startswith("Not supported yet")
    for field in ("secretManager", "secretRotation"):
        assert not spec["properties"][field]["description"].startswith("Not supported"), field
