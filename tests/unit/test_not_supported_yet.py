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
REFUSED = {
    "database.yaml": ["spec.database"],
    "external-secret-manager.yaml": ["spec.secretManager"],
    "vault.yaml": ["spec.secretManager"],
    "aws-secrets.yaml": ["spec.secretManager"],
    "azure-keyvault.yaml": ["spec.secretManager"],
    "secret-rotation.yaml": ["spec.secretRotation"],
}


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


def test_compile_refuses_an_unsupported_field() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "punchingfist.cli",
            "compile",
            "-f",
            str(EXAMPLES / "workflows" / "alert-triage.yaml"),
            "-f",
            str(FIXTURES / "vault.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "spec.secretManager: not supported yet: " in done.stderr
    assert "spec.secrets" in done.stderr  # the fix


def test_what_works_is_accepted() -> None:
    rotation = example("secret-rotation.yaml")
    rotation["spec"]["secretRotation"]["enabled"] = False  # does nothing: nothing to refuse
    review_plain(rotation)
    for file in (EXAMPLES / "operatorconfigs").glob("*.yaml"):
        (config,) = load_resources(file.read_text())
        review_plain(yaml.safe_load(file.read_text()))
        assert config.spec.database is None and config.spec.secret_manager is None


def test_kubectl_explain_says_not_supported_yet() -> None:
    (crd,) = [yaml.safe_load(t) for n, t in crds.render_crds().items() if "operatorconfigs" in n]
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for field in ("database", "secretManager", "secretRotation"):
        assert spec["properties"][field]["description"].startswith("Not supported yet"), field
