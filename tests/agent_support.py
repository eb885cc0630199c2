"""Helpers for agent tests: a compiled agent step's TaskSpec, recorded tools."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from punchingfist.api.operatorconfigs import OperatorConfigSpec
from punchingfist.api.runspec import TaskSpec
from punchingfist.compiler import compile_workflow
from punchingfist.runtime.agent.toolbox import Toolbox
from punchingfist.runtime.tools.base import ToolResult
from tests.builders import make_workflow


def agent_spec(
    step: dict[str, Any],
    llm: dict[str, Any],
    name: str = "investigate",
    config: OperatorConfigSpec | None = None,
) -> TaskSpec:
    """The TaskSpec the compiler gives an agent step (decoded from PF_SPEC), compiled with the
    OperatorConfig `config` when given."""
    workflow = make_workflow([{"name": name, "type": "agent", **step}], runtime={"llmConfig": llm})
    manifest = compile_workflow(workflow, config=config).manifest
    template = next(t for t in manifest["spec"]["templates"] if t["name"] == name)
    value = next(e["value"] for e in template["container"]["env"] if e["name"] == "PF_SPEC")
    return TaskSpec.decode(value)


def recorded_toolbox(recordings: Sequence[Mapping[str, Any]], tools: Sequence[str]) -> Toolbox:
    """Tools that answer from recordings keyed by the exact call."""
    table = {_key(r["call"]): r for r in recordings}

    def execute(call: BaseModel) -> ToolResult:
        recording = table.get(_key(call.model_dump(exclude_none=True)))
        if recording is None:
            return ToolResult(status="error", error="no recording for this call")
        return ToolResult(
            status=recording.get("status", "ok"),
            output=recording.get("output", ""),
            error=recording.get("error"),
        )

    return Toolbox(executors={name: execute for name in tools})


def _key(call: Mapping[str, Any]) -> str:
    return json.dumps({k: v for k, v in call.items() if v is not None}, sort_keys=True)
