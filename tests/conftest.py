"""Shared fixtures: the examples as resources; for the tiers on real servers, what a tier does
when it cannot start, and the servers' logs attached to every failing test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from sqlalchemy.orm import Session, sessionmaker

from punchingfist.api import OperatorConfig, Resource, Sink, Workflow, load_resources
from punchingfist.store import make_engine, session_factory, upgrade

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


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """A store on SQLite, migrated, in the test's own directory."""
    url = f"sqlite:///{tmp_path / 'pf.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield session_factory(engine)
    engine.dispose()


def unavailable(reason: str, tier: str) -> NoReturn:
    """Skip: the tier cannot run here. In CI a skip would hide a broken setup: fail instead."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI={os.environ['CI']}: the {tier} tier must run)")
    pytest.skip(reason)


LOGGED_FIXTURES = ("control_plane", "cluster")
"""Fixtures whose `logs()` (name -> last lines) a failing test's report shows."""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    if report.when == "call" and report.failed:
        for name in LOGGED_FIXTURES:
            servers = getattr(item, "funcargs", {}).get(name)
            if servers is not None and callable(getattr(servers, "logs", None)):
                for log, text in servers.logs().items():
                    report.sections.append((f"{log} log (last lines)", text))
    return report
