"""Slack thread replies for alerts that join a run after its report was posted.

An alert that joins another run (`IntakeResult.joined`: stored `suppressed`, `covered_by_run`
naming the run) after that run's Slack sink delivered its report is told in the report's
thread: "also firing: PodCrashLooping (web-2) (covered by run …)". The report's channel and
`ts` (its thread's, when the report was itself a thread reply) come from the run's delivered
`slack` SinkDelivery records; a run without one gets no reply (its report, when it comes, lists
the alerts that joined before the run started: `event.alerts`).

Replies are posted by one background thread, never on the request path, with the bot token of
the Sink that posted the report (its `botToken`, else its `botTokenSecret` read from the
server's secrets: `--secrets-dir`, the chart's `secrets` list), else `SLACK_BOT_TOKEN` of the
server's environment (`SLACK_API_URL` overrides the API base, as for chat Sources). Failures
are logged (never the token) and dropped: intake never fails for them.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from punchingfist.api import Sink
from punchingfist.api.sinks import SlackConfig
from punchingfist.runtime.redaction import redact
from punchingfist.runtime.sinks.delivery import Budget, DeliveryFailed
from punchingfist.runtime.sinks.mrkdwn import escape
from punchingfist.runtime.sinks.slack import Slack, also_firing_list
from punchingfist.server.pages import SecretLookup
from punchingfist.store import SinkDelivery, WorkflowRun

log = logging.getLogger("punchingfist.also_firing")

TOKEN_ENV = "SLACK_BOT_TOKEN"
BUDGET_SECONDS = 20.0
"""What the replies of one notification may spend on Slack (retries included)."""
MAX_WAITING = 1000
"""Notifications waiting for their replies; more are dropped (and logged)."""


@dataclass(frozen=True)
class Thread:
    """Where a run's Slack report is: its channel and the `ts` of its thread, and the Sink
    that posted it."""

    channel: str
    ts: str
    sink: str = ""


def reply_later(
    sessions: sessionmaker[Session],
    joined: Sequence[tuple[str, Mapping[str, Any]]],
    sinks: Mapping[str, Sink] | None = None,
    secrets: SecretLookup | None = None,
) -> None:
    """Queue the replies about `joined` (run, alert view) for the background thread."""
    if not joined:
        return
    try:
        _waiting.put_nowait((sessions, list(joined), dict(sinks or {}), secrets))
    except queue.Full:
        log.warning(
            "Slack replies: %d notifications waiting, these alerts are not told", MAX_WAITING
        )
        return
    _start_worker()


def drain(timeout: float = 10.0) -> bool:
    """Wait until every queued reply was posted or given up; False on timeout (tests)."""
    done = threading.Event()

    def wait() -> None:
        _waiting.join()
        done.set()

    threading.Thread(target=wait, daemon=True).start()
    return done.wait(timeout)


def post_replies(
    sessions: sessionmaker[Session],
    joined: Sequence[tuple[str, Mapping[str, Any]]],
    sinks: Mapping[str, Sink],
    secrets: SecretLookup | None,
    environ: Mapping[str, str],
) -> int:
    """Post one reply per run and Slack report about the alerts that joined it; how many."""
    by_run: dict[str, list[Mapping[str, Any]]] = {}
    for run, alert in joined:
        by_run.setdefault(run, []).append(alert)
    threads = report_threads(sessions, set(by_run))
    clients: dict[str, Slack] = {}
    budget = Budget(BUDGET_SECONDS)
    posted = 0
    for run, places in threads.items():
        text = reply_text(run, by_run[run])
        for place in places:
            token = bot_token(sinks.get(place.sink), secrets, environ)
            if not token:
                log.warning(
                    "Slack reply in the thread of run %s: no bot token (Sink %r has no botToken "
                    "or readable botTokenSecret, and %s is not set in the server's environment)",
                    run,
                    place.sink,
                    TOKEN_ENV,
                )
                continue
            slack = clients.setdefault(token, Slack(token, budget, environ))
            try:
                slack.call(
                    "chat.postMessage",
                    channel=place.channel,
                    thread_ts=place.ts,
                    text=text,
                    unfurl_links=False,
                    unfurl_media=False,
                )
            except DeliveryFailed as error:
                log.warning("Slack reply in the thread of run %s: %s", run, error)
            else:
                posted += 1
    return posted


def bot_token(
    sink: Sink | None, secrets: SecretLookup | None, environ: Mapping[str, str]
) -> str | None:
    """The Sink's bot token (`botToken`, else its `botTokenSecret` from the server's
    secrets), else `SLACK_BOT_TOKEN` of the server's environment."""
    config = sink.spec.config if sink is not None else None
    if isinstance(config, SlackConfig):
        if config.bot_token:
            return config.bot_token
        ref = config.bot_token_secret
        if ref is not None and secrets is not None and (value := secrets(ref.secret_ref, ref.key)):
            return value
    return environ.get(TOKEN_ENV, "").strip() or None


