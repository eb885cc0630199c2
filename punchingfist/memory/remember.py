"""Remembering: a finished run's findings become one knowledge entry; a human's verdict confirms it.

`remember` is called by the recorder (`runs.recording.Recorder`) when a run finishes, by Argo
tracking or the local executor alike, and again when a step's report reaches a finished run. It
writes ONE `KnowledgeEntry` per run (unique `run_id`: a repeated finish updates the same row)
from the run's live agent answers, its alert and its incident:

- the answer: the last agent step's (by finish time), each field falling back to an earlier
  step's (a remediation step's answer often has no `fix_command`: the investigation's stays).
  A run with no live answer (no agent step, a failed one, or `replayed` recorded turns) writes
  nothing.
- `evidence`: the tool calls the answers cite (`evidence: [call-2, ...]`), else every call, as
  short texts (`call-2 kubectl: kubectl get pods -n shop -> ok`): at most 10, 500 characters
  each. Tool calls are stored redacted already; nothing else is added.
- the alert's labels: `namespace`; `service` is the service, deployment, job or pod label (the
  first given); `severity` is the alert's; `alert_name` and `fingerprint`.
- `outcome`, the first rule that holds:
    fixed      the run's outputs say `auto_fixed`, or a gate was approved and its step succeeded
    denied     a gate was denied (by a human, or by its deadline)
    escalated  the run did not succeed, or an escalating sink (pagerduty, workflow) of it
               delivered (its delivery record: the sink's report, or what the executor saw)
    not_fixed  otherwise
An entry a human has judged (`verdict` set, or `confirmed`) is never rewritten by a run.

The run's incident gets `ai_summary` (summary, root cause, confidence, run, finished) and
`root_cause_analysis` from its latest finished run, unless a human confirmed a root cause.

`resolve` is what a human's resolution does (`POST /api/v1/incidents/{id}/resolve`,
`punchingfist incidents resolve`): the incident is resolved with the note, lessons and root
cause, and its entries carry the verdict (see its docstring). `judge` records a verdict on one
run's findings without resolving anything (the Slack report's "right"/"wrong" buttons).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from punchingfist.store import (
    Alert,
    Approval,
    Incident,
    KnowledgeEntry,
    RunStep,
    SinkDelivery,
    WorkflowRun,
)

MAX_EVIDENCE = 10
EVIDENCE_CHARS = 500
SERVICE_LABELS = ("service", "deployment", "job", "pod")
"""The alert labels that name the workload, in the order they are preferred."""
ESCALATING_SINKS = frozenset({"pagerduty", "workflow"})
Verdict = Literal["right", "wrong"]
HUMAN_OUTCOME = "escalated"
"""A human's own entry (no run): the incident went to humans, who resolved it."""


def remember(
    session: Session, run: WorkflowRun, steps: Mapping[str, RunStep], alert: Alert | None
) -> KnowledgeEntry | None:
    """Write (or bring up to date) the finished `run`'s knowledge entry; None when the run
    has no live agent answer."""
    if run.finished_at is None:
        return None
    answering = sorted(
        (s for s in steps.values() if live_answer(s) is not None),
        key=lambda s: _aware(s.finished_at or run.finished_at or datetime.now(UTC)),
    )
    if not answering:
        return None
    answer: dict[str, Any] = {}
    for step in answering:
        answer |= {k: v for k, v in (live_answer(step) or {}).items() if v not in (None, "", [])}
    entry = session.scalars(select(KnowledgeEntry).where(KnowledgeEntry.run_id == run.id)).first()
    if entry is not None and (entry.confirmed or entry.verdict):
        return entry  # a human's judgement stands
    labels = _labels(run, alert)
    incident_id = run.incident_id or (alert.incident_id if alert is not None else None)
    values = {
        "incident_id": incident_id,
        "alert_name": _alert_name(run, alert, labels)[:255],
        "fingerprint": ((alert.fingerprint if alert else None) or run.fingerprint or None),
        "labels": labels or None,
        "summary": _text(answer.get("summary")),
        "root_cause": _text(answer.get("root_cause")),
        "fix": _text(answer.get("fix_command")),
        "outcome": _outcome(session, run, steps),
        "confidence": _confidence(answer.get("confidence")),
        "evidence": evidence(answering) or None,
        "severity": _severity(alert, labels),
        "namespace": _short(labels.get("namespace"), 253),
        "service": next((_short(labels[k], 253) for k in SERVICE_LABELS if labels.get(k)), None),
    }
    if entry is None:
        entry = KnowledgeEntry(run_id=run.id, **values)
        session.add(entry)
    else:
        for name, value in values.items():
            if getattr(entry, name) != value:
                setattr(entry, name, value)
    if incident_id is not None:
        incident = session.get(Incident, incident_id)
        if incident is not None:
            _summarize(session, incident, run, answer)
    return entry


