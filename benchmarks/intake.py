"""Webhook intake throughput on PostgreSQL (not a test: it prints figures).

4 concurrent senders post 10-alert Alertmanager payloads to `punchingfist serve` (a separate
process, on loopback) backed by a PostgreSQL started here. Reports alerts/s and p50/p99 request
latency, then, in the same run, the raw PostgreSQL insert rate for the same rows, and checks
that nothing was lost and that each new fingerprint got exactly one run: its Source says
`investigation: {scope: perAlert, window: 0s, cooldown: 0s}` (a run per alert, started at once),
as every Source did before the default scope became perGroup; benchmarks/storm.py measures the
scopes on an alert storm.
Targets: >= 2,000 alerts/s and p99 < 100 ms.

It measures twice: on a fresh store, and on one holding earlier alerts with planner statistics
(the steady state of a running installation). Each run also reports the CPU time the server
process and PostgreSQL spent per 1,000 alerts, which bounds what this machine can reach.

    python benchmarks/intake.py [--workers N] [--intake-writers N]
        (passed on to `punchingfist serve`; --workers defaults to one per core)
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from sqlalchemy import func, select

from punchingfist.api import load_resources
from punchingfist.api.alerts import AlertmanagerPayload
from punchingfist.runs.intake import ingest_batch
from punchingfist.store import Alert, WorkflowRun, make_engine, session_factory, upgrade
from tests.e2e.controlplane import free_port
from tests.integration.servers import postgres

SENDERS = 4
REQUESTS_PER_SENDER = 250
HISTORY = 20_000
ALERTS_PER_PAYLOAD = 10
SOURCE = """apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: bench}
spec:
  type: webhook
  # Today's behaviour, which this measures: one run per new alert, started at once. (The
  # default scope, perGroup, starts one per Alertmanager group: benchmarks/storm.py.)
  config:
    path: /webhook/alerts
    investigation: {scope: perAlert, window: 0s, cooldown: 0s}
  triggerWorkflow: investigate-alert
"""


def payload(sender: int, request: int) -> bytes:
    alerts = []
    for n in range(ALERTS_PER_PAYLOAD):
        fingerprint = f"{sender:02x}{request:06x}{n:08x}"
        alerts.append(
            {
                "status": "firing",
                "fingerprint": fingerprint,
                "labels": {
                    "alertname": "PodCrashLooping",
                    "severity": "critical",
                    "namespace": f"ns-{sender}",
                    "pod": f"pod-{request}-{n}",
                },
                "annotations": {"summary": "crash looping"},
                "startsAt": "2026-11-26T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus/graph",
            }
        )
    body = {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="PodCrashLooping",sender="{sender}"}}',
        "status": "firing",
        "receiver": "punchingfist",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "",
        "truncatedAlerts": 0,
        "alerts": alerts,
    }
    return json.dumps(body).encode()


def send(url: str, sender: int, latencies: list[float], errors: list[str]) -> None:
    """One sender: its payloads one after the other on one kept-alive connection, as
    Alertmanager's HTTP client sends them (a new connection only after an error)."""
    target = urllib.parse.urlsplit(url)
    connection: http.client.HTTPConnection | None = None
    for request in range(REQUESTS_PER_SENDER):
        data = payload(sender, request)
        started = time.perf_counter()
        try:
            if connection is None:
                connection = http.client.HTTPConnection(target.netloc, timeout=30)
            connection.request(
                "POST", target.path, body=data, headers={"Content-Type": "application/json"}
            )
            response = connection.getresponse()
            response.read()
        except OSError as error:
            errors.append(str(error))
            if connection is not None:
                connection.close()
            connection = None
            continue
        if response.status != 200:
            errors.append(f"HTTP {response.status}")
            continue
        latencies.append(time.perf_counter() - started)
    if connection is not None:
        connection.close()


def raw_insert_rate(url: str, rows: int) -> float:
    plain = url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute("CREATE TABLE raw_alerts (LIKE alerts INCLUDING ALL)")
        values = [
            (
                f"raw{n:012x}",
                "received",
                "critical",
                "PodCrashLooping",
                json.dumps({"alertname": "PodCrashLooping", "pod": f"p-{n}"}),
            )
            for n in range(rows)
        ]
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO raw_alerts (id, fingerprint, status, severity, alert_name, labels, "
                "received_at, starts_at) "
                "VALUES (gen_random_uuid(), %s, %s, %s, %s, %s, now(), now())",
                values,
            )
        return rows / (time.perf_counter() - started)


