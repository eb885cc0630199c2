"""The contract between a compiled manifest and `pf-runtime` (what one task container receives).

The compiler writes a `TaskSpec` as base64-encoded JSON into the `PF_SPEC` environment variable
of every container it emits (D2: user template text never appears in Argo's own fields, and
base64 contains no ``{{``). Everything else a task needs arrives as environment variables:

    PF_SPEC               base64(JSON TaskSpec)             what to run
    PF_EVENT              {{workflow.parameters.event}}     the event (alert) as JSON
    PF_SOURCE             {{workflow.parameters.source}}    the Source that started the run
    PF_FINGERPRINT        {{workflow.parameters.fingerprint}}
    PF_RUN_NAME           {{workflow.name}}                 the Argo Workflow (run) name
    PF_RUN_UID            {{workflow.uid}}
    PF_NAMESPACE          {{workflow.namespace}}
    PF_RESULT_<STEP>      earlier step results (JSON), one variable per step the task reads
                          (and, in an agent step under a run budget, per earlier agent step);
                          <STEP> is the step name upper-cased with '-' as '_'
    PF_APPROVED, PF_APPROVER, PF_APPROVAL_COMMENT
                          the gate's answer, in a step behind an approval gate
    PF_WORKFLOW_STATUS, PF_WORKFLOW_FAILURES, PF_WORKFLOW_DURATION
                          in exit-handler tasks: {{workflow.status}}, {{workflow.failures}}, ...
    <runtime.environment> plain variables of the Workflow (readable as `.env.NAME`)
    PF_OUTPUTS            in sink tasks: the workflow outputs (JSON object)
    LLM_API_KEY, PROMETHEUS_TOKEN, SLACK_BOT_TOKEN, ...
                          secrets, from secretKeyRef only; never readable from templates

A task writes its result to files under `RESULT_DIR`, which Argo collects as output parameters:

    result.json   every step and sink: a JSON object (see `StepResult`); a sink's adds its
                  delivery record (`outcome`, `http_status`, `external_id`, `link`, `attempts`)
    condition     a condition task: `true` or `false`
    outputs.json  the outputs task: the workflow outputs as one JSON object

Later steps read `.steps.<name>` as the parsed result.json of that step.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from punchingfist.api.actions import ActionPolicy
from punchingfist.api.workflows import RemediationCheck, ToolParameter

SPEC_VERSION = 1
RESULT_DIR = "/tmp/punchingfist"
RESULT_FILE = f"{RESULT_DIR}/result.json"
CONDITION_FILE = f"{RESULT_DIR}/condition"
OUTPUTS_FILE = f"{RESULT_DIR}/outputs.json"
OFFERED_FILE = f"{RESULT_DIR}/offered"
"""A remediation preview task: `true` when the fix is offered for approval."""
ROLLBACK_FILE = f"{RESULT_DIR}/rollback"
"""A remediation task with onFailure ask: `true` when its failed fix waits for a rollback
approval."""
PREVIEW_FILE = f"{RESULT_DIR}/preview.json"
"""A remediation preview task: the `Preview` an approver sees (punchingfist.api.actions)."""
SPEC_ENV = "PF_SPEC"
RESULT_ENV_PREFIX = "PF_RESULT_"

TaskKind = Literal[
    "cli",
    "agent",
    "condition",
    "approval-request",
    "outputs",
    "sink",
    "remediation-preview",
    "remediation",
    "remediation-rollback",
]


def result_env(step: str) -> str:
    """The environment variable that carries step `step`'s result into later tasks."""
    return RESULT_ENV_PREFIX + step.upper().replace("-", "_")


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolSpec(_Contract):
    name: str
    description: str | None = None
    endpoint: str | None = None
    """Template (rendered by the runtime)."""
    command: list[str] | None = None
    """argv of a declared script."""
    allowed_domains: list[str] | None = None
    parameters: list[ToolParameter] = Field(default_factory=list)
    """A declared script's arguments: the model's values are checked against them."""
    env: list[str] = Field(default_factory=list)
    """Environment variables a declared script sees besides the basics (PATH, HOME, ...)."""


