"""The `Workflow` custom resource: the declared investigation (steps, outputs, sinks)."""

from __future__ import annotations

import itertools
import re
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
    model_validator,
)

from punchingfist.api.actions import Action, ActionPolicy
from punchingfist.api.base import (
    DNSLabel,
    Duration,
    ObjectName,
    SecretKeyRef,
    SpecModel,
    TemplateString,
)

DEFAULT_IMAGE = "punchingfist/runtime:v0.1.0"
"""The runtime image of a Workflow that names none, unless the operator says otherwise
(`--runtime-image`; the chart passes the image the operator itself runs)."""
INVESTIGATOR_ACCOUNT = "punchingfist-investigator"
"""ServiceAccount of steps that name none (the chart's read-only account)."""
REMEDIATOR_ACCOUNT = "punchingfist-remediator"
"""ServiceAccount of steps behind an approval gate that name none (the chart's writer)."""
BUILTIN_TOOLS = ("kubectl", "promql", "curl")
KubectlRead = Literal[
    "get", "describe", "logs", "events", "top", "rollout-history", "rollout-status"
]
"""The kubectl tool's read actions (D12): any step may call them."""
KubectlWrite = Literal["rollout-restart", "rollout-undo", "scale", "delete", "set-resources"]
"""The kubectl tool's write actions: only in a step behind an approved approval gate."""
KUBECTL_READS: tuple[str, ...] = get_args(KubectlRead)
KUBECTL_WRITES: tuple[str, ...] = get_args(KubectlWrite)
KUBECTL_WORDS = ("rollout", "set", "patch")
"""kubectl's own command words, understood in `safety.requireApproval` too: `rollout` names
every rollout action, `set` and `patch` only writes (which need the gate anyway)."""
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_OUTPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")

# Fields that accept either a bare name or an object with more settings.
_NAME_OR_OBJECT = {"x-punchingfist-name-or-object": True}


