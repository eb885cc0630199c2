"""An alert storm while PostgreSQL restarts (#21, 'Bad input and faults'): nothing is lost and
no run starts twice.

The real app serves the webhook over HTTP (uvicorn on loopback), with 4 intake writers, on a
PostgreSQL cluster of the test's own, under a Source with `investigation: {scope: perGroup}`.
Four senders post the notifications of 20 Alertmanager groups round after round, each sender
every group (as Alertmanager replicas do), the groups appearing one after another and growing
to 5 alerts, while the cluster is stopped and started again. A request the database could not
take must be answered 503 (Alertmanager retries it), never 500 and never a 2xx for what was
not stored. Then every notification that was not answered 2xx is posted again until it is, and
the store must hold every alert once, exactly one run (and one outbox entry) per group, and
every other alert of a group covered by that run.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import select

from punchingfist.api import load_resources
from punchingfist.server import ServerState, create_app
from punchingfist.server.state import SecretStore
from punchingfist.store import Alert, OutboxEntry, WorkflowRun, make_engine, upgrade
from tests.integration.intake_support import HEADERS, PATH, TOKEN, source
from tests.integration.servers import Unavailable, pg_binary, postgres, uvicorn_app

GROUPS = 20
PER_GROUP = 5
SENDERS = 4
ROUNDS = 12
BORN_PER_ROUND = 4
"""Groups that begin to fire in each round: the last ones are born during the outage."""
WRITERS = 4
"""Intake writers, each storing batches in transactions of its own on its own connection: a
group's first notifications, posted by several senders at once, race in the database."""
PAUSE = 0.15
"""Seconds a sender waits between rounds (the storm lasts about ROUNDS * PAUSE)."""


@pytest.fixture
def own_postgres() -> Iterator[str]:
    """A PostgreSQL cluster for this test alone: it is stopped and started mid-test."""
    try:
        with postgres() as url:
            yield url
    except Unavailable as error:
        if os.environ.get("CI"):
            pytest.fail(f"{error} (CI=true: integration tests must run)")
        pytest.skip(str(error))


