"""PagerDuty: trigger, acknowledge or resolve an alert with the Events API v2.

`POST {endpoint}/v2/enqueue`; the `dedup_key` is the alert fingerprint, so every run about the
same alert acts on the same PagerDuty alert. A trigger carries the investigation in
`payload.custom_details` and links to the run and the alert; a replayed answer's summary starts
with the replay mark and `custom_details.replayed` is true.
"""

from __future__ import annotations

from typing import Any

from punchingfist import __version__
from punchingfist.runtime.sinks.running import Sent, SinkRun

SEVERITIES = ("critical", "error", "warning", "info")
KEY_FIX = "set `routingKeySecret` on the Sink or `spec.secrets.pagerdutyRoutingKey`"


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


def event(run: SinkRun, routing_key: str) -> dict[str, Any]:
    findings = run.findings
    action = str(run.config.get("action") or "trigger")
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": findings.incident_key,
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


def deliver(run: SinkRun) -> Sent:
    key = run.secret(KEY_FIX)
    endpoint = str(run.config.get("endpoint") or "https://events.pagerduty.com").rstrip("/")
    body = event(run, key)
    reply = run.http("PagerDuty").request("POST", f"{endpoint}/v2/enqueue", json=body)
    answer = reply.json() if isinstance(reply.json(), dict) else {}
    dedup = str(answer.get("dedup_key") or body["dedup_key"])
    return Sent(
        external_id=dedup,
        detail=f"{body['event_action']}: {answer.get('message', '')}",
        extra={"event_action": body["event_action"]},
    )