def _name_to_object(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


class LLMConfig(SpecModel):
    """Which model an agent step talks to."""

    provider: str = "local"
    """`local` (any OpenAI-compatible endpoint: Ollama, vLLM, llama.cpp), `openai`, `anthropic`
    (alias `claude`), `together`, `ollama`, `openai-compatible`, or the name of a provider in
    OperatorConfig `spec.llm.providers`."""
    endpoint: str | None = None
    """Base URL of an OpenAI-compatible API, e.g. `http://llm-service:8080`."""
    model: str | None = None
    """Model name as the endpoint knows it, e.g. `llama-3.1-70b`."""
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    """Sampling temperature (0-2)."""
    max_tokens: Annotated[int, Field(gt=0)] | None = None
    """Largest completion per model turn."""
    api_key_secret: SecretKeyRef | None = None
    """Secret holding the API key (overrides OperatorConfig `spec.secrets.llmApiKey`)."""
    mode: Literal["tools", "json_schema"] | None = None
    """How answers are structured: `tools` (OpenAI, vLLM, llama-cpp-python) or `json_schema`
    (Ollama, llama.cpp server). Default: chosen from the provider."""


class Runtime(SpecModel):
    """The container every step runs in, and the model agent steps use."""

    image: str | None = None
    """Runtime image (kubectl, promql, curl, pf-runtime). Default: the image the operator runs
    (its `--runtime-image`), else `punchingfist/runtime:v<version>`."""
    llm_config: LLMConfig | None = None
    """Model settings for agent steps (default: OperatorConfig `spec.llm.defaultProvider`)."""
    environment: dict[str, str] = Field(default_factory=dict)
    """Plain environment variables for every step, e.g. PROMETHEUS_URL. Read as `.env.NAME`."""
    service_account: DNSLabel | None = None
    """ServiceAccount of every step's pod. Default: `punchingfist-investigator` (read-only),
    and `punchingfist-remediator` for steps behind an approval gate."""
    resources: Resources | None = None
    """CPU and memory of every step's container (a step's own `resources` add to these)."""

    @field_validator("environment")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
            if name.startswith("PF_"):
                raise ValueError(f"{name!r}: names starting with PF_ are reserved for the runtime")
        return value


class ToolParameter(SpecModel):
    """One argument of a declared script: the model gives a value, the runtime checks it and
    builds the argv (`--flag=value`, or a positional that can never start with `-`)."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
    """How the model names the value, e.g. `pod`."""
    description: str | None = None
    """What the value is, shown to the model."""
    type: Literal["string", "integer", "boolean", "namespace"] = "string"
    """`namespace` is a string the step's `safety.allowedNamespaces` must contain; a `boolean`
    needs a `flag` (given when true)."""
    pattern: str | None = None
    """Strings: a regular expression the whole value must match, e.g. `^[a-z0-9-]+$`."""
    enum: list[str] | None = None
    """Strings: the only values allowed."""
    minimum: int | None = None
    """Integers: the smallest value."""
    maximum: int | None = None
    """Integers: the largest value."""
    required: bool = False
    """Whether every call must give it."""
    flag: Annotated[str, Field(pattern=r"^--[a-z0-9][-a-z0-9]*$")] | None = None
    """Pass the value as `--flag=value` (a boolean: `--flag` when true). Without a flag, values
    are positional, in the declared order, and may not start with `-`."""

    @model_validator(mode="after")
    def _consistent(self) -> ToolParameter:
        if self.name == "tool" or hasattr(BaseModel, self.name):
            raise ValueError(f"parameter name {self.name!r} is reserved; choose another name")
        if self.type == "boolean" and self.flag is None:
            raise ValueError(f"boolean parameter {self.name!r} needs a `flag` (given when true)")
        if self.type not in ("string", "namespace") and (self.pattern or self.enum):
            raise ValueError(f"`pattern` and `enum` are for string parameters ({self.name!r})")
        if self.type != "integer" and (self.minimum is not None or self.maximum is not None):
            raise ValueError(f"`minimum` and `maximum` are for integer parameters ({self.name!r})")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as error:
                raise ValueError(
                    f"pattern of {self.name!r} is not a regular expression: {error}"
                ) from error
        return self


class Tool(SpecModel):
    """A tool an agent may call: a built-in (kubectl, promql, curl) or a declared script."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
    """Built-in tool name or the name of a declared script such as `debug-pod`."""
    description: str | None = None
    """What the tool is for, shown to the model."""
    endpoint: TemplateString | None = None
    """Endpoint the tool talks to (promql: the Prometheus URL)."""
    command: str | list[str] | None = None
    """Script to run for a declared tool: a path or an argv list; never run through a shell."""
    allowed_domains: list[str] | None = None
    """curl only: host names the agent may reach."""
    parameters: list[ToolParameter] = Field(default_factory=list, max_length=20)
    """Declared scripts: the arguments the model may give, checked before the script runs.
    A script without parameters takes no arguments."""
    env: list[str] = Field(default_factory=list, max_length=20)
    """Declared scripts: environment variables the script sees (a `runtime.environment` name
    or a secret's variable such as PROMETHEUS_TOKEN). It sees no others besides PATH, HOME,
    KUBECONFIG, locale, proxy and the in-cluster API address."""

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, value: list[ToolParameter]) -> list[ToolParameter]:
        names = [parameter.name for parameter in value]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"parameter {name!r} is declared twice")
        positional = [p for p in value if p.flag is None]
        for before, after in itertools.pairwise(positional):
            if after.required and not before.required:
                raise ValueError(
                    f"positional parameter {after.name!r} is required but follows the optional "
                    f"{before.name!r}: put required positional parameters first"
                )
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
            if name.startswith("PF_") or name == "LLM_API_KEY":
                raise ValueError(f"{name!r} is the runtime's own and is never given to a tool")
        return value


ToolRef = Annotated[Tool, Field(json_schema_extra=_NAME_OR_OBJECT)]


