"""What a remediation step did, as every report says it (#25): Slack, Jira, PagerDuty, the
webhook, the terminal report, the incident's record and its web page read the same `FixOutcome`.

A remediation step's fix task (`pf-runtime remediation`, punchingfist.runtime.remediation) and,
with `onFailure: ask`, its rollback task write the step's result (kind `remediation`): the
preview it applied (`preview.description`: the action in words, `api.actions.describe`), whether
it was `applied`, the final `outcome` (`fixed`, `not fixed`, `made worse, rolled back`,
`previewed (dry run)`, `not applied`, `conflict`, ...), `rolled_back`, `rollback_verified` and
`rollback_error`, and who approved the fix (`approver`, the gate's answer the task was given);
the recorder and the terminal report take the approver from the step's gate when they have it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

REMEDIATION_KIND = "remediation"
DRY_RUN = "previewed (dry run)"
"""How a fix task's outcome starts when the Workflow is a dry run (`spec.dryRun`)."""
NO_FIX = "no fix"
DETAIL_TEXT = 500
"""How many characters of a reason (why not applied, why the rollback failed) a line shows."""


@dataclass(frozen=True)
class FixOutcome:
    """One remediation step's fix as it ended."""

    step: str
    outcome: str
    action: str | None = None
    """The action in words (`set container app of deployment shop/web to limits memory=1Gi`)."""
    target: Mapping[str, Any] | None = None
    """`{kind, namespace, name}` of the object the action changes."""
    applied: bool = False
    rolled_back: bool | None = None
    rollback_verified: bool | None = None
    detail: str | None = None
    """Why it was not applied, or why the rollback failed."""
    approver: str | None = None
    """Who approved the fix: the gate's answer, as the fix task recorded it or the step's gate
    says."""

    @property
    def dry_run(self) -> bool:
        return self.outcome.startswith(DRY_RUN)

    def text(self) -> str:
        """`set container app of deployment shop/web to limits memory=1Gi — made worse, rolled
        back (verified)`: the fix and how it ended, as one line of plain text."""
        if self.outcome == NO_FIX:
            return "no fix was proposed: nothing applied"
        outcome = self.outcome
        if self.rolled_back and self.rollback_verified:
            outcome += " (verified)"
        if self.dry_run:
            outcome += "; nothing applied"
        if self.detail:
            outcome += f": {_short(self.detail)}"
        if self.approver:
            outcome += f" (approved by {_short(self.approver)})"
        return f"{_short(self.action or 'a fix')} — {outcome}"

    def as_dict(self) -> dict[str, Any]:
        """As JSON (webhook and PagerDuty details, the incident's `remediations`)."""
        values = asdict(self)
        values["target"] = dict(self.target) if self.target else None
        values["dry_run"] = self.dry_run
        return values

    @classmethod
    def from_dict(cls, stored: Any) -> FixOutcome | None:
        """An outcome as `as_dict` wrote it (with other keys beside it); None if it is not one."""
        if not isinstance(stored, Mapping):
            return None
        if not isinstance(stored.get("step"), str) or not isinstance(stored.get("outcome"), str):
            return None
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in stored.items() if k in known})


def fix_outcome(result: Any, approver: str | None = None) -> FixOutcome | None:
    """The outcome in a remediation fix (or rollback) task's StepResult; None for any other
    result, and for a fix task that has not reported an outcome."""
    if not isinstance(result, Mapping) or result.get("kind") != REMEDIATION_KIND:
        return None
    record = result.get("result")
    if not isinstance(record, Mapping) or not isinstance(record.get("outcome"), str):
        return None
    preview = _object(record.get("preview"))
    target = _object(preview.get("action")).get("target")
    outcome = record["outcome"]
    error = result.get("error")
    detail = record.get("rollback_error") or (
        error if isinstance(error, str) and error and error != outcome else None
    )
    return FixOutcome(
        step=str(result.get("step") or ""),
        outcome=outcome,
        action=str(preview["description"]) if preview.get("description") else None,
        target=_target(target),
        applied=record.get("applied") is True,
        rolled_back=_flag(record.get("rolled_back")),
        rollback_verified=_flag(record.get("rollback_verified")),
        detail=str(detail) if detail else None,
        approver=approver or _approver(record.get("approver")),
    )


def _approver(recorded: Any) -> str | None:
    """Who approved the fix, as its task recorded it (the gate's PF_APPROVER)."""
    return recorded if isinstance(recorded, str) and recorded else None


def fix_outcomes(steps: Mapping[str, Any]) -> list[FixOutcome]:
    """The fixes among a run's step results (`.steps`), in step order."""
    found = (fix_outcome(result) for result in steps.values())
    return [fix for fix in found if fix is not None]


def _object(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _target(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, Mapping) or not value.get("kind") or not value.get("name"):
        return None
    return {key: value.get(key) for key in ("kind", "namespace", "name")}


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= DETAIL_TEXT else text[: DETAIL_TEXT - 1] + "…"
