"""The `Workflow` custom resource: the declared investigation (steps, outputs, sinks)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, ConfigDict, Field, field_validator, model_validator

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
_SCALE = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}  # fmt: skip


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
    """kubectl verbs that need an approved gate, e.g. `delete`, `patch`, `scale`."""
    token_budget: Annotated[int, Field(gt=0)] | None = None
    """Most LLM tokens one run of this step may spend."""
    allowed_namespaces: list[DNSLabel] | None = None
    """Namespaces the kubectl tool may touch (default: any the ServiceAccount can)."""


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


Step = Annotated[CliStep | AgentStep | ConditionalStep, Field(discriminator="type")]


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
    "REMEDIATOR_ACCOUNT",
    "AgentAction",
    "AgentStep",
    "CliAction",
    "CliStep",
    "ConditionalStep",
    "LLMConfig",
    "ObjectName",
    "Output",
    "Resources",
    "RetryPolicy",
    "Runtime",
    "Safety",
    "SinkRef",
    "Step",
    "StepPolicy",
    "Tool",
    "WorkflowSpec",
]
