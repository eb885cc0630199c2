"""The enabled tools of one agent step: dispatch calls, refuse repeats, audit everything."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from punchingfist.api.runspec import ToolSpec
from punchingfist.runtime.tools import curl, kubectl, promql, scripts
from punchingfist.runtime.tools.base import ToolResult, cap, refused

Executor = Callable[[BaseModel], ToolResult]


@dataclass
class AuditEntry:
    id: str
    tool: str
    call: dict[str, Any]
    status: str
    error: str | None
    seconds: float
    truncated: bool
    output_chars: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Toolbox:
    """Runs tool calls for the loop. `executors` maps a tool name to a function of its call."""

    executors: Mapping[str, Executor]
    max_output_tokens: int = 2000
    audit: list[AuditEntry] = field(default_factory=list)
    _seen: dict[str, str] = field(default_factory=dict)
    _counter: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def builtin(self) -> tuple[str, ...]:
        return tuple(n for n in ("kubectl", "promql", "curl") if n in self.executors)

    @property
    def scripts(self) -> tuple[str, ...]:
        return tuple(sorted(n for n in self.executors if n not in ("kubectl", "promql", "curl")))

    def ordered_audit(self) -> list[AuditEntry]:
        """Every call in the order the model asked for them (they may finish in any order)."""
        return sorted(self.audit, key=lambda entry: int(entry.id.split("-")[1]))

    def run_all(self, calls: Sequence[BaseModel]) -> list[tuple[str, BaseModel, ToolResult]]:
        """Run independent calls concurrently; results come back in the order asked."""
        planned = []
        with self._lock:
            for call in calls:
                self._counter += 1
                planned.append((f"call-{self._counter}", call))
        if not planned:
            return []
        if len(planned) == 1:
            return [self._run_one(*planned[0])]
        with ThreadPoolExecutor(max_workers=len(planned)) as pool:
            return list(pool.map(lambda item: self._run_one(*item), planned))

    def _run_one(self, call_id: str, call: BaseModel) -> tuple[str, BaseModel, ToolResult]:
        arguments = call.model_dump(exclude_none=True)
        tool = arguments.pop("tool")
        key = json.dumps([tool, arguments], sort_keys=True)
        with self._lock:
            earlier = self._seen.get(key)
            if earlier is None:
                self._seen[key] = call_id
        if earlier is not None:
            result = refused(
                f"you already made this exact call as {earlier}; use that result or ask "
                "something else"
            )
        else:
            try:
                result = self.executors[tool](call)
            except Exception as error:  # a tool must never break the loop
                result = ToolResult(status="error", error=f"{type(error).__name__}: {error}")
        if result.output:
            text, truncated = cap(result.output, self.max_output_tokens)
            if truncated:
                result = ToolResult(status=result.status, output=text, error=result.error,
                                    truncated=True, seconds=result.seconds,
                                    details=result.details)  # fmt: skip
        entry = AuditEntry(
            id=call_id, tool=tool, call=arguments, status=result.status, error=result.error,
            seconds=result.seconds, truncated=result.truncated, output_chars=len(result.output),
        )  # fmt: skip
        with self._lock:
            self.audit.append(entry)
        self._print(entry)
        return call_id, call, result

    @staticmethod
    def _print(entry: AuditEntry) -> None:
        shown = (
            " ".join(entry.call.get("args", []))
            or entry.call.get("query")
            or entry.call.get("url", "")
        )
        note = f" ({entry.error})" if entry.error else ""
        print(f"  🔧 [{entry.id}] {entry.tool} {shown} -> {entry.status}{note} "
              f"[{entry.seconds:.2f} s, {entry.output_chars} chars]")  # fmt: skip
        sys.stdout.flush()


def build_toolbox(
    tools: Sequence[ToolSpec],
    *,
    environ: Mapping[str, str],
    approved: bool,
    require_approval: Sequence[str],
    allowed_namespaces: Sequence[str] | None,
    render: Callable[[str], str],
    kubectl_binary: str = "kubectl",
    timeout: float = 30.0,
) -> Toolbox:
    """The executors for a step's declared tools. Secrets reach tools only through `environ`."""
    executors: dict[str, Executor] = {}
    tool_env = {k: v for k, v in environ.items() if k not in ("LLM_API_KEY", "PF_SPEC")}
    for tool in tools:
        if tool.name == "kubectl":
            policy = kubectl.KubectlPolicy(
                approved=approved,
                require_approval=frozenset(require_approval),
                allowed_namespaces=frozenset(allowed_namespaces) if allowed_namespaces else None,
                timeout=timeout,
                binary=kubectl_binary,
            )
            executors["kubectl"] = _kubectl(policy, tool_env)
        elif tool.name == "promql":
            url = render(tool.endpoint) if tool.endpoint else environ.get("PROMETHEUS_URL", "")
            token = environ.get("PROMETHEUS_TOKEN") or None
            executors["promql"] = _promql(promql.PromqlSettings(url, token, timeout))
        elif tool.name == "curl":
            domains = tuple(tool.allowed_domains or ())
            executors["curl"] = _curl(curl.CurlPolicy(domains, timeout=min(timeout, 10.0)))
        elif tool.command:
            executors[tool.name] = _script(list(tool.command), timeout, tool_env)
    return Toolbox(executors=executors)


def _kubectl(policy: kubectl.KubectlPolicy, env: Mapping[str, str]) -> Executor:
    def execute(call: Any) -> ToolResult:
        return kubectl.run(call.args, policy, env)

    return execute


def _promql(settings: promql.PromqlSettings) -> Executor:
    def execute(call: Any) -> ToolResult:
        return promql.run(settings, call.query, range_minutes=call.range_minutes,
                          step_seconds=call.step_seconds)  # fmt: skip

    return execute


def _curl(policy: curl.CurlPolicy) -> Executor:
    def execute(call: Any) -> ToolResult:
        return curl.run(call.url, policy, call.method)

    return execute


def _script(command: list[str], timeout: float, env: Mapping[str, str]) -> Executor:
    def execute(call: Any) -> ToolResult:
        return scripts.run(command, call.args, timeout=timeout, env=env)

    return execute