def reply_text(run: str, alerts: Sequence[Mapping[str, Any]]) -> str:
    """`also firing: A (pod-x), B (covered by run `r`)`, alert text escaped."""
    return f"also firing: {also_firing_list(alerts)} (covered by run `{escape(run)}`)"


def report_threads(sessions: sessionmaker[Session], runs: set[str]) -> dict[str, list[Thread]]:
    """The Slack threads of the runs' delivered reports, by run (runs without one: absent)."""
    query = (
        select(WorkflowRun.name, SinkDelivery.sink_name, SinkDelivery.detail)
        .join(SinkDelivery, SinkDelivery.run_id == WorkflowRun.id)
        .where(
            WorkflowRun.name.in_(sorted(runs)),
            SinkDelivery.sink_type == "slack",
            SinkDelivery.outcome == "delivered",
        )
        .order_by(SinkDelivery.created_at)
    )
    with sessions() as session:
        rows = session.execute(query).all()
    found: dict[str, list[Thread]] = {}
    for run, sink, detail in rows:
        place = thread_of(detail, sink)
        if place is not None and place not in found.get(run, []):
            found.setdefault(run, []).append(place)
    return found


def thread_of(detail: Any, sink: str = "") -> Thread | None:
    """Where a Slack delivery record says its message is: the sink's `result` (result.json),
    else the record itself (`POST /api/v1/runs/{run}/sinks/{sink}`)."""
    if not isinstance(detail, Mapping):
        return None
    for record in (detail.get("result"), detail):
        if not isinstance(record, Mapping):
            continue
        channel = record.get("channel")
        ts = record.get("thread_ts") or record.get("ts") or record.get("external_id")
        if isinstance(channel, str) and channel and isinstance(ts, str) and ts:
            return Thread(channel, ts, sink)
    return None


_waiting: queue.Queue[Any] = queue.Queue(MAX_WAITING)
_worker: threading.Thread | None = None
_worker_lock = threading.Lock()


def _start_worker() -> None:
    global _worker
    with _worker_lock:
        if _worker is None or not _worker.is_alive():
            _worker = threading.Thread(target=_work, daemon=True, name="slack-also-firing")
            _worker.start()


def _work() -> None:
    while True:
        sessions, joined, sinks, secrets = _waiting.get()
        try:
            post_replies(sessions, joined, sinks, secrets, os.environ)
        except SQLAlchemyError as error:
            log.warning(
                "Slack replies: cannot read the runs' deliveries (%s)", type(error).__name__
            )
        except Exception as error:  # a thread's last stop: no reply is worth losing it
            tokens = [bot_token(sink, secrets, os.environ) for sink in [*sinks.values(), None]]
            log.warning("Slack replies failed: %s", redact(repr(error), tokens))
        finally:
            _waiting.task_done()
