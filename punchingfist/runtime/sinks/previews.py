"""The preview of a fix as every approval surface shows it (#25): Slack, `punchingfist
approve`, the REST answer and the web page read the same `Preview` and say the same things.

A remediation step's `<step>-preview` task (punchingfist.runtime.remediation) makes the preview:
the typed action, its target, the server-side dry run's diff, what RBAC says and the object's
resourceVersion. Its result (`result.preview`) reaches the approval request as
PF_RESULT_<STEP>_PREVIEW and the server through the run's recorded results. A preview that is
not offered has nothing to approve: it says why, and no surface offers to approve it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from punchingfist.api.actions import Preview
from punchingfist.api.runspec import result_env

DIFF_LINES = 60
"""How many lines of the diff a chat message or a terminal shows before it is cut."""


def preview_step(step: str) -> str:
    """The preview task of remediation step `step` (the compiler's naming.preview_task)."""
    return f"{step}-preview"


def parse_preview(result: Any) -> Preview | None:
    """The preview in a preview task's result (the StepResult, its `result`, or the preview
    itself); None when there is none or it is not one."""
    if not isinstance(result, Mapping):
        return None
    for candidate in (result.get("result"), result):
        if isinstance(candidate, Mapping) and isinstance(candidate.get("preview"), Mapping):
            result = candidate["preview"]
            break
    try:
        return Preview.model_validate(result)
    except ValidationError:
        return None


def preview_from_env(step: str, environ: Mapping[str, str]) -> Preview | None:
    """The preview of gated step `step`, from its preview task's PF_RESULT_<STEP>_PREVIEW."""
    raw = environ.get(result_env(preview_step(step)))
    if not raw or raw.startswith("{{"):
        return None
    try:
        return parse_preview(json.loads(raw))
    except ValueError:
        return None


def why_not_offered(preview: Preview) -> str | None:
    """Why there is nothing to approve (the policy, the dry run or RBAC), or None when the
    fix is offered."""
    if preview.offered:
        return None
    if preview.refused:
        return f"the step's policy refuses it: {preview.refused}"
    if preview.dry_run == "rejected":
        return f"the API server rejected the dry run: {preview.dry_run_error or 'no reason given'}"
    if preview.rbac is not None and not preview.rbac.allowed:
        reason = f": {preview.rbac.reason}" if preview.rbac.reason else ""
        return f"RBAC does not allow {preview.rbac.account} to apply it{reason}"
    return "the preview did not offer it (no dry run was made)"


def rbac_line(preview: Preview) -> str:
    rbac = preview.rbac
    if rbac is None:
        return "not checked"
    verdict = "allowed" if rbac.allowed else "DENIED"
    return f"{verdict} for {rbac.account}" + (f" ({rbac.reason})" if rbac.reason else "")


def cut_diff(diff: str, lines: int = DIFF_LINES, chars: int | None = None) -> str:
    """The diff's first `lines` lines (and at most `chars` characters, cut at a line), with a
    visible marker saying how much was left out."""
    kept = diff.splitlines()
    shown: list[str] = []
    size = 0
    for line in kept[:lines]:
        if chars is not None and size + len(line) + 1 > chars:
            break
        shown.append(line)
        size += len(line) + 1
    left = len(kept) - len(shown)
    if left:
        shown.append(f"… diff cut: {left} more line{'s' if left != 1 else ''} not shown")
    return "\n".join(shown)


def gate_text(run: str, gate: str, preview: Preview) -> str:
    """A gate's whole preview under its heading, for a terminal (`punchingfist approve`, the
    prompt of `punchingfist run`)."""
    return f"{run} / {gate}: the fix to approve\n{preview_text(preview, lines=None)}"


def preview_text(preview: Preview, lines: int | None = DIFF_LINES) -> str:
    """The preview for a terminal or a page: what changes, where, the checks, then the diff
    (cut to `lines` lines; None: whole)."""
    out = [
        f"Fix:              {preview.description}",
        f"Command:          {preview.command}",
        f"Target:           {preview.target}",
        f"resourceVersion:  {preview.resource_version or '-'}",
        f"Dry run:          {preview.dry_run}"
        + (f" ({preview.dry_run_error})" if preview.dry_run_error else ""),
        f"RBAC:             {rbac_line(preview)}",
    ]
    why = why_not_offered(preview)
    out.append("Offered:          yes" if why is None else f"NOT OFFERED:      {why}")
    if preview.diff:
        diff = preview.diff if lines is None else cut_diff(preview.diff, lines)
        out += ["Diff:", diff]
    return "\n".join(out)


def rollback_text(result: Any) -> str | None:
    """What the rollback gate of a failed fix (onFailure ask) asks to undo, for a terminal:
    the fix, its target, what the post-check saw and the state it puts back. From the fix
    task's result (the StepResult or its record); None when that fix does not wait for one."""
    if not isinstance(result, Mapping):
        return None
    record = result.get("result") if isinstance(result.get("result"), Mapping) else result
    if not isinstance(record, Mapping) or not record.get("rollback_pending"):
        return None
    shown = parse_preview(record)
    saved: Mapping[str, Any] = record.get("saved") or {}
    if not isinstance(saved, Mapping):
        saved = {}
    before = [f"{saved.get('ready_replicas', '?')} ready replicas"]
    if saved.get("revision"):
        before.insert(0, f"revision {saved['revision']}")
    out = [
        f"Failed fix:       {shown.description if shown else '(unknown)'}",
        f"Target:           {shown.target if shown else '-'}",
        f"Approved by:      {record.get('approver') or '-'}",
        f"Post-check:       {record.get('verdict') or '-'}",
        *(f"  {line}" for line in record.get("check") or [] if isinstance(line, str)),
        f"Rollback:         puts the object back as it was before the fix ({', '.join(before)}),"
        " then checks it the same way",
    ]
    return "\n".join(out)
