"""The facts of a finished run that every sink reports: alert, answer, figures and links.

Read from the template context (`punchingfist.runtime.context.build_context`): the alert from
`.source.data.alert`, the investigation from the last agent step that answered, the figures
summed over every step, the workflow outputs where they name the same things. An answer of the
replay model (`replayed: true` in its step's result) is no investigation: `replayed` is set and
every sink marks what it sends with `REPLAY_MARK` (or `replayed: true` in structured payloads).
A remediation step's fix is reported as it ended (`fixes`: `FixOutcome`, one per step whose
fix task ran). The past incident a report names ("Seen before: …") is one of the event's
`similar_incidents` (#22): the one the answer says it relied on (`relied_on`), else the best match.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from punchingfist.runtime.sinks.fixes import FixOutcome, fix_outcomes
from punchingfist.templating import truthy

REPLAY_MARK = "🔁 replayed answer — no model ran"
PARTIAL_MARK = "⚠️ partial answer — the LLM budget was spent"
ARGO_UI_ENV = "ARGO_UI_URL"
"""Base URL of the Argo UI; when set (e.g. in `runtime.environment`), messages link the run."""


@dataclass(frozen=True)
class Findings:
    workflow: str
    run: str
    namespace: str
    status: str
    """The workflow's status (`Succeeded`, `Failed`, `Error`; empty outside the exit handler)."""
    alert: Mapping[str, Any]
    alertname: str
    severity: str
    fingerprint: str
    group_key: str
    summary: str
    root_cause: str | None = None
    recommendations: list[str] = field(default_factory=list)
    confidence: float | None = None
    auto_fixed: bool | None = None
    tool_calls: int = 0
    tokens: int = 0
    duration_seconds: float | None = None
    run_link: str | None = None
    alert_link: str | None = None
    replayed: bool = False
    """An agent step's answer was replayed from recorded turns: no model ran."""
    partial: str | None = None
    """Why the answer is partial (its step's LLM budget was spent), when it is."""
    runbook: str | None = None
    """The runbook the agent says it followed (its `runbook` tool's name for it)."""
    seen_before: Mapping[str, Any] | None = None
    """The similar past incident the report names (`past_incident`), when the run had one."""
    fixes: list[FixOutcome] = field(default_factory=list)
    """What each remediation step that ran its fix task did (`fixes.fix_outcome`): the
    action, its target, the outcome, the rollback; a dry run's fix says it was only previewed."""

    @property
    def incident_key(self) -> str:
        """What identifies the incident, so that it pages once, has one Jira issue and one
        Slack thread: the Alertmanager group (`groupKey`, the unit intake investigates once
        under the default `perGroup` scope), else the alert fingerprint, else the run."""
        return self.group_key or self.fingerprint or self.run

    @property
    def incident_hash(self) -> str:
        """`incident_key` as 20 hex digits (stable; group keys hold `{}:="` and can be long)."""
        return hashlib.sha256(self.incident_key.encode()).hexdigest()[:20]

    def marked(self, text: str) -> str:
        """`text`, preceded by the replay mark when the answer was replayed, and by the partial
        mark when a budget cut the investigation short."""
        text = f"[{PARTIAL_MARK}] {text}" if self.partial else text
        return f"[{REPLAY_MARK}] {text}" if self.replayed else text

    def details(self) -> dict[str, Any]:
        """The investigation as one JSON object (PagerDuty custom_details, webhook bodies)."""
        return {
            "workflow": self.workflow,
            "run": self.run,
            "status": self.status,
            "summary": self.summary,
            "root_cause": self.root_cause,
            "recommendations": self.recommendations,
            "confidence": self.confidence,
            "auto_fixed": self.auto_fixed,
            "tool_calls": self.tool_calls,
            "tokens": self.tokens,
            "duration_seconds": self.duration_seconds,
            "run_link": self.run_link,
            "alert_link": self.alert_link,
            "replayed": self.replayed,
            "partial": self.partial is not None,
            "partial_reason": self.partial,
            "runbook": self.runbook,
            "seen_before": dict(self.seen_before) if self.seen_before else None,
            "remediations": [fix.as_dict() for fix in self.fixes],
        }


