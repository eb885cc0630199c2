"""The run's LLM budget: what the run's earlier agent steps spent, what is left for this step,
and the answer of a step that starts with nothing left.

The compiler wires the results of the run's earlier agent steps into the step
(`AgentTask.run_budget_steps`, as PF_RESULT_<STEP>, on Argo and the local engine alike); what
they cost (`usage.cost_usd`) is added up here. A step that did not run (skipped, or no result)
spent nothing as far as the run knows; a model without a price spent an unknown amount, counted
as nothing (its own step log says its budget cannot be enforced).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from punchingfist.api.runspec import AgentTask, Usage, result_env
from punchingfist.runtime.agent.decisions import FinalAnswer
from punchingfist.runtime.context import step_result

_CARRIED = (
    "summary",
    "problem_summary",
    "root_cause",
    "confidence",
    "severity_assessment",
    "recommendations",
)
"""What a step that could not call its model repeats of the latest earlier answer (never its fix
or its evidence: those were another step's)."""


@dataclass(frozen=True)
class RunBudget:
    """The run's budget (USD) and what the agent steps before this one spent of it."""

    usd: float
    earlier_usd: float = 0.0
    spent_by: tuple[str, ...] = ()
    """The earlier agent steps that spent something."""
    last_answer: Mapping[str, Any] | None = None
    """The answer of the latest earlier agent step that answered."""

    @classmethod
    def read(cls, agent: AgentTask, environ: Mapping[str, str]) -> RunBudget | None:
        """The run budget of the step from its spec and its earlier steps' results; None
        without one."""
        if agent.run_budget_usd is None:
            return None
        spent: dict[str, float] = {}
        last: Mapping[str, Any] | None = None
        for name in agent.run_budget_steps or []:
            result = step_result(name, environ.get(result_env(name)))
            cost = _cost(result.get("usage"))
            if cost > 0:
                spent[name] = cost
            answer = result.get("result")
            if result.get("success") is True and isinstance(answer, Mapping):
                last = answer
        return cls(agent.run_budget_usd, sum(spent.values()), tuple(spent), last)

    def left(self) -> float:
        """What this step may still spend of the run budget."""
        return max(0.0, self.usd - self.earlier_usd)

    def over(self, spent: float, estimate: float) -> str | None:
        """The budget, as the model is told, when what this step has `spent` and its next turn
        (`estimate`) would pass what is left; None while it fits."""
        if self.earlier_usd + spent + estimate <= self.usd:
            return None
        return (
            f"the run's LLM budget (${self.earlier_usd + spent:.4f} of ${self.usd:g} spent, "
            f"${self.earlier_usd:.4f} by earlier steps)"
        )

    def spent_before(self) -> str | None:
        """Why this step may not call its model at all (the earlier steps spent the budget);
        None while something is left."""
        if self.left() > 0:
            return None
        return (
            f"the run's LLM budget (${self.earlier_usd:.4f} of ${self.usd:g} spent by earlier "
            f"steps: {', '.join(self.spent_by)}) was spent before this step started; its model "
            "was not called"
        )

    def answer(self) -> FinalAnswer:
        """The answer of a step that may not call its model: the latest earlier answer's
        findings when there is one (without its fix), saying that this step did nothing."""
        note = "This step did not call its model: the run's LLM budget was spent before it."
        blank = {
            "kind": "final_answer",
            "summary": "Not investigated: the run's LLM budget was spent before this step.",
            "problem_summary": "Not investigated.",
            "root_cause": "Unknown: not investigated.",
            "can_auto_fix": False,
            "confidence": 0.0,
            "escalation_notes": note,
        }
        last = self.last_answer or {}
        carried = {key: last[key] for key in _CARRIED if key in last}
        if carried:
            earlier = str(last.get("escalation_notes") or "").strip()
            notes = f"{note} The findings are an earlier step's." + (
                f" {earlier}" if earlier else ""
            )
            with contextlib.suppress(ValidationError):  # carried values that no longer fit
                return FinalAnswer.model_validate(blank | carried | {"escalation_notes": notes})
        return FinalAnswer.model_validate(blank)


def _cost(usage: Any) -> float:
    """A step result's `usage.cost_usd`; 0 when absent, unknown or not a cost."""
    if not isinstance(usage, Mapping):
        return 0.0
    try:
        return Usage.model_validate(usage).cost_usd or 0.0
    except ValidationError:
        return 0.0
