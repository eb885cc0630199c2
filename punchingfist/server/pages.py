"""Resolve an incident's PagerDuty pages when intake resolves the incident.

Every run about an incident pages PagerDuty with the same `dedup_key` (the incident key,
`punchingfist.runtime.sinks.findings.Findings.incident_key`). When the last open alert of the
incident resolves (`IntakeResult.resolved_incidents`), `resolve_later` sends a `resolve` event
with that key for each page a run of the incident triggered: the delivered `pagerduty`
SinkDelivery records of its runs, once per (Sink, key), and not for a key an incident still open
also paged with. A page reported after its incident resolved is resolved then
(`server.runs`, when the sink's delivery is reported). Each resolve is recorded as a
SinkDelivery of the last run that paged (outcome `delivered` or `failed`, `event_action:
resolve`), so it shows in the run's record and in `punchingfist_sink_deliveries_total`.

The routing key is read as the server reads its other secrets (`ServerState.secrets`,
`--secrets-dir`, in the chart the Secrets listed in `secrets`): the Sink's `routingKey`, else
the Secret its `routingKeySecret` names. A key that cannot be found is logged with what to set
and recorded as a failed resolve. Resolves run in a background thread, never on the request
path; failures are logged (never the routing key) and do not fail intake.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from punchingfist.api import Sink
from punchingfist.api.sinks import PagerDutyConfig
from punchingfist.runs.metrics import Metrics
from punchingfist.runtime.sinks import pagerduty
from punchingfist.runtime.sinks.delivery import Budget, Delivery, DeliveryFailed, Http
from punchingfist.store import Incident, SinkDelivery, WorkflowRun

log = logging.getLogger("punchingfist.pages")

BUDGET_SECONDS = 30.0
"""What the resolves of one notification may spend on PagerDuty (retries included)."""
SecretLookup = Callable[[str, str], str | None]
"""(Secret name, key) -> its value, or None (`SecretStore.get`)."""


@dataclass(frozen=True)
class Page:
    """One PagerDuty alert an incident's runs triggered: the Sink, the key, the last run."""

    sink: str
    dedup_key: str
    run_id: uuid.UUID
    incident: str


def resolve_later(
    sessions: sessionmaker[Session],
    incidents: Collection[str],
    sinks: Mapping[str, Sink],
    secrets: SecretLookup,
    metrics: Metrics | None = None,
) -> threading.Thread | None:
    """Resolve the pages of `incidents` in a background thread (returned, for tests)."""
    if not incidents:
        return None
    thread = threading.Thread(
        target=_resolve_logged,
        args=(sessions, list(incidents), dict(sinks), secrets, metrics),
        name="pagerduty-resolve",
        daemon=True,
    )
    thread.start()
    return thread


def _resolve_logged(*args: Any) -> None:
    try:
        resolve_pages(*args)
    except SQLAlchemyError as error:
        log.warning("PagerDuty resolves not sent: the store failed (%s)", type(error).__name__)
    except Exception:  # a thread's last stop; the routing key is not in these messages
        log.exception("PagerDuty resolves not sent")


def resolve_pages(
    sessions: sessionmaker[Session],
    incidents: Collection[str],
    sinks: Mapping[str, Sink],
    secrets: SecretLookup,
    metrics: Metrics | None = None,
) -> list[Delivery]:
    """Send `resolve` for every open page of `incidents` and record each; what happened."""
    with sessions() as session:
        pages = open_pages(session, incidents)
    done = []
    for page in pages:
        delivery = _resolve(page, sinks.get(page.sink), secrets)
        with sessions.begin() as session:
            session.add(_record(page, delivery))
        if metrics is not None:
            metrics.sink_deliveries.labels(page.sink, delivery.outcome).inc()
        done.append(delivery)
    return done


def open_pages(session: Session, incidents: Collection[str]) -> list[Page]:
    """The PagerDuty alerts the runs of `incidents` triggered and nothing resolved since,
    leaving out those an incident still open also triggered."""
    ids = [uuid.UUID(str(i)) for i in incidents]
    rows = session.execute(
        select(SinkDelivery, WorkflowRun.incident_id, Incident.status)
        .join(WorkflowRun, SinkDelivery.run_id == WorkflowRun.id)
        .join(Incident, WorkflowRun.incident_id == Incident.id)
        .where(
            SinkDelivery.sink_type == "pagerduty",
            (WorkflowRun.incident_id.in_(ids)) | (Incident.status != "resolved"),
        )
        .order_by(SinkDelivery.created_at, SinkDelivery.id)
    ).all()
    last: dict[tuple[str, str], tuple[str, Page]] = {}
    done: set[tuple[str, str]] = set()
    """Pages already resolved for their incident here (whatever the order of the rows)."""
    still_open: set[tuple[str, str]] = set()
    for delivery, incident, status in rows:
        key = _dedup_key(delivery)
        if key is None or delivery.outcome != "delivered":
            continue
        page = Page(delivery.sink_name, key, delivery.run_id, str(incident))
        pair, action = (page.sink, key), _action(delivery)
        if incident in ids:
            last[pair] = (action, page)
            if _resolved_for(delivery) == page.incident:
                done.add(pair)
        elif status != "resolved" and action != "resolve":
            still_open.add(pair)
    return [
        page
        for pair, (action, page) in last.items()
        if action in ("trigger", "acknowledge") and pair not in done | still_open
    ]


