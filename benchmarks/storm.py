"""An alert storm on PostgreSQL: how many investigations, and model calls, each scope starts
(not a test: it prints figures, and exits non-zero when a check fails).

10,000 alerts over 100 fingerprints in 20 Alertmanager groups (5 alerts each, a groupKey per
group) are posted by 4 concurrent senders to `punchingfist serve` (a separate process, on
loopback) backed by a PostgreSQL started here. Every sender posts every group over and over,
as Alertmanager replicas re-send a group with all its alerts (the same startsAt): its first
notifications of a group hold the group's alerts as they begin to fire (1, 2, ... 5), the later
ones all 5, and every 4th notification is posted twice (a retry). A failed post is retried
until it is stored.

The storm runs twice, each time on a fresh database: under a Source with
`investigation: {scope: perGroup}` (the default) and one with `{scope: perAlert}` (the
behaviour before #21), both with the default window and cooldown. No run is started (`serve`
keeps them queued); the runs are counted in workflow_runs and the outbox. Checks: exactly 20
runs under perGroup and 100 under perAlert, one outbox entry each, and no alert lost (every
fingerprint stored once; every alert has its own run or names, in covered_by_run, a run that
exists). Reports the intake rate of each (target >= 2,000 alerts/s with the scope logic on).

Then one investigation runs for real (`punchingfist run` of examples/workflows/
agent-alert-investigation.yaml on the local engine, on one of the storm's notifications) with a
scripted model: the fake OpenAI server answering the recorded turns of
examples/scenarios/oom-crash-loop. Its model calls times the runs of each scope is the number
of model calls the storm causes; perAlert / perGroup is the headline figure.

    python benchmarks/storm.py [--workers N] [--intake-writers N]
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml
from sqlalchemy import select

from benchmarks.intake import serve, timed
from punchingfist.store import (
    Alert,
    OutboxEntry,
    WorkflowRun,
    make_engine,
    session_factory,
    upgrade,
)
from tests.fakes.openai_server import FakeOpenAI
from tests.integration.servers import postgres

ROOT = Path(__file__).resolve().parent.parent
GROUPS = 20
PER_GROUP = 5
SENDERS = 4
ALERTS = 10_000
RETRY_EVERY = 4
"""Every 4th notification a sender posts is posted again at once (a retry)."""
STARTS_AT = "2026-12-02T10:00:00Z"
WORKFLOW = ROOT / "examples" / "workflows" / "agent-alert-investigation.yaml"
SCENARIO = ROOT / "examples" / "scenarios" / "oom-crash-loop" / "scenario.yaml"
SOURCE = """apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {{name: storm}}
spec:
  type: webhook
  config:
    path: /webhook/alerts
    investigation: {{scope: {scope}}}
  triggerWorkflow: agent-alert-investigation
"""
EXPECTED_RUNS = {"perGroup": GROUPS, "perAlert": GROUPS * PER_GROUP}


def fingerprint(group: int, alert: int) -> str:
    return f"storm{group:02d}{alert:02d}"


def notification(group: int, size: int) -> dict[str, Any]:
    """Alertmanager's notification of group `group` with its first `size` alerts."""
    name = f"StormCrashLooping{group:02d}"
    alerts = [
        {
            "status": "firing",
            "fingerprint": fingerprint(group, n),
            "labels": {
                "alertname": name,
                "severity": "critical",
                "namespace": "production",
                "service": f"app-{group}",
                "pod": f"app-{group}-{n}",
            },
            "annotations": {"summary": f"Pod app-{group}-{n} is crash looping"},
            "startsAt": STARTS_AT,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus/graph",
        }
        for n in range(size)
    ]
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "status": "firing",
        "receiver": "punchingfist",
        "groupLabels": {"alertname": name},
        "commonLabels": {"alertname": name, "severity": "critical"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "truncatedAlerts": 0,
        "alerts": alerts,
    }


