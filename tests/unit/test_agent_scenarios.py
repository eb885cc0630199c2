"""The design document's four scenarios through the real agent loop (openai + instructor)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter

from punchingfist.api.actions import Action
from punchingfist.runtime.agent.runner import run_agent_step
from tests.agent_support import agent_spec, recorded_toolbox
from tests.fakes.openai_server import fake_openai

ACTION: TypeAdapter[Any] = TypeAdapter(Action)
SCENARIOS = sorted((Path(__file__).parents[2] / "examples" / "scenarios").glob("*/scenario.yaml"))


def event(alert: dict[str, Any]) -> str:
    view = {
        "alertname": alert["labels"]["alertname"],
        "summary": alert["annotations"].get("summary", ""),
        "labels": alert["labels"],
        "annotations": alert["annotations"],
    }
    return json.dumps({"alert": view, "alerts": [view]})


@pytest.mark.parametrize("mode", ["tools", "json_schema"])
@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.parent.name)
def test_scenario(path: Path, mode: str) -> None:
    scenario = yaml.safe_load(path.read_text())
    with fake_openai(scenario["turns"]) as server:
        llm = {"provider": "local", "endpoint": server.url, "model": "llama-3.1-70b", "mode": mode}
        spec = agent_spec(scenario["step"], llm)
        tools = [t if isinstance(t, str) else t["name"] for t in scenario["step"]["tools"]]
        result = run_agent_step(
            spec,
            {"PF_EVENT": event(scenario["alert"]), "PF_SOURCE": "alertmanager"},
            toolbox=recorded_toolbox(scenario["recordings"], tools),
        )
        requests = server.requests
    assert result["success"], result["error"]
    calls = [[c["id"], c["tool"], c["status"]] for c in result["tool_calls"]]
    assert calls == scenario["expect"]["tool_calls"]
    final = result["result"]
    for key, value in scenario["expect"]["result"].items():
        assert final[key] == value
    scripted = scenario["turns"][-1]["action"]
    assert final["summary"] == scripted["summary"]
    # a proposed fix is the typed action the model gave; its command is derived, not written
    assert "fix_command" not in scripted
    given = scripted.get("fix") and ACTION.validate_python(scripted["fix"]).model_dump()
    assert final["fix"] == given, "the fix is the model's action"
    assert final["can_auto_fix"] is ("fix" in scripted and scripted["can_auto_fix"])
    assert set(final["evidence"]) <= {c[0] for c in calls}, "evidence cites unknown calls"
    assert result["iterations"] == len(scenario["turns"])
    assert result["usage"]["total_tokens"] > 0 and result["usage"]["cost_usd"] == 0.0
    # the model saw the alert, then every tool result it asked for
    first = requests[0]["messages"][1]["content"]
    assert scenario["alert"]["labels"]["alertname"] in first
    later = json.dumps(requests[-1]["messages"])
    for recording in scenario["recordings"]:
        snippet = (recording.get("output") or recording.get("error", "")).splitlines()[0]
        assert json.dumps(snippet)[1:-1] in later
    if mode == "tools":
        assert requests[0]["tool_choice"]["type"] == "function"
    else:
        assert requests[0]["response_format"]["type"] == "json_schema"
