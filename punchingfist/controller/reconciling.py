"""Reconcile one Workflow: compile it, server-side apply what the compiler emits, say so in status.

Independent of Kopf: the handlers in `operator.py` gather the inputs (the Workflow, the Sinks of
its namespace, the OperatorConfig) from Kopf's indexes and call `reconcile_workflow`, which
returns the status to write and the Event to post. Temporary API failures raise `KubeError`
with `temporary=True`; everything a user can fix ends as `Ready=False`, never as an exception.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from punchingfist import __version__
from punchingfist.api import API_VERSION, OperatorConfig, Sink, Workflow, parse_resource
from punchingfist.api.sources import WebhookSource
from punchingfist.compiler import Defaults, compile_workflow
from punchingfist.compiler.naming import ANNOTATION_CRITICAL_OF
from punchingfist.controller import status as st
from punchingfist.errors import CompileError, InvalidResource, PunchingFistError
from punchingfist.kube import Body, Kube, KubeConflict, KubeError

ANNOTATION_INPUTS = "punchingfist.io/inputs-sha256"
"""On a compiled WorkflowTemplate: the hash of everything it was compiled from."""


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post about the reconciled object."""

    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Inputs:
    """Everything one Workflow compiles from, as raw bodies."""

    workflow: Body
    sinks: Mapping[str, Body] = field(default_factory=dict)
    """Sinks of the Workflow's namespace, by name."""
    config: Body | None = None
    """The OperatorConfig the controller compiles with, if it exists."""
    defaults: Defaults = field(default_factory=Defaults)
    """The operator's defaults (runtime image, step ServiceAccounts)."""


@dataclass(frozen=True)
class Outcome:
    """What reconciling decided: the status to write (None: nothing to write) and Events."""

    status: dict[str, Any] | None
    events: list[Event] = field(default_factory=list)
    applied: bool = False
    """The WorkflowTemplate (and Secret) were applied in this pass."""
    workflow: Workflow | None = None
    """The parsed Workflow when it is Ready (what the server may trigger)."""


def sink_names(body: Body) -> list[str]:
    """Names of the Sinks a raw Workflow body refers to (names or {name, condition})."""
    names = []
    for item in (body.get("spec") or {}).get("sinks") or []:
        name = item.get("name") if isinstance(item, dict) else item
        if isinstance(name, str) and name not in names:
            names.append(name)
    return names


