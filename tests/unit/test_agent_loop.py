"""The agent loop's rules, with the real openai + instructor client against the fake server."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from pydantic import BaseModel

from punchingfist.api.runspec import LLMSettings
from punchingfist.runtime.agent.llm import LLMError, ModelClient, base_url, mode_name
from punchingfist.runtime.agent.runner import run_agent_step
from punchingfist.runtime.agent.toolbox import Toolbox
from punchingfist.runtime.tools.base import ToolResult, cap
from tests.agent_support import agent_spec
from tests.fakes.openai_server import fake_openai

EVENT = {"PF_EVENT": json.dumps({"alert": {"alertname": "X", "labels": {}}})}


def final(**fields: Any) -> dict[str, Any]:
    answer = {
        "kind": "final_answer",
        "summary": "s",
        "problem_summary": "p",
        "root_cause": "r",
        "can_auto_fix": False,
        "confidence": 0.5,
        "escalation_notes": "e",
    }
    return {"thought": "answer", "action": answer | fields}


def calls(*items: dict[str, Any]) -> dict[str, Any]:
    return {"thought": "look", "action": {"kind": "tool_calls", "calls": list(items)}}


KUBECTL = {"tool": "kubectl", "verb": "get", "resource": "pods", "namespace": "shop"}


def echo_toolbox(delay: float = 0.0, log: list[tuple[str, float, float]] | None = None) -> Toolbox:
    def execute(call: BaseModel) -> ToolResult:
        started = time.monotonic()
        time.sleep(delay)
        if log is not None:
            log.append((json.dumps(call.model_dump()), started, time.monotonic()))
        return ToolResult(status="ok", output=f"output of {call.model_dump_json()}")

    return Toolbox(executors={"kubectl": execute, "promql": execute})


def run(turns: list[dict[str, Any]], toolbox: Toolbox | None = None, **step: Any) -> Any:
    with fake_openai(turns) as server:
        spec = agent_spec(
            {"goal": "g", "tools": ["kubectl", "promql"], **step},
            {"provider": "local", "endpoint": server.url, "model": "m"},
        )
        result = run_agent_step(spec, EVENT, toolbox=toolbox or echo_toolbox())
        return result, server.requests


def offered(request: dict[str, Any]) -> str:
    return json.dumps(request["tools"][0]["function"]["parameters"])


def test_the_last_turn_may_only_answer() -> None:
    result, requests = run([calls(KUBECTL), final()], maxIterations=2)
    assert result["success"] and result["iterations"] == 2
    assert "tool_calls" in offered(requests[0])
    assert "tool_calls" not in offered(requests[1])  # only FinalAnswer can be expressed
    assert "last turn" in requests[1]["messages"][-1]["content"]


def test_no_answer_within_the_turn_limit_fails_clearly() -> None:
    # On its last turn the scripted model insists on a tool call: instructor rejects it.
    result, _ = run(
        [calls(KUBECTL)] + [calls(KUBECTL | {"resource": "services"})] * 3, maxIterations=2
    )
    assert not result["success"]
    assert "no valid Decision" in result["error"]


def test_an_identical_repeated_call_is_refused() -> None:
    result, requests = run([calls(KUBECTL), calls(KUBECTL), final(evidence=["call-1"])])
    assert [c["status"] for c in result["tool_calls"]] == ["ok", "refused"]
    assert "already made this exact call as call-1" in result["tool_calls"][1]["error"]
    assert "already made this exact call" in requests[2]["messages"][-1]["content"]


def test_independent_calls_of_one_turn_run_concurrently() -> None:
    log: list[tuple[str, float, float]] = []
    promql = {"tool": "promql", "query": "up"}
    result, _ = run([calls(KUBECTL, promql), final()], toolbox=echo_toolbox(0.3, log))
    assert result["success"] and len(log) == 2
    (_, _, end_a), (_, start_b, _) = sorted(log, key=lambda item: item[1])
    assert start_b < end_a, "the second call started only after the first ended"
    assert [c["id"] for c in result["tool_calls"]] == ["call-1", "call-2"]


def test_tool_output_is_capped_with_a_visible_marker() -> None:
    text, truncated = cap("x" * 50_000, max_tokens=100)
    assert truncated and "[... truncated:" in text and len(text) < 600

    def huge(call: BaseModel) -> ToolResult:
        return ToolResult(status="ok", output="line\n" * 20_000)

    result, requests = run([calls(KUBECTL), final()], toolbox=Toolbox({"kubectl": huge}))
    assert result["tool_calls"][0]["truncated"] is True
    assert "[... truncated:" in requests[1]["messages"][-1]["content"]


def test_a_spent_token_budget_forces_the_answer() -> None:
    step = {"rigConfig": {"safety": {"tokenBudget": 10}}}
    result, requests = run([calls(KUBECTL), final()], **step)
    assert result["success"] and result["iterations"] == 2
    assert "token budget" in requests[1]["messages"][-1]["content"]
    assert result["partial"] is True
    assert result["result"]["partial_reason"].endswith("tokens used) was spent after 1 turn")
    assert "tool_calls" not in offered(requests[1])


def test_the_step_deadline_stops_the_loop() -> None:
    turns = [calls(KUBECTL | {"name": f"pod-{n}"}) for n in range(5)]
    result, _ = run(turns, toolbox=echo_toolbox(1.0), timeoutMinutes=0.01)
    assert not result["success"] and "time ran out" in result["error"]


def test_server_errors_are_retried() -> None:
    result, requests = run([{"http_status": 500}, {"http_status": 429}, final()])
    assert result["success"] and len(requests) == 3


def test_a_hosted_provider_without_a_key_fails_clearly() -> None:
    settings = LLMSettings(provider="openai", type="openai", model="gpt-4o")
    with pytest.raises(LLMError, match="needs an API key: set LLM_API_KEY"):
        ModelClient(settings, environ={})


def test_tool_errors_never_break_the_loop() -> None:
    def broken(call: BaseModel) -> ToolResult:
        raise RuntimeError("boom")

    result, requests = run([calls(KUBECTL), final()], toolbox=Toolbox({"kubectl": broken}))
    assert result["success"]
    assert result["tool_calls"][0]["status"] == "error"
    assert "RuntimeError: boom" in requests[1]["messages"][-1]["content"]


def test_usage_and_cost_are_counted() -> None:
    settings = LLMSettings(provider="openai", type="openai", model="gpt-4o", endpoint="http://x")
    client = ModelClient(settings, environ={"LLM_API_KEY": "k"})
    client.usage.add(1_000_000, 100_000, (2.5, 10.0))
    assert client.usage.as_dict()["cost_usd"] == 3.5
    unknown = ModelClient(
        LLMSettings(provider="openai", type="openai", model="new-model"),
        environ={"LLM_API_KEY": "k"},
    )
    unknown.usage.add(10, 10, None)
    assert unknown.usage.as_dict()["cost_usd"] is None


@pytest.mark.parametrize(
    ("settings", "url", "mode"),
    [
        (
            LLMSettings(provider="local", type="local", endpoint="http://llm-service:8080"),
            "http://llm-service:8080/v1",
            "TOOLS",
        ),
        (
            LLMSettings(provider="local", type="local", endpoint="http://localhost:11434"),
            "http://localhost:11434/v1",
            "JSON_SCHEMA",
        ),
        (LLMSettings(provider="ollama", type="ollama"), "http://localhost:11434/v1", "JSON_SCHEMA"),
        (
            LLMSettings(provider="claude", type="anthropic"),
            "https://api.anthropic.com/v1/",
            "TOOLS",
        ),
        (LLMSettings(provider="together", type="together"), "https://api.together.xyz/v1", "TOOLS"),
        (
            LLMSettings(
                provider="local", type="local", endpoint="http://vllm:8000/v1", mode="json_schema"
            ),
            "http://vllm:8000/v1",
            "JSON_SCHEMA",
        ),
    ],
)
def test_provider_endpoints_and_modes(settings: LLMSettings, url: str, mode: str) -> None:
    assert base_url(settings) == url
    assert mode_name(settings) == mode
