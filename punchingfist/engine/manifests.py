"""Read a compiled WorkflowTemplate into a checked plan; refuse what the engine cannot run.

Every field is known: a field the engine does not implement is `NotSupportedYet` naming it,
a malformed one is `InvalidManifest`. Nothing is skipped silently; the few fields that have
no meaning on one machine (`image`, `serviceAccountName`, …) are listed in `docs/engine.md`
and `serviceAccountName` adds a warning to the run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from punchingfist.engine.depends import Depends, parse_depends
from punchingfist.engine.expressions import Node, parse_expr, parse_when, placeholders
from punchingfist.engine.variables import check_tag, tags
from punchingfist.errors import InvalidManifest, NotSupportedYet

KINDS = ("WorkflowTemplate", "Workflow")
_SPEC = {
    "entrypoint",
    "templates",
    "arguments",
    "onExit",
    "workflowMetadata",
    "activeDeadlineSeconds",
    "parallelism",
    "serviceAccountName",
    "synchronization",
}
_TEMPLATE = {
    "name",
    "container",
    "dag",
    "suspend",
    "inputs",
    "outputs",
    "metadata",
    "activeDeadlineSeconds",
    "retryStrategy",
    "serviceAccountName",
    "parallelism",
}
_CONTAINER = {"image", "imagePullPolicy", "name", "command", "args", "env"}
_TASK = {"name", "template", "arguments", "depends", "dependencies", "when"}
_INPUT = {"name", "default", "enum", "description", "value"}
_OUTPUT = {"name", "valueFrom", "globalName", "description"}
_RETRY = {"limit", "retryPolicy", "backoff"}
_BACKOFF = {"duration", "factor", "maxDuration", "cap"}
_POLICIES = ("Always", "OnFailure", "OnError")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Parameter:
    name: str
    value: str | None = None
    default: str | None = None
    enum: tuple[str, ...] = ()
    path: str | None = None
    supplied: bool = False
    global_name: str | None = None


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str | None = None
    secret: tuple[str, str] | None = None
    optional: bool = False


@dataclass(frozen=True)
class Retry:
    limit: int
    policy: str = "OnFailure"
    duration: float = 0.0
    factor: float = 1.0
    cap: float | None = None
    max_duration: float | None = None

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (0 = the first retry)."""
        seconds = self.duration * self.factor**retry
        return min(seconds, self.cap) if self.cap is not None else seconds


