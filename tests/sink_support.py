"""Run compiled sink and approval-request tasks in-process, the way Argo would start them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from punchingfist.api import Sink, Workflow
from punchingfist.api.operatorconfigs import OperatorConfigSpec
from punchingfist.compiler import compile_workflow
from punchingfist.runtime.main import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RUN = "agent-alert-investigation-7f3c"


def crashloop_event() -> dict[str, Any]:
    """The event of a run about examples/alerts/pod-crashlooping.json."""
    from punchingfist.api.alerts import AlertmanagerPayload, event_from_payload

    text = (EXAMPLES / "alerts" / "pod-crashlooping.json").read_text()
    return event_from_payload(AlertmanagerPayload.model_validate_json(text))


def agent_result(**answer: Any) -> dict[str, Any]:
    final = {
        "summary": "my-app is OOM-killed since the rollout; its 512Mi limit is too low.",
        "problem_summary": "OOMKilled",
        "root_cause": "The new version needs more heap than the 512Mi limit allows.",
        "can_auto_fix": False,
        "confidence": 0.86,
        "escalation_notes": "Raise the memory limit to 1Gi.",
        "recommendations": ["Raise the memory limit to 1Gi", "Watch heap usage"],
    } | answer
    return {
        "step": "agent-investigation",
        "kind": "agent",
        "success": True,
        "phase": "Succeeded",
        "result": final,
        "tool_calls": [{"id": "call-1"}, {"id": "call-2"}, {"id": "call-3"}],
        "usage": {"total_tokens": 5120},
    }


def task_env(
    workflow: Workflow,
    sinks: dict[str, Sink],
    task: str,
    *,
    config: OperatorConfigSpec | None = None,
    event: dict[str, Any] | None = None,
    results: dict[str, dict[str, Any]] | None = None,
    outputs: dict[str, Any] | None = None,
    secrets: dict[str, str] | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment of compiled template `task`, with Argo's `{{…}}` filled in and the
    secrets it declares (only those) set."""
    manifest = compile_workflow(workflow, sinks, config).manifest
    template = next(t for t in manifest["spec"]["templates"] if t["name"] == task)
    values = {
        "workflow.parameters.event": json.dumps(event if event is not None else crashloop_event()),
        "workflow.parameters.source": "alertmanager-critical",
        "workflow.parameters.fingerprint": "37ccf244a17807e8",
        "workflow.name": RUN,
        "workflow.uid": "uid-1",
        "workflow.namespace": "monitoring",
        "workflow.status": "Succeeded",
        "workflow.failures": "[]",
        "workflow.duration": "42.5",
        "workflow.creationTimestamp": "2026-11-26T10:00:00Z",
        "inputs.parameters.outputs": json.dumps(outputs or {}),
    }
    for step, result in (results or {}).items():
        values[f"inputs.parameters.result-{step}"] = json.dumps(result)
    env: dict[str, str] = {}
    declared = set()
    for variable in template["container"]["env"]:
        if "value" in variable:
            env[variable["name"]] = re.sub(
                r"\{\{(.*?)\}\}", lambda m: values.get(m.group(1).strip(), ""), variable["value"]
            )
        else:
            declared.add(variable["name"])
    for name, value in (secrets or {}).items():
        assert name in declared, f"{task} does not receive {name} (it gets {sorted(declared)})"
        env[name] = value
    return env | (extra or {})


def sink_env(sink: Sink, **kw: Any) -> dict[str, str]:
    """The environment of `sink`'s task in a workflow of one `cli` step."""
    from tests.builders import make_workflow

    step = {"name": "look", "type": "cli", "command": "true"}
    workflow = make_workflow([step], sinks=[{"name": sink.name}])
    return task_env(workflow, {sink.name: sink}, f"sink-{sink.name}", **kw)


def run(kind: str, env: dict[str, str], out: Path) -> tuple[int, dict[str, Any]]:
    """`pf-runtime <kind>` through the real entry point; the exit code and result.json."""
    code = main([kind, "--result-dir", str(out)], env)
    result = out / "result.json"
    return code, json.loads(result.read_text()) if result.exists() else {}