def seed_history(database: str, alerts: int) -> None:
    """What a store that has been running holds: `alerts` older alerts in their incidents and
    runs (written by the same intake code, a day earlier), then ANALYZE, as autovacuum does
    within its first minute. A fresh store has no planner statistics yet, and its lookups
    slow down as the tables grow until they get some."""
    sources = load_resources(SOURCE)
    engine = make_engine(database)
    sessions = session_factory(engine)
    yesterday = datetime.now(UTC) - timedelta(days=1)
    per_payload = ALERTS_PER_PAYLOAD
    payloads = [
        AlertmanagerPayload.model_validate_json(payload(100 + n % 50, n))
        for n in range(alerts // per_payload)
    ]
    for start in range(0, len(payloads), 50):
        with sessions.begin() as session:
            ingest_batch(
                session, [(sources, p) for p in payloads[start : start + 50]], now=yesterday
            )
    engine.dispose()
    with psycopg.connect(
        database.replace("postgresql+psycopg", "postgresql"), autocommit=True
    ) as connection:
        connection.execute("ANALYZE")


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (field 3 onwards)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _processes(matches: Callable[[Path], bool]) -> float:
    """The CPU time of the running processes that `matches`."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):  # a process that ended meanwhile
                if matches(entry):
                    total += cpu_seconds(int(entry.name))
    return total


def server_cpu_seconds(pid: int) -> float:
    """CPU time of the server: its process and its workers (`--workers`)."""
    return cpu_seconds(pid) + _processes(lambda entry: int(_stat(int(entry.name))[1]) == pid)


def postgres_cpu_seconds() -> float:
    """CPU time of every PostgreSQL process on the machine (the benchmark's cluster is the
    only one while it runs)."""
    return _processes(lambda entry: (entry / "comm").read_text().strip() == "postgres")


def notifications_per_transaction(port: int) -> float:
    """The mean, over the notifications posted so far, of how many were stored in the same
    transaction (`punchingfist_webhook_batch_notifications`, all workers added up)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    values = {}
    for line in lines:
        name, _, value = line.partition(" ")
        if name in (
            "punchingfist_webhook_batch_notifications_sum",
            "punchingfist_webhook_batch_notifications_count",
        ):
            values[name.rsplit("_", 1)[1]] = float(value)
    return values.get("sum", 0.0) / values["count"] if values.get("count") else float("nan")


@contextlib.contextmanager
def serve(database: str, source: str, writers: int, workers: int) -> Iterator[tuple[Any, int]]:
    """`punchingfist serve` on the Source YAML `source` and `database`, as a separate process,
    until the block ends; yields (its process, its port) once it is ready."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "source.yaml").write_text(source)
        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "punchingfist.cli",
                "serve",
                "-f",
                f"{tmp}/source.yaml",
                "--port",
                str(port),
                "--database-url",
                database,
                "--intake-writers",
                str(writers),
                "--workers",
                str(workers),
            ],
            stdout=subprocess.DEVNULL,
            stderr=(Path(tmp) / "serve.log").open("wb"),
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).read()
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        log = (Path(tmp) / "serve.log").read_text()[-3000:]
                        raise SystemExit(f"the server did not start:\n{log}") from None
                    time.sleep(0.2)
            yield server, port
        finally:
            server.terminate()
            server.wait(timeout=20)


def timed(threads: list[threading.Thread]) -> float:
    """Start `threads` together; the seconds until the last one ended."""
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def measure(history: int, writers: int, workers: int) -> None:
    with postgres() as database, contextlib.ExitStack() as stack:
        upgrade(database)
        if history:
            seed_history(database, history)
        server, port = stack.enter_context(serve(database, SOURCE, writers, workers))
        url = f"http://127.0.0.1:{port}/webhook/alerts"
        latencies: list[float] = []
        errors: list[str] = []
        threads = [
            threading.Thread(target=send, args=(url, s, latencies, errors)) for s in range(SENDERS)
        ]
        server_cpu, database_cpu = server_cpu_seconds(server.pid), postgres_cpu_seconds()
        elapsed = timed(threads)
        server_cpu = server_cpu_seconds(server.pid) - server_cpu
        database_cpu = postgres_cpu_seconds() - database_cpu
        shared = notifications_per_transaction(port)
        stack.close()  # the server stops
        sent = SENDERS * REQUESTS_PER_SENDER * ALERTS_PER_PAYLOAD
        engine = make_engine(database)
        with session_factory(engine)() as session:
            stored = (session.scalar(select(func.count()).select_from(Alert)) or 0) - history
            runs = (session.scalar(select(func.count()).select_from(WorkflowRun)) or 0) - history
        engine.dispose()
        ordered = sorted(latencies)
        p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000 if ordered else float("nan")
        store = f"holding {history:,} earlier alerts" if history else "fresh (empty, no statistics)"
        print(
            f"intake on PostgreSQL, store {store}, {workers} server worker(s) with "
            f"{writers} intake writer(s) each:"
        )
        print(
            f"  {SENDERS} senders x {REQUESTS_PER_SENDER} payloads x {ALERTS_PER_PAYLOAD} "
            f"alerts = {sent} alerts in {elapsed:.2f} s"
        )
        print(f"  throughput: {sent / elapsed:,.0f} alerts/s (target >= 2,000)")
        print(
            f"  latency per payload: p50 {statistics.median(ordered) * 1000:.1f} ms, "
            f"p99 {p99:.1f} ms (target p99 < 100 ms)"
        )
        print(
            f"  CPU per 1,000 alerts: server {server_cpu / sent * 1000:.2f} s, "
            f"PostgreSQL {database_cpu / sent * 1000:.2f} s "
            f"(this machine has {os.cpu_count()} cores)"
        )
        print(
            f"  group commit: a notification shared its transaction with {shared - 1:.2f} "
            "others on average"
        )
        print(
            f"  raw PostgreSQL insert of the same rows: "
            f"{raw_insert_rate(database, sent):,.0f} rows/s"
        )
        lost = sent - stored
        verdict = "exactly one each" if runs == sent else "MISMATCH"
        print(
            f"  stored {stored} alerts ({lost} lost), {runs} runs for {sent} new fingerprints "
            f"({verdict}), {len(errors)} failed posts"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--intake-writers", type=int, default=1, metavar="N")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N")
    args = parser.parse_args()
    for history in (0, HISTORY):
        measure(history=history, writers=args.intake_writers, workers=args.workers)


if __name__ == "__main__":
    main()