@dataclass(frozen=True)
class Task:
    name: str
    template: str
    depends: Depends
    when: Node | None = None
    when_text: str = ""
    arguments: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Template:
    name: str
    kind: str
    """container, suspend or dag"""
    inputs: tuple[Parameter, ...] = ()
    outputs: tuple[Parameter, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    deadline: float | None = None
    retry: Retry | None = None
    argv: tuple[str, ...] = ()
    env: tuple[EnvVar, ...] = ()
    tasks: tuple[Task, ...] = ()
    parallelism: int | None = None
    fail_fast: bool = True
    suspend_duration: str | None = None


@dataclass(frozen=True)
class Plan:
    name: str
    entrypoint: str
    on_exit: str | None
    arguments: tuple[Parameter, ...]
    templates: Mapping[str, Template]
    deadline: float | None = None
    parallelism: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    labels_from: Mapping[str, Node] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    semaphores: tuple[Semaphore, ...] = ()
    """Workflow-level semaphores a run holds while it runs (`spec.synchronization`): the
    engine runs one run, so whoever starts several (the local executor) honours them."""


@dataclass(frozen=True)
class Semaphore:
    """A semaphore sized by a ConfigMap key (Argo's `configMapKeyRef`)."""

    configmap: str
    key: str


def parse_duration(value: Any, *, where: str) -> float:
    """Argo durations: a number of seconds (`30`, `"30"`) or a Go duration (`"1m30s"`)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise InvalidManifest(f"{where}: {value!r} is not a duration (seconds or like 1m30s)")
    return sum(float(number) * _UNITS[unit] for number, unit in parts)


def read_manifest(manifest: Mapping[str, Any]) -> Plan:
    """Check a WorkflowTemplate (a dict, as `to_dict()` or `kubectl get -o json` gives it)."""
    kind = manifest.get("kind")
    if kind not in KINDS:
        raise InvalidManifest(f"kind {kind!r}: the engine runs a {' or a '.join(KINDS)}")
    name = str(_mapping(manifest.get("metadata", {}), "metadata").get("name") or "workflow")
    spec = _mapping(manifest.get("spec"), "spec")
    _known(spec, _SPEC, "spec")
    warnings: list[str] = []
    if "serviceAccountName" in spec:
        warnings.append(_account_warning("spec", spec["serviceAccountName"]))
    templates: dict[str, Template] = {}
    for index, raw in enumerate(_list(spec.get("templates"), "spec.templates")):
        where = f"spec.templates[{index}]"
        template = _template(_mapping(raw, where), where, warnings)
        if template.name in templates:
            raise InvalidManifest(f"{where}: template name {template.name!r} is used twice")
        templates[template.name] = template
    entrypoint = _string(spec.get("entrypoint"), "spec.entrypoint")
    on_exit = spec.get("onExit")
    for label, ref in (("spec.entrypoint", entrypoint), ("spec.onExit", on_exit)):
        if ref is not None and ref not in templates:
            raise InvalidManifest(f"{label}: no template named {ref!r}")
    _check_references(templates)
    metadata = _mapping(spec.get("workflowMetadata", {}), "spec.workflowMetadata")
    _known(metadata, {"labels", "labelsFrom", "annotations"}, "spec.workflowMetadata")
    labels_from = {
        key: parse_expr(
            str(_mapping(value, f"labelsFrom.{key}").get("expression", "")),
            where=f"spec.workflowMetadata.labelsFrom.{key}",
        )
        for key, value in _mapping(metadata.get("labelsFrom", {}), "labelsFrom").items()
    }
    arguments = _mapping(spec.get("arguments", {}), "spec.arguments")
    _known(arguments, {"parameters"}, "spec.arguments")
    return Plan(
        name=name,
        entrypoint=entrypoint,
        on_exit=on_exit,
        arguments=tuple(
            _input(_mapping(p, "parameter"), f"spec.arguments.parameters[{i}]")
            for i, p in enumerate(_list(arguments.get("parameters", []), "parameters"))
        ),
        templates=templates,
        deadline=_optional_seconds(spec, "spec"),
        parallelism=_optional_int(spec.get("parallelism"), "spec.parallelism"),
        labels={str(k): str(v) for k, v in _mapping(metadata.get("labels", {}), "labels").items()},
        labels_from=labels_from,
        warnings=tuple(warnings),
        semaphores=_semaphores(spec.get("synchronization")),
    )


def _semaphores(raw: Any) -> tuple[Semaphore, ...]:
    if raw is None:
        return ()
    where = "spec.synchronization"
    _known(_mapping(raw, where), {"semaphores"}, where)
    found = []
    for index, item in enumerate(_list(raw.get("semaphores", []), f"{where}.semaphores")):
        at = f"{where}.semaphores[{index}]"
        _known(_mapping(item, at), {"configMapKeyRef"}, at)
        ref = _mapping(item.get("configMapKeyRef"), f"{at}.configMapKeyRef")
        _known(ref, {"name", "key"}, f"{at}.configMapKeyRef")
        found.append(
            Semaphore(
                configmap=_string(ref.get("name"), f"{at}.configMapKeyRef.name"),
                key=_string(ref.get("key"), f"{at}.configMapKeyRef.key"),
            )
        )
    return tuple(found)


def _template(raw: Mapping[str, Any], where: str, warnings: list[str]) -> Template:
    name = _string(raw.get("name"), f"{where}.name")
    where = f"{where}({name})"
    _known(raw, _TEMPLATE, where)
    kinds = [k for k in ("container", "dag", "suspend") if k in raw]
    if len(kinds) != 1:
        raise InvalidManifest(f"{where}: needs exactly one of container, dag, suspend")
    if "serviceAccountName" in raw:
        warnings.append(_account_warning(where, raw["serviceAccountName"]))
    inputs = _mapping(raw.get("inputs", {}), f"{where}.inputs")
    outputs = _mapping(raw.get("outputs", {}), f"{where}.outputs")
    _known(inputs, {"parameters"}, f"{where}.inputs")
    _known(outputs, {"parameters"}, f"{where}.outputs")
    metadata = _mapping(raw.get("metadata", {}), f"{where}.metadata")
    _known(metadata, {"labels", "annotations"}, f"{where}.metadata")
    common: dict[str, Any] = {
        "name": name,
        "kind": kinds[0],
        "inputs": tuple(
            _input(_mapping(p, "parameter"), f"{where}.inputs.parameters[{i}]")
            for i, p in enumerate(_list(inputs.get("parameters", []), f"{where}.inputs"))
        ),
        "outputs": tuple(
            _output(_mapping(p, "parameter"), f"{where}.outputs.parameters[{i}]", kinds[0])
            for i, p in enumerate(_list(outputs.get("parameters", []), f"{where}.outputs"))
        ),
        "labels": {str(k): str(v) for k, v in metadata.get("labels", {}).items()},
        "deadline": _optional_seconds(raw, where),
        "retry": _retry(raw["retryStrategy"], where) if "retryStrategy" in raw else None,
    }
    files = [PurePosixPath(p.path).name for p in common["outputs"] if p.path]
    if len(files) != len(set(files)):
        raise NotSupportedYet(f"{where}.outputs: two output paths with the same file name")
    if "parallelism" in raw and kinds[0] != "dag":
        raise NotSupportedYet(f"{where}.parallelism on a {kinds[0]} template")
    if kinds[0] == "container":
        return Template(**common, **_container(raw["container"], f"{where}.container"))
    if kinds[0] == "suspend":
        suspend = _mapping(raw["suspend"], f"{where}.suspend")
        _known(suspend, {"duration"}, f"{where}.suspend")
        duration = suspend.get("duration")
        if duration is not None:
            _check_text(str(duration), f"{where}.suspend.duration")
        return Template(**common, suspend_duration=None if duration is None else str(duration))
    if common["retry"] is not None:
        raise NotSupportedYet(f"{where}.retryStrategy on a dag template")
    dag = _mapping(raw["dag"], f"{where}.dag")
    _known(dag, {"tasks", "failFast"}, f"{where}.dag")
    tasks = tuple(
        _task(_mapping(t, "task"), f"{where}.dag.tasks[{i}]")
        for i, t in enumerate(_list(dag.get("tasks"), f"{where}.dag.tasks"))
    )
    return Template(
        **common,
        tasks=tasks,
        parallelism=_optional_int(raw.get("parallelism"), f"{where}.parallelism"),
        fail_fast=bool(dag.get("failFast", True)),
    )


def _container(raw: Any, where: str) -> dict[str, Any]:
    container = _mapping(raw, where)
    _known(container, _CONTAINER, where)
    argv = [str(a) for a in _list(container.get("command", []), f"{where}.command")]
    argv += [str(a) for a in _list(container.get("args", []), f"{where}.args")]
    if not argv:
        raise NotSupportedYet(f"{where}: a container without command (the image's entrypoint)")
    for index, arg in enumerate(argv):
        _check_text(arg, f"{where}.command/args[{index}]")
    env: list[EnvVar] = []
    for index, item in enumerate(_list(container.get("env", []), f"{where}.env")):
        spot = f"{where}.env[{index}]"
        entry = _mapping(item, spot)
        _known(entry, {"name", "value", "valueFrom"}, spot)
        if "valueFrom" in entry:
            source = _mapping(entry["valueFrom"], f"{spot}.valueFrom")
            _known(source, {"secretKeyRef"}, f"{spot}.valueFrom")
            ref = _mapping(source["secretKeyRef"], f"{spot}.valueFrom.secretKeyRef")
            _known(ref, {"name", "key", "optional"}, f"{spot}.valueFrom.secretKeyRef")
            secret = (_string(ref.get("name"), spot), _string(ref.get("key"), spot))
            env.append(
                EnvVar(str(entry["name"]), secret=secret, optional=bool(ref.get("optional")))
            )
        else:
            value = str(entry.get("value", ""))
            _check_text(value, spot)
            env.append(EnvVar(_string(entry.get("name"), f"{spot}.name"), value=value))
    return {"argv": tuple(argv), "env": tuple(env)}


def _task(raw: Mapping[str, Any], where: str) -> Task:
    name = _string(raw.get("name"), f"{where}.name")
    where = f"{where}({name})"
    _known(raw, _TASK, where)
    arguments = _mapping(raw.get("arguments", {}), f"{where}.arguments")
    _known(arguments, {"parameters"}, f"{where}.arguments")
    pairs = []
    for index, item in enumerate(_list(arguments.get("parameters", []), f"{where}.arguments")):
        parameter = _mapping(item, f"{where}.arguments.parameters[{index}]")
        _known(parameter, {"name", "value"}, f"{where}.arguments.parameters[{index}]")
        value = str(parameter.get("value", ""))
        _check_text(value, f"{where}.arguments.parameters[{index}]")
        pairs.append((_string(parameter.get("name"), where), value))
    when_text = str(raw.get("when") or "")
    when = parse_when(when_text, where=f"{where}.when") if when_text.strip() else None
    if when is not None:
        for tag in placeholders(when):
            check_tag(tag, where=f"{where}.when")
    dependencies = raw.get("dependencies")
    return Task(
        name=name,
        template=_string(raw.get("template"), f"{where}.template"),
        depends=parse_depends(
            raw.get("depends"),
            [str(d) for d in _list(dependencies, where)] if dependencies else None,
            where=where,
        ),
        when=when,
        when_text=when_text,
        arguments=tuple(pairs),
    )


def _input(raw: Mapping[str, Any], where: str) -> Parameter:
    _known(raw, _INPUT, where)
    enum = tuple(str(v) for v in _list(raw.get("enum", []), f"{where}.enum"))
    value, default = raw.get("value"), raw.get("default")
    return Parameter(
        name=_string(raw.get("name"), f"{where}.name"),
        value=None if value is None else str(value),
        default=None if default is None else str(default),
        enum=enum,
    )


def _output(raw: Mapping[str, Any], where: str, kind: str) -> Parameter:
    _known(raw, _OUTPUT, where)
    source = _mapping(raw.get("valueFrom"), f"{where}.valueFrom")
    _known(source, {"path", "default", "supplied"}, f"{where}.valueFrom")
    wanted = "supplied" if kind == "suspend" else "path"
    if kind == "dag" or wanted not in source or len({"path", "supplied"} & source.keys()) != 1:
        raise NotSupportedYet(f"{where}.valueFrom on a {kind} template (only {wanted})")
    default = source.get("default")
    return Parameter(
        name=_string(raw.get("name"), f"{where}.name"),
        default=None if default is None else str(default),
        path=str(source["path"]) if "path" in source else None,
        supplied="supplied" in source,
        global_name=raw.get("globalName"),
    )


def _retry(raw: Any, where: str) -> Retry:
    where = f"{where}.retryStrategy"
    strategy = _mapping(raw, where)
    _known(strategy, _RETRY, where)
    policy = str(strategy.get("retryPolicy") or "OnFailure")
    if policy not in _POLICIES:
        raise NotSupportedYet(f"{where}.retryPolicy {policy} (supported: {', '.join(_POLICIES)})")
    backoff = _mapping(strategy.get("backoff", {}), f"{where}.backoff")
    _known(backoff, _BACKOFF, f"{where}.backoff")

    def seconds(key: str) -> float | None:
        value = backoff.get(key)
        return None if value is None else parse_duration(value, where=f"{where}.backoff.{key}")

    return Retry(
        limit=_optional_int(strategy.get("limit", 0), f"{where}.limit") or 0,
        policy=policy,
        duration=seconds("duration") or 0.0,
        factor=float(backoff.get("factor", 1)),
        cap=seconds("cap"),
        max_duration=seconds("maxDuration"),
    )


def _check_references(templates: Mapping[str, Template]) -> None:
    """Every task names a template; `tasks.X` are ancestors; no cycles; inputs declared."""
    for template in templates.values():
        where = f"template {template.name!r}"
        names = {task.name for task in template.tasks}
        if len(names) != len(template.tasks):
            raise InvalidManifest(f"{where}: two tasks with the same name")
        declared = {p.name for p in template.inputs}
        for task in template.tasks:
            if task.template not in templates:
                raise InvalidManifest(f"{where}, task {task.name!r}: no template {task.template!r}")
            missing = task.depends.tasks - names
            if missing:
                raise InvalidManifest(
                    f"{where}, task {task.name!r}: depends on unknown task {sorted(missing)[0]!r}"
                )
        ancestors = _ancestors(template, where)
        for task in template.tasks:
            texts = [v for _, v in task.arguments]
            found = [t for text in texts for t in tags(text)]
            found += placeholders(task.when) if task.when is not None else []
            for tag in found:
                _check_scope(tag, declared, ancestors[task.name], f"{where}, task {task.name!r}")
        texts = [*template.argv, *(e.value or "" for e in template.env)]
        for tag in (t for text in texts for t in tags(text)):
            _check_scope(tag, declared, frozenset(), where)
    _check_template_cycles(templates)


def _check_scope(tag: str, declared: set[str], ancestors: frozenset[str], where: str) -> None:
    parts = tag.split(".")
    if parts[0] == "inputs" and parts[2] not in declared:
        raise InvalidManifest(f"{where}: {{{{{tag}}}}}: the template has no such input")
    if parts[0] == "tasks" and parts[1] not in ancestors:
        raise InvalidManifest(
            f"{where}: {{{{{tag}}}}}: task {parts[1]!r} is not a dependency of this task"
        )


def _ancestors(template: Template, where: str) -> dict[str, frozenset[str]]:
    direct = {task.name: task.depends.tasks for task in template.tasks}
    result: dict[str, frozenset[str]] = {}

    def visit(name: str, trail: tuple[str, ...]) -> frozenset[str]:
        if name in trail:
            cycle = " -> ".join((*trail[trail.index(name) :], name))
            raise InvalidManifest(f"{where}: dependency cycle {cycle}")
        if name not in result:
            found: set[str] = set()
            for parent in direct[name]:
                found |= {parent} | visit(parent, (*trail, name))
            result[name] = frozenset(found)
        return result[name]

    for name in direct:
        visit(name, ())
    return result


def _check_template_cycles(templates: Mapping[str, Template]) -> None:
    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in trail:
            raise InvalidManifest(f"template {name!r} runs itself ({' -> '.join(trail)})")
        for task in templates[name].tasks:
            visit(task.template, (*trail, name))

    for name in templates:
        visit(name, ())


def _check_text(text: str, where: str) -> None:
    for tag in tags(text):
        check_tag(tag, where=where)


def _account_warning(where: str, account: Any) -> str:
    return (
        f"{where}.serviceAccountName {account!r} does not apply locally: steps run with "
        "this machine's credentials (kubeconfig), not that account's RBAC"
    )


def _optional_seconds(raw: Mapping[str, Any], where: str) -> float | None:
    value = raw.get("activeDeadlineSeconds")
    if value is None:
        return None
    return parse_duration(value, where=f"{where}.activeDeadlineSeconds")


def _optional_int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as error:
        raise InvalidManifest(f"{where}: {value!r} is not a whole number") from error


def _known(raw: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in raw:
        if key not in allowed:
            raise NotSupportedYet(f"{where}.{key} (the local engine does not run it)")


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidManifest(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidManifest(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidManifest(f"{where}: expected a non-empty string")
    return value
