"""Alertmanager: annotate, silence or resolve the alert a run investigated (API v2).

- `annotate` re-posts the alert (`POST /api/v2/alerts`) with the same labels, its annotations
  plus the template's (a YAML mapping, e.g. `ai_summary: "..."`), and its startsAt/endsAt.
  Alertmanager merges it into the existing alert. The alert's own source (Prometheus) re-sends
  its annotations on every evaluation, which replaces ours: annotations last until then.
- `silence` creates a silence (`POST /api/v2/silences`) matching every label of the alert, for
  `silenceDuration`, with a comment naming the run (the template, when given).
- `resolve` re-posts the alert with `endsAt` = now.

A Sink that leaves `endpoint` at its default (`http://alertmanager:9093`) leaves it to the
environment: `ALERTMANAGER_URL` when set, else the default when its host resolves; when it does
not, the sink is skipped as not configured.

When the answer was replayed (no model ran), annotations include `ai_replayed: "true"` and the
default `ai_summary` and a silence's comment start with the replay mark.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from punchingfist.api.base import duration_seconds
from punchingfist.api.sinks import AlertmanagerConfig
from punchingfist.runtime.context import BadTaskInput
from punchingfist.runtime.sinks.running import Sent, SinkRun

CREATED_BY = "punchingfist"
DEFAULT_ENDPOINT = AlertmanagerConfig.model_fields["endpoint"].default
ENDPOINT_ENV = "ALERTMANAGER_URL"
"""Where a Sink that leaves `endpoint` at its default finds Alertmanager (set by the demo)."""


def deliver(run: SinkRun) -> Sent:
    alert = run.findings.alert
    labels = alert.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise BadTaskInput(
            f"{run.resource}: the run's event has no alert labels (`.source.data.alert.labels`); "
            "Alertmanager sinks act on the alert that started the run"
        )
    endpoint = run.endpoint(DEFAULT_ENDPOINT, ENDPOINT_ENV, "Alertmanager")
    action = run.config.get("action", "annotate")
    http = run.http("Alertmanager")
    if action == "silence":
        return _silence(run, http, endpoint, labels)
    annotations = dict(alert.get("annotations") or {})
    ends_at = _time(alert.get("endsAt"))
    if action == "resolve":
        ends_at = _now()
    else:
        annotations |= _annotations(run)
        if run.findings.replayed:
            annotations["ai_replayed"] = "true"
    posted: dict[str, Any] = {"labels": labels, "annotations": annotations}
    if _time(alert.get("startsAt")):
        posted["startsAt"] = _time(alert.get("startsAt"))
    if ends_at:
        posted["endsAt"] = ends_at
    if alert.get("generatorURL"):
        posted["generatorURL"] = alert["generatorURL"]
    http.request("POST", f"{endpoint}/api/v2/alerts", json=[posted])
    what = "resolved the alert" if action == "resolve" else f"annotated {sorted(annotations)}"
    return Sent(
        external_id=run.findings.fingerprint or None,
        link=f"{endpoint}/#/alerts",
        detail=what,
        extra={"action": action, "endsAt": ends_at},
    )


def _silence(run: SinkRun, http: Any, endpoint: str, labels: dict[str, str]) -> Sent:
    seconds = duration_seconds(str(run.config.get("silenceDuration") or "1h"))
    starts = datetime.now(UTC)
    comment = run.template()
    if comment is None:
        comment = f"Silenced by Punching Fist after run {run.findings.run or '?'} " + (
            f"of workflow {run.findings.workflow}"
        )
        if run.findings.run_link:
            comment += f": {run.findings.run_link}"
    comment = run.findings.marked(comment.strip())
    silence = {
        "matchers": [
            {"name": name, "value": value, "isRegex": False, "isEqual": True}
            for name, value in sorted(labels.items())
        ],
        "startsAt": _format(starts),
        "endsAt": _format(starts + timedelta(seconds=seconds)),
        "createdBy": CREATED_BY,
        "comment": comment.strip() or "Silenced by Punching Fist",
    }
    reply = http.request("POST", f"{endpoint}/api/v2/silences", json=silence)
    body = reply.json() or {}
    silence_id = body.get("silenceID") if isinstance(body, dict) else None
    link = f"{endpoint}/#/silences/{silence_id}" if silence_id else f"{endpoint}/#/silences"
    return Sent(
        external_id=silence_id,
        link=link,
        detail=f"silenced for {seconds:g} s until {silence['endsAt']}",
        extra={"action": "silence", "endsAt": silence["endsAt"]},
    )


def _annotations(run: SinkRun) -> dict[str, str]:
    """The template's annotations. Each value of a `name: "{{ ... }}"` mapping is rendered on
    its own, so a rendered value with quotes or colons stays one value (never re-parsed)."""
    source = run.config.get("template")
    if not isinstance(source, str):
        findings = run.findings
        values = {
            "ai_summary": findings.marked(findings.summary),
            "ai_root_cause": findings.root_cause,
            "ai_run": findings.run,
            "ai_run_url": findings.run_link,
        }
        return {k: str(v) for k, v in values.items() if v}
    try:
        mapping = yaml.safe_load(source)
    except yaml.YAMLError:
        mapping = None
    if isinstance(mapping, dict) and all(isinstance(v, str) for v in mapping.values()):
        field = "spec.config.template"
        return {str(k): run.render(v, f"{field} ({k})").strip() for k, v in mapping.items()}
    text = run.render(source)
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        parsed = None
    if not isinstance(parsed, dict):
        raise BadTaskInput(
            f"{run.resource}: spec.config.template must be `name: value` lines (a YAML "
            "mapping) for `action: annotate`"
        )
    return {str(k): "" if v is None else str(v) for k, v in parsed.items()}


def _time(value: Any) -> str | None:
    """An alert timestamp as RFC 3339, or None for Go's zero time and empty values."""
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return _format(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC))


def _now() -> str:
    return _format(datetime.now(UTC))


def _format(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