def routing_key(sink: Sink, secrets: SecretLookup) -> str:
    """The Sink's routing key, from the Sink or its Secret; PagerDutyKeyMissing says the fix."""
    config = sink.spec.config
    if not isinstance(config, PagerDutyConfig):
        raise PagerDutyKeyMissing(f"Sink {sink.name!r} is no longer a pagerduty Sink")
    if config.routing_key:
        return config.routing_key
    ref = config.routing_key_secret
    value = secrets(ref.secret_ref, ref.key) if ref is not None else None
    if not value:
        where = f"{ref.secret_ref}/{ref.key}" if ref is not None else "<secret>/<key>"
        raise PagerDutyKeyMissing(
            f"the server cannot read the routing key of Sink {sink.name!r} ({where}): mount "
            f"that Secret in the server (the chart's `secrets` list; --secrets-dir DIR with "
            f"DIR/{where})"
        )
    return value


class PagerDutyKeyMissing(Exception):
    """The server cannot resolve a page: it has no routing key for its Sink."""


def _resolve(page: Page, sink: Sink | None, secrets: SecretLookup) -> Delivery:
    started = datetime.now(UTC)
    fields: dict[str, Any] = {"external_id": page.dedup_key}
    extra = {"event_action": "resolve", "incident": page.incident}
    if sink is None:
        reason = f"Sink {page.sink!r} is not served here: its page is not resolved"
        log.warning("PagerDuty: %s (incident %s)", reason, page.incident)
        return Delivery(page.sink, "pagerduty", "failed", error=reason, extra=extra, **fields)
    try:
        key = routing_key(sink, secrets)
    except PagerDutyKeyMissing as missing:
        log.warning("PagerDuty page of incident %s not resolved: %s", page.incident, missing)
        return Delivery(page.sink, "pagerduty", "failed", error=str(missing), extra=extra, **fields)
    http = Http(service="PagerDuty", budget=Budget(BUDGET_SECONDS), secrets=[key])
    config = sink.spec.config
    endpoint = config.endpoint if isinstance(config, PagerDutyConfig) else None
    try:
        sent = pagerduty.enqueue(http, endpoint, pagerduty.resolve_event(key, page.dedup_key))
    except DeliveryFailed as failed:  # its message is redacted of the key
        log.warning("PagerDuty page of incident %s not resolved: %s", page.incident, failed)
        return Delivery(
            page.sink,
            "pagerduty",
            "failed",
            http_status=failed.status,
            attempts=http.attempts,
            error=str(failed),
            extra=extra,
            **fields,
        )
    finally:
        http.close()
    log.info("PagerDuty: resolved the page of incident %s (Sink %s)", page.incident, page.sink)
    return Delivery(
        page.sink,
        "pagerduty",
        "delivered",
        http_status=http.last_status,
        external_id=sent.external_id,
        attempts=http.attempts,
        seconds=round((datetime.now(UTC) - started).total_seconds(), 3),
        detail=sent.detail,
        extra=extra,
    )


def _record(page: Page, delivery: Delivery) -> SinkDelivery:
    at = datetime.now(UTC)
    return SinkDelivery(
        run_id=page.run_id,
        sink_name=page.sink,
        sink_type="pagerduty",
        outcome=delivery.outcome,
        detail=delivery.as_result(),
        attempts=max(delivery.attempts, 1),
        delivered_at=at if delivery.outcome == "delivered" else None,
    )


def _dedup_key(delivery: SinkDelivery) -> str | None:
    detail = delivery.detail or {}
    key = detail.get("external_id")
    return key if isinstance(key, str) and key else None


def _resolved_for(delivery: SinkDelivery) -> str | None:
    """The incident a resolve this module recorded was about."""
    result = (delivery.detail or {}).get("result")
    return (
        str(result.get("incident"))
        if isinstance(result, Mapping) and result.get("incident")
        else None
    )


def _action(delivery: SinkDelivery) -> str:
    detail = delivery.detail or {}
    result = detail.get("result")
    action = result.get("event_action") if isinstance(result, Mapping) else None
    return str(action or detail.get("event_action") or "trigger")
