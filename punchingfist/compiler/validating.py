"""Check a Workflow against the things pydantic cannot see: templates, step order, names.

Every template field is parsed here, so a broken template fails `kubectl apply` (through the
controller) or `punchingfist compile`, not a run at three in the morning.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from punchingfist.api import Sink, Workflow
from punchingfist.api.operatorconfigs import OperatorConfigSpec
from punchingfist.api.workflows import (
    BUILTIN_TOOLS,
    AgentAction,
    AgentStep,
    CliAction,
    CliStep,
    ConditionalStep,
    RemediationStep,
    Step,
    Tool,
)
from punchingfist.errors import CompileError, TemplateError
from punchingfist.templating import Template, compile_expression, compile_template

STEP_ROOTS = frozenset({"source", "steps", "env", "workflow"})
SINK_ROOTS = frozenset({"source", "steps", "env", "workflow", "outputs"})
TRIGGER_ROOTS = SINK_ROOTS | {"alert", "alertname", "severity", "labels", "status"}
KNOWN_PROVIDER_TYPES = (
    "local",
    "openai",
    "anthropic",
    "claude",
    "together",
    "ollama",
    "openai-compatible",
)


@dataclass(frozen=True)
class Checked:
    """What the checks learnt: for each step, the earlier steps its templates read."""

    reads: Mapping[str, tuple[str, ...]]


def check_workflow(
    workflow: Workflow, sinks: Mapping[str, Sink], config: OperatorConfigSpec | None
) -> Checked:
    """Raise CompileError for the first problem found; return the step read-sets."""
    spec = workflow.spec
    names = [step.name for step in spec.steps]
    reads: dict[str, tuple[str, ...]] = {}
    for index, step in enumerate(spec.steps):
        try:
            reads[step.name] = _check_step(workflow.ref, step, index, names)
        except CompileError as error:
            raise CompileError(
                f"step {step.name!r}: {error.message}", resource=error.resource, field=error.field
            ) from error
    output_names = [output.name for output in spec.outputs]
    for index, output in enumerate(spec.outputs):
        field = f"spec.outputs[{index}].value"
        template = _parse(workflow.ref, field, output.value)
        _check_roots(workflow.ref, field, template, STEP_ROOTS)
        for step_name in _step_refs(template):
            _check_step_ref(workflow.ref, field, step_name, None, names, names)
    readable_outputs = set(output_names) | set(names)
    for index, ref in enumerate(spec.sinks):
        if ref.name not in sinks:
            known = ", ".join(sorted(sinks)) or "none were given"
            raise CompileError(
                f"unknown Sink {ref.name!r} (Sinks given: {known}); "
                "create the Sink or pass its file with -f",
                resource=workflow.ref,
                field=f"spec.sinks[{index}].name",
            )
        if ref.condition is not None:
            field = f"spec.sinks[{index}].condition"
            template = _parse(workflow.ref, field, ref.condition)
            _check_sink_template(workflow.ref, field, template, readable_outputs, names)
        _check_sink(sinks[ref.name], workflow.ref, readable_outputs, names)
    _check_llm(workflow, config)
    _check_argo_fields(workflow)
    return Checked(reads=reads)


def _check_argo_fields(workflow: Workflow) -> None:
    """D2: values copied verbatim into the manifest must not carry Argo `{{ }}` tags."""
    runtime = workflow.spec.runtime
    fields = {f"spec.runtime.environment.{k}": v for k, v in runtime.environment.items()}
    if runtime.image is not None:
        fields["spec.runtime.image"] = runtime.image
    for field, value in fields.items():
        if "{{" in value or "}}" in value:
            raise CompileError(
                "plain values are copied into the Argo manifest, where `{{ }}` would be "
                "evaluated by Argo; write the value without braces",
                resource=workflow.ref,
                field=field,
            )


def _check_step(resource: str, step: Step, index: int, names: list[str]) -> tuple[str, ...]:
    """Check one step's templates and tools; return the earlier steps it reads."""
    earlier = names[:index]
    read: list[str] = []
    for field, source in _step_templates(step, index):
        template = _parse(resource, field, source)
        _check_roots(resource, field, template, STEP_ROOTS)
        if field.endswith(".command"):
            _check_cli_command(resource, field, template)
        for step_name in _step_refs(template):
            _check_step_ref(resource, field, step_name, step.name, earlier, names)
            if step_name not in read:
                read.append(step_name)
    _check_tools(resource, step, index)
    if isinstance(step, RemediationStep) and step.remediation.fix_from is not None:
        read.append(_check_fix_from(resource, step, index, earlier))
    return tuple(read)