def live_answer(step: RunStep) -> dict[str, Any] | None:
    """The agent's answer a succeeded agent step holds; None for a replayed model's."""
    result = step.result or {}
    answer = result.get("result")
    if step.kind != "agent" or step.phase != "Succeeded" or not isinstance(answer, dict):
        return None
    return None if result.get("replayed") is True else answer


def evidence(steps: Iterable[RunStep]) -> list[str]:
    """Short texts of the tool calls the live answers cite (every call when none is cited),
    the latest step's first; cited ids that name no call are kept as the answer wrote them."""
    texts: list[str] = []
    for step in reversed(list(steps)):
        answer = live_answer(step)
        if answer is None:
            continue
        calls = [c for c in step.tool_calls or [] if isinstance(c, dict)]
        cited = [str(c) for c in answer.get("evidence") or []]
        by_id = {str(c.get("id")): c for c in calls}
        chosen: list[str] = (
            [_call_text(by_id[c]) if c in by_id else c for c in cited]
            if cited
            else [_call_text(c) for c in calls]
        )
        texts += [t[:EVIDENCE_CHARS] for t in chosen if t and t[:EVIDENCE_CHARS] not in texts]
    return texts[:MAX_EVIDENCE]


def _call_text(call: Mapping[str, Any]) -> str:
    argv = call.get("argv")
    what = (
        " ".join(str(a) for a in argv)
        if isinstance(argv, list) and argv
        else json.dumps(call.get("call") or {}, sort_keys=True, default=str)
    )
    status = str(call.get("status") or "?")
    error = f" ({call['error']})" if call.get("error") else ""
    return f"{call.get('id') or '?'} {call.get('tool') or '?'}: {what} -> {status}{error}"


def _outcome(session: Session, run: WorkflowRun, steps: Mapping[str, RunStep]) -> str:
    approvals = list(session.scalars(select(Approval).where(Approval.run_id == run.id)))
    if _true((run.outputs or {}).get("auto_fixed")) or any(
        a.decision == "approved"
        and (fixed := steps.get(a.step_name)) is not None
        and fixed.phase == "Succeeded"
        for a in approvals
    ):
        return "fixed"
    if any(a.decision == "denied" for a in approvals):
        return "denied"
    escalated = session.scalars(
        select(SinkDelivery.id).where(
            SinkDelivery.run_id == run.id,
            SinkDelivery.outcome == "delivered",
            SinkDelivery.sink_type.in_(ESCALATING_SINKS),
        )
    ).first()
    if run.status != "succeeded" or escalated is not None:
        return "escalated"
    return "not_fixed"


def _summarize(
    session: Session, incident: Incident, run: WorkflowRun, answer: Mapping[str, Any]
) -> None:
    """The incident's AI summary from its latest finished run (an earlier run finishing later
    changes nothing); the root cause too, unless a human confirmed one."""
    finished = _aware(run.finished_at or datetime.now(UTC))
    earlier = (incident.ai_summary or {}).get("finished")
    if isinstance(earlier, str) and (incident.ai_summary or {}).get("run") != run.name:
        when = _parsed_time(earlier)  # an unreadable time counts as older: this run's stands
        if when is not None and when > finished:
            return
    incident.ai_summary = {
        "summary": _text(answer.get("summary")),
        "root_cause": _text(answer.get("root_cause")),
        "confidence": _confidence(answer.get("confidence")),
        "run": run.name,
        "finished": finished.isoformat(),
    }
    confirmed = session.scalars(
        select(KnowledgeEntry.id).where(
            KnowledgeEntry.incident_id == incident.id, KnowledgeEntry.confirmed.is_(True)
        )
    ).first()
    if confirmed is None and _text(answer.get("root_cause")):
        incident.root_cause_analysis = _text(answer.get("root_cause"))


@dataclass(frozen=True)
class Resolution:
    """What a human says when resolving an incident (every part optional)."""

    by: str
    root_cause: str | None = None
    note: str | None = None
    lessons: str | None = None
    verdict: Verdict | None = None


