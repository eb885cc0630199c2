"""Integration fixtures: real servers started on loopback by the tests (Debian packages)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.controlplane import free_port
from tests.integration.servers import Unavailable, postgres


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI=true: integration tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus scraping itself every second; yields its URL once it has data."""
    binary = shutil.which("prometheus")
    if binary is None:
        _unavailable("prometheus is not installed (hack/system-deps.sh installs it)")
        raise AssertionError
    directory = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    config = directory / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: self\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    )
    log = (directory / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"prometheus exited:\n{Path(log.name).read_text()}")
            with contextlib.suppress(OSError):  # not listening yet
                query = f"{url}/api/v1/query?query=up"
                with urllib.request.urlopen(query, timeout=2) as response:
                    if json.load(response)["data"]["result"]:
                        break
            if time.monotonic() > deadline:
                pytest.fail("prometheus had no data after 60 s")
            time.sleep(0.25)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL cluster made for the session (Debian's `postgresql` package)."""
    try:
        with postgres() as url:
            yield url
    except Unavailable as error:
        _unavailable(str(error))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on SQLite and on a fresh PostgreSQL database."""
    return _database(request, tmp_path, request.param)


@pytest.fixture(params=["sqlite", "postgresql", "postgresql-plain"])
def intake_database_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Each intake test runs on SQLite, and twice on a fresh PostgreSQL database: through the
    store's fast path, and through its plain SQLAlchemy path (`postgresql-plain`: the fast
    path turned off for the engines the test makes, as `PUNCHINGFIST_STORE_FAST_PATH=off`
    does; a call of the fast path then fails the test)."""
    if request.param != "postgresql-plain":
        yield _database(request, tmp_path, request.param)
        return
    from punchingfist.store import _bulk
    from punchingfist.store.sessions import FAST_PATH_ENV

    called: list[str] = []

    def refused(name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            called.append(name)
            raise AssertionError(f"the plain path called the fast path's {name}")

        return call

    monkeypatch.setenv(FAST_PATH_ENV, "off")
    for name in ("read_many", "write_many"):
        monkeypatch.setattr(_bulk, name, refused(name))
    yield _database(request, tmp_path, "postgresql")
    assert not called, f"the plain path called the fast path: {called}"


def _database(request: pytest.FixtureRequest, tmp_path: Path, store: str) -> str:
    if store == "sqlite":
        return f"sqlite:///{tmp_path / 'punchingfist.db'}"
    server: str = request.getfixturevalue("postgres_url")
    import psycopg

    name = f"t_{abs(hash(request.node.nodeid)) % 10**10}"
    plain = server.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name}")
        connection.execute(f"CREATE DATABASE {name}")
    return server.rsplit("/", 1)[0] + f"/{name}"


API_SOURCE = """
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: deploys}
spec:
  type: api
  config: {endpoint: /hooks/deploys}
  triggerWorkflow: agent-alert-investigation
"""
"""An api Source without authentication of its own, at its own endpoint."""


@pytest.fixture
def api_server(database_url: str) -> Iterator[tuple[Any, Any, str]]:
    """The app (TestClient with the state's API token) on the webhook Sources of
    test_server, API_SOURCE and agent-alert-investigation, with one run from a posted alert:
    (client, state, run name)."""
    from fastapi.testclient import TestClient

    from punchingfist.api import load_resources
    from punchingfist.server import ServerState, create_app
    from punchingfist.store import upgrade
    from tests.integration.test_server import EXAMPLES, SOURCES, payload

    upgrade(database_url)
    workflow = (EXAMPLES / "workflows" / "agent-alert-investigation.yaml").read_text()
    state = ServerState.from_resources(
        load_resources(SOURCES + "---" + API_SOURCE + "---\n" + workflow), database_url
    )
    with TestClient(create_app(state), headers=state.access.headers()) as http:
        (run,) = http.post("/webhook/alerts", json=payload("pod-crashlooping.json")).json()["runs"]
        yield http, state, run
    state.engine.dispose()
