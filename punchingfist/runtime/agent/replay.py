"""The `replay` model: recorded turns of a scenario folder, for demos and offline runs (D11).

It is not a model. Every line it prints and every result it writes says "replayed model", so
nobody mistakes a replay for an investigation. The tools still run for real: a replayed turn
asks for the calls it recorded, and the answers are whatever this machine gives (with no
cluster, kubectl says so).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from punchingfist.runtime.agent.llm import LLMError, Usage

REPLAY_ENV = "PF_LLM_REPLAY"
"""Scenario folders (or their scenario.yaml), separated by the OS path separator: each agent
step replays the first one whose recorded calls use only the step's tools."""
LABEL = "replayed model"


def scenario_file(path: str) -> Path:
    candidate = Path(path)
    return candidate / "scenario.yaml" if candidate.is_dir() else candidate


def load_turns(path: str) -> list[dict[str, Any]]:
    file = scenario_file(path)
    try:
        data = yaml.safe_load(file.read_text())
    except OSError as error:
        raise LLMError(f"cannot read the replay scenario {file}: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise LLMError(f"the replay scenario {file} is not YAML: {error}") from error
    turns = data.get("turns") if isinstance(data, dict) else None
    if not isinstance(turns, list) or not turns:
        raise LLMError(f"the replay scenario {file} has no `turns` list")
    return turns


def tools_used(turns: list[dict[str, Any]]) -> set[str]:
    return {
        str(call.get("tool"))
        for turn in turns
        for call in ((turn.get("action") or {}).get("calls") or [])
        if isinstance(call, dict)
    }


@dataclass
class ReplayClient:
    """Answers `decide()` with the scenario's turns in order; same interface as ModelClient."""

    paths: str
    tools: frozenset[str] | None = None
    """The step's tool names: the first scenario that uses no other is replayed."""
    usage: Usage = field(default_factory=lambda: Usage(cost_usd=None))
    path: str = field(init=False)
    turns: list[dict[str, Any]] = field(init=False)
    position: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        candidates = [p for p in self.paths.split(os.pathsep) if p]
        if not candidates:
            raise LLMError(f"{REPLAY_ENV} names no scenario")
        loaded = [(path, load_turns(path)) for path in candidates]
        tools = self.tools
        fitting = [(p, t) for p, t in loaded if tools is None or tools_used(t) <= tools]
        # The one that exercises most of the step's tools shows the most.
        fitting.sort(key=lambda item: -len(tools_used(item[1]) & (tools or frozenset())))
        self.path, self.turns = (fitting or loaded)[0]

    @property
    def model(self) -> str:
        return f"{LABEL} ({scenario_file(self.path).parent.name})"

    def decide(self, response_model: Any, messages: Sequence[dict[str, str]]) -> Any:
        if self.position >= len(self.turns):
            raise LLMError(f"the {LABEL} has no more recorded turns ({len(self.turns)} used)")
        turn = self.turns[self.position]
        self.position += 1
        self.usage.calls += 1
        try:
            return response_model.model_validate(turn)
        except ValidationError as error:
            raise LLMError(
                f"recorded turn {self.position} does not fit this step's tools: "
                f"{error.errors()[0]['msg']}"
            ) from error


def replay_path(environ: Mapping[str, str]) -> str | None:
    return environ.get(REPLAY_ENV) or None
