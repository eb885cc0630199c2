"""Compile punchingfist Workflows into Argo WorkflowTemplates: the pure entry points."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hera.workflows import WorkflowTemplate as HeraWorkflowTemplate

from punchingfist.api import OperatorConfig, Resource, Sink, Workflow
from punchingfist.api.limits import ConcurrencyConfig
from punchingfist.api.operatorconfigs import OperatorConfigSpec
from punchingfist.api.workflows import (
    DEFAULT_IMAGE,
    INVESTIGATOR_ACCOUNT,
    REMEDIATOR_ACCOUNT,
    ConditionalStep,
    RemediationStep,
)
from punchingfist.compiler import naming
from punchingfist.compiler.building import Builder
from punchingfist.compiler.concurrency import configmap, critical_template
from punchingfist.compiler.validating import check_workflow
from punchingfist.compiler.verifying import verify
from punchingfist.errors import CompileError

_RESERVED = {naming.ENTRYPOINT, naming.EXIT_HANDLER, naming.OUTPUTS_TASK}


@dataclass(frozen=True)
class Defaults:
    """What a Workflow gets where it names nothing: the operator's settings, not the user's."""

    image: str = DEFAULT_IMAGE
    """Runtime image of Workflows without `runtime.image` (`--runtime-image`)."""
    investigator: str = INVESTIGATOR_ACCOUNT
    """ServiceAccount of the run's pods (steps, approval requests, sinks)."""
    remediator: str = REMEDIATOR_ACCOUNT
    """ServiceAccount of steps behind an approval gate."""


@dataclass(frozen=True)
class CompiledWorkflow:
    """The result of compiling one Workflow."""

    workflow: Workflow
    template: HeraWorkflowTemplate
    manifest: dict[str, Any]
    """The WorkflowTemplate as a plain dict (what `kubectl apply` gets)."""
    objects: list[dict[str, Any]] = field(default_factory=list)
    """Other objects the template needs (a Secret for clear-text credentials)."""
    warnings: list[str] = field(default_factory=list)
    concurrency: ConcurrencyConfig | None = None
    """The limits the template's semaphores stand for (None: no limits)."""
    critical: dict[str, Any] | None = None
    """With `criticalBypass`: the template runs of critical alerts start from (the same
    without semaphores, named `naming.critical_template(<workflow>)`); else None."""

    @property
    def documents(self) -> list[dict[str, Any]]:
        """Everything to apply, dependencies first."""
        return [*self.objects, self.manifest, *([self.critical] if self.critical else [])]

    def manifest_for(self, critical: bool) -> dict[str, Any]:
        """The template a run starts from: the critical one for a run about a critical alert
        when there is one (`criticalBypass`), else the Workflow's."""
        return self.critical if critical and self.critical is not None else self.manifest


def compile_workflow(
    workflow: Workflow,
    sinks: Mapping[str, Sink] | Iterable[Sink] = (),
    config: OperatorConfigSpec | None = None,
    defaults: Defaults = Defaults(),
) -> CompiledWorkflow:
    """Compile one Workflow. Pure: no I/O, same input -> identical output."""
    by_name = dict(sinks) if isinstance(sinks, Mapping) else {s.name: s for s in sinks}
    _check_names(workflow)
    checked = check_workflow(workflow, by_name, config)
    builder = Builder(
        workflow,
        by_name,
        config,
        checked,
        image=workflow.spec.runtime.image or defaults.image,
        accounts=(defaults.investigator, defaults.remediator),
    )
    template = builder.build()
    manifest = template.to_dict()
    verify(manifest, resource=workflow.ref)
    objects: list[dict[str, Any]] = []
    if builder.credentials.generated:
        metadata: dict[str, Any] = {
            "name": naming.secret_name(workflow.name),
            "labels": {
                naming.LABEL_MANAGED_BY: "punchingfist",
                naming.LABEL_WORKFLOW: workflow.name,
            },
        }
        if workflow.metadata.namespace:
            metadata["namespace"] = workflow.metadata.namespace
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": metadata,
                "type": "Opaque",
                "stringData": dict(sorted(builder.credentials.generated.items())),
            }
        )
    concurrency = config.concurrency if config else None
    return CompiledWorkflow(
        workflow=workflow,
        template=template,
        manifest=manifest,
        objects=objects,
        warnings=list(dict.fromkeys(builder.credentials.warnings)),
        concurrency=concurrency,
        critical=critical_template(concurrency, manifest),
    )