def gather(context: Mapping[str, Any], environ: Mapping[str, str]) -> Findings:
    source = context.get("source", {})
    event = source.get("data", {}) if isinstance(source, Mapping) else {}
    alert = _mapping(event.get("alert"))
    labels = _mapping(alert.get("labels"))
    workflow = context.get("workflow", {})
    outputs = context.get("outputs", {})
    steps = context.get("steps", {})
    answer = _last_answer(steps)
    summary = _first_text(
        answer.get("summary"),
        outputs.get("summary"),
        outputs.get("investigation_summary"),
        alert.get("summary"),
        alert.get("alertname"),
        workflow.get("name"),
    )
    root_cause = _first_text(answer.get("root_cause"), outputs.get("root_cause")) or None
    recommendations = answer.get("recommendations") or outputs.get("recommendations") or []
    if isinstance(recommendations, str):
        recommendations = [line for line in recommendations.splitlines() if line.strip()]
    auto_fixed = outputs.get("auto_fixed")
    return Findings(
        workflow=str(workflow.get("name", "")),
        run=str(workflow.get("run", "")),
        namespace=str(workflow.get("namespace", "")),
        status=str(workflow.get("status", "")),
        alert=alert,
        alertname=str(alert.get("alertname") or labels.get("alertname") or ""),
        severity=str(alert.get("severity") or labels.get("severity") or ""),
        fingerprint=str(source.get("fingerprint") or alert.get("fingerprint") or ""),
        group_key=str(event.get("groupKey") or ""),
        summary=summary,
        root_cause=root_cause,
        recommendations=[str(item) for item in recommendations],
        confidence=_number(answer.get("confidence", outputs.get("confidence"))),
        auto_fixed=None if auto_fixed is None else truthy(auto_fixed),
        tool_calls=sum(len(r.get("tool_calls") or []) for r in steps.values()),
        tokens=sum(int((r.get("usage") or {}).get("total_tokens") or 0) for r in steps.values()),
        duration_seconds=_number(workflow.get("duration")),
        run_link=_run_link(environ, str(workflow.get("namespace", "")), str(workflow.get("run"))),
        alert_link=_first_text(alert.get("generatorURL"), _alertmanager_link(event)) or None,
        replayed=any(isinstance(r, Mapping) and r.get("replayed") is True for r in steps.values()),
        partial=str(answer.get("partial_reason") or "LLM budget spent")
        if answer.get("partial") is True
        else None,
        runbook=_first_text(answer.get("runbook")) or None,
        seen_before=past_incident(event.get("similar_incidents"), answer.get("relied_on")),
        fixes=fix_outcomes(steps),
    )


SEEN_BEFORE_TEXT = 300
"""How many characters of a past incident's title and of its fix (or root cause) a report shows."""


def past_incident(similar: Any, relied_on: Any) -> Mapping[str, Any] | None:
    """Of a run's `similar_incidents`, the one whose `id` the answer's `relied_on` names (with
    `relied_on: true`), else the best match; None when there are none."""
    matches = [m for m in similar if isinstance(m, Mapping)] if isinstance(similar, list) else []
    wanted = str(relied_on).strip() if relied_on else ""
    chosen = next((m for m in matches if wanted and str(m.get("id")) == wanted), None)
    if chosen is not None:
        return {**chosen, "relied_on": True}
    return {**matches[0], "relied_on": False} if matches else None


def seen_before_text(match: Mapping[str, Any]) -> str:
    """`PodCrashLooping in production, 2026-11-20, fixed by kubectl … (confirmed)`: a past
    incident as a report names it (plain text; each part cut to `SEEN_BEFORE_TEXT`)."""

    def short(value: Any) -> str:
        text = " ".join(str(value).split())
        return text if len(text) <= SEEN_BEFORE_TEXT else text[: SEEN_BEFORE_TEXT - 1] + "…"

    parts = [short(match.get("title") or match.get("alertname") or "a past incident")]
    if match.get("when"):
        parts.append(short(match["when"]))
    if match.get("fix"):
        parts.append(f"fixed by {short(match['fix'])}")
    elif match.get("root_cause"):
        parts.append(f"root cause: {short(match['root_cause'])}")
    notes = ["confirmed" if match.get("confirmed") is True else "not confirmed"]
    if match.get("relied_on") is True:
        notes.append("the answer relies on it")
    return f"{', '.join(parts)} ({'; '.join(notes)})"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _last_answer(steps: Mapping[str, Any]) -> Mapping[str, Any]:
    answer: Mapping[str, Any] = {}
    for result in steps.values():
        value = result.get("result") if isinstance(result, Mapping) else None
        if result.get("kind") == "agent" and result.get("success") and isinstance(value, Mapping):
            answer = value
    return answer


def _first_text(*values: Any) -> str:
    for value in values:
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _run_link(environ: Mapping[str, str], namespace: str, run: str) -> str | None:
    base = environ.get(ARGO_UI_ENV, "").rstrip("/")
    if not base or not run:
        return None
    return f"{base}/workflows/{namespace or 'default'}/{run}"


def _alertmanager_link(event: Mapping[str, Any]) -> str:
    external = event.get("externalURL")
    return f"{external.rstrip('/')}/#/alerts" if isinstance(external, str) and external else ""
