"""The investigation a finished local run holds, as data and as text for a terminal.

A remediation step's fix is reported as it ended (`remediations`: `fixes.FixOutcome` as JSON,
the rollback task's result when it ran, with who approved it from the step's gate)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from punchingfist.api.runspec import RunParameters
from punchingfist.compiler.naming import approval_task
from punchingfist.engine import NodeStatus, RunResult
from punchingfist.runtime.agent.decisions import proposed_fix
from punchingfist.runtime.sinks.findings import past_incident, seen_before_text
from punchingfist.runtime.sinks.fixes import FixOutcome, fix_outcome

STEP_LABEL = "punchingfist.io/step"
TASK_LABEL = "punchingfist.io/task"


def investigation(result: RunResult, *, model: str = "", replayed: bool = False) -> dict[str, Any]:
    """Steps (their results), approvals and sink deliveries of `result`, in run order."""
    steps: list[dict[str, Any]] = []
    approvals: list[dict[str, Any]] = []
    sinks: list[dict[str, Any]] = []
    ordered = sorted(result.nodes.values(), key=lambda n: (n.started_at is None, n.started_at))
    for node in ordered:
        task = node.labels.get(TASK_LABEL, "")
        if node.type == "Suspend":
            approvals.append(_approval(node))
        elif task.startswith("sink-"):
            sinks.append(_delivery(node, task.removeprefix("sink-")))
        elif task and task == node.labels.get(STEP_LABEL):
            steps.append(_step(node))
        elif node.type == "Skipped" and node.labels.get(STEP_LABEL) == node.display_name:
            steps.append(
                {
                    "step": node.display_name,
                    "phase": "Skipped",
                    "kind": None,
                    "result": None,
                    "error": node.message or None,
                }
            )
    answers = [s["result"] for s in steps if s.get("kind") == "agent" and s["phase"] == "Succeeded"]
    relied_on = next((a.get("relied_on") for a in reversed(answers) if isinstance(a, dict)), None)
    similar = RunParameters.of(result.info.parameters).event.get("similar_incidents")
    seen = past_incident(similar, relied_on)
    return {
        "run": result.name,
        "workflow": result.info.workflow,
        "phase": result.phase,
        "message": result.message,
        "model": model,
        "replayed": replayed,
        "workdir": str(result.info.workdir),
        "steps": steps,
        "approvals": approvals,
        "sinks": sinks,
        "seen_before": seen_before_text(seen) if seen else None,
        "remediations": [fix.as_dict() for fix in _fixes(ordered, approvals)],
    }


def _fixes(nodes: Sequence[NodeStatus], approvals: list[dict[str, Any]]) -> list[FixOutcome]:
    """Each remediation step's fix as it ended: its rollback task's result, else its fix
    task's (`nodes` in run order), with the approver of its gate."""
    approvers = {g["gate"]: g["approver"] for g in approvals if g["approved"]}
    found: dict[str, FixOutcome] = {}
    for node in nodes:
        fix = fix_outcome(_data(node))
        if fix is not None:
            approver = approvers.get(approval_task(fix.step), fix.approver)
            found[fix.step] = replace(fix, approver=approver)
    return list(found.values())