def compile_resources(
    resources: Iterable[Resource[Any]], defaults: Defaults = Defaults()
) -> list[CompiledWorkflow]:
    """Compile every Workflow among `resources` against the Sinks and OperatorConfig there."""
    items = list(resources)
    sinks = {r.name: r for r in items if isinstance(r, Sink)}
    configs = [r for r in items if isinstance(r, OperatorConfig)]
    config = _merge_configs(configs)
    seen: set[str] = set()
    compiled = []
    for resource in items:
        if isinstance(resource, Workflow):
            if resource.name in seen:
                raise CompileError("defined twice in the input", resource=resource.ref)
            seen.add(resource.name)
            compiled.append(compile_workflow(resource, sinks, config, defaults))
    _check_critical_names(compiled)
    if config is not None and config.concurrency is not None:
        # One ConfigMap per namespace sizes its templates' semaphores: it goes first, with the
        # objects of the namespace's first Workflow, holding the keys of all of them.
        by_namespace: dict[str | None, list[CompiledWorkflow]] = {}
        for item in compiled:
            by_namespace.setdefault(item.workflow.metadata.namespace, []).append(item)
        for namespace, group in by_namespace.items():
            names = [member.workflow.name for member in group]
            group[0].objects.insert(0, configmap(config.concurrency, names, namespace))
    return compiled


def _check_critical_names(compiled: list[CompiledWorkflow]) -> None:
    """A critical template (`criticalBypass`) must not take the name of another template."""
    names = {(c.workflow.metadata.namespace, c.workflow.name) for c in compiled}
    for item in compiled:
        if item.critical is None:
            continue
        name = item.critical["metadata"]["name"]
        if (item.workflow.metadata.namespace, name) in names:
            raise CompileError(
                f"with spec.concurrency.criticalBypass, runs of critical alerts start from a "
                f"template named {name!r}, which is Workflow {name}'s own template: rename "
                "one of the Workflows",
                resource=item.workflow.ref,
                field="metadata.name",
            )


def _merge_configs(configs: list[OperatorConfig]) -> OperatorConfigSpec | None:
    """Several OperatorConfig documents are read as one: later sections override earlier ones."""
    if not configs:
        return None
    merged: dict[str, Any] = {}
    for config in configs:
        merged.update(config.spec.dump())
    return OperatorConfigSpec.model_validate(merged)


def _check_names(workflow: Workflow) -> None:
    emitted: dict[str, str] = {}
    for index, step in enumerate(workflow.spec.steps):
        names = [step.name]
        if step.type == "conditional":
            names.append(naming.condition_task(step.name))
        if isinstance(step, RemediationStep):
            names.append(naming.preview_task(step.name))
            if step.remediation.on_failure == "ask":
                rollback = naming.rollback_task(step.name)
                names += [rollback, naming.approval_request_task(rollback)]
                names.append(naming.approval_task(rollback))
        gated = step.gated if isinstance(step, ConditionalStep) else step.approval_required
        if gated:
            names += [naming.approval_request_task(step.name), naming.approval_task(step.name)]
        for name in names:
            if name in _RESERVED or name.startswith("sink-"):
                raise CompileError(
                    f"step name {step.name!r} is reserved by the compiler; rename the step",
                    resource=workflow.ref,
                    field=f"spec.steps[{index}].name",
                )
            if name in emitted:
                raise CompileError(
                    f"step {step.name!r} would need an Argo task named {name!r}, which step "
                    f"{emitted[name]!r} already uses; rename one of them",
                    resource=workflow.ref,
                    field=f"spec.steps[{index}].name",
                )
            emitted[name] = step.name
