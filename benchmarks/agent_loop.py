"""Agent loop overhead per iteration, without model or tool time, and tool-call concurrency.

1. `loop`: the loop with an instant in-process model (each turn's Decision is validated from a
   scripted dict, as instructor would) and instant tools: what the loop itself costs per turn
   (prompt building, Decision class, dispatch, audit, result messages). Target < 5 ms.
2. `client stack`: the same turns through the real openai + instructor client against the fake
   OpenAI-compatible server on loopback, which answers at once: HTTP + parsing per turn.
3. `concurrency`: one turn with N tool calls that each take 200 ms: the turn's tool time is about
   the slowest call, not the sum.
"""

from __future__ import annotations

import statistics
import sys
import time
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import BaseModel

from punchingfist.api.runspec import LLMSettings, ToolSpec
from punchingfist.runtime.agent.llm import ModelClient, Usage
from punchingfist.runtime.agent.loop import run_loop
from punchingfist.runtime.agent.toolbox import Toolbox
from punchingfist.runtime.tools.base import ToolResult
from tests.fakes.openai_server import fake_openai

TURNS = 10
RUNS = 20
TOOLS = [ToolSpec(name="kubectl"), ToolSpec(name="promql")]


def turns(count: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "thought": f"turn {n}",
            "action": {
                "kind": "tool_calls",
                "calls": [
                    {"tool": "kubectl", "verb": "get", "resource": "pods", "namespace": f"ns-{n}"},
                    {"tool": "promql", "query": f'up{{n="{n}"}}'},
                ],
            },
        }
        for n in range(count - 1)
    ]
    out.append(
        {
            "thought": "done",
            "action": {
                "kind": "final_answer",
                "summary": "s",
                "problem_summary": "p",
                "root_cause": "r",
                "can_auto_fix": False,
                "confidence": 0.5,
                "escalation_notes": "e",
            },
        }
    )
    return out


class InstantModel:
    """Answers each turn at once with the scripted Decision, validated like instructor does."""

    def __init__(self, script: list[dict[str, Any]]) -> None:
        self.script = list(script)
        self.usage = Usage()
        self.model = "instant"

    def decide(self, response_model: Any, messages: Any) -> Any:
        return response_model.model_validate(self.script.pop(0))


def toolbox(delay: float = 0.0) -> Toolbox:
    def execute(call: BaseModel) -> ToolResult:
        if delay:
            time.sleep(delay)
        return ToolResult(status="ok", output="NAME READY STATUS\nmy-app 0/1 CrashLoopBackOff")

    return Toolbox(executors={"kubectl": execute, "promql": execute})


def loop(client: Any, box: Toolbox) -> float:
    started = time.perf_counter()
    with redirect_stdout(StringIO()):
        outcome = run_loop(
            client=cast(ModelClient, client),
            toolbox=box,
            tools=TOOLS,
            goal="g",
            context={"alert": {"alertname": "X"}},
            max_iterations=TURNS,
            approved=False,
        )
    assert outcome.final is not None, outcome.error
    return time.perf_counter() - started


def main() -> None:
    per_turn = [loop(InstantModel(turns(TURNS)), toolbox()) / TURNS * 1000 for _ in range(RUNS)]
    print(f"agent loop, {TURNS} turns x {RUNS} runs")
    print(
        f"  loop overhead per iteration (no model, no tool time): "
        f"median {statistics.median(per_turn):.3f} ms, max {max(per_turn):.3f} ms "
        f"(target < 5 ms)"
    )

    settings_turns: list[float] = []
    for _ in range(3):
        with fake_openai(turns(TURNS)) as server:
            settings = LLMSettings(provider="local", type="local", endpoint=server.url, model="m")
            client = ModelClient(settings, environ={})
            settings_turns.append(loop(client, toolbox()) / TURNS * 1000)
    print(
        f"  openai + instructor + loopback HTTP per iteration: "
        f"median {statistics.median(settings_turns):.2f} ms"
    )

    for calls in (1, 2, 4):
        box = toolbox(delay=0.2)
        script = [
            {
                "thought": "t",
                "action": {
                    "kind": "tool_calls",
                    "calls": [
                        {
                            "tool": "kubectl",
                            "verb": "get",
                            "resource": "pods",
                            "name": f"p{n}",
                            "namespace": "shop",
                        }
                        for n in range(calls)
                    ],
                },
            },
            turns(1)[0],
        ]
        elapsed = loop(InstantModel(script), box)
        took = elapsed * 1000
        print(
            f"  {calls} concurrent tool call(s) of 200 ms each: turn took {took:.0f} ms "
            f"(sum of calls {calls * 200} ms)"
        )


if __name__ == "__main__":
    main()