class LLMSettings(_Contract):
    """Resolved model settings. Never holds a key: that arrives as LLM_API_KEY."""

    provider: str
    type: str
    endpoint: str | None = None
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    mode: str | None = None
    """instructor mode: `tools` or `json_schema` (default: chosen by provider)."""
    prices: dict[str, tuple[float, float]] | None = None
    """OperatorConfig `spec.llm.prices`: model name or glob -> (input, output) USD per million
    tokens, over the built-in table (`punchingfist.api.pricing`)."""


class RunbookGit(_Contract):
    """A git repository of runbooks (OperatorConfig `spec.runbooks.git`)."""

    url: str
    """https:// (or file:// in tests: the OperatorConfig refuses it)."""
    ref: str = "main"
    """Branch, tag or commit."""
    path: str = ""
    """Directory of the repository holding the runbooks ('' = all of it)."""
    credentials_env: str | None = None
    """Environment variable holding the token (`user:token` or a token), if any."""


class RunbookConfigMaps(_Contract):
    """ConfigMaps whose `.md` keys are runbooks (OperatorConfig `spec.runbooks.configMaps`)."""

    namespace: str | None = None
    """Default: the run's namespace (PF_NAMESPACE)."""
    names: list[str] = Field(default_factory=list)
    selector: dict[str, str] = Field(default_factory=dict)


class RunbooksTask(_Contract):
    """Where an agent step's `runbook` tool finds runbooks."""

    git: RunbookGit | None = None
    config_maps: RunbookConfigMaps | None = None


class AgentTask(_Contract):
    goal: str
    tools: list[ToolSpec]
    context: str | dict[str, Any] | None = None
    max_iterations: int
    llm: LLMSettings
    token_budget: int | None = None
    cost_budget_usd: float | None = None
    """Most USD the step may spend on its model; then it answers with what it has (partial)."""
    run_budget_usd: float | None = None
    """Most USD the whole run may spend on models: the step may spend what the agent steps of
    `run_budget_steps` left of it; with nothing left it answers at once, partial."""
    run_budget_steps: list[str] | None = None
    """The run's earlier agent steps, whose results (`usage.cost_usd`) count against
    `run_budget_usd`. Their results arrive as PF_RESULT_<STEP> but are not in the context (the
    model and templates see only `TaskSpec.inputs`)."""
    require_approval: list[str] = Field(default_factory=list)
    allowed_namespaces: list[str] | None = None
    runbooks: RunbooksTask | None = None
    """Sources of the `runbook` tool (OperatorConfig `spec.runbooks`), when it is enabled."""


class CliTask(_Contract):
    command: str


class ApprovalTask(_Contract):
    gate: str
    """Name of the suspend task (the node to resume) in the same run."""
    timeout_seconds: int
    approvers: list[str] = Field(default_factory=list)
    summary: str
    """What will run once approved (the action's goal or command, unrendered)."""
    channel: str | None = None
    """Slack channel of the request (OperatorConfig `spec.chat.slack.channelId`)."""


class RemediationTask(_Contract):
    """A remediation step's fix: its preview task (`remediation-preview`) and the task that
    applies it once approved (`remediation`) get the same one."""

    fix_from: str | None = None
    """The agent step whose `result.fix` is the action (it arrives as PF_RESULT_<STEP>)."""
    action: dict[str, Any] | None = None
    """The declared action; string values are templates, rendered by the runtime."""
    policy: ActionPolicy
    """The step's policy, its namespaces defaulted by the compiler."""
    check: RemediationCheck
    on_failure: Literal["rollback", "ask", "leave"] = "rollback"
    dry_run: bool = False
    """The Workflow's `spec.dryRun`: preview only, never apply."""
    account: str
    """The ServiceAccount that applies the fix (RBAC is previewed for it)."""
    preview: str
    """The preview task, whose result (PF_RESULT_<PREVIEW>) the applying task re-reads."""


class OutputSpec(_Contract):
    name: str
    value: str


class SinkTask(_Contract):
    name: str
    type: str
    config: dict[str, Any]
    """The Sink's config without secrets (those arrive as environment variables)."""
    condition: str | None = None
    secret_env: str | None = None
    """Environment variable holding the sink's credential, when it has one."""