def _check_fix_from(resource: str, step: RemediationStep, index: int, earlier: list[str]) -> str:
    """`fixFrom` names an earlier step (an agent step, whose `result.fix` is the action)."""
    name = step.remediation.fix_from
    assert name is not None
    if name not in earlier:
        where = "a later step or itself" if name == step.name else "no earlier step"
        raise CompileError(
            f"remediation.fixFrom {name!r} is {where}: name an earlier agent step",
            resource=resource,
            field=f"spec.steps[{index}].remediation.fixFrom",
        )
    return name


def _check_cli_command(resource: str, field: str, template: Template) -> None:
    if "{%" in template.source:
        raise CompileError(
            "cli commands take `{{ }}` values only (they reach the shell as environment "
            "variables); use shell `if`/`for` over the values instead of `{% %}`",
            resource=resource,
            field=field,
        )


def _step_templates(step: Step, index: int) -> Iterator[tuple[str, str]]:
    base = f"spec.steps[{index}]"
    if isinstance(step, CliStep):
        yield f"{base}.command", step.command
    elif isinstance(step, AgentStep):
        yield from _agent_templates(step, base)
    elif isinstance(step, ConditionalStep):
        yield f"{base}.condition", step.condition
        action = step.action
        if isinstance(action, AgentAction):
            yield from _agent_templates(action, f"{base}.agent")
        elif isinstance(action, CliAction):
            yield f"{base}.cli.command", action.command
    elif isinstance(step, RemediationStep):
        if step.remediation.action is not None:
            yield from _nested_templates(step.remediation.action, f"{base}.remediation.action")
        if step.remediation.check.promql is not None:
            yield f"{base}.remediation.check.promql.query", step.remediation.check.promql.query


def _agent_templates(agent: AgentStep | AgentAction, base: str) -> Iterator[tuple[str, str]]:
    yield f"{base}.goal", agent.goal
    if isinstance(agent.context, str):
        yield f"{base}.context", agent.context
    elif isinstance(agent.context, dict):
        yield from _nested_templates(agent.context, f"{base}.context")
    for position, tool in enumerate(agent.tools):
        if tool.endpoint is not None:
            yield f"{base}.tools[{position}].endpoint", tool.endpoint


