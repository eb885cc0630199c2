"""Webhook: POST (or PUT) the result to a URL.

The body is the rendered `template` (sent as `application/json` when it is JSON, else as
text), or, without a template, a JSON object with the run, the alert, the outputs and the
investigation (`investigation.remediations`: what each remediation step's fix did, one object
each: `step`, `action`, `target`, `outcome`, `applied`, `rolled_back`, `rollback_verified`,
`dry_run`, `detail`). `WEBHOOK_TOKEN` (from `authSecret`) goes in `Authorization: Bearer`. When the
answer was replayed (no model ran), the default body has `replayed: true` and every body is sent
with the header `X-Punchingfist-Replayed: true`.
"""

from __future__ import annotations

import json
from typing import Any

from punchingfist.runtime.sinks.running import Sent, SinkRun

_RESERVED = {"authorization", "content-length", "host"}
REPLAYED_HEADER = "X-Punchingfist-Replayed"


def body(run: SinkRun) -> tuple[bytes, str]:
    rendered = run.template()
    if rendered is None:
        findings = run.findings
        document: dict[str, Any] = {
            "workflow": findings.workflow,
            "run": findings.run,
            "status": findings.status,
            "fingerprint": findings.fingerprint,
            "replayed": findings.replayed,
            "alert": dict(findings.alert),
            "outputs": run.context["outputs"],
            "investigation": findings.details(),
        }
        return json.dumps(document, ensure_ascii=False, default=str).encode(), "application/json"
    try:
        json.loads(rendered)
    except ValueError:
        return rendered.encode(), "text/plain; charset=utf-8"
    return rendered.encode(), "application/json"


def deliver(run: SinkRun) -> Sent:
    content, content_type = body(run)
    headers = {
        str(k): str(v)
        for k, v in (run.config.get("headers") or {}).items()
        if str(k).lower() not in _RESERVED
    }
    headers.setdefault("Content-Type", content_type)
    if run.findings.replayed:
        headers[REPLAYED_HEADER] = "true"
    if run.task.secret_env:
        token = run.secret("set `authSecret` on the Sink (a Secret holding a bearer token)")
        headers["Authorization"] = f"Bearer {token}"
    url = str(run.config["url"])
    method = str(run.config.get("method") or "POST")
    run.http("Webhook").request(method, url, content=content, headers=headers)
    return Sent(link=url, detail=f"{method} {len(content)} bytes ({content_type})")
