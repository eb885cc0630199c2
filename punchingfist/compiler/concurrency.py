"""Concurrency limits as Argo sees them: semaphores of the template, sized by a ConfigMap.

With `OperatorConfig.spec.concurrency` set, every compiled template holds, at Workflow level,

    synchronization:
      semaphores:
        - configMapKeyRef: {name: punchingfist-concurrency, key: global}
        - configMapKeyRef: {name: punchingfist-concurrency, key: workflow.<name>}

so Argo keeps a run Pending ("Waiting for … lock") until it holds both, and starts waiting runs
oldest first. Argo fails a run whose ConfigMap or key is missing, so the ConfigMap
(`configmap`) must exist before the template: the controller applies it first; `punchingfist
compile` prints it before the templates.

With `criticalBypass` the compiler also emits `critical_template`: the same template under the
name `naming.critical_template(<workflow>)`, without the semaphores, labelled as a template of
the same Workflow (its runs are that Workflow's runs) and annotated with the name of the
template it copies. The executors start runs about critical alerts from it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from hera.workflows.models import ConfigMapKeySelector, SemaphoreRef, Synchronization

from punchingfist.api.limits import CONFIGMAP, ConcurrencyConfig, workflow_key
from punchingfist.compiler import naming
from punchingfist.errors import CompileError

_KEY_LENGTH = 253  # a ConfigMap key


def synchronization(config: ConcurrencyConfig | None, workflow: str) -> Synchronization | None:
    """The template's `spec.synchronization`; None without limits."""
    if config is None:
        return None
    if len(workflow_key(workflow)) > _KEY_LENGTH:
        raise CompileError(
            f"with spec.concurrency set, the Workflow's name must be at most "
            f"{_KEY_LENGTH - len(workflow_key(''))} characters (it names a ConfigMap key): "
            "rename the Workflow",
            resource=f"Workflow/{workflow}",
            field="metadata.name",
        )
    return Synchronization(
        semaphores=[
            SemaphoreRef(config_map_key_ref=ConfigMapKeySelector(name=CONFIGMAP, key=key))
            for key in config.keys(workflow)
        ]
    )


def configmap(
    config: ConcurrencyConfig, workflows: Iterable[str], namespace: str | None = None
) -> dict[str, Any]:
    """The ConfigMap sizing the semaphores of these Workflows' templates."""
    metadata: dict[str, Any] = {
        "name": CONFIGMAP,
        "labels": {naming.LABEL_MANAGED_BY: "punchingfist"},
    }
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": config.sizes(workflows),
    }


def critical_template(
    config: ConcurrencyConfig | None, manifest: dict[str, Any]
) -> dict[str, Any] | None:
    """The template runs of critical alerts start from: `manifest` (the Workflow's compiled
    template) renamed and without its semaphores; None unless `criticalBypass` is set."""
    if config is None or not config.critical_bypass:
        return None
    critical = copy.deepcopy(manifest)
    metadata = critical["metadata"]
    workflow = metadata["name"]
    metadata["name"] = naming.critical_template(workflow)
    metadata.setdefault("annotations", {})[naming.ANNOTATION_CRITICAL_OF] = workflow
    critical["spec"].pop("synchronization", None)
    return critical
