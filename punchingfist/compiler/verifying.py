"""Semantic check of a compiled manifest, because Hera checks none.

Entry point and exit handler exist; every task's template exists; `depends` names tasks of the
same DAG; no cycles; every `{{...}}` is wiring the compiler emits on purpose (D2) and refers to
something that exists: a task the task depends on, a declared input, a workflow parameter or a
declared global output.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from punchingfist.errors import CompileError

_TAG = re.compile(r"\{\{(.*?)\}\}")
_TASK_REF = re.compile(r"^tasks\.([a-z0-9-]+)\.outputs\.parameters\.([A-Za-z0-9_-]+)$")
_INPUT_REF = re.compile(r"^inputs\.parameters\.([A-Za-z0-9_-]+)$")
_PARAM_REF = re.compile(r"^workflow\.parameters\.([A-Za-z0-9_-]+)$")
_GLOBAL_REF = re.compile(r"^=workflow\?\.outputs\?\.parameters\?\.([A-Za-z0-9_]+) \?\? ''$")
_WORKFLOW_VARS = {
    "workflow.name",
    "workflow.uid",
    "workflow.namespace",
    "workflow.status",
    "workflow.failures",
    "workflow.duration",
    "workflow.creationTimestamp",
}
_DEPENDS_NAME = re.compile(r"([a-z0-9][a-z0-9-]*)(?:\.[A-Za-z]+)?")


def verify(manifest: dict[str, Any], *, resource: str) -> None:
    """Raise CompileError (an internal error: a compiler bug) if the manifest is unsound."""

    def fail(message: str) -> None:
        raise CompileError(f"internal error, please report it: {message}", resource=resource)

    spec = manifest.get("spec", {})
    templates = {template["name"]: template for template in spec.get("templates", [])}
    if len(templates) != len(spec.get("templates", [])):
        fail("two templates share a name")
    for key in ("entrypoint", "onExit"):
        if key in spec and spec[key] not in templates:
            fail(f"{key} {spec[key]!r} is not a template")
    if "entrypoint" not in spec:
        fail("no entrypoint")
    parameters = {p["name"] for p in spec.get("arguments", {}).get("parameters", [])}
    global_names = {
        p["globalName"]
        for template in templates.values()
        for p in (template.get("outputs") or {}).get("parameters", [])
        if "globalName" in p
    }
    for template in templates.values():
        inputs = {p["name"] for p in (template.get("inputs") or {}).get("parameters", [])}
        for tag in _tags({k: v for k, v in template.items() if k != "dag"}):
            _check_tag(
                tag,
                inputs=inputs,
                parameters=parameters,
                globals_=global_names,
                tasks=None,
                fail=fail,
            )
        if "dag" in template:
            _check_dag(template, templates, parameters, global_names, fail)


def _check_dag(
    template: dict[str, Any],
    templates: dict[str, Any],
    parameters: set[str],
    global_names: set[str],
    fail: Any,
) -> None:
    tasks = {task["name"]: task for task in template["dag"]["tasks"]}
    graph: dict[str, set[str]] = {}
    for name, task in tasks.items():
        if task.get("template") not in templates:
            fail(f"task {name!r} uses missing template {task.get('template')!r}")
        deps = {m.group(1) for m in _DEPENDS_NAME.finditer(task.get("depends", "") or "")}
        missing = deps - set(tasks)
        if missing:
            fail(f"task {name!r} depends on missing task {sorted(missing)[0]!r}")
        graph[name] = deps
        target = templates[task["template"]]
        declared = {p["name"] for p in (target.get("inputs") or {}).get("parameters", [])}
        given = {p["name"] for p in (task.get("arguments") or {}).get("parameters", [])}
        required = {
            p["name"]
            for p in (target.get("inputs") or {}).get("parameters", [])
            if "default" not in p and "value" not in p
        }
        if given - declared:
            fail(f"task {name!r} passes undeclared input {sorted(given - declared)[0]!r}")
        if required - given:
            fail(f"task {name!r} does not pass input {sorted(required - given)[0]!r}")
    order = _topological(graph, fail)
    ancestors: dict[str, set[str]] = {}
    for name in order:
        ancestors[name] = set().union(*[{dep} | ancestors[dep] for dep in graph[name]])
    for name, task in tasks.items():
        for tag in _tags({k: v for k, v in task.items() if k in ("arguments", "when")}):
            _check_tag(
                tag,
                inputs=set(),
                parameters=parameters,
                globals_=global_names,
                tasks=ancestors[name],
                fail=fail,
            )


def _topological(graph: dict[str, set[str]], fail: Any) -> list[str]:
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            fail("dependency cycle: " + " -> ".join([*path, node]))
        state[node] = 1
        for dep in sorted(graph[node]):
            visit(dep, [*path, node])
        state[node] = 2
        order.append(node)

    for node in sorted(graph):
        visit(node, [])
    return order


def _check_tag(
    tag: str,
    *,
    inputs: set[str],
    parameters: set[str],
    globals_: set[str],
    tasks: set[str] | None,
    fail: Any,
) -> None:
    tag = tag.strip()
    if match := _INPUT_REF.match(tag):
        if match.group(1) not in inputs:
            fail(f"{{{{{tag}}}}} reads an undeclared input")
    elif match := _PARAM_REF.match(tag):
        if match.group(1) not in parameters:
            fail(f"{{{{{tag}}}}} reads an undeclared workflow parameter")
    elif match := _TASK_REF.match(tag):
        if tasks is None or match.group(1) not in tasks:
            fail(f"{{{{{tag}}}}} reads a task that is not an ancestor")
    elif match := _GLOBAL_REF.match(tag):
        if match.group(1) not in globals_:
            fail(f"{{{{{tag}}}}} reads an undeclared global output")
    elif tag not in _WORKFLOW_VARS:
        fail(f"unexpected template tag {{{{{tag}}}}} (user text must never reach Argo)")


def _tags(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield from _TAG.findall(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tags(item)
    elif isinstance(value, list):
        for item in value:
            yield from _tags(item)