class RetryPolicy(SpecModel):
    """How often a failed step is tried again."""

    max_attempts: Annotated[int, Field(ge=1, le=10)] = 1
    """Attempts in all, including the first."""
    backoff: Literal["exponential", "fixed"] = "exponential"
    """`exponential` doubles the wait after each attempt; `fixed` keeps it."""
    initial_delay: Duration = "10s"
    """Wait before the second attempt."""
    max_delay: Duration = "5m"
    """Longest wait between attempts."""


ResourceName = Literal["cpu", "memory", "ephemeral-storage"]
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_SCALE = {
    None: 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def quantity(text: str) -> float:
    """A Kubernetes quantity (`100m`, `512Mi`, `2`) as a number."""
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a quantity; write e.g. 100m, 0.5, 512Mi or 2Gi")
    return float(match.group(1)) * _SCALE[match.group(2)]


class Resources(SpecModel):
    """CPU and memory of a step's container, as Kubernetes takes them."""

    requests: dict[ResourceName, str] = Field(default_factory=dict)
    """Reserved for the container, e.g. `{cpu: 100m, memory: 128Mi}`."""
    limits: dict[ResourceName, str] = Field(default_factory=dict)
    """The most it may use, e.g. `{memory: 512Mi}`; past its memory limit a step is
    OOM-killed, and its run record says so."""

    @field_validator("requests", "limits", mode="before")
    @classmethod
    def _quantities(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        given = {k: str(v) if isinstance(v, (int, float)) else v for k, v in value.items()}
        for text in given.values():
            if isinstance(text, str):
                quantity(text)
        return given

    @model_validator(mode="after")
    def _requests_within_limits(self) -> Resources:
        for name, limit in self.limits.items():
            request = self.requests.get(name)
            if request is not None and quantity(request) > quantity(limit):
                raise ValueError(
                    f"requests.{name} {request} is more than limits.{name} {limit}; a request "
                    "may not exceed its limit"
                )
        return self

    def merged(self, override: Resources | None) -> Resources:
        """These resources with `override`'s values in their place."""
        if override is None:
            return self
        return Resources(
            requests={**self.requests, **override.requests},
            limits={**self.limits, **override.limits},
        )


class Safety(SpecModel):
    """Guard rails for what a step's tools may do."""

    require_approval: list[str] = Field(default_factory=list)
    """kubectl tool actions that need an approved gate, e.g. `logs` or `describe`. Writes
    (rollout-restart, rollout-undo, scale, delete, set-resources) always need it; kubectl's
    words `rollout`, `set` and `patch` are understood too."""
    token_budget: Annotated[int, Field(gt=0)] | None = None
    """Most LLM tokens one run of this step may spend."""
    cost_budget_usd: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    """Most USD one run of this step may spend on its model (default: OperatorConfig
    `spec.llm.stepBudgetUsd`). When spent, the agent stops and answers with what it has,
    marked partial."""
    allowed_namespaces: list[DNSLabel] | None = None
    """Namespaces the kubectl tool (and scripts' `namespace` parameters) may touch. Default:
    any the ServiceAccount can; every call names its namespace either way."""

    @field_validator("require_approval")
    @classmethod
    def _known_actions(cls, value: list[str]) -> list[str]:
        known = (*KUBECTL_READS, *KUBECTL_WRITES, *KUBECTL_WORDS)
        for name in value:
            if name not in known:
                raise ValueError(
                    f"{name!r} is not an action of the kubectl tool; use one of {', '.join(known)}"
                )
        return value


class WorkflowSafety(SpecModel):
    """Guard rails of a whole run of the Workflow."""

    cost_budget_usd: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    """Most USD one run of this Workflow may spend on models, shared by its agent steps in
    order (default: OperatorConfig `spec.llm.runBudgetUsd`): each agent step may spend what the
    agent steps before it left (and at most its own budget). A step that starts with nothing
    left answers at once, without calling its model, marked partial."""


class StepPolicy(SpecModel):
    """Retry and safety settings of a step (the design document calls this `rigConfig`)."""

    retry_policy: RetryPolicy | None = None
    safety: Safety | None = None


def _schema_with_rig_config(schema: dict[str, Any]) -> None:
    properties = schema.get("properties", {})
    if "policy" in properties:
        properties["rigConfig"] = {
            **properties["policy"],
            "description": "Another name for `policy` (the design document's name for it).",
        }


class _StepBase(SpecModel):
    model_config = ConfigDict(
        **{**SpecModel.model_config, "json_schema_extra": _schema_with_rig_config}
    )
    name: Annotated[DNSLabel, Field(max_length=40)]
    """Step name, unique in the workflow; later steps read `.steps.<name>.result`."""
    service_account: DNSLabel | None = None
    """ServiceAccount of this step's pod (RBAC is the real boundary). Default:
    `runtime.serviceAccount`, else the chart's investigator (the remediator behind a gate)."""
    resources: Resources | None = None
    """CPU and memory of this step's container, over `runtime.resources`."""
    timeout_minutes: Annotated[float, Field(gt=0, le=1440)] | None = None
    """Deadline for the step (Argo activeDeadlineSeconds)."""
    approval_required: bool = False
    """Pause for a human approval before this step runs; write tools need it."""
    approval_timeout_minutes: Annotated[float, Field(gt=0, le=10080)] = 60
    """How long an approval may take; no answer in time counts as denied."""
    policy: StepPolicy | None = Field(
        default=None, validation_alias=AliasChoices("policy", "rigConfig")
    )
    """Retry and safety settings (`rigConfig` is accepted as another name for it)."""

    @model_validator(mode="before")
    @classmethod
    def _one_policy_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "policy" in data and "rigConfig" in data:
            raise ValueError("write either `policy` or `rigConfig` (its older name), not both")
        return data


class _AgentFields(SpecModel):
    goal: TemplateString
    """What the agent must find out or do."""
    tools: list[ToolRef] = Field(default_factory=lambda: [Tool(name="kubectl")], max_length=30)
    """Tools the agent may call: names or objects."""
    context: TemplateString | dict[str, Any] | None = None
    """Extra context for the model (a template or a mapping of templates)."""
    max_iterations: Annotated[int, Field(ge=1, le=100)] = 10
    """Most model turns; the last one may only answer."""

    @field_validator("tools", mode="before")
    @classmethod
    def _tool_names(cls, value: Any) -> Any:
        return [_name_to_object(item) for item in value] if isinstance(value, list) else value

    @field_validator("tools")
    @classmethod
    def _unique_tools(cls, value: list[Tool]) -> list[Tool]:
        names = [tool.name for tool in value]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"tool {duplicates[0]!r} is listed twice")
        return value


class CliStep(_StepBase):
    """Run a command in the runtime image. Template values reach it as environment variables."""

    type: Literal["cli"]
    command: TemplateString
    """Shell script; `{{ }}` values are passed as environment variables, never as code."""


class AgentStep(_StepBase, _AgentFields):
    """An LLM tool loop that investigates and answers with a structured finding."""

    type: Literal["agent"]


class AgentAction(_AgentFields):
    """The agent a conditional step runs when its condition holds."""

    approval_required: bool = False
    """Pause for a human approval before the agent runs."""
    timeout_minutes: Annotated[float, Field(gt=0, le=1440)] | None = None
    """Deadline for the agent."""


class CliAction(SpecModel):
    """The command a conditional step runs when its condition holds."""

    command: TemplateString
    """Shell script; `{{ }}` values are passed as environment variables."""
    approval_required: bool = False
    """Pause for a human approval before the command runs."""
    timeout_minutes: Annotated[float, Field(gt=0, le=1440)] | None = None
    """Deadline for the command."""


class ConditionalStep(_StepBase):
    """Run an agent or a command only when a condition holds (optionally behind approval)."""

    type: Literal["conditional"]
    condition: TemplateString
    """Template whose value decides, e.g. `{{ .steps.investigate.result.can_auto_fix }}`."""
    agent: AgentAction | None = None
    """The agent to run when the condition holds."""
    cli: CliAction | None = None
    """The command to run when the condition holds."""

    @model_validator(mode="after")
    def _one_action(self) -> ConditionalStep:
        if (self.agent is None) == (self.cli is None):
            raise ValueError("a conditional step needs exactly one action: `agent` or `cli`")
        return self

    @property
    def action(self) -> AgentAction | CliAction:
        """The agent or command this step runs."""
        action = self.agent or self.cli
        assert action is not None
        return action

    @property
    def gated(self) -> bool:
        """Whether an approval gate precedes the action."""
        return self.approval_required or self.action.approval_required


_EXPECT = re.compile(r"^(empty|(==|!=|<=|>=|<|>) ?-?[0-9]+(\.[0-9]+)?)$")


class AlertResolvedCheck(SpecModel):
    """The run's alert must be resolved in Alertmanager (ALERTMANAGER_URL of
    `runtime.environment`) within a window after the fix."""

    within: Duration = "5m"
    """How long to wait for it, e.g. `5m`."""
    alertname: str | None = None
    """The alert to wait for. Default: the run's alert (its `alertname` label)."""


class PromqlCheck(SpecModel):
    """A PromQL condition that must hold after the fix (PROMETHEUS_URL of
    `runtime.environment`)."""

    query: TemplateString
    """The query, e.g. `sum(kube_pod_container_status_restarts_total{namespace="shop"})`."""
    expect: str = "empty"
    """`empty` (no series) or a comparison every value must pass, e.g. `== 0`, `< 5`."""

    @field_validator("expect")
    @classmethod
    def _comparison(cls, value: str) -> str:
        if not _EXPECT.match(value.strip()):
            raise ValueError(f"expect {value!r}: write `empty` or a comparison such as `== 0`")
        return value.strip()


class RemediationCheck(SpecModel):
    """What must hold after a fix for it to count as `fixed` (the post-check)."""

    rollout: bool | None = None
    """Wait for the workload's rollout to complete and its new pods to stay Ready
    `readySeconds`. Default: true for workload actions (a replacement pod Ready for
    delete-pod, the node's schedulability for cordon/uncordon)."""
    ready_seconds: Annotated[int, Field(ge=0, le=3600)] = 30
    """How long the new pods must stay Ready."""
    timeout_seconds: Annotated[int, Field(ge=1, le=3600)] = 300
    """The most the rollout may take."""
    alert_resolved: AlertResolvedCheck | None = None
    """Also wait for the run's alert to resolve in Alertmanager."""
    promql: PromqlCheck | None = None
    """Also check a PromQL condition."""


class Remediation(SpecModel):
    """The fix a remediation step applies: previewed, approved, applied, checked and, when
    the check fails, rolled back."""

    fix_from: DNSLabel | None = None
    """An earlier agent step whose `result.fix` (a typed action) to apply; without a fix
    there, the step is skipped."""
    action: dict[str, Any] | None = None
    """A declared typed action, e.g. `{action: scale, target: {kind: Deployment, namespace:
    shop, name: web}, replicas: 3}`; values may be templates."""
    policy: ActionPolicy = Field(default_factory=ActionPolicy)
    """Which actions it may apply, where (namespaces default to the step's
    `policy.safety.allowedNamespaces`)."""
    check: RemediationCheck = Field(default_factory=RemediationCheck)
    """The post-check."""
    on_failure: Literal["rollback", "ask", "leave"] = "rollback"
    """When the post-check fails: `rollback` (put the saved state back and verify it), `ask`
    (a second approval gate, `<step>-rollback-approval`, before that rollback) or `leave`
    (record the failure, change nothing)."""

    @model_validator(mode="after")
    def _one_fix(self) -> Remediation:
        if (self.fix_from is None) == (self.action is None):
            raise ValueError("a remediation needs exactly one of `fixFrom` and `action`")
        if self.action is not None and "{{" not in repr(self.action):
            TypeAdapter(Action).validate_python(self.action)
        return self


class RemediationStep(_StepBase):
    """Apply one typed fix: preview it (server-side dry run, diff, RBAC), wait for approval,
    apply it guarded by the previewed resourceVersion, check it, roll it back if it failed."""

    type: Literal["remediation"]
    remediation: Remediation
    """What to apply, under which policy, how to check it, what to do when the check fails.
    A remediation step asks for approval (with the preview) unless `approvalRequired: false`."""
    approval_required: bool = True
    """Pause for a human approval (with the preview) before the fix; default true."""

    @model_validator(mode="after")
    def _never_retried(self) -> RemediationStep:
        if self.policy is not None and self.policy.retry_policy is not None:
            raise ValueError(
                "a remediation step is never retried (a fix is applied once, then checked): "
                "remove policy.retryPolicy"
            )
        return self


Step = Annotated[
    CliStep | AgentStep | ConditionalStep | RemediationStep, Field(discriminator="type")
]


class Output(SpecModel):
    """A named workflow result computed from step results, read by sinks as `.workflow.outputs`."""

    name: Annotated[str, Field(pattern=_OUTPUT_NAME.pattern, max_length=63)]
    """Output name."""
    value: TemplateString
    """Template computing the value, e.g. `{{ .steps.investigate.result.summary }}`."""
    description: str | None = None
    """What the output means, for people reading the Workflow."""


class SinkRef(SpecModel):
    """A Sink the workflow reports to, with an optional condition."""

    name: ObjectName
    """Name of a Sink resource."""
    condition: TemplateString | None = None
    """Template; the sink runs only when it is true, e.g. `{{ not .outputs.auto_fixed }}`."""


class WorkflowSpec(SpecModel):
    """A declared investigation: steps run in order, then sinks run in the exit handler."""

    runtime: Runtime = Field(default_factory=Runtime)
    """Runtime image, model and environment."""
    steps: Annotated[list[Step], Field(min_length=1, max_length=50)]
    """Steps, run in order; each sees the results of the steps before it."""
    outputs: list[Output] = Field(default_factory=list, max_length=50)
    """Workflow outputs computed from step results."""
    sinks: list[Annotated[SinkRef, Field(json_schema_extra=_NAME_OR_OBJECT)]] = Field(
        default_factory=list, max_length=20
    )
    """Sinks that receive the result: names or objects with a condition."""
    safety: WorkflowSafety | None = None
    """Guard rails of a whole run: its LLM cost budget."""
    dry_run: bool | None = None
    """Investigate, but only preview fixes: remediation steps show what they would change and
    apply nothing (also `punchingfist run --dry-run`). Default: false."""

    @field_validator("sinks", mode="before")
    @classmethod
    def _sink_names(cls, value: Any) -> Any:
        return [_name_to_object(item) for item in value] if isinstance(value, list) else value

    @model_validator(mode="after")
    def _unique_names(self) -> WorkflowSpec:
        for label, names in (
            ("step", [step.name for step in self.steps]),
            ("output", [output.name for output in self.outputs]),
            ("sink", [sink.name for sink in self.sinks]),
        ):
            seen: set[str] = set()
            for name in names:
                if name in seen:
                    raise ValueError(
                        f"{label} name {name!r} is used twice; {label} names must be unique"
                    )
                seen.add(name)
        return self


__all__ = [
    "BUILTIN_TOOLS",
    "DEFAULT_IMAGE",
    "INVESTIGATOR_ACCOUNT",
    "KUBECTL_READS",
    "KUBECTL_WORDS",
    "KUBECTL_WRITES",
    "REMEDIATOR_ACCOUNT",
    "AgentAction",
    "AgentStep",
    "AlertResolvedCheck",
    "CliAction",
    "CliStep",
    "ConditionalStep",
    "KubectlRead",
    "KubectlWrite",
    "LLMConfig",
    "ObjectName",
    "Output",
    "PromqlCheck",
    "Remediation",
    "RemediationCheck",
    "RemediationStep",
    "Resources",
    "RetryPolicy",
    "Runtime",
    "Safety",
    "SinkRef",
    "Step",
    "StepPolicy",
    "Tool",
    "ToolParameter",
    "WorkflowSafety",
    "WorkflowSpec",
]
