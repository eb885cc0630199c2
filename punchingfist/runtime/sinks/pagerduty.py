"""PagerDuty: trigger, acknowledge or resolve an alert with the Events API v2.

`POST {endpoint}/v2/enqueue`; the `dedup_key` is the incident (`Findings.incident_key`: the
Alertmanager group, else the alert fingerprint), so every run about the same incident acts on the
same PagerDuty alert: it pages once. When intake resolves the incident, the server resolves that
alert (`punchingfist.server.pages`, with `resolve_event` and `enqueue`). A trigger carries the
investigation in `payload.custom_details` (with `remediations`: what each fix did, structured)
and links to the run and the alert; a replayed answer's
summary starts with the replay mark and `custom_details.replayed` is true.
"""

from __future__ import annotations

from typing import Any

from punchingfist import __version__
from punchingfist.runtime.sinks.delivery import Http
from punchingfist.runtime.sinks.findings import Findings
from punchingfist.runtime.sinks.running import Sent, SinkRun

SEVERITIES = ("critical", "error", "warning", "info")
KEY_FIX = "set `routingKeySecret` on the Sink or `spec.secrets.pagerdutyRoutingKey`"
DEFAULT_ENDPOINT = "https://events.pagerduty.com"
MAX_DEDUP_KEY = 255
"""PagerDuty's limit on `dedup_key`; a longer group key is sent as its hash."""


def severity(value: str) -> str:
    """PagerDuty's severity for an alert's `severity` label (unknown ones count as `error`)."""
    value = value.lower()
    if value in SEVERITIES:
        return value
    return {
        "page": "critical",
        "high": "critical",
        "medium": "warning",
        "low": "info",
        "none": "info",
    }.get(value, "error")


def dedup_key(findings: Findings) -> str:
    """The incident's key, or its hash when it is longer than PagerDuty allows."""
    key = findings.incident_key
    return key if len(key) <= MAX_DEDUP_KEY else f"pf-incident-{findings.incident_hash}"


def event(run: SinkRun, routing_key: str) -> dict[str, Any]:
    findings = run.findings
    action = str(run.config.get("action") or "trigger")
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": dedup_key(findings),
    }
    if action != "trigger":
        return body
    rendered = run.template()
    summary = rendered or f"{findings.alertname or findings.workflow}: {findings.summary}"
    labels = findings.alert.get("labels") or {}
    body |= {
        "payload": {
            "summary": " ".join(findings.marked(summary).split())[:1024],
            "severity": severity(findings.severity),
            "source": str(
                labels.get("instance")
                or labels.get("service")
                or labels.get("namespace")
                or findings.workflow
            ),
            "component": labels.get("service") or labels.get("job"),
            "group": labels.get("namespace"),
            "class": findings.alertname or None,
            "custom_details": findings.details() | {"labels": labels},
        },
        "client": f"Punching Fist {__version__}",
    }
    body["payload"] = {k: v for k, v in body["payload"].items() if v is not None}
    links = [
        {"href": findings.run_link, "text": "Investigation run (Argo)"},
        {"href": findings.alert_link, "text": "Alert"},
    ]
    body["links"] = [link for link in links if link["href"]]
    if findings.run_link:
        body["client_url"] = findings.run_link
    return body


def resolve_event(routing_key: str, dedup_key: str) -> dict[str, Any]:
    """The event that resolves the PagerDuty alert of `dedup_key`."""
    return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key}


def enqueue(http: Http, endpoint: str | None, body: dict[str, Any]) -> Sent:
    """Send one event to `{endpoint}/v2/enqueue`; what PagerDuty answered."""
    base = str(endpoint or DEFAULT_ENDPOINT).rstrip("/")
    reply = http.request("POST", f"{base}/v2/enqueue", json=body)
    answer = reply.json() if isinstance(reply.json(), dict) else {}
    dedup = str(answer.get("dedup_key") or body["dedup_key"])
    return Sent(
        external_id=dedup,
        detail=f"{body['event_action']}: {answer.get('message', '')}",
        extra={"event_action": body["event_action"]},
    )


def deliver(run: SinkRun) -> Sent:
    key = run.secret(KEY_FIX)
    body = event(run, key)
    return enqueue(run.http("PagerDuty"), run.config.get("endpoint"), body)
