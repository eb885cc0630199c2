"""Admission: refuse a Workflow, Sink, Source or OperatorConfig the compiler would refuse.

The CRD's structural schema and CEL rules already catch shapes; these checks add what only the
compiler knows (unknown step references, broken templates, reserved names, sinks reading
outputs that do not exist). A Workflow may name a Sink that does not exist yet (`kubectl apply
-f dir/` has no order): that is not refused here, the Workflow's status says so instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from punchingfist.api import Sink, Workflow, parse_resource
from punchingfist.compiler import compile_workflow
from punchingfist.controller.reconciling import as_resource, sink_names
from punchingfist.errors import CompileError, PunchingFistError
from punchingfist.kube import Body
from punchingfist.templating import compile_expression, compile_template

_PLACEHOLDER_URL = "https://sink-not-created-yet.invalid/"


class Rejected(PunchingFistError):
    """The resource under review is refused; the message names the field and the fix."""


def review_workflow(body: Body, sinks: Mapping[str, Body], config: Body | None) -> list[str]:
    """Compile the Workflow as the controller would; return the compiler's warnings.

    Sinks that do not exist yet are stood in for by a Sink without templates, so every other
    check (including the Workflow's own sink conditions) still runs.
    """
    workflow = cast(Workflow, _parse(body))
    present: dict[str, Sink] = {}
    for name in sink_names(body):
        if name in sinks:
            try:
                present[name] = cast(Sink, parse_resource(as_resource(sinks[name])))
            except PunchingFistError:
                present[name] = _placeholder(name, body)  # its own review reports it
        else:
            present[name] = _placeholder(name, body)
    spec = None
    if config is not None:
        try:
            spec = parse_resource(as_resource(config)).spec
        except PunchingFistError:
            spec = None  # the OperatorConfig's own review reports it
    try:
        compiled = compile_workflow(workflow, present, spec)
    except PunchingFistError as error:
        raise Rejected(str(error)) from error
    return list(compiled.warnings)


def review_sink(
    body: Body, dependents: Mapping[str, Body], sinks: Mapping[str, Body], config: Body | None
) -> list[str]:
    """Check a Sink's templates, and that no Workflow using it stops compiling because of it."""
    sink = cast(Sink, _parse(body))
    settings = sink.spec.config
    try:
        template = getattr(settings, "template", None)
        if template is not None:
            compile_template(template, resource=sink.ref, field="spec.config.template")
        trigger = getattr(settings, "trigger_condition", None)
        if trigger is not None:
            compile_expression(trigger, resource=sink.ref, field="spec.config.triggerCondition")
    except PunchingFistError as error:
        raise Rejected(str(error)) from error
    candidate = {**sinks, sink.name: body}
    for name, workflow in sorted(dependents.items()):
        try:
            review_workflow(workflow, candidate, config)
        except Rejected as error:
            cause = error.__cause__
            if isinstance(cause, CompileError) and cause.resource == sink.ref:
                raise Rejected(f"{error} (Workflow/{name} uses this Sink)") from cause
        except PunchingFistError:
            continue  # that Workflow is broken on its own; its status says why
    return []


def review_plain(body: Body) -> list[str]:
    """Sources and OperatorConfigs: the spec models' checks (field path + fix)."""
    _parse(body)
    return []


def _parse(body: Body) -> Any:
    try:
        return parse_resource(as_resource(body))
    except PunchingFistError as error:
        raise Rejected(str(error)) from error


def _placeholder(name: str, workflow: Body) -> Sink:
    namespace = (workflow.get("metadata") or {}).get("namespace")
    return cast(
        Sink,
        parse_resource(
            {
                "apiVersion": "punchingfist.io/v1alpha1",
                "kind": "Sink",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"type": "webhook", "config": {"url": _PLACEHOLDER_URL}},
            }
        ),
    )
