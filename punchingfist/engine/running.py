"""The local engine's core: run a checked plan's DAGs, gates, retries and exit handler."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import random
import string
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from punchingfist.engine.approvals import ApprovalDecision, ApprovalRequest, Approver
from punchingfist.engine.expressions import ExpressionError, evaluate_expr, evaluate_when
from punchingfist.engine.manifests import Plan, Task, Template, parse_duration, read_manifest
from punchingfist.engine.observing import RunObserver, SilentObserver
from punchingfist.engine.phases import (
    ERROR,
    FAILED,
    OMITTED,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    UNSUCCESSFUL,
)
from punchingfist.engine.processes import run_attempt
from punchingfist.engine.results import NodeStatus, RunInfo, RunResult
from punchingfist.engine.variables import Scope, UnresolvedVariable
from punchingfist.errors import PunchingFistError

logger = logging.getLogger(__name__)
WORKFLOW_DEADLINE = "Step exceeded its deadline"
STEP_LABEL = "punchingfist.io/step"
PREVIEW_OUTPUT = "preview"
"""The output of a remediation step's preview task: the fix as the approver must see it (the
action, its target, the server-side dry run's diff, RBAC's verdict), as JSON."""
_NODE_TYPES = {"container": "Pod", "suspend": "Suspend", "dag": "DAG"}


class _NodeError(PunchingFistError):
    """A node cannot run (missing input or secret, unresolved variable): the node is Error."""


class Run:
    """One execution of a plan. Use `run_workflow` / `run_workflow_async`."""

    def __init__(
        self,
        plan: Plan,
        parameters: Mapping[str, str],
        *,
        workdir: Path,
        approver: Approver,
        observer: RunObserver | None = None,
        secrets: Mapping[str, str] | None = None,
        environ: Mapping[str, str] | None = None,
        name: str | None = None,
        namespace: str = "default",
        poll_interval: float = 0.2,
    ) -> None:
        self.plan = plan
        self.approver = approver
        self.observer: RunObserver = observer or SilentObserver()
        self.secrets = dict(secrets or {})
        self.environ = dict(os.environ if environ is None else environ)
        self.poll_interval = poll_interval
        self.nodes: dict[str, NodeStatus] = {}
        self.globals: dict[str, str] = {}
        self.status = RUNNING
        self._pods: asyncio.Semaphore | None = None
        arguments = _arguments(plan, parameters)
        run_name = name or f"{plan.name}-{_suffix()}"
        self.info = RunInfo(
            name=run_name,
            uid=str(uuid.uuid4()),
            workflow=plan.name,
            namespace=namespace,
            workdir=workdir,
            started_at=datetime.now(UTC),
            parameters=arguments,
            labels=_labels(plan, arguments),
            warnings=plan.warnings,
        )

    # -- the run ---------------------------------------------------------------------------

    async def execute(self) -> RunResult:
        self._pods = asyncio.Semaphore(self.plan.parallelism) if self.plan.parallelism else None
        self._notify("on_run_started", self.info)
        entry = self.plan.templates[self.plan.entrypoint]
        main = asyncio.create_task(self._node(entry, self.info.name, self.info.name, {}))
        done, _ = await asyncio.wait({main}, timeout=self.plan.deadline)
        if main in done:
            node = main.result()
            phase = {SKIPPED: SUCCEEDED, OMITTED: SUCCEEDED}.get(node.phase, node.phase)
            message = "" if phase == SUCCEEDED else self._first_failure()
        else:
            main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await main
            self._fail_unfinished(WORKFLOW_DEADLINE)
            phase, message = FAILED, WORKFLOW_DEADLINE
        self.status = phase
        if self.plan.on_exit:
            handler = self.plan.templates[self.plan.on_exit]
            exit_node = await self._node(
                handler, f"{self.info.name}.onExit", f"{self.info.name}.onExit", {}
            )
            if exit_node.phase in UNSUCCESSFUL and phase == SUCCEEDED:
                failure = self._first_failure(exit_node.id + ".")
                phase, message = FAILED, f"exit handler {exit_node.phase}: {failure}"
        result = RunResult(
            info=self.info,
            phase=phase,
            message=message,
            finished_at=datetime.now(UTC),
            nodes=dict(self.nodes),
            outputs=dict(self.globals),
        )
        self._notify("on_run_finished", self.info, result)
        return result

    def _first_failure(self, prefix: str = "") -> str:
        for node in self.nodes.values():
            if node.id.startswith(prefix) and node.type != "DAG" and node.phase in UNSUCCESSFUL:
                return f"{node.display_name} {node.phase}: {node.message}".rstrip(": ")
        return ""

    def _fail_unfinished(self, message: str) -> None:
        now = datetime.now(UTC)
        for node in self.nodes.values():
            if node.finished_at is None:  # running, pending, or waiting to retry
                node.phase, node.message, node.finished_at = FAILED, message, now
                self._notify("on_node_finished", self.info, node)

    # -- one node ----------------------------------------------------------------------------

    async def _node(
        self, template: Template, node_id: str, display: str, arguments: Mapping[str, str]
    ) -> NodeStatus:
        node = NodeStatus(
            node_id, display, template.name, _NODE_TYPES[template.kind], labels=template.labels
        )
        self.nodes[node_id] = node
        try:
            scope = self._scope().child(self._inputs(template, arguments))
            if template.kind == "dag":
                self._start(node)
                node.phase = await self._dag(template, node, scope)
            elif template.kind == "suspend":
                await self._suspend(template, node, scope)
            else:
                await self._container(template, node, scope)
        except (_NodeError, UnresolvedVariable, ExpressionError) as error:
            node.phase, node.message = ERROR, str(error)
        node.finished_at = datetime.now(UTC)
        self._notify("on_node_finished", self.info, node)
        return node

    def _start(self, node: NodeStatus) -> None:
        node.attempts += 1
        node.phase = RUNNING
        node.started_at = node.started_at or datetime.now(UTC)
        self._notify("on_node_started", self.info, node)

    def _inputs(self, template: Template, arguments: Mapping[str, str]) -> dict[str, str]:
        values: dict[str, str] = {}
        for parameter in template.inputs:
            value = arguments.get(parameter.name, parameter.value)
            value = parameter.default if value is None else value
            if value is None:
                raise _NodeError(f"input parameter {parameter.name!r} was not supplied")
            if parameter.enum and value not in parameter.enum:
                raise _NodeError(
                    f"input parameter {parameter.name!r}: {value!r} is not one of "
                    f"{', '.join(parameter.enum)}"
                )
            values[f"inputs.parameters.{parameter.name}"] = value
        return values

    async def _container(self, template: Template, node: NodeStatus, scope: Scope) -> None:
        where = f"template {template.name!r}"
        argv = [scope.substitute(arg, where=where) for arg in template.argv]
        env = dict(self.environ)
        for variable in template.env:
            if variable.secret is None:
                env[variable.name] = scope.substitute(variable.value or "", where=where)
                continue
            key = "/".join(variable.secret)
            if key in self.secrets:
                env[variable.name] = self.secrets[key]
            elif not variable.optional:
                raise _NodeError(
                    f"env {variable.name}: missing secret {variable.secret[0]!r} "
                    f"key {variable.secret[1]!r}"
                )
        retry = template.retry
        base = self.info.workdir / node.id
        while True:
            number = node.attempts + 1
            async with self._pods or contextlib.nullcontext():
                attempt = await run_attempt(
                    argv,
                    env,
                    base / f"attempt-{number}",
                    template.outputs,
                    deadline=template.deadline,
                    started=lambda: self._start(node),
                )
            node.attempts = max(node.attempts, number)
            node.started_at = node.started_at or attempt.started_at
            node.phase, node.message = attempt.phase, attempt.message
            node.exit_code, node.outputs = attempt.exit_code, attempt.outputs
            node.stdout_tail, node.stderr_tail = attempt.stdout_tail, attempt.stderr_tail
            node.workdir = base / f"attempt-{number}"
            if retry is None or attempt.phase == SUCCEEDED or number > retry.limit:
                break
            if retry.policy == "OnFailure" and attempt.phase != FAILED:
                break
            if retry.policy == "OnError" and attempt.phase != ERROR:
                break
            delay = retry.delay(number - 1)
            assert node.started_at is not None
            elapsed = (datetime.now(UTC) - node.started_at).total_seconds()
            if retry.max_duration is not None and elapsed + delay > retry.max_duration:
                node.message += f" (no retry: backoff maxDuration {retry.max_duration:g} s)"
                break
            self._notify("on_node_retrying", self.info, node, delay)
            await asyncio.sleep(delay)
        self._export(template, node)

    async def _suspend(self, template: Template, node: NodeStatus, scope: Scope) -> None:
        deadline = None
        if template.suspend_duration is not None:
            text = scope.substitute(template.suspend_duration, where=f"template {template.name!r}")
            seconds = parse_duration(text, where=f"template {template.name!r}.suspend.duration")
            deadline = datetime.now(UTC) + timedelta(seconds=seconds)
        self._start(node)
        step = template.labels.get(STEP_LABEL) or node.display_name.removesuffix("-approval")
        request = ApprovalRequest(
            self.info.name,
            self.info.uid,
            node.id,
            node.display_name,
            step,
            datetime.now(UTC),
            deadline,
            self._preview(step),
        )
        self._notify("on_approval_requested", self.info, request)
        decision: ApprovalDecision | None = None
        while True:
            decision = self.approver.poll(request)
            if decision is not None:
                break
            now = datetime.now(UTC)
            if deadline is not None and now >= deadline:
                break
            remaining = (deadline - now).total_seconds() if deadline else self.poll_interval
            await asyncio.sleep(min(self.poll_interval, remaining))
        supplied = decision.outputs() if decision else {}
        for parameter in template.outputs:
            value = supplied.get(parameter.name, parameter.default)
            if value is None:
                raise _NodeError(f"output {parameter.name!r}: not supplied and no default")
            node.outputs[parameter.name] = value
        if decision is None:
            node.message = "no answer before the deadline: denied"
        else:
            verdict = "approved" if decision.approved else "denied"
            node.message = f"{verdict} by {decision.approver}"
        node.phase = SUCCEEDED
        self._notify("on_approval_decided", self.info, request, decision)
        self._export(template, node)

    def _preview(self, step: str) -> dict[str, Any] | None:
        """The preview of gated step `step`'s fix: the output `preview` of the step's task that
        made one (its `<step>-preview`, labelled with the same step), None when there is none."""
        for node in self.nodes.values():
            raw = node.outputs.get(PREVIEW_OUTPUT)
            if node.labels.get(STEP_LABEL) != step or node.phase != SUCCEEDED or raw is None:
                continue
            try:
                value = json.loads(raw)
            except ValueError:
                continue
            if isinstance(value, dict) and value:
                return value
        return None

    def _export(self, template: Template, node: NodeStatus) -> None:
        for parameter in template.outputs:
            if parameter.global_name and parameter.name in node.outputs:
                self.globals[parameter.global_name] = node.outputs[parameter.name]

    # -- DAGs ------------------------------------------------------------------------------

    async def _dag(self, template: Template, node: NodeStatus, scope: Scope) -> str:
        phases: dict[str, str] = {}
        outputs: dict[str, dict[str, str]] = {}
        waiting = list(template.tasks)
        running: dict[asyncio.Task[NodeStatus], str] = {}
        limit = asyncio.Semaphore(template.parallelism) if template.parallelism else None
        stopped = False
        try:
            while True:
                omitted = True
                while omitted:  # an omitted task can make its dependents ready at once
                    omitted = False
                    for task in [t for t in waiting if t.depends.tasks <= phases.keys()]:
                        waiting.remove(task)
                        if not task.depends.holds(phases):
                            phases[task.name] = OMITTED
                            self._omit(node, task)
                            omitted = True
                        elif not stopped:
                            coroutine = self._task(template, node, task, scope, outputs, limit)
                            running[asyncio.create_task(coroutine)] = task.name
                if not running:
                    break
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for finished in done:
                    name = running.pop(finished)
                    child = finished.result()
                    phases[name], outputs[name] = child.phase, child.outputs
                stopped = template.fail_fast and _assess(template, phases) in UNSUCCESSFUL
        except asyncio.CancelledError:
            for pending in running:
                pending.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            raise
        return _assess(template, phases)

    def _omit(self, parent: NodeStatus, task: Task) -> None:
        now = datetime.now(UTC)
        node = NodeStatus(
            f"{parent.id}.{task.name}",
            task.name,
            task.template,
            "Skipped",
            phase=OMITTED,
            started_at=now,
            finished_at=now,
            message=f"depends '{task.depends.text}' not met",
        )
        self.nodes[node.id] = node
        self._notify("on_node_finished", self.info, node)

    async def _task(
        self,
        dag: Template,
        parent: NodeStatus,
        task: Task,
        scope: Scope,
        outputs: Mapping[str, Mapping[str, str]],
        limit: asyncio.Semaphore | None,
    ) -> NodeStatus:
        node_id = f"{parent.id}.{task.name}"
        template = self.plan.templates[task.template]
        values = {
            f"tasks.{name}.outputs.parameters.{key}": value
            for name, produced in outputs.items()
            for key, value in produced.items()
        }
        task_scope = scope.child(values)
        where = f"template {dag.name!r}, task {task.name!r}"
        async with limit or contextlib.nullcontext():
            try:
                if task.when is not None and not evaluate_when(
                    task.when,
                    lambda text: task_scope.substitute(text, where=f"{where}.when"),
                    lambda tag: task_scope.resolve(tag, where=f"{where}.when"),
                    where=f"{where}.when",
                ):
                    return self._skip(node_id, task, template)
                arguments = {
                    name: task_scope.substitute(value, where=f"{where}.arguments.{name}")
                    for name, value in task.arguments
                }
            except (UnresolvedVariable, ExpressionError) as error:
                return self._errored(node_id, task, template, str(error))
            return await self._node(template, node_id, task.name, arguments)

    def _skip(self, node_id: str, task: Task, template: Template) -> NodeStatus:
        """A `when` that is false: Skipped, and its outputs take their defaults (Argo ≥ 4.0.7)."""
        now = datetime.now(UTC)
        defaults = {p.name: p.default for p in template.outputs if p.default is not None}
        node = NodeStatus(
            node_id,
            task.name,
            template.name,
            "Skipped",
            phase=SKIPPED,
            message=f"when '{task.when_text}' evaluated false",
            started_at=now,
            finished_at=now,
            outputs=defaults,
            labels=template.labels,
        )
        self.nodes[node_id] = node
        self._notify("on_node_finished", self.info, node)
        return node

    def _errored(self, node_id: str, task: Task, template: Template, message: str) -> NodeStatus:
        now = datetime.now(UTC)
        node = NodeStatus(
            node_id,
            task.name,
            template.name,
            _NODE_TYPES[template.kind],
            phase=ERROR,
            message=message,
            started_at=now,
            finished_at=now,
            labels=template.labels,
        )
        self.nodes[node_id] = node
        self._notify("on_node_finished", self.info, node)
        return node

    # -- values ----------------------------------------------------------------------------

    def _scope(self) -> Scope:
        now = datetime.now(UTC)
        values = {
            "workflow.name": self.info.name,
            "workflow.uid": self.info.uid,
            "workflow.namespace": self.info.namespace,
            "workflow.status": self.status,
            "workflow.failures": json.dumps(self._failures()),
            "workflow.duration": f"{(now - self.info.started_at).total_seconds():.6f}",
            "workflow.creationTimestamp": self.info.started_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        values |= {f"workflow.parameters.{k}": v for k, v in self.info.parameters.items()}
        values |= {f"workflow.outputs.parameters.{k}": v for k, v in self.globals.items()}
        return Scope(values)

    def _failures(self) -> list[dict[str, Any]]:
        return [
            {
                "displayName": node.display_name,
                "message": node.message,
                "templateName": node.template,
                "phase": node.phase,
                "podName": node.id,
                "finishedAt": node.finished_at.strftime("%Y-%m-%dT%H:%M:%SZ")
                if node.finished_at
                else None,
            }
            for node in self.nodes.values()
            if node.type == "Pod" and node.phase in UNSUCCESSFUL
        ]

    def _notify(self, method: str, *args: Any) -> None:
        try:
            getattr(self.observer, method)(*args)
        except Exception:
            logger.exception("run observer %s.%s failed", type(self.observer).__name__, method)


def _assess(template: Template, phases: Mapping[str, str]) -> str:
    """Argo's DAG phase: from the leaf (target) tasks; an omitted leaf takes its branch's phase."""
    depended = {name for task in template.tasks for name in task.depends.tasks}
    by_name = {task.name: task for task in template.tasks}

    def branch(name: str) -> str | None:
        phase = phases.get(name)
        if phase != OMITTED:
            return phase
        for parent in (t.name for t in template.tasks if t.name in by_name[name].depends.tasks):
            found = branch(parent)
            if found is not None:
                return found
        return SUCCEEDED

    for task in template.tasks:
        if task.name in depended:
            continue
        phase = branch(task.name)
        if phase in UNSUCCESSFUL:
            return phase
    return SUCCEEDED


def _arguments(plan: Plan, given: Mapping[str, str]) -> dict[str, str]:
    known = {p.name: p for p in plan.arguments}
    unknown = sorted(set(given) - known.keys())
    if unknown:
        names = ", ".join(known) or "none"
        raise PunchingFistError(
            f"{plan.name}: {unknown[0]!r} is not a parameter of this workflow (it has: {names})"
        )
    values: dict[str, str] = {}
    for parameter in plan.arguments:
        value = given.get(parameter.name, parameter.value)
        value = parameter.default if value is None else value
        if value is None:
            raise PunchingFistError(f"{plan.name}: parameter {parameter.name!r} needs a value")
        if parameter.enum and value not in parameter.enum:
            raise PunchingFistError(
                f"{plan.name}: parameter {parameter.name!r} must be one of "
                f"{', '.join(parameter.enum)}"
            )
        values[parameter.name] = str(value)
    return values


def _labels(plan: Plan, arguments: Mapping[str, str]) -> dict[str, str]:
    labels = dict(plan.labels)
    env = {"workflow": {"name": plan.name, "parameters": dict(arguments)}}
    for key, node in plan.labels_from.items():
        value = evaluate_expr(node, env, where=f"spec.workflowMetadata.labelsFrom.{key}")
        labels[key] = "" if value is None else str(value)
    return labels


def _suffix() -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=5))


async def run_workflow_async(
    manifest: Mapping[str, Any],
    parameters: Mapping[str, str] | None = None,
    *,
    workdir: Path,
    approver: Approver,
    observer: RunObserver | None = None,
    secrets: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    name: str | None = None,
    namespace: str = "default",
    poll_interval: float = 0.2,
) -> RunResult:
    """Run a compiled WorkflowTemplate on this machine; see `run_workflow`."""
    plan = read_manifest(manifest)
    run = Run(
        plan,
        parameters or {},
        workdir=Path(workdir),
        approver=approver,
        observer=observer,
        secrets=secrets,
        environ=environ,
        name=name,
        namespace=namespace,
        poll_interval=poll_interval,
    )
    return await run.execute()


def run_workflow(
    manifest: Mapping[str, Any],
    parameters: Mapping[str, str] | None = None,
    *,
    workdir: Path,
    approver: Approver,
    observer: RunObserver | None = None,
    secrets: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    name: str | None = None,
    namespace: str = "default",
    poll_interval: float = 0.2,
) -> RunResult:
    """Run a compiled WorkflowTemplate on this machine and return when it has finished.

    `parameters` override the template's `spec.arguments`; `secrets` maps `SECRET/KEY` to the
    value a `secretKeyRef` reads (see `secrets_from_documents`); `environ` is the base
    environment of every step (default: this process's). The manifest is checked first: a
    field the engine does not run raises `NotSupportedYet` before anything starts.
    """
    return asyncio.run(
        run_workflow_async(
            manifest,
            parameters,
            workdir=workdir,
            approver=approver,
            observer=observer,
            secrets=secrets,
            environ=environ,
            name=name,
            namespace=namespace,
            poll_interval=poll_interval,
        )
    )


def secrets_from_documents(documents: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """`SECRET/KEY` -> value for every Secret among `documents` (e.g. what the compiler emits)."""
    found: dict[str, str] = {}
    for document in documents:
        if document.get("kind") != "Secret":
            continue
        name = document.get("metadata", {}).get("name", "")
        for key, value in (document.get("data") or {}).items():
            found[f"{name}/{key}"] = base64.b64decode(value).decode()
        for key, value in (document.get("stringData") or {}).items():
            found[f"{name}/{key}"] = str(value)
    return found
