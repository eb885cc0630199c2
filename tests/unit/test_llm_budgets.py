"""LLM spend: the price of a model, the cost of a step, and the step's budget (the agent stops
and gives a partial answer), with the real openai + instructor client against the fake server."""

from __future__ import annotations

from typing import Any

import pytest

from punchingfist.api.operatorconfigs import OperatorConfigSpec
from punchingfist.api.pricing import DEFAULT_PRICES, lookup
from punchingfist.api.runspec import LLMSettings, StepResult
from punchingfist.runs.report import render
from punchingfist.runtime.agent.llm import Usage, price
from punchingfist.runtime.agent.loop import Budget
from punchingfist.runtime.agent.runner import run_agent_step
from punchingfist.runtime.sinks.findings import PARTIAL_MARK, gather
from tests.agent_support import agent_spec
from tests.fakes.openai_server import fake_openai
from tests.unit.test_agent_loop import EVENT, KUBECTL, calls, echo_toolbox, final, offered


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o", (2.5, 10.0)),
        ("gpt-4o-2024-08-06", (2.5, 10.0)),
        ("gpt-4o-mini", (0.15, 0.6)),  # the longer pattern wins over gpt-4o*
        ("gpt-4.1-mini-2025-04-14", (0.4, 1.6)),
        ("o3", (2.0, 8.0)),
        ("o4-mini", (1.1, 4.4)),
        ("claude-sonnet-4-20250514", (3.0, 15.0)),
        ("claude-3-5-haiku-latest", (0.8, 4.0)),
        ("claude-opus-4-1", (15.0, 75.0)),
        ("openai/gpt-4o-mini", (0.15, 0.6)),  # a router's vendor/ prefix
        ("llama3.1:8b", None),
    ],
)
def test_the_built_in_prices(model: str, expected: tuple[float, float] | None) -> None:
    assert lookup(model, DEFAULT_PRICES) == expected


def test_configured_prices_win_and_self_hosted_models_cost_nothing() -> None:
    config = OperatorConfigSpec.model_validate(
        {
            "llm": {
                "prices": {
                    "gpt-4o*": {"inputPerMillion": 1, "outputPerMillion": 2},
                    "llama3.1:70b": {"inputPerMillion": 0.5, "outputPerMillion": 0.5},
                }
            }
        }
    )
    assert config.llm is not None
    table = config.llm.price_table()

    def settings(kind: str, model: str) -> LLMSettings:
        return LLMSettings(provider=kind, type=kind, model=model, prices=table)

    # The user's pattern wins even over the built-in longer one (gpt-4o-mini*).
    assert price(settings("openai", "gpt-4o-mini")) == (1, 2)
    assert price(settings("openai", "claude-3-7-sonnet-latest")) == (3.0, 15.0)
    assert price(settings("openai", "brand-new-model")) is None
    assert price(settings("ollama", "llama3.1:8b")) == (0.0, 0.0)
    # A self-hosted gateway in front of a paid model costs what the config says.
    assert price(settings("openai-compatible", "llama3.1:70b")) == (0.5, 0.5)
    assert price(LLMSettings(provider="local", type="local", model="gpt-4o")) == (0.0, 0.0)


def test_prices_and_the_step_budget_reach_the_agent_step() -> None:
    config = OperatorConfigSpec.model_validate(
        {
            "llm": {
                "prices": {"m": {"inputPerMillion": 3, "outputPerMillion": 4}},
                "stepBudgetUsd": 0.25,
            }
        }
    )
    llm = {"provider": "local", "model": "m"}
    spec = agent_spec({"goal": "g", "tools": ["kubectl"]}, llm, config=config)
    assert spec.agent is not None
    assert spec.agent.llm.prices == {"m": (3, 4)} and spec.agent.cost_budget_usd == 0.25
    own = {"rigConfig": {"safety": {"costBudgetUsd": 0.05}}}
    spec = agent_spec({"goal": "g", "tools": ["kubectl"], **own}, llm, config=config)
    assert spec.agent is not None and spec.agent.cost_budget_usd == 0.05
    spec = agent_spec({"goal": "g", "tools": ["kubectl"]}, llm)
    assert spec.agent is not None
    assert spec.agent.llm.prices is None and spec.agent.cost_budget_usd is None


@pytest.mark.parametrize("field", ["inputPerMillion", "outputPerMillion"], ids=["input", "output"])
def test_a_negative_price_is_refused(field: str) -> None:
    prices = {"m": {"inputPerMillion": 1, "outputPerMillion": 1} | {field: -1}}
    with pytest.raises(ValueError, match=field):
        OperatorConfigSpec.model_validate({"llm": {"prices": prices}})


