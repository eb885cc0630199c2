"""Prometheus: push the investigation's figures to a Pushgateway (prometheus-client).

One group per workflow and alert name (`job`, `workflow`, `alertname`), replaced by each push
(`push_to_gateway`, HTTP PUT), so the group shows the latest investigation. The transport is
ours: prometheus-client builds the URL and the exposition text, `Http` sends it with retries.
A replayed answer (no model ran) pushes `replayed` 1 and no `confidence`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from punchingfist.runtime.sinks.delivery import Http
from punchingfist.runtime.sinks.findings import Findings
from punchingfist.runtime.sinks.running import Sent, SinkRun

PREFIX = "punchingfist_investigation_"


def registry_of(findings: Findings) -> CollectorRegistry:
    """The figures of one run as gauges (a figure the run lacks is left out)."""
    registry = CollectorRegistry()
    figures: dict[str, tuple[str, float | None]] = {
        "duration_seconds": ("How long the investigation ran.", findings.duration_seconds),
        "confidence": (
            "The agent's confidence in its answer (0-1).",
            None if findings.replayed else findings.confidence,
        ),
        "replayed": ("1 when the answer was replayed (no model ran).", float(findings.replayed)),
        "auto_fixed": (
            "1 when the run fixed the problem itself.",
            None if findings.auto_fixed is None else float(findings.auto_fixed),
        ),
        "tool_calls": ("Tool calls the agent made.", float(findings.tool_calls)),
        "tokens": ("LLM tokens the run used.", float(findings.tokens)),
        "succeeded": (
            "1 when the workflow succeeded.",
            float(findings.status == "Succeeded") if findings.status else None,
        ),
        "last_timestamp_seconds": ("When the investigation finished (Unix time).", time.time()),
    }
    for name, (help_text, value) in figures.items():
        if value is not None:
            Gauge(PREFIX + name, help_text, registry=registry).set(value)
    return registry


def _handler(http: Http) -> Callable[..., Callable[[], None]]:
    def handler(
        url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes
    ) -> Callable[[], None]:
        def send() -> None:
            http.request(method, url, content=data, headers=dict(headers))

        return send

    return handler


def deliver(run: SinkRun) -> Sent:
    gateway = str(run.config["pushgateway"]).rstrip("/")
    job = str(run.config.get("job") or "punchingfist-results")
    findings = run.findings
    grouping = {"workflow": findings.workflow}
    if findings.alertname:
        grouping["alertname"] = findings.alertname
    registry = registry_of(findings)
    http = run.http("Pushgateway")
    push_to_gateway(
        gateway, job=job, registry=registry, grouping_key=grouping, handler=_handler(http)
    )
    names = sorted(m.name for m in registry.collect())
    group = "/".join(f"{k}/{v}" for k, v in grouping.items())
    return Sent(
        external_id=f"job/{job}/{group}",
        link=gateway,
        detail=f"pushed {len(names)} metrics: {', '.join(names)}",
        extra={"job": job, "grouping": grouping, "metrics": names},
    )
