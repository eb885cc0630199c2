"""The run's LLM budget (Workflow `spec.safety.costBudgetUsd`, OperatorConfig
`spec.llm.runBudgetUsd`): shared by the run's agent steps in order, each gets what the earlier
ones left (and at most its own budget); a step that starts with nothing left answers at once,
partial, without calling its model. Arithmetic, admission, the compiled wiring, and two-agent-step
runs on the local engine with the scripted model."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

from punchingfist.api import parse_resource
from punchingfist.api.operatorconfigs import OperatorConfigSpec
from punchingfist.api.runspec import AgentTask, LLMSettings, TaskSpec, result_env
from punchingfist.compiler import compile_workflow
from punchingfist.engine import AutoApprover, run_workflow
from punchingfist.errors import InvalidResource
from punchingfist.runtime.agent.llm import Usage
from punchingfist.runtime.agent.loop import Budget
from punchingfist.runtime.agent.runbudget import RunBudget
from punchingfist.runtime.agent.runner import run_agent_step
from punchingfist.runtime.sinks.findings import PARTIAL_MARK, gather
from tests.builders import make_workflow
from tests.fakes.openai_server import fake_openai
from tests.unit.test_agent_loop import EVENT, KUBECTL, calls, echo_toolbox, final, offered

PRICED = {"llm": {"prices": {"m": {"inputPerMillion": 0, "outputPerMillion": 1}}}}
"""Model `m` costs only its output: $1 per million completion tokens (the scripted server
counts a quarter of the answer's JSON length), so a turn costs what its answer is long."""
THOUGHT = "x" * 40_000
"""A thought that makes a scripted turn cost about $0.01."""


def agent_task(budget: float | None, earlier: list[str]) -> AgentTask:
    llm = LLMSettings(provider="local", type="local", model="m")
    return AgentTask(
        goal="g",
        tools=[],
        max_iterations=3,
        llm=llm,
        run_budget_usd=budget,
        run_budget_steps=earlier,
    )


def result(step: str, cost: float | None, **fields: Any) -> str:
    """An earlier agent step's result.json that cost `cost`."""
    usage: dict[str, Any] = {"prompt_tokens": 10, "completion_tokens": 10, "cost_usd": cost}
    value = {"step": step, "kind": "agent", "success": True, "usage": usage, **fields}
    return json.dumps(value)


def test_what_the_earlier_agent_steps_spent_is_taken_from_the_run_budget() -> None:
    environ = {
        result_env("first"): result("first", 0.3, result={"summary": "web OOM"}),
        result_env("unpriced"): result("unpriced", None),
        result_env("second"): result("second", 0.15, success=False),
        result_env("skipped"): json.dumps({"step": "skipped", "kind": "none", "success": False}),
        # "missing" has no result at all (its pod died): nothing known was spent.
    }
    task = agent_task(1.0, ["first", "unpriced", "second", "skipped", "missing"])
    budget = RunBudget.read(task, environ)
    assert budget is not None
    assert budget.earlier_usd == pytest.approx(0.45) and budget.left() == pytest.approx(0.55)
    assert budget.spent_by == ("first", "second")
    assert budget.last_answer == {"summary": "web OOM"}  # the failed step's is not an answer
    assert budget.spent_before() is None
    assert budget.over(0.3, 0.25) is None  # 0.45 + 0.3 + 0.25 = 1.0 fits
    assert (
        budget.over(0.3, 0.26)
        == "the run's LLM budget ($0.7500 of $1 spent, $0.4500 by earlier steps)"
    )
    assert RunBudget.read(agent_task(None, ["first"]), environ) is None
    spent = RunBudget.read(agent_task(0.4, ["first", "second"]), environ)
    assert spent is not None and spent.left() == 0
    assert spent.spent_before() == (
        "the run's LLM budget ($0.4500 of $0.4 spent by earlier steps: first, second) was "
        "spent before this step started; its model was not called"
    )


def test_the_step_loop_stops_at_the_run_budget_or_its_own_whichever_is_less() -> None:
    run = RunBudget(1.0, earlier_usd=0.6, spent_by=("first",))
    usage = Usage()
    budget = Budget(usage, cost_usd=5.0, run=run)
    usage.add(100_000, 10_000, (1.0, 1.0))  # $0.11: 0.6 + 0.11 + 0.11 fits in $1
    budget.turn_done()
    assert budget.exhausted() is None
    usage.add(200_000, 0, (1.0, 1.0))  # $0.20 more: 0.6 + 0.31 + 0.2 passes $1
    budget.turn_done()
    assert budget.exhausted() == (
        "the run's LLM budget ($0.9100 of $1 spent, $0.6000 by earlier steps)"
    )
    # The step's own budget, when smaller, is the one that stops it (and is named).
    own = Budget(usage, cost_usd=0.4, run=run)
    own.turn_done()
    assert own.exhausted() == "the LLM budget ($0.3100 of $0.4 spent)"
    unpriced = Budget(Usage(), run=run)
    unpriced.usage.add(10, 10, None)
    assert unpriced.exhausted() is None
    assert unpriced.unenforceable("m") == (
        "the run's cost budget of $1 is not enforced: no price for model 'm' (add it to "
        "OperatorConfig spec.llm.prices)"
    )


def two_steps(
    config: dict[str, Any] | None = None, second: dict[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    """The compiled manifest of a Workflow with a cli step between two agent steps."""
    workflow = make_workflow(
        [
            {"name": "first", "type": "agent", "goal": "look", "tools": []},
            {"name": "between", "type": "cli", "command": "echo hi"},
            {"name": "second", "type": "agent", "goal": "look again", **(second or {})},
        ],
        runtime={"llmConfig": {"provider": "local", "model": "m"}},
        **spec,
    )
    operator = OperatorConfigSpec.model_validate(config) if config else None
    return compile_workflow(workflow, config=operator).manifest


def template(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in manifest["spec"]["templates"] if t["name"] == name)


def spec_of(manifest: dict[str, Any], name: str) -> TaskSpec:
    env = template(manifest, name)["container"]["env"]
    return TaskSpec.decode(next(e["value"] for e in env if e["name"] == "PF_SPEC"))


def test_the_run_budget_reaches_each_agent_step_with_the_earlier_agent_steps_wired_in() -> None:
    manifest = two_steps({"llm": {"runBudgetUsd": 0.5}})
    first, second = spec_of(manifest, "first").agent, spec_of(manifest, "second").agent
    assert first is not None and second is not None
    assert (first.run_budget_usd, first.run_budget_steps) == (0.5, [])
    assert (second.run_budget_usd, second.run_budget_steps) == (0.5, ["first"])
    # The first step's result reaches the second (Argo: an input parameter from its task's
    # output), without entering its context: the model sees only what its templates read.
    assert spec_of(manifest, "second").inputs == []
    env = {e["name"]: e["value"] for e in template(manifest, "second")["container"]["env"]}
    assert env["PF_RESULT_FIRST"] == "{{inputs.parameters.result-first}}"
    main = template(manifest, "main")["dag"]["tasks"]
    task = next(t for t in main if t["name"] == "second")
    assert task["arguments"]["parameters"] == [
        {"name": "result-first", "value": "{{tasks.first.outputs.parameters.result}}"}
    ]
    # A conditional step's agent counts as an agent step (its cli a cli step does not).
    fix = {"name": "fix", "type": "conditional", "condition": "{{ true }}"}
    later = make_workflow(
        [
            {"name": "look", "type": "agent", "goal": "g", "tools": []},
            fix | {"agent": {"goal": "fix it", "tools": []}},
            fix | {"name": "cli-fix", "cli": {"command": "true"}},
            {"name": "last", "type": "agent", "goal": "g", "tools": []},
        ],
        safety={"costBudgetUsd": 1},
    )
    last = spec_of(compile_workflow(later).manifest, "last").agent
    assert last is not None and last.run_budget_steps == ["look", "fix"]
    # The Workflow's own run budget wins over the OperatorConfig's.
    own = two_steps({"llm": {"runBudgetUsd": 0.5}}, safety={"costBudgetUsd": 0.2})
    assert spec_of(own, "second").agent.run_budget_usd == 0.2  # type: ignore[union-attr]
    # Without a run budget nothing changes: no budget, no extra wiring.
    plain = two_steps({"llm": {"stepBudgetUsd": 0.5}})
    assert spec_of(plain, "second").agent.run_budget_steps is None  # type: ignore[union-attr]
    assert "arguments" not in next(
        t for t in template(plain, "main")["dag"]["tasks"] if t["name"] == "second"
    )


@pytest.mark.parametrize("value", [-1, 0, math.nan, math.inf, "x"])
def test_a_run_budget_that_is_not_a_positive_amount_is_refused_by_name(value: Any) -> None:
    with pytest.raises(InvalidResource, match=r"spec\.safety\.costBudgetUsd"):
        parse_resource(
            {
                "apiVersion": "punchingfist.io/v1alpha1",
                "kind": "Workflow",
                "metadata": {"name": "wf"},
                "spec": {
                    "steps": [{"name": "a", "type": "agent", "goal": "g"}],
                    "safety": {"costBudgetUsd": value},
                },
            }
        )
    with pytest.raises(InvalidResource, match=r"spec\.llm\.runBudgetUsd"):
        parse_resource(
            {
                "apiVersion": "punchingfist.io/v1alpha1",
                "kind": "OperatorConfig",
                "metadata": {"name": "c"},
                "spec": {"llm": {"runBudgetUsd": value}},
            }
        )


def test_a_step_that_starts_with_the_run_budget_spent_answers_partial_without_its_model() -> None:
    manifest = two_steps({"llm": {"runBudgetUsd": 0.5}})
    spec = spec_of(manifest, "second")
    earlier = {
        "summary": "web is OOM-killed",
        "problem_summary": "OOM",
        "root_cause": "a 256Mi limit",
        "can_auto_fix": True,
        "fix_command": "kubectl set resources ...",
        "confidence": 0.8,
        "escalation_notes": "raise the limit",
        "evidence": ["call-1"],
    }
    environ = EVENT | {result_env("first"): result("first", 0.52, result=earlier)}
    with fake_openai([]) as server:
        spec = spec.model_copy(
            update={
                "agent": spec.agent.model_copy(  # type: ignore[union-attr]
                    update={"llm": LLMSettings(provider="local", type="local", endpoint=server.url)}
                )
            }
        )
        step = run_agent_step(spec, environ, toolbox=echo_toolbox())
    assert server.requests == []
    assert step["success"] and step["partial"] is True and step["iterations"] == 0
    answer = step["result"]
    assert answer["partial_reason"] == (
        "the run's LLM budget ($0.5200 of $0.5 spent by earlier steps: first) was spent before "
        "this step started; its model was not called"
    )
    # The run's findings so far, never the earlier step's fix or evidence.
    assert answer["summary"] == "web is OOM-killed" and answer["confidence"] == 0.8
    assert answer["can_auto_fix"] is False and answer["fix_command"] is None
    assert answer["evidence"] == []
    assert answer["escalation_notes"].startswith("This step did not call its model")
    assert step["usage"]["total_tokens"] == 0
    context = {
        "source": {"data": {"alert": {"alertname": "PodOOM"}}},
        "workflow": {"name": "wf", "run": "wf-1"},
        "steps": {"first": json.loads(environ[result_env("first")]), "second": step},
    }
    findings = gather(context, {})
    assert findings.marked(findings.summary) == f"[{PARTIAL_MARK}] web is OOM-killed"
    assert findings.details()["partial_reason"].endswith("its model was not called")
    # With no earlier answer, the answer says that nothing was investigated.
    alone = RunBudget(0.1, earlier_usd=0.2, spent_by=("first",)).answer()
    assert alone.summary.startswith("Not investigated") and alone.confidence == 0


# -- the local engine -------------------------------------------------------------------------


def engine_run(
    tmp_path: Path, turns: list[dict[str, Any]], budget: float
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Run `first` (no tools: one answering turn) then `second` (kubectl) on the local engine
    with the scripted model and a run budget of `budget`; their results and the model's
    requests."""
    with fake_openai(turns) as server:
        workflow = make_workflow(
            [
                {"name": "first", "type": "agent", "goal": "look", "tools": []},
                {"name": "second", "type": "agent", "goal": "look again", "maxIterations": 5},
            ],
            runtime={"llmConfig": {"provider": "local", "model": "m", "endpoint": server.url}},
            safety={"costBudgetUsd": budget},
        )
        config = OperatorConfigSpec.model_validate(PRICED)
        outcome = run_workflow(
            compile_workflow(workflow, config=config).manifest,
            workdir=tmp_path / "runs",
            approver=AutoApprover(True, "alice"),
            environ={
                "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
                "HOME": str(tmp_path / "home"),
                "KUBECONFIG": str(tmp_path / "no-kubeconfig"),
            },
        )
        requests = list(server.requests)
    assert outcome.phase == "Succeeded", outcome.message
    steps = {name: json.loads(outcome.outputs[f"pf_result_{name}"]) for name in ("first", "second")}
    return steps, requests


def expensive(turn: dict[str, Any]) -> dict[str, Any]:
    return turn | {"thought": THOUGHT}


@pytest.mark.timeout(120)
def test_on_the_local_engine_the_second_agent_step_gets_only_what_the_first_left(
    tmp_path: Path,
) -> None:
    turns = [expensive(final(summary="first")), expensive(calls(KUBECTL)), final(summary="second")]
    # Each turn costs ~$0.01: the first step spends ~$0.01, the second's first turn ~$0.01,
    # and another ~$0.01 would pass $0.025, so its second turn may only answer.
    steps, requests = engine_run(tmp_path, turns, 0.025)
    first, second = steps["first"], steps["second"]
    assert 0.01 < first["usage"]["cost_usd"] < 0.0105 and first["partial"] is False
    assert len(requests) == 3
    assert "tool_calls" in offered(requests[1]) and "tool_calls" not in offered(requests[2])
    assert requests[2]["messages"][-1]["content"].startswith("the run's LLM budget ($0.02")
    assert second["success"] and second["partial"] is True and second["iterations"] == 2
    reason = second["result"]["partial_reason"]
    assert reason.startswith("the run's LLM budget ($0.02") and "of $0.025 spent" in reason
    assert f"${first['usage']['cost_usd']:.4f} by earlier steps) was spent after 1 turn" in reason
    assert second["result"]["summary"] == "second"
    # The second step's model never saw the first step's result (its templates do not read it).
    assert '"summary": "first"' not in json.dumps(requests[1]["messages"])


@pytest.mark.timeout(120)
def test_on_the_local_engine_a_budget_spent_by_the_first_step_leaves_the_second_no_call(
    tmp_path: Path,
) -> None:
    steps, requests = engine_run(tmp_path, [expensive(final(summary="first"))], 0.005)
    assert len(requests) == 1, "the second step called its model"
    first, second = steps["first"], steps["second"]
    assert first["success"] and first["usage"]["cost_usd"] > 0.005
    assert second["success"] and second["partial"] is True and second["iterations"] == 0
    assert second["result"]["partial_reason"].startswith("the run's LLM budget ($0.01") and second[
        "result"
    ]["partial_reason"].endswith(
        "of $0.005 spent by earlier steps: first) was spent before this step started; its "
        "model was not called"
    )
    assert second["result"]["summary"] == "first" and second["result"]["can_auto_fix"] is False
