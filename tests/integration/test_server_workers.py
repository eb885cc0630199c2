"""`punchingfist serve --workers N` on a real PostgreSQL: several processes on one port store
what one would, add their metrics up, come back when killed, and stop on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.e2e.controlplane import free_port

SOURCE = """apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: alerts}
spec:
  type: webhook
  triggerWorkflow: investigate-alert
  # Workers store what one would: a run per alert, counted.
  config: {path: /webhook/alerts, investigation: {scope: perAlert, window: 0s, cooldown: 0s}}
"""


def notification(sender: int, number: int) -> bytes:
    alerts = [
        {
            "status": "firing",
            "fingerprint": f"w{sender}-{number}-{n}",
            "labels": {"alertname": "PodCrashLooping", "namespace": f"ns-{sender}"},
            "startsAt": "2026-11-27T10:00:00Z",
        }
        for n in range(5)
    ]
    return json.dumps(
        {
            "version": "4",
            "groupKey": f"group-{sender}",
            "status": "firing",
            "receiver": "pf",
            "alerts": alerts,
        }
    ).encode()


def post(port: int, body: bytes) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/webhook/alerts",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(response.status)


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return sorted(int(p) for p in found.stdout.split())


def wait_for(what: str, probe: object, timeout: float = 30) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = probe()  # type: ignore[operator]
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def processed(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    prefix = 'punchingfist_alerts_processed_total{source="alerts",status="new"} '
    return sum(float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix))


@pytest.fixture
def database(postgres_url: str) -> str:
    name = f"workers_{time.monotonic_ns()}"
    with psycopg.connect(
        postgres_url.replace("postgresql+psycopg", "postgresql"), autocommit=True
    ) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return postgres_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def server(
    tmp_path: Path, database: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`serve --workers 2`; its store takes the fast path, or with the indirect parameter
    `plain` the plain SQLAlchemy path (`PUNCHINGFIST_STORE_FAST_PATH=off`)."""
    if getattr(request, "param", "fast") == "plain":
        from punchingfist.store.sessions import FAST_PATH_ENV

        monkeypatch.setenv(FAST_PATH_ENV, "off")  # the server inherits it
    (tmp_path / "source.yaml").write_text(SOURCE)
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "punchingfist.cli",
            "serve",
            "-f",
            str(tmp_path / "source.yaml"),
            "--port",
            str(port),
            "--database-url",
            database,
            "--workers",
            "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "server.log").open("w"),
        text=True,
    )
    try:
        wait_for(
            "the server",
            lambda: (
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200
            ),
        )
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@pytest.mark.parametrize("server", ["fast", "plain"], indirect=True)
def test_workers_store_what_one_would_and_count_together(
    server: tuple[subprocess.Popen[str], int], database: str, request: pytest.FixtureRequest
) -> None:
    """On both paths of the store: the workers' batches wait for each other's (advisory
    locks) whichever path sends them."""
    process, port = server
    workers = children(process.pid)
    assert len(workers) == 2
    statuses: list[int] = []

    def sender(number: int) -> None:
        statuses.extend(post(port, notification(number, n)) for n in range(10))

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 40
    for body in (notification(0, 0), notification(3, 9)):  # retries: nothing twice
        assert post(port, body) == 200

    # Every worker killed once: each comes back, and what it counted is still counted.
    for pid in workers:
        (survivor,) = (p for p in children(process.pid) if p != pid)
        subprocess.run(["kill", "-KILL", str(pid)], check=True)
        known = {pid, survivor}
        wait_for("a new worker", lambda known=known: len(set(children(process.pid)) - known) == 1)
    wait_for("the workers to answer", lambda: post(port, notification(9, 0)) == 200)
    assert not set(workers) & set(children(process.pid))
    assert processed(port) == 41 * 5

    with psycopg.connect(database.replace("postgresql+psycopg", "postgresql")) as connection:
        alerts, runs, queued, incidents = (
            connection.execute(
                "SELECT (SELECT count(*) FROM alerts), (SELECT count(*) FROM workflow_runs), "
                "(SELECT count(*) FROM outbox), (SELECT count(*) FROM incidents)"
            ).fetchone()
            or ()
        )
        # What the server's connections ran last: the writes of the fast path are prepared
        # statements of its own (pf_...), the plain path has none.
        last = [
            query
            for (query,) in connection.execute(
                "SELECT query FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ]
    assert (alerts, runs, queued) == (41 * 5, 41 * 5, 41 * 5)
    assert incidents == 5  # one per group: the workers' batches joined each other's incidents
    fast = any(query.lstrip().startswith(("PREPARE pf_", "EXECUTE pf_")) for query in last)
    assert fast == (request.node.callspec.params["server"] == "fast"), last


def test_sigterm_stops_every_worker_and_exits_0(server: tuple[subprocess.Popen[str], int]) -> None:
    process, _ = server
    workers = children(process.pid)
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    for pid in workers:  # ended and reaped by the supervisor
        assert not Path(f"/proc/{pid}").exists()


def test_workers_whose_supervisor_is_killed_finish_and_exit(
    server: tuple[subprocess.Popen[str], int],
) -> None:
    process, port = server
    workers = children(process.pid)
    process.kill()  # no SIGTERM for the workers: they see their socket pair close
    process.wait(10)
    for pid in workers:
        wait_for(f"worker {pid} to exit", lambda pid=pid: not _running(pid))
    with pytest.raises(OSError):  # nobody accepts on the port any more
        post(port, notification(0, 0))


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # an orphan's zombie waits for init to reap it
