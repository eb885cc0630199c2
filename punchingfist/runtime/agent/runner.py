"""Run one agent step: render the goal, build the model client and tools, loop, build the result."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

from punchingfist.api.runspec import AgentTask, TaskSpec
from punchingfist.errors import TemplateError
from punchingfist.runtime.agent.decisions import proposed_fix
from punchingfist.runtime.agent.llm import LLMError, Model, ModelClient, with_overrides
from punchingfist.runtime.agent.loop import run_loop
from punchingfist.runtime.agent.replay import LABEL, ReplayClient, replay_path
from punchingfist.runtime.agent.runbudget import RunBudget
from punchingfist.runtime.agent.toolbox import Toolbox, build_toolbox, kept
from punchingfist.runtime.context import build_context
from punchingfist.templating import compile_template

DEFAULT_TIMEOUT = 600.0


MAX_ALSO_FIRING = 50
"""How many of the group's other alerts the model is shown by identity (the count is exact)."""


def also_firing(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The other alerts of the run's group or incident: its notification's, and those that
    joined the run before it started (`event.alerts`), without the run's own alert."""
    own = (data.get("alert") or {}).get("fingerprint")
    alerts = data.get("alerts") or []
    return [a for a in alerts if isinstance(a, dict) and a.get("fingerprint") != own]


def model_context(context: Mapping[str, Any], extra: Any) -> dict[str, Any]:
    """What the model is told about the incident. Never `.env` or anything secret."""
    data = context["source"]["data"]
    event = {k: v for k, v in data.items() if k not in ("alert", "alerts", "similar_incidents")}
    others = also_firing(data)
    shown: dict[str, Any] = {
        "alert": data.get("alert"),
        "source": context["source"]["name"],
        "event": event,
        "earlier_steps": context["steps"],
        "similar_past_incidents": data.get("similar_incidents", []),
    }
    if others:
        shown["also_firing"] = others[:MAX_ALSO_FIRING]
        shown["also_firing_count"] = len(others)
    if extra:
        shown["extra_context"] = extra
    return shown


def _render(value: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return compile_template(value).render(context)
    if isinstance(value, dict):
        return {k: _render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, context) for v in value]
    return value


def run_agent_step(
    spec: TaskSpec,
    environ: Mapping[str, str],
    *,
    client: Model | None = None,
    toolbox: Toolbox | None = None,
) -> dict[str, Any]:
    """Run the step. `client` and `toolbox` are built from the spec unless given (tests give
    recorded tools; production never does)."""
    agent = spec.agent
    assert agent is not None and spec.step is not None
    started = time.monotonic()
    base: dict[str, Any] = {
        "step": spec.step,
        "kind": "agent",
        "provider": agent.llm.provider,
        "model": agent.llm.model,
    }
    approved = spec.gated and environ.get("PF_APPROVED") == "true"
    if spec.gated and not approved:
        return base | _failure("the approval gate did not approve this step; nothing was run")
    context = build_context(spec, environ)
    try:
        goal = compile_template(agent.goal).render(context)
        extra = _render(agent.context, context) if agent.context else None
    except TemplateError as error:
        return base | _failure(f"template: {error.message}")
    timeout = float(spec.timeout_seconds or DEFAULT_TIMEOUT)
    replay = replay_path(environ)
    try:
        if client is not None:
            model: Model = client
        elif replay:
            model = ReplayClient(replay, frozenset(t.name for t in agent.tools))
        else:
            settings = with_overrides(agent.llm, environ)
            base |= {"provider": settings.provider, "model": settings.model}
            model = ModelClient(settings, environ, timeout=min(timeout, 120.0))
    except LLMError as error:
        return base | _failure(str(error))
    if replay and client is None:
        base |= {"provider": "replay", "model": model.model, "replayed": True}
        print(
            f"⚠️  {LABEL}: the answers below are recorded turns from {model.model}, "
            "not a live model's investigation"
        )
    toolbox = toolbox or build_toolbox(
        agent.tools,
        environ=environ,
        approved=approved,
        require_approval=agent.require_approval,
        allowed_namespaces=agent.allowed_namespaces,
        render=lambda text: compile_template(text).render(context),
        runbooks=agent.runbooks,
        alert=context["source"]["data"].get("alert") or {},
    )
    print(f"goal: {goal.strip()[:500]}")
    print(
        f"model: {base['provider']}/{model.model} | tools: "
        f"{', '.join(t.name for t in agent.tools)} | "
        f"{'writes approved' if approved else 'read-only'}"
    )
    sys.stdout.flush()
    outcome = run_loop(
        client=model,
        toolbox=toolbox,
        tools=agent.tools,
        goal=goal,
        context=model_context(context, extra),
        max_iterations=agent.max_iterations,
        approved=approved,
        deadline=started + timeout,
        token_budget=agent.token_budget,
        cost_budget_usd=agent.cost_budget_usd,
        run_budget=RunBudget.read(agent, environ),
        namespaces=agent.allowed_namespaces,
    )
    answer = outcome.final.model_dump(exclude={"kind"}) if outcome.final else None
    if answer is not None and outcome.partial:
        answer |= {"partial": True, "partial_reason": outcome.partial}
    result = base | {
        "success": outcome.final is not None,
        "phase": "Succeeded" if outcome.final is not None else "Failed",
        "result": answer,
        "partial": bool(answer and outcome.partial),
        "error": outcome.error,
        "iterations": outcome.iterations,
        "thoughts": outcome.thoughts,
        "tool_calls": kept(toolbox.ordered_audit(), step_secrets(agent, environ)),
        "spec": step_spec(agent),
        "usage": model.usage.as_dict(),
        "seconds": round(time.monotonic() - started, 3),
    }
    _print_summary(result)
    return result


def step_secrets(agent: AgentTask, environ: Mapping[str, str]) -> list[str | None]:
    """The credentials a step's tool output may echo, redacted from the outputs its result
    keeps: the model's key, Prometheus' token, the runbooks' git credentials and what the
    declared scripts are given (`env`)."""
    names = ["LLM_API_KEY", "PROMETHEUS_TOKEN", *(n for t in agent.tools for n in t.env)]
    git = agent.runbooks.git if agent.runbooks else None
    if git is not None and git.credentials_env:
        names.append(git.credentials_env)
    return [environ.get(name) for name in names]


def step_spec(agent: AgentTask) -> dict[str, Any]:
    """The step as a Workflow writes it (its goal unrendered), for `punchingfist eval export`."""
    spec: dict[str, Any] = {
        "goal": agent.goal,
        "tools": [t.name for t in agent.tools],
        "maxIterations": agent.max_iterations,
    }
    if agent.allowed_namespaces:
        spec["policy"] = {"safety": {"allowedNamespaces": list(agent.allowed_namespaces)}}
    return spec


def _failure(error: str) -> dict[str, Any]:
    print(f"agent step failed: {error}", file=sys.stderr)
    return {
        "success": False,
        "phase": "Failed",
        "result": None,
        "error": error,
        "tool_calls": [],
        "iterations": 0,
    }


def _print_summary(result: Mapping[str, Any]) -> None:
    usage = result["usage"]
    cost = f", ~${usage['cost_usd']:.4f}" if usage.get("cost_usd") else ""
    replayed = f" [{LABEL}]" if result.get("replayed") else ""
    if result["success"]:
        final = result["result"]
        print(f"✅{replayed} {final['summary']}")
        if final.get("partial"):
            print(f"   ⚠️  partial answer: {final['partial_reason']}")
        print(f"   root cause: {final['root_cause']}")
        print(
            f"   confidence {final['confidence']:.2f} | can auto-fix: {final['can_auto_fix']}"
            + (f"\n   fix: {fix}" if (fix := proposed_fix(final)) else "")
        )
    else:
        print(f"❌ no answer: {result['error']}")
    print(
        f"   {result['iterations']} turns, {len(result['tool_calls'])} tool calls, "
        f"{usage['total_tokens']} tokens{cost}"
    )
    sys.stdout.flush()
