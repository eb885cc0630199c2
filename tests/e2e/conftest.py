"""e2e fixtures: a real control plane for the session, its logs on every failing test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.controlplane import ControlPlane, read_binaries

NOT_BUILT = "the e2e control plane is not built: run `make control-plane` (needs Go >= 1.26)"


def _unavailable(reason: str) -> None:
    # In CI a skipped e2e test would hide a broken setup: fail instead.
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI=true: the e2e tier must run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def binaries() -> dict[str, str]:
    found = read_binaries()
    if found is None:
        _unavailable(NOT_BUILT)
        raise AssertionError  # unreachable
    if shutil.which("kubectl") is None:
        _unavailable("kubectl is not installed")
    return found


@pytest.fixture(scope="session")
def control_plane(
    binaries: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    plane = ControlPlane(binaries, tmp_path_factory.mktemp("control-plane"))
    try:
        plane.start()
    except Exception as error:
        logs = "\n\n".join(f"--- {name} ---\n{text}" for name, text in plane.logs().items())
        plane.stop()
        pytest.fail(f"the control plane did not start: {error}\n{logs}", pytrace=False)
    yield plane
    plane.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    if report.when == "call" and report.failed:
        plane = getattr(item, "funcargs", {}).get("control_plane")
        if isinstance(plane, ControlPlane):
            for name, text in plane.logs().items():
                report.sections.append((f"{name} log (last lines)", text))
    return report