def inputs_hash(inputs: Inputs) -> str:
    """sha256 over the Workflow's spec, the Sinks it names, the OperatorConfig and our version."""
    meta = inputs.workflow.get("metadata") or {}
    document = {
        "compiler": __version__,
        "workflow": [meta.get("namespace"), meta.get("name"), inputs.workflow.get("spec")],
        "sinks": {
            name: (inputs.sinks[name].get("spec") if name in inputs.sinks else None)
            for name in sink_names(inputs.workflow)
        },
        "config": (inputs.config or {}).get("spec"),
        "defaults": dataclasses.asdict(inputs.defaults),
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def owner_reference(body: Body) -> dict[str, Any]:
    meta = body.get("metadata") or {}
    return {
        "apiVersion": API_VERSION,
        "kind": body.get("kind", "Workflow"),
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "controller": True,
    }


def reconcile_workflow(kube: Kube, inputs: Inputs, *, force: bool = False) -> Outcome:
    """Bring the WorkflowTemplate of one Workflow in line with its inputs.

    Idempotent: when the inputs hash, the generation and the Ready verdict already match the
    status and the template carries the same hash, nothing is written (unless `force`).
    """
    body = inputs.workflow
    meta = body.get("metadata") or {}
    namespace, name = meta.get("namespace", "default"), meta.get("name", "")
    generation = meta.get("generation")
    previous = body.get("status") or {}
    digest = inputs_hash(inputs)
    try:
        workflow = cast(Workflow, parse_resource(as_resource(body)))
        sinks = {n: cast(Sink, parse_resource(as_resource(b))) for n, b in _wanted(inputs).items()}
        config = (
            cast(OperatorConfig, parse_resource(as_resource(inputs.config)))
            if inputs.config
            else None
        )
    except InvalidResource as error:
        kind = "InvalidSpec" if str(error).startswith(f"Workflow/{name}") else "InvalidDependency"
        return _failed(previous, generation, digest, kind, str(error), compiled=False)
    if (
        not force
        and previous.get("inputHash") == digest
        and previous.get("observedGeneration") == generation
        and st.is_ready(previous)
    ):
        # The critical template (criticalBypass) too: a resync puts back either when deleted.
        templates = [name, previous.get("criticalTemplateName")]
        if all(_applied(kube.get_template(namespace, t)) == digest for t in templates if t):
            return Outcome(status=None, workflow=workflow)
    try:
        compiled = compile_workflow(
            workflow, sinks, config.spec if config else None, inputs.defaults
        )
    except CompileError as error:
        missing = [n for n in sink_names(body) if n not in inputs.sinks]
        reason = (
            "SinkNotFound"
            if missing and (error.field or "").startswith("spec.sinks")
            else ("CompileFailed")
        )
        return _failed(previous, generation, digest, reason, str(error), compiled=False)
    except PunchingFistError as error:
        return _failed(previous, generation, digest, "CompileFailed", str(error), compiled=False)
    owner = owner_reference(body)
    documents = []
    for document in compiled.documents:
        metadata = document.setdefault("metadata", {})
        metadata["namespace"] = namespace
        metadata["ownerReferences"] = [owner]
        metadata.setdefault("annotations", {})[ANNOTATION_INPUTS] = digest
        documents.append(document)
    secret = next((d["metadata"]["name"] for d in documents if d["kind"] == "Secret"), None)
    critical = compiled.critical["metadata"]["name"] if compiled.critical else None
    try:
        for document in documents:
            if document["kind"] == "Secret":
                _check_secret_owner(kube, namespace, document["metadata"]["name"], owner)
            if document is compiled.critical:
                _check_critical_template(kube, namespace, document["metadata"]["name"], name)
            kube.apply(document)
        stale = previous.get("secretName")
        if stale and stale != secret:  # the credential moved to a Secret reference
            owners = kube.get_secret_owners(namespace, stale) or []
            if any(o.get("uid") == owner["uid"] for o in owners):
                kube.delete_secret(namespace, stale)
        stale = previous.get("criticalTemplateName")
        if stale and stale != critical:  # criticalBypass turned off (or the name changed)
            owners = ((kube.get_template(namespace, stale) or {}).get("metadata") or {}).get(
                "ownerReferences"
            ) or []
            if any(o.get("uid") == owner["uid"] for o in owners):
                kube.delete_template(namespace, stale)
    except KubeError as error:
        if error.temporary:
            raise
        return _failed(previous, generation, digest, "ApplyFailed", str(error), compiled=True)
    also = f" (critical alerts: {critical}, no limits)" if critical else ""
    ready = st.Condition(
        st.READY,
        "True",
        "TemplateApplied",
        f"WorkflowTemplate {name} is up to date ({len(workflow.spec.steps)} steps){also}",
    )
    new_status = {
        "observedGeneration": generation,
        "templateName": name,
        "criticalTemplateName": critical,
        "stepCount": len(workflow.spec.steps),
        "inputHash": digest,
        "secretName": secret,
        "lastError": None,
        "conditions": st.merge(
            previous.get("conditions") or [],
            [st.Condition(st.COMPILED, "True", "Compiled", "compiled without errors"), ready],
            generation=generation,
        ),
    }
    events = [Event("Normal", "TemplateApplied", ready.message)]
    events += [Event("Warning", "CompilerWarning", warning) for warning in compiled.warnings]
    return Outcome(status=new_status, events=events, applied=True, workflow=workflow)


def validate_resource(body: Body) -> Outcome:
    """Sources, Sinks and OperatorConfigs: Ready says whether the spec is valid."""
    meta = body.get("metadata") or {}
    generation = meta.get("generation")
    previous = body.get("status") or {}
    try:
        resource = parse_resource(as_resource(body))
    except InvalidResource as error:
        ready = st.Condition(st.READY, "False", "InvalidSpec", str(error))
        events = (
            []
            if st.same_verdict(previous, ready)
            else [Event("Warning", "InvalidSpec", str(error))]
        )
        return Outcome(status=_plain(previous, generation, ready, str(error)), events=events)
    ready = st.Condition(st.READY, "True", "Valid", _describe(resource))
    if st.same_verdict(previous, ready) and previous.get("observedGeneration") == generation:
        return Outcome(status=None)
    return Outcome(status=_plain(previous, generation, ready, None))


def _describe(resource: Any) -> str:
    spec = resource.spec
    if resource.kind == "Source":
        where = f" at {spec.config.path}" if isinstance(spec, WebhookSource) else ""
        return f"{spec.type} Source{where} triggers Workflow {spec.trigger_workflow}"
    if resource.kind == "Sink":
        return f"{spec.type} Sink is valid"
    return f"{resource.kind} is valid"


def _plain(
    previous: Mapping[str, Any], generation: int | None, ready: st.Condition, error: str | None
) -> dict[str, Any]:
    return {
        "observedGeneration": generation,
        "lastError": error,
        "conditions": st.merge(previous.get("conditions") or [], [ready], generation=generation),
    }


def _failed(
    previous: Mapping[str, Any],
    generation: int | None,
    digest: str,
    reason: str,
    message: str,
    *,
    compiled: bool,
) -> Outcome:
    ready = st.Condition(st.READY, "False", reason, message)
    conditions = [
        st.Condition(st.COMPILED, "True", "Compiled", "compiled without errors")
        if compiled
        else st.Condition(st.COMPILED, "False", reason, message),
        ready,
    ]
    events = [] if st.same_verdict(previous, ready) else [Event("Warning", reason, message)]
    new_status = {
        "observedGeneration": generation,
        "inputHash": digest,
        "lastError": message,
        "conditions": st.merge(previous.get("conditions") or [], conditions, generation=generation),
    }
    return Outcome(status=new_status, events=events)


def _wanted(inputs: Inputs) -> dict[str, Body]:
    return {n: inputs.sinks[n] for n in sink_names(inputs.workflow) if n in inputs.sinks}


def as_resource(body: Body | Mapping[str, Any]) -> dict[str, Any]:
    """A body as parse_resource reads it: the server's bookkeeping in metadata dropped."""
    data = dict(body)
    metadata = dict(data.get("metadata") or {})
    for key in ("managedFields", "resourceVersion", "creationTimestamp", "selfLink"):
        metadata.pop(key, None)
    data["metadata"] = metadata
    data.pop("status", None)
    return data


def _applied(template: Mapping[str, Any] | None) -> str | None:
    """The inputs hash an applied template was compiled from (None: no such template)."""
    annotations = ((template or {}).get("metadata") or {}).get("annotations") or {}
    return annotations.get(ANNOTATION_INPUTS)


def _check_critical_template(kube: Kube, namespace: str, name: str, workflow: str) -> None:
    """The critical template's name (criticalBypass) must not be another template's."""
    current = kube.get_template(namespace, name)
    annotations = ((current or {}).get("metadata") or {}).get("annotations") or {}
    if current is None or annotations.get(ANNOTATION_CRITICAL_OF) == workflow:
        return
    raise KubeConflict(
        f"WorkflowTemplate {name} exists and is not the template critical runs of Workflow "
        f"{workflow} start from (spec.concurrency.criticalBypass names it so): rename the "
        "Workflow, or the other one if that template is its own",
        status=409,
    )


def _check_secret_owner(kube: Kube, namespace: str, name: str, owner: dict[str, Any]) -> None:
    owners = kube.get_secret_owners(namespace, name)
    if owners is None or any(o.get("uid") == owner["uid"] for o in owners):
        return
    raise KubeConflict(
        f"Secret {name} exists and is not owned by Workflow/{owner['name']}; the compiler puts "
        "clear-text credentials there: delete or rename that Secret, or reference the "
        "credential with a …Secret field instead",
        status=409,
    )
