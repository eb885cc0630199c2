"""Declared script tools (e.g. `debug-pod`): the model gives named values, we build the argv.

A script's `parameters` declare what it takes. The model's call for it is a class built from
them (`call_model`): strings checked by pattern or enum, integers by range, `namespace`
values against the step's allowed namespaces. `argv` passes a value as `--flag=value` when
its parameter has a flag, else as a positional argument in the declared order, which may
never start with `-`. A script without parameters takes no arguments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from punchingfist.api.workflows import ToolParameter
from punchingfist.runtime.tools.base import ToolResult, refused, run_argv

MAX_VALUE = 1000
_TYPES: dict[str, type] = {"string": str, "namespace": str, "integer": int, "boolean": bool}
_NAMESPACE = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"


class _ScriptCall(BaseModel):
    model_config = ConfigDict(extra="forbid", regex_engine="python-re")
    declared: ClassVar[tuple[ToolParameter, ...]] = ()
    """The script's parameters (a class attribute: never something the model can give)."""

    @model_validator(mode="after")
    def _values(self) -> _ScriptCall:
        missing: str | None = None
        for parameter in self.declared:
            value = getattr(self, parameter.name)
            if value is None:
                missing = missing or (parameter.name if parameter.flag is None else None)
                continue
            if isinstance(value, str) and ("\x00" in value or "\n" in value or "\r" in value):
                raise ValueError(f"`{parameter.name}` must be one line of text")
            if parameter.flag is None and str(value).startswith("-"):
                raise ValueError(f"`{parameter.name}` may not start with '-'")
            if parameter.flag is None and missing is not None:
                raise ValueError(f"give `{missing}` too, or leave out `{parameter.name}`")
        return self


def _field(parameter: ToolParameter) -> tuple[Any, Any]:
    kind: Any = _TYPES[parameter.type]
    constraints: dict[str, Any] = {"description": parameter.description}
    if parameter.enum:
        kind = Literal[tuple(parameter.enum)]
    elif parameter.type in ("string", "namespace"):
        pattern = _NAMESPACE if parameter.type == "namespace" else parameter.pattern
        whole = f"^(?:{pattern})$" if pattern else None
        constraints |= {"max_length": MAX_VALUE, "pattern": whole}
    elif parameter.type == "integer":
        low = parameter.minimum if parameter.flag else max(parameter.minimum or 0, 0)
        constraints |= {"ge": low, "le": parameter.maximum}
    field = Annotated[kind, Field(**{k: v for k, v in constraints.items() if v is not None})]
    return (field, ...) if parameter.required else (field | None, None)


def call_model(name: str, description: str | None, parameters: Sequence[ToolParameter]) -> Any:
    """The call class of one script: `tool` is its name, then one field per parameter."""
    fields: dict[str, Any] = {p.name: _field(p) for p in parameters}
    tool: Any = Literal[name]
    model = create_model(
        f"Script_{name.replace('-', '_')}",
        __base__=_ScriptCall,
        __doc__=f"Run the script {name}." + (f" {description}" if description else ""),
        tool=(tool, ...),
        **fields,
    )
    model.declared = tuple(parameters)
    return model


def argv(parameters: Sequence[ToolParameter], call: BaseModel) -> list[str]:
    """The script's arguments for a valid call."""
    args: list[str] = []
    for parameter in parameters:
        value = getattr(call, parameter.name)
        if value is None or value is False:
            continue
        if parameter.flag is None:
            args.append(str(value))
        elif value is True:
            args.append(parameter.flag)
        else:
            args.append(f"{parameter.flag}={value}")
    return args


def run(
    command: Sequence[str],
    parameters: Sequence[ToolParameter],
    call: BaseModel,
    *,
    timeout: float,
    env: Mapping[str, str],
    allowed_namespaces: frozenset[str] | None = None,
) -> ToolResult:
    args = argv(parameters, call)
    shown = {"argv": [*command, *args]}
    for parameter in parameters:
        value = getattr(call, parameter.name)
        outside = allowed_namespaces is not None and value not in allowed_namespaces
        if parameter.type == "namespace" and value is not None and outside:
            reason = f"namespace {value!r} is outside this step's allowed namespaces"
            return replace(refused(reason), details=shown)
    result = run_argv([*command, *args], timeout=timeout, env=env)
    return replace(result, details={**result.details, **shown})
