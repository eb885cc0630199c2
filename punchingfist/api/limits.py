"""`OperatorConfig.spec.concurrency`: how many investigations run at once.

Two limits, both counted per namespace (the OperatorConfig's): `maxRunning` over every run of
the namespace's Workflows and `perWorkflow` over the runs of one Workflow. A run that finds no
free slot waits; waiting runs start oldest first as slots free. On Argo the limits are Argo
semaphores: every compiled WorkflowTemplate names two keys of the ConfigMap `CONFIGMAP`, which
the controller writes from this section; the local executor reads the same keys.

With `criticalBypass`, runs about a critical alert (`is_critical`) skip both limits: on Argo
they run from a second template, `compiler.naming.critical_template(<workflow>)`, which is the
Workflow's template without the semaphores; the local executor leaves its semaphores out for
them. They hold no slot either, so they never make other runs wait.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from pydantic import Field

from punchingfist.api.base import SpecModel

CONFIGMAP = "punchingfist-concurrency"
"""The ConfigMap whose keys are the semaphores' sizes (one per namespace, the operator's)."""
GLOBAL_KEY = "global"
"""Its key shared by every run of the namespace."""

CRITICAL = "critical"
"""The severity whose runs skip the limits with `criticalBypass`."""


def workflow_key(workflow: str) -> str:
    """The key of one Workflow's semaphore (Workflow names are valid ConfigMap keys)."""
    return f"workflow.{workflow}"


class ConcurrencyConfig(SpecModel):
    """Limits on investigations running at once, in the OperatorConfig's namespace. Unset:
    no limits. Runs over a limit wait (on Argo: Pending, "Waiting for … lock") and start in
    the order they were created as slots free."""

    max_running: Annotated[int, Field(ge=1)] = 10
    """Runs at once across every Workflow of the namespace."""
    per_workflow: Annotated[int, Field(ge=1)] = 3
    """Runs at once of one Workflow."""
    critical_bypass: bool = False
    """Runs about a critical alert (severity `critical`) skip both limits: they start at once
    and hold no slot. On Argo they run from the template `<workflow>-critical`, the Workflow's
    template without the semaphores."""

    def keys(self, workflow: str) -> list[str]:
        """The semaphore keys a run of `workflow` holds while it runs."""
        return [GLOBAL_KEY, workflow_key(workflow)]

    def sizes(self, workflows: Iterable[str]) -> dict[str, str]:
        """The ConfigMap's data: every semaphore's size, for these Workflows."""
        data = {GLOBAL_KEY: str(self.max_running)}
        data |= {workflow_key(name): str(self.per_workflow) for name in sorted(set(workflows))}
        return data


def is_critical(event: Mapping[str, Any]) -> bool:
    """Whether a run's event is about a critical alert: `alert.severity` or the alert's
    `severity` label is `critical` (the event of a webhook or Alertmanager run)."""
    alert = event.get("alert")
    if not isinstance(alert, Mapping):
        return False
    labels = alert.get("labels")
    label = labels.get("severity") if isinstance(labels, Mapping) else None
    return CRITICAL in (alert.get("severity"), label)
