"""Run scenarios through the production agent loop and score them.

One case is one scenario run once: its step compiled by the compiler as a Workflow's would be
(the same TaskSpec a step pod gets), `run_agent_step` with the model at `--llm-endpoint`, its
tools answered from recordings (offline) or run for real against a cluster (live), then the
checks of `scoring` and, when configured, the judge. Cases run in parallel worker processes
(`jobs`), each with its transcript (what a step pod's log would show) in its own file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import yaml

from punchingfist.api import Workflow, parse_resource
from punchingfist.api.alerts import Alert, alert_view
from punchingfist.api.pricing import DEFAULT_PRICES, Price, cost_usd, lookup
from punchingfist.api.runspec import SPEC_ENV, TaskSpec
from punchingfist.compiler import compile_workflow
from punchingfist.evals import scoring
from punchingfist.evals.judge import Judge
from punchingfist.evals.live import prepared
from punchingfist.evals.results import CaseResult
from punchingfist.evals.scenarios import DEFAULT_GOAL, Scenario
from punchingfist.evals.tools import Outputs, recorded_toolbox
from punchingfist.runtime.agent.llm import (
    ENDPOINT_ENV,
    MODE_ENV,
    MODEL_ENV,
    LLMError,
    ModelClient,
    with_overrides,
)
from punchingfist.runtime.agent.runner import run_agent_step
from punchingfist.runtime.agent.toolbox import BUILTIN, Toolbox, build_toolbox
from punchingfist.templating import compile_template

STEP = "investigate"
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")


@dataclass
class Options:
    endpoint: str
    model: str
    api_key: str | None = None
    mode: str | None = None
    judge: Judge | None = None
    repeat: int = 1
    jobs: int = 1
    live: bool = False
    kubeconfig: str | None = None
    price: Price | None = None
    """USD per million (input, output) tokens; default: the built-in list price of `model`."""
    logs: str | None = None
    """A folder for each case's transcript; None: transcripts are not kept."""
    timeout: float = 600.0

    def described(self) -> dict[str, Any]:
        """The model under test as the report names it (never the key)."""
        return {"name": self.model, "endpoint": self.endpoint, "mode": self.mode}

    def unit_price(self) -> Price | None:
        return self.price if self.price is not None else lookup(self.model, DEFAULT_PRICES)


@dataclass
class Case:
    scenario: Scenario
    repeat: int

    @property
    def label(self) -> str:
        return self.scenario.name + (f" #{self.repeat}" if self.repeat > 1 else "")


@dataclass
class Progress:
    """One line per finished case on `stream`, with a bar when it is a terminal."""

    total: int
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    done: int = 0
    passed: int = 0

    def __call__(self, result: CaseResult) -> None:
        self.done += 1
        self.passed += result.status == "passed"
        mark = {"passed": "✅", "failed": "❌", "skipped": "⏭ "}[result.status]
        width = 20
        filled = width * self.done // max(self.total, 1)
        bar = "█" * filled + "·" * (width - filled)
        why = f" — {result.reasons[0]}" if result.reasons and result.status != "passed" else ""
        label = result.scenario + (f" #{result.repeat}" if result.repeat > 1 else "")
        self.stream.write(
            f"[{bar}] {self.done}/{self.total} {mark} {label} ({result.turns} turns, "
            f"{result.seconds:.1f} s){why}\n"
        )
        self.stream.flush()


def event(scenario: Scenario) -> dict[str, Any]:
    """The run's event, as intake builds it from an Alertmanager alert."""
    labels = scenario.alert["labels"]
    fingerprint = hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]
    alert = Alert.model_validate(
        {
            "status": scenario.alert.get("status", "firing"),
            "labels": labels,
            "annotations": scenario.alert.get("annotations") or {},
            "startsAt": scenario.alert.get("startsAt")
            or (datetime.now(UTC) - timedelta(minutes=15)).isoformat(),
            "fingerprint": fingerprint,
        }
    )
    view = alert_view(alert)
    found: dict[str, Any] = {"alert": view, "alerts": [view], "context": {}}
    if scenario.prompt is not None:
        found["question"] = scenario.prompt
    return found