def resolve(session: Session, incident: Incident, resolution: Resolution) -> list[KnowledgeEntry]:
    """Resolve `incident` as a human says; returns its knowledge entries as they are now.

    The incident: status `resolved` (its `resolved_at` and `mttr_seconds` kept when it had
    resolved already, when its alerts cleared), `resolution_notes`, `lessons_learned`, and
    `root_cause_analysis` when a root cause is given. Each entry a run wrote gets the verdict;
    it is `confirmed` when the verdict is right, or when the given root cause is its own (and
    the verdict is not wrong). A given root cause that no entry holds becomes a human's own
    entry (no run; confirmed, verdict right), updated on a later resolution. Every entry
    touched records who (`confirmed_by`), when and the note."""
    now = datetime.now(UTC)
    if incident.status != "resolved" or incident.resolved_at is None:
        incident.status = "resolved"
        incident.resolved_at = now
        incident.mttr_seconds = int((now - _aware(incident.created_at)).total_seconds())
    if resolution.note is not None:
        incident.resolution_notes = resolution.note
    if resolution.lessons is not None:
        incident.lessons_learned = resolution.lessons
    if resolution.root_cause is not None:
        incident.root_cause_analysis = resolution.root_cause
    entries = list(
        session.scalars(
            select(KnowledgeEntry)
            .where(KnowledgeEntry.incident_id == incident.id)
            .order_by(KnowledgeEntry.created_at)
        )
    )
    given = _same(resolution.root_cause)
    for entry in (e for e in entries if e.run_id is not None):
        own = given is not None and _same(entry.root_cause) == given
        if resolution.verdict is not None:
            entry.verdict = resolution.verdict
        entry.confirmed = resolution.verdict == "right" or (own and resolution.verdict != "wrong")
        _judged(entry, resolution, now)
    if resolution.root_cause is not None and not any(
        _same(e.root_cause) == given for e in entries if e.run_id is not None
    ):
        human = next((e for e in entries if e.run_id is None), None)
        if human is None:
            human = _human_entry(session, incident)
            session.add(human)
            entries.append(human)
        human.root_cause, human.confirmed, human.verdict = resolution.root_cause, True, "right"
        _judged(human, resolution, now)
    session.flush()
    return entries


def judge(session: Session, run: WorkflowRun, verdict: Verdict, by: str) -> KnowledgeEntry | None:
    """A human's verdict on what `run` found, the incident left as it is: the run's entry gets
    the verdict, is `confirmed` when it is right (no longer when wrong) and records who and
    when. None when nothing is remembered of the run (no live answer, or not finished)."""
    entry = session.scalars(select(KnowledgeEntry).where(KnowledgeEntry.run_id == run.id)).first()
    if entry is None:
        return None
    entry.verdict, entry.confirmed = verdict, verdict == "right"
    _judged(entry, Resolution(by=by), datetime.now(UTC))
    session.flush()
    return entry


def _human_entry(session: Session, incident: Incident) -> KnowledgeEntry:
    """A human's entry for `incident`, described by its first alert."""
    first = session.get(Alert, incident.first_alert_id) if incident.first_alert_id else None
    if first is None:
        first = session.scalars(
            select(Alert).where(Alert.incident_id == incident.id).order_by(Alert.received_at)
        ).first()
    labels = dict(first.labels or {}) if first is not None else {}
    return KnowledgeEntry(
        incident_id=incident.id,
        run_id=None,
        alert_name=(first.alert_name if first is not None else incident.title)[:255],
        fingerprint=first.fingerprint if first is not None else None,
        labels=labels or None,
        summary=incident.title,
        outcome=HUMAN_OUTCOME,
        severity=_severity(first, labels) or incident.severity,
        namespace=_short(labels.get("namespace"), 253),
        service=next((_short(labels[k], 253) for k in SERVICE_LABELS if labels.get(k)), None),
    )


def _judged(entry: KnowledgeEntry, resolution: Resolution, now: datetime) -> None:
    entry.confirmed_by = resolution.by[:255]
    entry.confirmed_at = now
    if resolution.note is not None:
        entry.resolution_notes = resolution.note


def _labels(run: WorkflowRun, alert: Alert | None) -> dict[str, Any]:
    if alert is not None and alert.labels:
        return dict(alert.labels)
    event = run.arguments.get("event") if isinstance(run.arguments, dict) else None
    given = (event or {}).get("alert") if isinstance(event, dict) else None
    labels = given.get("labels") if isinstance(given, dict) else None
    return dict(labels) if isinstance(labels, dict) else {}


def _alert_name(run: WorkflowRun, alert: Alert | None, labels: Mapping[str, Any]) -> str:
    if alert is not None and alert.alert_name:
        return alert.alert_name
    return str(labels.get("alertname") or run.workflow_name)


def _severity(alert: Alert | None, labels: Mapping[str, Any]) -> str | None:
    return _short((alert.severity if alert is not None else None) or labels.get("severity"), 20)


def _same(text: str | None) -> str | None:
    """A root cause as compared: case and spacing do not matter."""
    return " ".join(text.split()).casefold() if text and text.strip() else None


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _short(value: Any, limit: int) -> str | None:
    return str(value)[:limit] if value not in (None, "") else None


def _confidence(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return max(0.0, min(1.0, float(value)))


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _parsed_time(value: str) -> datetime | None:
    """An ISO time as stored in `ai_summary.finished` (UTC when it has no zone), or None."""
    try:
        return _aware(datetime.fromisoformat(value))
    except ValueError:
        return None
