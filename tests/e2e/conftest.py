"""e2e fixtures: a real control plane for the session, its logs on every failing test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.conftest import unavailable
from tests.e2e.controlplane import ControlPlane, read_binaries

NOT_BUILT = "the e2e control plane is not built: run `make control-plane` (needs Go >= 1.26)"


@pytest.fixture(scope="session")
def binaries() -> dict[str, str]:
    found = read_binaries()
    if found is None:
        unavailable(NOT_BUILT, "e2e")
    if shutil.which("kubectl") is None:
        unavailable("kubectl is not installed", "e2e")
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