class TaskSpec(_Contract):
    """What one task container runs."""

    version: int = SPEC_VERSION
    kind: TaskKind
    workflow: str
    """The punchingfist Workflow this task belongs to."""
    step: str | None = None
    """The step this task belongs to (not set for outputs and sinks)."""
    inputs: list[str] = Field(default_factory=list)
    """Steps whose results arrive as PF_RESULT_<STEP>."""
    environment: list[str] = Field(default_factory=list)
    """Names of the plain variables templates may read as `.env.NAME`."""
    timeout_seconds: int | None = None
    gated: bool = False
    """The task runs behind an approval gate: write tools are allowed once approved."""
    cli: CliTask | None = None
    agent: AgentTask | None = None
    condition: str | None = None
    approval: ApprovalTask | None = None
    outputs: list[OutputSpec] = Field(default_factory=list)
    """For the outputs task: the declared workflow outputs."""
    steps: list[str] = Field(default_factory=list)
    """For outputs and sinks: every step of the workflow, in order."""
    sink: SinkTask | None = None
    remediation: RemediationTask | None = None

    def encode(self) -> str:
        """The value of PF_SPEC: base64 of compact, key-sorted JSON (deterministic)."""
        text = json.dumps(
            self.model_dump(mode="json", exclude_none=True),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return base64.b64encode(text.encode()).decode()

    @classmethod
    def decode(cls, value: str) -> TaskSpec:
        """Parse a PF_SPEC value."""
        return cls.model_validate_json(base64.b64decode(value.encode(), validate=True))


@dataclass(frozen=True)
class RunParameters:
    """The parameters of every run of a compiled template (`compiler.naming.PARAMETERS`): the
    event (the alert, the trigger's body, the changed object), the Source that started it and
    the alert's fingerprint. Stored with the run as they are; passed to Argo and the local
    engine as text (`arguments`)."""

    event: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    fingerprint: str = ""

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> RunParameters:
        """From a run's stored parameters or a Workflow's arguments (the event as JSON text or
        as a mapping; an event that is not a JSON object is an empty one)."""
        event = values.get("event")
        if isinstance(event, str):
            try:
                event = json.loads(event)
            except ValueError:
                event = None
        return cls(
            event=dict(event) if isinstance(event, Mapping) else {},
            source=str(values.get("source") or ""),
            fingerprint=str(values.get("fingerprint") or ""),
        )

    def stored(self) -> dict[str, Any]:
        """As the run's row keeps them (`workflow_runs.parameters`)."""
        return {"event": self.event, "source": self.source, "fingerprint": self.fingerprint}

    def arguments(self) -> dict[str, str]:
        """As the compiled template takes them: every value text, the event JSON."""
        return {
            "event": json.dumps(self.event, ensure_ascii=False),
            "source": self.source,
            "fingerprint": self.fingerprint,
        }


class Usage(_Contract):
    """An agent step's model use."""

    model_config = ConfigDict(extra="allow", frozen=True)

    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    cost_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)


class StepResult(_Contract):
    """What a task writes to result.json; later steps see it as `.steps.<name>`. The
    control plane reads every step's and sink's result as this (`punchingfist.runs.recording`);
    sinks add their delivery record (`outcome`, `type`, `sink`, ...) as extra fields."""

    model_config = ConfigDict(extra="allow", frozen=True)

    step: str
    kind: str
    success: bool
    """True when the step did its job (command exited 0, agent answered)."""
    phase: Literal["Succeeded", "Failed", "Error", "Skipped", "Omitted", "NotRun"] = "Succeeded"
    result: Any = None
    """cli: parsed JSON stdout, else the stdout text; agent: the structured final answer."""
    error: str | None = None
    seconds: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    usage: Usage | None = None
    tool_calls: list[dict[str, Any]] | None = None
    """agent: every tool call, with the argv that ran."""
    replayed: bool = False
    """agent: the answer came from recorded turns, not a live model."""
    partial: bool = False
    """agent: the step's LLM budget was spent and the answer is what the agent had by then
    (`result.partial_reason` says how far it got)."""


def not_run_result(step: str) -> str:
    """The default of a step's result parameter, used when the step never ran (skipped)."""
    return json.dumps(
        {"step": step, "kind": "none", "success": False, "phase": "NotRun", "result": None},
        sort_keys=True,
        separators=(",", ":"),
    )
