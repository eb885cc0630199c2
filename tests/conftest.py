"""Shared fixtures: the examples as resources."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from punchingfist.api import OperatorConfig, Resource, Sink, Workflow, load_resources

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def load_folder(folder: str) -> list[Resource[Any]]:
    resources: list[Resource[Any]] = []
    for path in sorted((EXAMPLES / folder).glob("*.yaml")):
        resources += load_resources(path.read_text(), origin=str(path))
    return resources


@pytest.fixture(scope="session")
def example_sinks() -> dict[str, Sink]:
    return {r.name: r for r in load_folder("sinks") if isinstance(r, Sink)}


@pytest.fixture(scope="session")
def example_workflows() -> dict[str, Workflow]:
    return {r.name: r for r in load_folder("workflows") if isinstance(r, Workflow)}


@pytest.fixture(scope="session")
def example_config() -> OperatorConfig:
    (config,) = load_resources(
        (EXAMPLES / "operatorconfigs" / "punchingfist-config.yaml").read_text()
    )
    assert isinstance(config, OperatorConfig)
    return config
