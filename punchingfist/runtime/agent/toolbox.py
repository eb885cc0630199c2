"""The enabled tools of one agent step: dispatch calls, refuse repeats, audit everything.

Tools see only the environment they need: kubectl the basics below, a script the basics and
the variables its declaration names (`env`). The model's key and the task's own wiring
(PF_*) reach no tool.
"""

from __future__ import annotations

import json
import shlex
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from punchingfist.api.runspec import RunbooksTask, ToolSpec
from punchingfist.runtime.redaction import redact
from punchingfist.runtime.tools import curl, kubectl, promql, runbook, scripts
from punchingfist.runtime.tools.base import CHARS_PER_TOKEN, ToolResult, cap, refused

Executor = Callable[[BaseModel], ToolResult]
BUILTIN = ("kubectl", "promql", "curl", "runbook")
BASE_ENV = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "KUBECONFIG",
    "KUBERNETES_SERVICE_HOST",
    "KUBERNETES_SERVICE_PORT",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
"""What every tool process may see of the step's environment."""
KEPT_OUTPUT_CHARS = 4000
"""A call's output kept in the step's result (head and tail, like the model's cap)."""
KEPT_STEP_CHARS = 48_000
"""All the outputs kept in one step's result: results travel as Argo output parameters and as
later steps' environment variables (a Linux variable holds at most 128 KiB), so they stay
small."""


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
    argv: list[str] | None = None
    """The command the runtime built from the call (kubectl, scripts)."""
    turn: int = 0
    """The model's turn that asked for it (1, 2, ...)."""
    output: str = ""
    """What the model read; the step's result keeps it redacted and cut (`kept`)."""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def kept(entries: Sequence[AuditEntry], secrets: Sequence[str | None]) -> list[dict[str, Any]]:
    """The audit as the step's result keeps it, in call order: each output with `secrets`
    redacted, cut to KEPT_OUTPUT_CHARS, while the step's KEPT_STEP_CHARS last; one that no
    longer fits is left out and says so (`output_kept: false`). `punchingfist eval export`
    makes an eval scenario's recordings of them."""
    room = KEPT_STEP_CHARS
    records = []
    for entry in entries:
        record = entry.as_dict()
        text, _ = cap(redact(entry.output, secrets), KEPT_OUTPUT_CHARS // CHARS_PER_TOKEN)
        record["output"], record["output_kept"] = (text, True) if len(text) <= room else ("", False)
        room -= len(record["output"])
        records.append(record)
    return records


@dataclass
class Toolbox:
    """Runs tool calls for the loop. `executors` maps a tool name to a function of its call."""

    executors: Mapping[str, Executor]
    script_calls: Mapping[str, type[BaseModel]] = field(default_factory=dict)
    """The call class of each declared script (built from its parameters)."""
    writes: bool = False
    """The step is behind an approved gate: kubectl's write verbs may be asked for."""
    max_output_tokens: int = 2000
    audit: list[AuditEntry] = field(default_factory=list)
    _seen: dict[str, str] = field(default_factory=dict)
    _counter: int = 0
    _turns: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def builtin(self) -> tuple[str, ...]:
        return tuple(n for n in BUILTIN if n in self.executors and n not in self.script_calls)

    @property
    def scripts(self) -> tuple[type[BaseModel], ...]:
        return tuple(self.script_calls[n] for n in sorted(self.script_calls))

    def ordered_audit(self) -> list[AuditEntry]:
        """Every call in the order the model asked for them (they may finish in any order)."""
        return sorted(self.audit, key=lambda entry: int(entry.id.split("-")[1]))

    def run_all(self, calls: Sequence[BaseModel]) -> list[tuple[str, BaseModel, ToolResult]]:
        """Run independent calls concurrently; results come back in the order asked."""
        planned = []
        with self._lock:
            self._turns += 1  # the loop asks once per turn
            for call in calls:
                self._counter += 1
                planned.append((f"call-{self._counter}", call, self._turns))
        if not planned:
            return []
        if len(planned) == 1:
            return [self._run_one(*planned[0])]
        with ThreadPoolExecutor(max_workers=len(planned)) as pool:
            return list(pool.map(lambda item: self._run_one(*item), planned))

    def _run_one(
        self, call_id: str, call: BaseModel, turn: int
    ) -> tuple[str, BaseModel, ToolResult]:
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
                result = ToolResult(
                    status=result.status,
                    output=text,
                    error=result.error,
                    truncated=True,
                    seconds=result.seconds,
                    details=result.details,
                )
        entry = AuditEntry(
            id=call_id,
            tool=tool,
            call=arguments,
            status=result.status,
            error=result.error,
            seconds=result.seconds,
            truncated=result.truncated,
            output_chars=len(result.output),
            argv=result.details.get("argv"),
            turn=turn,
            output=result.output,
        )
        with self._lock:
            self.audit.append(entry)
        self._print(entry)
        return call_id, call, result

    @staticmethod
    def _print(entry: AuditEntry) -> None:
        given = {k: v for k, v in entry.call.items() if k != "tool"}
        asked = given.get("query") or given.get("url") or json.dumps(given, ensure_ascii=False)
        shown = f"{entry.tool} {asked}"
        if entry.argv:  # the command we built: kubectl's, or a script's as `name: argv`
            ran = shlex.join(entry.argv)
            shown = ran if entry.argv[0] == entry.tool else f"{entry.tool}: {ran}"
        note = f" ({entry.error})" if entry.error else ""
        print(
            f"  🔧 [{entry.id}] {shown} -> {entry.status}{note} "
            f"[{entry.seconds:.2f} s, {entry.output_chars} chars]"
        )
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
    runbooks: RunbooksTask | None = None,
    alert: Mapping[str, Any] | None = None,
    read_configmaps: runbook.ConfigMapReader | None = None,
) -> Toolbox:
    """The executors for a step's declared tools. Secrets reach tools only through `environ`,
    and each tool only the part of it that it needs."""
    executors: dict[str, Executor] = {}
    script_calls: dict[str, type[BaseModel]] = {}
    namespaces = frozenset(allowed_namespaces) if allowed_namespaces else None
    tool_env = _only(environ, BASE_ENV)
    for tool in tools:
        if tool.name == "kubectl":
            policy = kubectl.KubectlPolicy(
                approved=approved,
                require_approval=frozenset(require_approval),
                allowed_namespaces=namespaces,
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
        elif tool.name == "runbook" and runbooks is not None and not tool.command:
            reader = read_configmaps or runbook.kubectl_reader(kubectl_binary, tool_env, timeout)
            executors["runbook"] = _runbook(
                runbook.RunbookTool(runbooks, alert or {}, environ, reader, tool_env)
            )
        elif tool.command:
            script_calls[tool.name] = scripts.call_model(
                tool.name, tool.description, tool.parameters
            )
            env = _only(environ, (*BASE_ENV, *tool.env))
            executors[tool.name] = _script(tool, timeout, env, namespaces)
    return Toolbox(executors=executors, script_calls=script_calls, writes=approved)


def _only(environ: Mapping[str, str], names: Sequence[str]) -> dict[str, str]:
    return {name: environ[name] for name in names if name in environ}


def _kubectl(policy: kubectl.KubectlPolicy, env: Mapping[str, str]) -> Executor:
    def execute(call: Any) -> ToolResult:
        return kubectl.run(call, policy, env)

    return execute


def _promql(settings: promql.PromqlSettings) -> Executor:
    def execute(call: Any) -> ToolResult:
        return promql.run(
            settings, call.query, range_minutes=call.range_minutes, step_seconds=call.step_seconds
        )

    return execute


def _curl(policy: curl.CurlPolicy) -> Executor:
    def execute(call: Any) -> ToolResult:
        return curl.run(call.url, policy, call.method)

    return execute


def _runbook(tool: runbook.RunbookTool) -> Executor:
    def execute(call: Any) -> ToolResult:
        return tool.run(call.action, call.name)

    return execute


def _script(
    tool: ToolSpec, timeout: float, env: Mapping[str, str], namespaces: frozenset[str] | None
) -> Executor:
    command = list(tool.command or [])

    def execute(call: Any) -> ToolResult:
        return scripts.run(
            command, tool.parameters, call, timeout=timeout, env=env, allowed_namespaces=namespaces
        )

    return execute
