"""What the model must answer each turn: one `Decision` (D8), validated with pydantic.

    Decision
      thought: str                       the model's reasoning, printed to the log
      action:  ToolCalls | FinalAnswer   discriminated by `kind`
    ToolCalls.calls: 1..4 independent calls, run concurrently; each is one of the enabled tools:
      KubectlCall   a typed kubectl action (runtime/tools/kubectl_calls.py), never an argv
      PromqlCall, CurlCall, RunbookCall (list, or read one by its listed name)
      a script's call, with the script's declared parameters (runtime/tools/scripts.py)
    FinalAnswer.fix: the proposed fix as one typed action (api/actions.py), never a command:
      `fix_command` is derived from it (for people to read) and `can_auto_fix` needs it

The model class is built per step from the enabled tools, so a disabled tool cannot even be
expressed; on the last turn the action can only be a FinalAnswer.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from punchingfist.api.actions import Action, AnyAction, as_command, describe
from punchingfist.runtime.tools.kubectl_calls import KubectlCall, KubectlReadCall
from punchingfist.runtime.tools.runbook import NAME_PATTERN

MAX_PARALLEL_CALLS = 4


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PromqlCall(_Strict):
    """Query Prometheus. Without range_minutes: an instant query; with it: a range query."""

    tool: Literal["promql"]
    query: str
    range_minutes: int | None = Field(default=None, ge=1, le=10080)
    step_seconds: int | None = Field(default=None, ge=1, le=3600)


class CurlCall(_Strict):
    """HTTP GET or HEAD of a URL on an allowed host."""

    tool: Literal["curl"]
    url: str
    method: Literal["GET", "HEAD"] = "GET"


class RunbookCall(_Strict):
    """List the runbooks written for this alert, or read one of them by its listed name."""

    tool: Literal["runbook"]
    action: Literal["list", "read"]
    name: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        description="read: a runbook's name exactly as `list` gave it.",
    )


class FinalAnswer(_Strict):
    """The investigation's result. Later steps and sinks read these fields."""

    kind: Literal["final_answer"]
    summary: str = Field(description="One or two sentences for the on-call engineer.")
    problem_summary: str = Field(description="What exactly is wrong.")
    root_cause: str = Field(description="Why it happened, as far as the evidence shows.")
    can_auto_fix: bool = Field(
        description="True only if `fix`, one safe action, would fix it (false without a fix)."
    )
    fix: Action | None = Field(
        default=None,
        description="The one typed action that would fix it, if any (a human approves it "
        "after a dry run; you never apply it).",
    )
    fix_command: SkipJsonSchema[str | None] = None
    """The kubectl command a human would type for `fix` (derived from it, for reading; kept for
    workflows and records that read it). Not in the schema: a command the model writes is never
    what a fix runs, and without `fix` it is only text and `can_auto_fix` is false."""
    confidence: float = Field(ge=0, le=1, description="0 to 1: how sure the evidence makes you.")
    escalation_notes: str = Field(description="What a human must know if this is escalated.")
    severity_assessment: Literal["critical", "warning", "info"] | None = Field(
        default=None, description="How severe this really is, whatever the alert's label says."
    )
    recommendations: list[str] = Field(default_factory=list)
    evidence: list[str] = Field(
        default_factory=list, description="Ids of the tool calls (e.g. call-2) supporting this."
    )
    runbook: str | None = Field(
        default=None, description="The name of the runbook you followed (from `runbook`), if any."
    )
    relied_on: str | None = Field(
        default=None,
        max_length=100,
        description="The `id` of the similar past incident this answer relies on, if any.",
    )

    @model_validator(mode="after")
    def _fix_is_an_action(self) -> FinalAnswer:
        if self.fix is None:
            self.can_auto_fix = False
        else:
            self.fix_command = as_command(self.fix)
        return self


_FIX: TypeAdapter[Any] = TypeAdapter(Action)


def proposed_fix(answer: Mapping[str, Any]) -> str | None:
    """How reports and sinks show an answer's fix: the action's description and its command
    (`describe(fix)` then the kubectl line), or the bare `fix_command` of an answer recorded
    before fixes were actions; None without either."""
    fix = answer.get("fix")
    if isinstance(fix, Mapping):
        try:
            action: AnyAction = _FIX.validate_python(fix)
        except ValidationError:
            return None
        return f"{describe(action)} ({as_command(action)})"
    command = answer.get("fix_command")
    return str(command) if command else None


_TOOL_CALLS_KIND: Any = Literal["tool_calls"]
_BUILTIN: dict[str, type[BaseModel]] = {
    "kubectl": KubectlReadCall,
    "promql": PromqlCall,
    "curl": CurlCall,
    "runbook": RunbookCall,
}


@lru_cache(maxsize=64)
def decision_model(
    tools: tuple[str, ...],
    scripts: tuple[type[BaseModel], ...],
    final_only: bool,
    writes: bool = False,
) -> Any:
    """The Decision class for a step with these built-in tools and script call classes
    (cached: steps reuse it every turn). kubectl's write verbs exist only with `writes` (a step
    behind an approved gate): elsewhere a write cannot even be expressed."""
    if final_only or not (tools or scripts):
        action: Any = FinalAnswer
    else:
        builtin = _BUILTIN | ({"kubectl": KubectlCall} if writes else {})
        call_types: list[Any] = [builtin[name] for name in tools]
        call_types += scripts
        call: Any = (
            call_types[0]
            if len(call_types) == 1
            else Annotated[Union[tuple(call_types)], Field(discriminator="tool")]  # noqa: UP007
        )
        tool_calls = create_model(
            "ToolCalls",
            __base__=_Strict,
            __doc__=f"Call up to {MAX_PARALLEL_CALLS} tools; independent calls run at once.",
            kind=(_TOOL_CALLS_KIND, ...),
            calls=(list[call], Field(min_length=1, max_length=MAX_PARALLEL_CALLS)),
        )
        action = Annotated[Union[tool_calls, FinalAnswer], Field(discriminator="kind")]  # noqa: UP007
    return create_model(
        "Decision",
        __base__=_Strict,
        __doc__="Your next move: think, then call tools or give the final answer.",
        thought=(str, Field(description="Your reasoning for this move, briefly.")),
        action=(action, ...),
    )