def _step(scenario: Scenario) -> dict[str, Any]:
    step = dict(scenario.step or {"tools": ["kubectl", "promql"]})
    if scenario.prompt is not None:  # a question, never a template: read from the event
        step["goal"] = "{{ .source.data.question }}"
    step.setdefault("goal", DEFAULT_GOAL)
    return {"name": STEP, "type": "agent", **step}


def task_spec(scenario: Scenario, options: Options) -> tuple[TaskSpec, str]:
    """The TaskSpec of the step under test and its name, compiled as in production."""
    if scenario.workflow is not None:
        file = Path(scenario.path) / scenario.workflow.file
        resource = parse_resource(yaml.safe_load(file.read_text()), origin=str(file))
        name = scenario.workflow.step
    else:
        llm = {"provider": "openai-compatible", "endpoint": options.endpoint}
        body: dict[str, Any] = {
            "apiVersion": "punchingfist.io/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": "eval"},
            "spec": {"runtime": {"llmConfig": llm | {"model": options.model}}},
        }
        body["spec"]["steps"] = [_step(scenario)]
        resource = parse_resource(body, origin=f"{scenario.path}/scenario.yaml: step")
        name = STEP
    if not isinstance(resource, Workflow):
        raise LLMError(f"{scenario.name}: workflow.file is not a Workflow")
    manifest = compile_workflow(resource).manifest
    template = next((t for t in manifest["spec"]["templates"] if t["name"] == name), None)
    if template is None or "container" not in template:
        raise LLMError(f"{scenario.name}: the Workflow has no step {name!r} to evaluate")
    value = next(e["value"] for e in template["container"]["env"] if e["name"] == SPEC_ENV)
    spec = TaskSpec.decode(value)
    if spec.agent is None:
        raise LLMError(f"{scenario.name}: step {name!r} is not an agent step")
    return spec, name


def _environ(scenario: Scenario, options: Options) -> dict[str, str]:
    environ = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    environ |= {
        "PF_EVENT": json.dumps(event(scenario)),
        "PF_SOURCE": "eval",
        "PF_RUN_NAME": f"eval-{scenario.name}",
        ENDPOINT_ENV: options.endpoint,
        MODEL_ENV: options.model,
    }
    if options.mode:
        environ[MODE_ENV] = options.mode
    if options.api_key:
        environ["LLM_API_KEY"] = options.api_key
    return environ


def _toolbox(scenario: Scenario, spec: TaskSpec, environ: Mapping[str, str], live: bool) -> Toolbox:
    agent = spec.agent
    assert agent is not None
    names = [t.name for t in agent.tools]
    if not live:
        scripts = [t.name for t in agent.tools if t.command or t.name not in BUILTIN]
        if scripts:
            raise LLMError(
                f"{scenario.name}: script tools ({', '.join(scripts)}) are not supported yet in "
                "offline scenarios: run it --live"
            )
        return recorded_toolbox(scenario.recordings, names, agent.allowed_namespaces)
    toolbox = build_toolbox(
        agent.tools,
        environ=environ,
        approved=False,
        require_approval=agent.require_approval,
        allowed_namespaces=agent.allowed_namespaces,
        render=lambda text: compile_template(text).render({}),
    )
    toolbox.writes = True  # expressible, and refused by the read-only policy: see scoring
    return toolbox


@contextlib.contextmanager
def _cluster(scenario: Scenario, options: Options, log: TextIO) -> Iterator[dict[str, str]]:
    """The live fault, made real for the case (punchingfist.evals.live), or nothing."""
    if scenario.live is None or not options.live:
        yield {}
        return

    def say(line: str) -> None:
        log.write(f"{line}\n")
        log.flush()

    with prepared(scenario, options.kubeconfig, say) as extra:
        yield dict(extra)


def _skip(case: Case, options: Options) -> str | None:
    scenario = case.scenario
    if scenario.live is not None and not options.live and not scenario.recordings:
        return "a live scenario without recordings: run it with --live on a cluster"
    if scenario.needs_judge and options.judge is None:
        return "its expected output is free text: it needs --judge-model"
    return None