def _nested_templates(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _nested_templates(item, f"{path}.{key}")
    elif isinstance(value, list):
        for position, item in enumerate(value):
            yield from _nested_templates(item, f"{path}[{position}]")


def _parse(resource: str, field: str, source: str, *, expression: bool = False) -> Template:
    try:
        if expression:
            return compile_expression(source, resource=resource, field=field)
        return compile_template(source, resource=resource, field=field)
    except TemplateError as error:
        raise CompileError(
            error.message if error.line is None else _located(error),
            resource=resource,
            field=field,
        ) from error


def _located(error: TemplateError) -> str:
    where = f"line {error.line}" + (f", column {error.column}" if error.column else "")
    return f"{where}: {error.message}"


def _check_roots(resource: str, field: str, template: Template, allowed: frozenset[str]) -> None:
    for root in sorted(template.roots - allowed):
        raise CompileError(
            f"unknown variable {root!r}; templates here can read "
            + ", ".join(f".{name}" for name in sorted(allowed)),
            resource=resource,
            field=field,
        )


def _step_refs(template: Template) -> list[str]:
    refs: list[str] = []
    for path in sorted(template.references):
        if path[0] == "steps" and len(path) >= 2 and path[1] not in refs:
            refs.append(path[1])
    return refs


def _check_step_ref(
    resource: str,
    field: str,
    name: str,
    current: str | None,
    earlier: list[str],
    every: list[str],
) -> None:
    if name in earlier:
        return
    if name == current:
        problem = f"step {name!r} cannot read its own result"
    elif name in every:
        problem = (
            f"step {name!r} runs later; steps run in order, so only these results exist here: "
            + (", ".join(earlier) or "none")
        )
    else:
        problem = f"there is no step {name!r}; steps are: {', '.join(every)}"
    raise CompileError(problem, resource=resource, field=field)


def _check_sink_template(
    resource: str,
    field: str,
    template: Template,
    outputs: set[str],
    steps: list[str],
    roots: frozenset[str] = SINK_ROOTS,
) -> None:
    _check_roots(resource, field, template, roots)
    for step_name in _step_refs(template):
        _check_step_ref(resource, field, step_name, None, steps, steps)
    for path in sorted(template.references):
        name = None
        if path[0] == "outputs" and len(path) >= 2:
            name = path[1]
        elif path[:2] == ("workflow", "outputs") and len(path) >= 3:
            name = path[2]
        if name is not None and name not in outputs:
            raise CompileError(
                f"there is no output {name!r}; the workflow's outputs are: "
                + (", ".join(sorted(outputs)) or "none"),
                resource=resource,
                field=field,
            )


def _check_sink(sink: Sink, workflow: str, outputs: set[str], steps: list[str]) -> None:
    config = sink.spec.config
    template = getattr(config, "template", None)
    if template is not None:
        parsed = _parse(sink.ref, "spec.config.template", template)
        try:
            _check_sink_template(sink.ref, "spec.config.template", parsed, outputs, steps)
        except CompileError as error:
            raise CompileError(
                f"{error.message} (Sink used by {workflow})",
                resource=sink.ref,
                field=error.field,
            ) from error
    trigger = getattr(config, "trigger_condition", None)
    if trigger is not None:
        parsed = _parse(sink.ref, "spec.config.triggerCondition", trigger, expression=True)
        _check_roots(sink.ref, "spec.config.triggerCondition", parsed, TRIGGER_ROOTS)


def _check_tools(resource: str, step: Step, index: int) -> None:
    agent: AgentStep | AgentAction | None = None
    base = f"spec.steps[{index}]"
    if isinstance(step, AgentStep):
        agent = step
    elif isinstance(step, ConditionalStep) and isinstance(step.action, AgentAction):
        agent, base = step.action, f"{base}.agent"
    if agent is None:
        return
    for position, tool in enumerate(agent.tools):
        _check_tool(resource, f"{base}.tools[{position}]", tool)


def _check_tool(resource: str, field: str, tool: Tool) -> None:
    if tool.name in BUILTIN_TOOLS:
        for key, given in (
            ("command", tool.command is not None),
            ("parameters", tool.parameters),
            ("env", tool.env),
        ):
            if given:
                raise CompileError(
                    f"{tool.name!r} is a built-in tool and takes no `{key}`; "
                    "give a declared script another name",
                    resource=resource,
                    field=f"{field}.{key}",
                )
        return
    if tool.command is None or tool.command == [] or tool.command == "":
        raise CompileError(
            f"unknown tool {tool.name!r}: built-in tools are {', '.join(BUILTIN_TOOLS)}; "
            "a declared script needs a `command`",
            resource=resource,
            field=f"{field}.name",
        )


def _check_llm(workflow: Workflow, config: OperatorConfigSpec | None) -> None:
    llm = workflow.spec.runtime.llm_config
    if llm is None:
        return
    configured = set(config.llm.providers) if config and config.llm else set()
    if llm.provider not in configured and llm.provider not in KNOWN_PROVIDER_TYPES:
        raise CompileError(
            f"unknown LLM provider {llm.provider!r}; use one of "
            + ", ".join([*KNOWN_PROVIDER_TYPES, *sorted(configured)])
            + " (or add it to OperatorConfig spec.llm.providers)",
            resource=workflow.ref,
            field="spec.runtime.llmConfig.provider",
        )
