"""Build the values templates see (`.source`, `.steps`, `.env`, `.workflow`, `.outputs`).

Everything comes from the task's environment (see `punchingfist.api.runspec`). Secrets never
enter the context: `.env` holds only the Workflow's plain `runtime.environment` names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from punchingfist.api.runspec import StepResult, TaskSpec, result_env
from punchingfist.errors import PunchingFistError


class BadTaskInput(PunchingFistError):
    """The task's environment is not what the compiler promised (e.g. PF_EVENT is not JSON)."""


def not_run(step: str, why: str = "the step did not run") -> dict[str, Any]:
    result = StepResult(step=step, kind="none", success=False, phase="NotRun", error=why)
    return result.model_dump(mode="json")


def step_result(step: str, raw: str | None) -> dict[str, Any]:
    """A step's result from its PF_RESULT_<STEP> value; anything unusable reads as not run."""
    if not raw or raw.startswith("{{"):
        return not_run(step)
    try:
        value = json.loads(raw)
    except ValueError:
        return not_run(step, "the step's result is not JSON")
    return value if isinstance(value, dict) else not_run(step, "the step's result is not an object")


def summary_of(result: Mapping[str, Any]) -> Any:
    """What `.workflow.outputs.<step>` shows for a step without a declared output."""
    value = result.get("result")
    if isinstance(value, Mapping) and "summary" in value:
        return value["summary"]
    return value


def build_context(spec: TaskSpec, environ: Mapping[str, str]) -> dict[str, Any]:
    try:
        event = json.loads(environ.get("PF_EVENT") or "{}")
    except ValueError as error:
        raise BadTaskInput(f"PF_EVENT is not valid JSON: {error}") from error
    if not isinstance(event, dict):
        raise BadTaskInput("PF_EVENT must be a JSON object")
    names = spec.steps or spec.inputs
    steps = {name: step_result(name, environ.get(result_env(name))) for name in names}
    declared: dict[str, Any] = {}
    if environ.get("PF_OUTPUTS"):
        try:
            loaded = json.loads(environ["PF_OUTPUTS"])
            declared = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            declared = {}
    outputs = {name: summary_of(result) for name, result in steps.items()} | declared
    workflow = {
        "name": spec.workflow,
        "run": environ.get("PF_RUN_NAME", ""),
        "namespace": environ.get("PF_NAMESPACE", ""),
        "status": environ.get("PF_WORKFLOW_STATUS", ""),
        "duration": environ.get("PF_WORKFLOW_DURATION", ""),
        "createdAt": environ.get("PF_WORKFLOW_CREATED", ""),
        # The exit handler runs as the run completes: its start is the completion time.
        "completedAt": _now() if environ.get("PF_WORKFLOW_STATUS") else "",
        "failures": _json_or_text(environ.get("PF_WORKFLOW_FAILURES", "")),
        "outputs": outputs,
    }
    return {
        "source": {
            "name": environ.get("PF_SOURCE", "manual"),
            "fingerprint": environ.get("PF_FINGERPRINT", ""),
            "data": event,
            "context": event.get("context", {}),
        },
        "steps": steps,
        "env": {name: environ[name] for name in spec.environment if name in environ},
        "workflow": workflow,
        "outputs": outputs,
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _json_or_text(raw: str) -> Any:
    try:
        return json.loads(raw) if raw else []
    except ValueError:
        return raw