def test_the_budget_stops_before_the_turn_that_would_overrun_it() -> None:
    usage = Usage()
    budget = Budget(usage, cost_usd=1.0)
    usage.add(100_000, 10_000, (3.0, 15.0))  # $0.45
    budget.turn_done()
    assert budget.exhausted() is None  # 0.45 + another 0.45 fits in $1
    usage.add(110_000, 10_000, (3.0, 15.0))  # $0.48: $0.93 spent
    budget.turn_done()
    assert budget.exhausted() == "the LLM budget ($0.9300 of $1 spent)"
    tokens = Budget(Usage(), tokens=1000)
    tokens.usage.add(400, 100, None)
    tokens.turn_done()
    assert tokens.exhausted() is None
    tokens.usage.add(500, 10, None)
    tokens.turn_done()
    assert tokens.exhausted() == "the token budget (1010 of 1000 tokens used)"


def run_priced(turns: list[dict[str, Any]], **llm: Any) -> tuple[dict[str, Any], Any]:
    """An agent step whose model `m` costs $1 per million tokens each way."""
    with fake_openai(turns) as server:
        config = OperatorConfigSpec.model_validate(
            {
                "llm": {
                    "prices": {"m": {"inputPerMillion": 1, "outputPerMillion": 1}},
                    **llm,
                }
            }
        )
        spec = agent_spec(
            {"goal": "g", "tools": ["kubectl"]},
            {"provider": "local", "endpoint": server.url, "model": "m"},
            config=config,
        )
        return run_agent_step(spec, EVENT, toolbox=echo_toolbox()), server.requests


def test_a_spent_cost_budget_ends_with_a_partial_answer() -> None:
    turns = [calls(KUBECTL), final(summary="pods crash")]
    # The first turn alone spends more than $0.000001: the second may only answer.
    result, requests = run_priced(turns, stepBudgetUsd=0.000001)
    assert len(requests) == 2
    assert "tool_calls" not in offered(requests[1])
    assert "the LLM budget ($0.0" in requests[1]["messages"][-1]["content"]
    assert result["success"] and result["phase"] == "Succeeded" and result["partial"] is True
    answer = result["result"]
    assert answer["summary"] == "pods crash" and answer["partial"] is True
    assert answer["partial_reason"].startswith("the LLM budget ($0.0")
    assert answer["partial_reason"].endswith("of $1e-06 spent) was spent after 1 turn")
    assert result["usage"]["cost_usd"] > 0.000001
    assert StepResult.model_validate(result).partial is True


def test_within_the_budget_the_answer_is_whole_and_costed() -> None:
    result, requests = run_priced([calls(KUBECTL), final()], stepBudgetUsd=5.0)
    assert len(requests) == 2 and "tool_calls" in offered(requests[1])
    assert result["success"] and result["partial"] is False
    assert "partial" not in result["result"]
    usage = result["usage"]
    expected = (usage["prompt_tokens"] + usage["completion_tokens"]) / 1_000_000
    assert usage["cost_usd"] == pytest.approx(expected)


PARTIAL = {
    "kind": "agent",
    "success": True,
    "phase": "Succeeded",
    "partial": True,
    "result": {
        "summary": "web is OOM-killed",
        "confidence": 0.4,
        "partial": True,
        "partial_reason": "the LLM budget ($0.2600 of $0.25 spent) was spent after 3 turns",
    },
}


def test_sinks_and_the_report_mark_a_partial_answer() -> None:
    context = {
        "source": {"data": {"alert": {"alertname": "PodOOM"}}},
        "workflow": {"name": "wf", "run": "wf-1"},
        "steps": {"investigate": PARTIAL},
    }
    findings = gather(context, {})
    assert findings.marked(findings.summary) == f"[{PARTIAL_MARK}] web is OOM-killed"
    assert findings.details()["partial"] is True
    assert findings.details()["partial_reason"].endswith("after 3 turns")
    whole_step = {**PARTIAL, "result": {"summary": "x"}}
    whole = gather(context | {"steps": {"investigate": whole_step}}, {})
    assert whole.marked("x") == "x" and whole.details()["partial"] is False
    text = render(
        {
            "run": "wf-1",
            "workflow": "wf",
            "phase": "Succeeded",
            "steps": [{"step": "investigate", **PARTIAL}],
            "approvals": [],
            "sinks": [],
            "workdir": "/tmp/x",
        }
    )
    assert "⚠️  partial answer: the LLM budget ($0.2600 of $0.25 spent) was spent after 3" in text


def test_a_cost_budget_without_a_price_is_said_to_be_unenforced(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with fake_openai([calls(KUBECTL), final()]) as server:
        config = OperatorConfigSpec.model_validate({"llm": {"stepBudgetUsd": 0.000001}})
        spec = agent_spec(
            {"goal": "g", "tools": ["kubectl"]},
            {"provider": "openai", "endpoint": server.url, "model": "brand-new-model"},
            config=config,
        )
        result = run_agent_step(spec, EVENT | {"LLM_API_KEY": "k"}, toolbox=echo_toolbox())
    assert result["success"] and result["partial"] is False and result["iterations"] == 2
    assert result["usage"]["cost_usd"] is None
    out = capsys.readouterr().out
    assert out.count("the cost budget of $1e-06 is not enforced: no price for model") == 1
    assert "'brand-new-model' (add it to OperatorConfig spec.llm.prices)" in out