def result_file(node: NodeStatus) -> dict[str, Any] | None:
    if node.workdir is None:
        return None
    try:
        data = json.loads((Path(node.workdir) / "result.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _data(node: NodeStatus) -> dict[str, Any]:
    """The task's result: its `result` output, else its result.json; {} without one."""
    data: Any = None
    raw = node.outputs.get("result")
    if raw:
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
    data = data if isinstance(data, dict) else None
    return data or result_file(node) or {}


def _step(node: NodeStatus) -> dict[str, Any]:
    data = _data(node)
    return {
        "step": node.display_name,
        "phase": node.phase,
        "kind": data.get("kind"),
        "result": data.get("result"),
        "error": data.get("error") or (node.message if node.phase != "Succeeded" else None),
        "tool_calls": data.get("tool_calls") or [],
        "usage": data.get("usage"),
        "replayed": bool(data.get("replayed")),
    }


def _approval(node: NodeStatus) -> dict[str, Any]:
    return {
        "gate": node.display_name,
        "approved": node.outputs.get("approved") == "true",
        "approver": node.outputs.get("approver") or None,
        "comment": node.outputs.get("comment") or None,
        "message": node.message,
    }


def _delivery(node: NodeStatus, sink: str) -> dict[str, Any]:
    data = result_file(node)
    if data is None:  # the task never wrote a record (e.g. a secret it needs is missing)
        return {"sink": sink, "type": None, "outcome": "failed", "error": node.message}
    return {
        "sink": sink,
        "type": data.get("type"),
        "outcome": data.get("outcome") or ("delivered" if data.get("success") else "failed"),
        "http_status": data.get("http_status"),
        "link": data.get("link"),
        "external_id": data.get("external_id"),
        "error": data.get("error"),
        "detail": data.get("detail") or None,
    }


_PHASE_MARKS = {"Succeeded": "✅", "Failed": "❌", "Error": "💥", "Skipped": "⏭️", "Omitted": "⏭️"}
_OUTCOME_MARKS = {"delivered": "📬", "skipped": "⏭️", "failed": "❌"}


def render(report: Mapping[str, Any]) -> str:
    lines = [f"👊 investigation {report['run']} ({report['workflow']}): {report['phase']}"]
    if report.get("model"):
        lines.append(f"   model: {report['model']}")
    if report.get("replayed"):
        lines.append("   ⚠️  replayed model: recorded turns, not a live model's investigation")
    fixes = {
        fix.step: fix
        for fix in map(FixOutcome.from_dict, report.get("remediations") or [])
        if fix is not None
    }
    for step in report["steps"]:
        mark = _PHASE_MARKS.get(step["phase"], "•")
        lines.append(f"{mark} step {step['step']} ({step.get('kind') or '-'}): {step['phase']}")
        answer = step.get("result")
        if step["step"] in fixes:
            lines.append(f"     🔧 fix: {fixes[step['step']].text()}")
        elif step.get("kind") == "agent" and isinstance(answer, dict):
            lines += _answer(answer, replayed=step.get("replayed", False))
            for call in step.get("tool_calls") or []:
                lines.append(f"     🔧 {_call(call)}")
        elif answer not in (None, "", {}):
            text = answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)
            lines += [f"     {line}" for line in text.strip().splitlines()[:8]]
        if step.get("error") and step["phase"] != "Succeeded" and step["step"] not in fixes:
            lines.append(f"     error: {step['error']}")
    if report.get("seen_before"):
        lines.append(f"📚 seen before: {report['seen_before']}")
    for gate in report["approvals"]:
        verdict = "approved" if gate["approved"] else "denied"
        who = f" by {gate['approver']}" if gate.get("approver") else ""
        comment = f" ({gate['comment']})" if gate.get("comment") else ""
        lines.append(f"⏸ gate {gate['gate']}: {verdict}{who}{comment}")
    for sink in report["sinks"]:
        mark = _OUTCOME_MARKS.get(sink["outcome"], "•")
        where = f" {sink['link']}" if sink.get("link") else ""
        why = f": {sink['detail']}" if sink["outcome"] == "skipped" and sink.get("detail") else ""
        lines.append(
            f"{mark} sink {sink['sink']} ({sink.get('type') or '-'}): {sink['outcome']}{why}{where}"
        )
        if sink.get("error"):
            lines.append(f"     {sink['error']}")
    lines.append(f"   files: {report['workdir']}")
    return "\n".join(lines)


def _answer(answer: Mapping[str, Any], *, replayed: bool) -> list[str]:
    tag = " [replayed model]" if replayed else ""
    lines = [f"     summary{tag}: {answer.get('summary', '')}"]
    if answer.get("partial") is True:
        lines.append(f"     ⚠️  partial answer: {answer.get('partial_reason') or 'budget spent'}")
    for key, label in (("root_cause", "root cause"), ("problem_summary", "problem")):
        if answer.get(key):
            lines.append(f"     {label}: {answer[key]}")
    confidence = answer.get("confidence")
    if isinstance(confidence, (int, float)):
        fix = f" | fix: {shown}" if (shown := proposed_fix(answer)) else ""
        lines.append(
            f"     confidence: {confidence:.2f} | can auto-fix: {answer.get('can_auto_fix')}{fix}"
        )
    for item in answer.get("recommendations") or []:
        lines.append(f"     → {item}")
    if answer.get("runbook"):
        lines.append(f"     runbook followed: {answer['runbook']}")
    return lines


def _call(call: Mapping[str, Any]) -> str:
    inner = call.get("call") or {}
    tool = inner.get("tool") or call.get("tool") or "?"
    argv = call.get("argv") or []
    if argv and argv[0] == tool:  # kubectl's argv names the tool itself
        return _called(" ".join(argv), call)
    shown = " ".join(argv) or inner.get("query") or inner.get("url") or ""
    return _called(f"{tool} {shown}", call)


def _called(shown: str, call: Mapping[str, Any]) -> str:
    error = f": {call['error']}" if call.get("error") else ""
    return f"{shown} -> {call.get('status', '?')}{error}"[:300]