class Cluster:
    """Stop and start the PostgreSQL cluster behind `url` (its data directory and the options
    it was started with, as the server reports them)."""

    def __init__(self, url: str) -> None:
        plain = url.replace("postgresql+psycopg", "postgresql")
        with psycopg.connect(plain, autocommit=True) as connection:
            row = connection.execute("SHOW data_directory").fetchone()
        assert row is not None
        self.data = Path(row[0])
        # postmaster.opts: the server binary, then each option quoted: "-D" "/path" "-p" ...
        words = (self.data / "postmaster.opts").read_text().split()
        self.options = " ".join(w.strip('"') for w in words[1:])
        self.pg_ctl = pg_binary("pg_ctl")
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _ctl(self, *argv: str) -> None:
        assert self.pg_ctl is not None
        subprocess.run(
            [*self.as_postgres, self.pg_ctl, "-D", str(self.data), "-w", "-t", "30", *argv],
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")

    def start(self) -> None:
        self._ctl("-o", self.options, "-l", str(self.data.parent / "log"), "start")


def notification(group: int, size: int) -> bytes:
    name = f"Storm{group:02d}"
    alerts = [
        {
            "status": "firing",
            "fingerprint": f"{name}-{n}",
            "labels": {"alertname": name, "severity": "critical", "pod": f"{name}-{n}"},
            "annotations": {"summary": f"{name}-{n} is crash looping"},
            "startsAt": "2026-12-02T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
        }
        for n in range(size)
    ]
    body = {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "status": "firing",
        "receiver": "punchingfist",
        "groupLabels": {"alertname": name},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "",
        "alerts": alerts,
    }
    return json.dumps(body).encode()


def rounds() -> list[list[bytes]]:
    """Each round's notifications: every group born so far, with one more alert than in the
    round before (up to PER_GROUP); every 3rd notification twice in a row (a retry)."""
    out = []
    for number in range(ROUNDS):
        posts = []
        for group in range(min(GROUPS, (number + 1) * BORN_PER_ROUND)):
            size = min(PER_GROUP, number + 1 - group // BORN_PER_ROUND)
            posts.extend([notification(group, size)] * (2 if group % 3 == 0 else 1))
        out.append(posts)
    return out


@dataclass
class Answers:
    """What one sender heard: the notifications stored (2xx), those to post again, and any
    answer Alertmanager must never get."""

    stored: list[bytes] = field(default_factory=list)
    again: list[bytes] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    wrong: list[str] = field(default_factory=list)


def post(port: int, body: bytes) -> tuple[int, dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", PATH, body=body, headers=HEADERS)
        response = connection.getresponse()
        answer = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(answer)
    except ValueError:
        return response.status, {}


def sender(port: int, schedule: list[list[bytes]], answers: Answers) -> None:
    for posts in schedule:
        for body in posts:
            try:
                status, answer = post(port, body)
            except OSError as error:  # the server itself must stay up
                answers.wrong.append(f"connection failed: {error}")
                answers.again.append(body)
                continue
            answers.statuses[status] += 1
            if 200 <= status < 300:
                answers.stored.append(body)
            elif status == 503:
                answers.again.append(body)
            else:
                answers.wrong.append(f"HTTP {status}: {answer}")
                answers.again.append(body)
        time.sleep(PAUSE)


def stored_fingerprints(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return set(connection.scalars(select(Alert.fingerprint)))
    finally:
        engine.dispose()


@pytest.mark.timeout(90)
def test_a_storm_while_postgresql_restarts_loses_nothing_and_starts_each_run_once(
    own_postgres: str,
) -> None:
    upgrade(own_postgres)
    cluster = Cluster(own_postgres)
    state = ServerState.from_resources(
        load_resources(source("investigation: {scope: perGroup}")),
        own_postgres,
        secrets=SecretStore(values={("hook", "token"): TOKEN}),
        intake_writers=WRITERS,
    )
    schedule = rounds()
    answers = [Answers() for _ in range(SENDERS)]
    try:
        with uvicorn_app(create_app(state)) as url:
            port = int(url.rsplit(":", 1)[1])
            threads = [
                threading.Thread(target=sender, args=(port, schedule, answers[s]))
                for s in range(SENDERS)
            ]
            for thread in threads:
                thread.start()
            time.sleep(ROUNDS * PAUSE / 4)  # a few rounds in: groups are being born
            cluster.stop()
            time.sleep(ROUNDS * PAUSE / 3)  # rounds go by with the database down
            cluster.start()
            for thread in threads:
                thread.join(timeout=60)
            assert not any(t.is_alive() for t in threads)

            statuses = sum((a.statuses for a in answers), Counter[int]())
            wrong = [w for a in answers for w in a.wrong]
            assert not wrong, wrong[:5]
            assert statuses[503], f"no request met the outage: {statuses}"
            # A 2xx means stored: every alert of a notification answered 2xx is in the store
            # now, before anything is posted again.
            acknowledged = {
                alert["fingerprint"]
                for a in answers
                for body in a.stored
                for alert in json.loads(body)["alerts"]
            }
            missing = acknowledged - stored_fingerprints(own_postgres)
            assert not missing, f"answered 2xx but not stored: {sorted(missing)[:5]}"

            # Alertmanager posts what failed again, until it is stored.
            retries = [body for a in answers for body in a.again]
            deadline = time.monotonic() + 30
            for body in retries:
                while True:
                    status, answer = post(port, body)
                    if 200 <= status < 300:
                        break
                    assert status == 503, (status, answer)
                    assert time.monotonic() < deadline, "the database did not come back"
                    time.sleep(0.2)
    finally:
        state.engine.dispose()

    engine = make_engine(own_postgres)
    try:
        with engine.connect() as connection:
            alerts = list(connection.execute(select(Alert)))
            runs = list(connection.execute(select(WorkflowRun)))
            outbox = list(connection.scalars(select(OutboxEntry.run_name)))
    finally:
        engine.dispose()
    fingerprints = Counter(a.fingerprint for a in alerts)
    expected = {f"Storm{g:02d}-{n}" for g in range(GROUPS) for n in range(PER_GROUP)}
    assert set(fingerprints) == expected and set(fingerprints.values()) == {1}
    group_of = {a.id: a.labels["alertname"] for a in alerts}
    run_groups = Counter(group_of[r.alert_id] for r in runs)
    assert run_groups == Counter({f"Storm{g:02d}": 1 for g in range(GROUPS)}), run_groups
    assert sorted(outbox) == sorted(r.name for r in runs)
    run_group = {r.name: group_of[r.alert_id] for r in runs}
    starters = {r.alert_id for r in runs}
    for alert in alerts:
        if alert.id in starters:
            continue
        assert alert.status == "suppressed", alert.fingerprint
        assert run_group.get(alert.covered_by_run) == group_of[alert.id], alert.fingerprint