def schedule(sender: int, alerts: int) -> list[bytes]:
    """What one sender posts, in order, `alerts` alerts in all: round after round of every
    group (starting at a group of its own, so the senders meet on every group at once), a
    group's alerts growing over its first rounds, every RETRY_EVERY-th post posted twice."""
    posts: list[bytes] = []
    sent = made = rounds = 0
    while True:
        for step in range(GROUPS):
            group = (step + sender * GROUPS // SENDERS) % GROUPS
            made += 1
            for _ in range(2 if made % RETRY_EVERY == 0 else 1):
                size = min(PER_GROUP, rounds + 1, alerts - sent)
                if size == 0:
                    return posts
                posts.append(json.dumps(notification(group, size)).encode())
                sent += size
        rounds += 1


@dataclass
class Sent:
    latencies: list[float]
    failures: int = 0


def send(port: int, posts: list[bytes], out: Sent) -> None:
    """One sender on one kept-alive connection, as Alertmanager's client: a post that fails
    (an error or an answer other than 200) is posted again on a new connection."""
    connection: http.client.HTTPConnection | None = None
    for body in posts:
        while True:
            started = time.perf_counter()
            # A refused or dropped connection is a failed post, like an answer other than 200.
            with contextlib.suppress(OSError):
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                connection.request(
                    "POST",
                    "/webhook/alerts",
                    body=body,
                    headers={"Content-Type": "application/json"},
                )
                response = connection.getresponse()
                response.read()
                if response.status == 200:
                    out.latencies.append(time.perf_counter() - started)
                    break
            out.failures += 1
            if connection is not None:
                connection.close()
            connection = None
            time.sleep(0.05)
    if connection is not None:
        connection.close()


@dataclass
class Storm:
    scope: str
    seconds: float
    latencies: list[float]
    failures: int
    runs: int
    outbox: int
    alerts: int
    fingerprints: int
    suppressed: int
    problems: list[str]

    @property
    def rate(self) -> float:
        return ALERTS / self.seconds


def check(session: Any, scope: str) -> tuple[dict[str, int], list[str]]:
    """What the storm left, and what is wrong with it."""
    problems = []
    runs = {r.name: r for r in session.scalars(select(WorkflowRun))}
    alerts = list(session.scalars(select(Alert)))
    outbox = set(session.scalars(select(OutboxEntry.run_name)))
    expected = {fingerprint(g, n) for g in range(GROUPS) for n in range(PER_GROUP)}
    stored = [a.fingerprint for a in alerts]
    if sorted(stored) != sorted(expected):
        missing = expected - set(stored)
        problems.append(
            f"{len(missing)} fingerprints lost, {len(stored) - len(set(stored))} stored twice"
        )
    group = {a.id: a.labels["alertname"] if a.labels else None for a in alerts}
    run_group = {r.name: group.get(r.alert_id) for r in runs.values()}
    if scope == "perGroup" and sorted(run_group.values()) != sorted(set(group.values())):
        problems.append("not exactly one run per group")
    own = {r.alert_id for r in runs.values()}
    for alert in alerts:
        if alert.id in own:
            continue
        if alert.covered_by_run is None:
            problems.append(f"alert {alert.fingerprint} has no run and is covered by none")
        elif run_group.get(alert.covered_by_run) != group[alert.id]:
            problems.append(f"alert {alert.fingerprint} names a missing run or another group's")
    if len(runs) != EXPECTED_RUNS[scope]:
        problems.append(f"{len(runs)} runs under {scope}, expected {EXPECTED_RUNS[scope]}")
    if outbox != set(runs):
        problems.append(f"{len(outbox)} outbox entries for {len(runs)} runs")
    counts = {
        "runs": len(runs),
        "outbox": len(outbox),
        "alerts": len(alerts),
        "fingerprints": len(set(stored)),
        "suppressed": sum(a.status == "suppressed" for a in alerts),
    }
    return counts, problems


def storm(scope: str, writers: int, workers: int) -> Storm:
    posts = [schedule(sender, ALERTS // SENDERS) for sender in range(SENDERS)]
    assert sum(len(json.loads(p)["alerts"]) for s in posts for p in s) == ALERTS
    outs = [Sent([]) for _ in range(SENDERS)]
    with postgres() as database:
        upgrade(database)
        with serve(database, SOURCE.format(scope=scope), writers, workers) as (_, port):
            threads = [
                threading.Thread(target=send, args=(port, posts[s], outs[s]))
                for s in range(SENDERS)
            ]
            seconds = timed(threads)
        engine = make_engine(database)
        with session_factory(engine)() as session:
            counts, problems = check(session, scope)
        engine.dispose()
    return Storm(
        scope,
        seconds,
        [latency for out in outs for latency in out.latencies],
        sum(out.failures for out in outs),
        problems=problems,
        **counts,
    )


def model_calls_per_run() -> tuple[int, int, str]:
    """One investigation of the storm's first group, run for real on the local engine with
    the scripted model: (model calls the fake server answered, model calls the run reports,
    what the run did)."""
    turns = yaml.safe_load(SCENARIO.read_text())["turns"]
    with (
        FakeOpenAI(turns, default=turns[-1]) as llm,
        tempfile.TemporaryDirectory() as tmp,
    ):
        event = Path(tmp) / "event.json"
        event.write_text(json.dumps(notification(0, PER_GROUP)))
        finished = subprocess.run(
            [
                sys.executable,
                "-m",
                "punchingfist.cli",
                "run",
                "-f",
                str(WORKFLOW),
                "-f",
                str(ROOT / "examples" / "sinks"),
                "--event",
                str(event),
                "--approve",
                "--quiet",
                "--output",
                "json",
                "--llm-endpoint",
                f"{llm.url}/v1",
                "--llm-model",
                "scripted",
                "--workdir",
                f"{tmp}/runs",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={
                "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
                "HOME": tmp,
                "KUBECONFIG": f"{tmp}/no-kubeconfig",  # its tools find no cluster: errors
                "PF_SINK_BUDGET_SECONDS": "1",  # nor Slack, PagerDuty or Alertmanager
            },
            check=False,
        )
    try:
        report = json.loads(finished.stdout)
    except ValueError:
        raise SystemExit(f"the investigation did not run:\n{finished.stderr}") from None
    steps = [s for s in report.get("steps", []) if s.get("usage")]
    reported = sum(s["usage"].get("model_calls", 0) for s in steps)
    what = ", ".join(f"{s['step']} {s['usage'].get('model_calls', 0)}" for s in steps)
    return len(llm.requests), reported, what


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--intake-writers", type=int, default=1, metavar="N")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N")
    args = parser.parse_args()
    failed = False
    results = {}
    print(
        f"alert storm: {ALERTS:,} alerts over {GROUPS * PER_GROUP} fingerprints in {GROUPS} "
        f"Alertmanager groups, {SENDERS} senders with repeats and retries, PostgreSQL, "
        f"{args.workers} server worker(s) with {args.intake_writers} intake writer(s) each"
    )
    for scope in ("perGroup", "perAlert"):
        result = storm(scope, args.intake_writers, args.workers)
        results[scope] = result
        ordered = sorted(result.latencies)
        p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000
        print(f"  scope {scope}:")
        print(
            f"    {len(ordered)} notifications stored in {result.seconds:.2f} s: "
            f"{result.rate:,.0f} alerts/s (target >= 2,000), per notification "
            f"p50 {statistics.median(ordered) * 1000:.1f} ms, p99 {p99:.1f} ms, "
            f"{result.failures} failed posts retried"
        )
        print(
            f"    {result.runs} runs (expected {EXPECTED_RUNS[scope]}), {result.outbox} outbox "
            f"entries, {result.alerts} alerts stored for {result.fingerprints} fingerprints, "
            f"{result.suppressed} suppressed (joined a run)"
        )
        for problem in result.problems:
            print(f"    FAILED: {problem}")
        failed |= bool(result.problems)
    served, reported, what = model_calls_per_run()
    if served != reported:
        print(f"  FAILED: the fake model answered {served} calls, the run reports {reported}")
        failed = True
    print(
        f"  one investigation with the scripted model (oom-crash-loop, {WORKFLOW.name}): "
        f"{served} model calls ({what})"
    )
    calls = {scope: r.runs * served for scope, r in results.items()}
    for scope, result in results.items():
        print(
            f"  model calls the storm causes under {scope}: {result.runs} runs x {served} = "
            f"{calls[scope]}"
        )
    with contextlib.suppress(ZeroDivisionError):
        print(
            f"  headline: perAlert (today's behaviour) / perGroup = "
            f"{calls['perAlert'] / calls['perGroup']:.1f}x the model calls"
        )
    slow = [s for s, r in results.items() if r.rate < 2000]
    if slow:
        print(f"  below the 2,000 alerts/s target: {', '.join(slow)}")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