def run_case(case: Case, options: Options) -> CaseResult:
    """Run one case; its transcript goes to its log file (or nowhere), never to stdout."""
    scenario = case.scenario
    base = CaseResult(scenario=scenario.name, repeat=case.repeat, tags=list(scenario.tags))
    skipped = _skip(case, options)
    if skipped:
        base.status, base.reasons = "skipped", [skipped]
        return base
    log_path = None
    if options.logs:
        Path(options.logs).mkdir(parents=True, exist_ok=True)
        log_path = str(Path(options.logs) / f"{scenario.name}.{case.repeat}.log")
    started = time.monotonic()
    with (
        open(log_path or os.devnull, "w", encoding="utf-8") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        try:
            result, attempts, outputs = _investigate(case, options, log)
        except Exception as error:  # one broken case must not stop the others
            base.error = f"{type(error).__name__}: {error}"
            base.reasons = [f"could not run: {base.error}"]
            base.seconds = round(time.monotonic() - started, 3)
            base.log = log_path
            return base
    base.seconds = round(time.monotonic() - started, 3)
    base.log = log_path
    return _scored(base, scenario, result, attempts, outputs, options)


def _investigate(
    case: Case, options: Options, log: TextIO
) -> tuple[dict[str, Any], list[dict[str, Any]], Outputs]:
    scenario = case.scenario
    spec, _ = task_spec(scenario, options)
    assert spec.agent is not None
    live = options.live and scenario.live is not None
    with _cluster(scenario, options, log) as extra:
        environ = _environ(scenario, options) | extra  # live: the kubeconfig, from `prepared`
        client = ModelClient(
            with_overrides(spec.agent.llm, environ), environ, timeout=min(options.timeout, 120.0)
        )
        attempts: list[dict[str, Any]] = []
        client.on_answer(lambda raw: attempts.extend(scoring.requested_calls(raw)))
        toolbox = _toolbox(scenario, spec, environ, live)
        outputs = Outputs()
        toolbox.executors = {n: outputs.watching(e) for n, e in toolbox.executors.items()}
        spec = spec.model_copy(update={"timeout_seconds": int(options.timeout)})
        result = run_agent_step(spec, environ, client=client, toolbox=toolbox)
    return result, attempts, outputs


def _scored(
    base: CaseResult,
    scenario: Scenario,
    result: Mapping[str, Any],
    attempts: Sequence[Mapping[str, Any]],
    outputs: Outputs,
    options: Options,
) -> CaseResult:
    usage = result.get("usage") or {}
    prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    base.tokens = {"prompt": prompt, "completion": completion, "total": prompt + completion}
    price = options.unit_price()
    base.cost_usd = round(cost_usd(price, prompt, completion), 6) if price else None
    base.turns = int(result.get("iterations") or 0)
    base.tool_calls = [
        {k: e[k] for k in ("id", "tool", "call", "status")} for e in result.get("tool_calls") or []
    ]
    base.error = result.get("error")
    answer = result.get("result")
    if isinstance(answer, Mapping):
        base.answer = {
            k: answer.get(k) for k in ("summary", "root_cause", "confidence", "evidence")
        }
    verdict = scoring.score(scenario, result, attempts, outputs)
    base.reasons, base.overconfident = verdict.reasons, verdict.overconfident
    if verdict.passed and options.judge is not None and isinstance(answer, Mapping):
        judged = options.judge.grade(scenario.expect.judge_elements(), answer)
        base.judge = judged.as_dict()
        if not judged.passed:
            base.reasons = [f"the judge found missing: {judged.reason}"]
    base.status = "passed" if not base.reasons else "failed"
    return base


def cases(scenarios: Sequence[Scenario], repeat: int) -> list[Case]:
    return [Case(s, n) for s in scenarios for n in range(1, repeat + 1)]


def run_scenarios(
    scenarios: Sequence[Scenario],
    options: Options,
    progress: Callable[[CaseResult], None] | None = None,
) -> list[CaseResult]:
    """Every scenario `options.repeat` times, `options.jobs` at a time; results in the order
    of the scenarios."""
    todo = cases(scenarios, options.repeat)
    results: dict[int, CaseResult] = {}
    if options.jobs <= 1 or len(todo) == 1:
        for index, case in enumerate(todo):
            results[index] = run_case(case, options)
            if progress:
                progress(results[index])
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=options.jobs, mp_context=context) as pool:
            futures = {pool.submit(run_case, case, options): i for i, case in enumerate(todo)}
            for future in as_completed(futures):
                index = futures[future]
                results[index] = future.result()
                if progress:
                    progress(results[index])
    return [results[i] for i in range(len(todo))]
