"""`OperatorConfig.spec.concurrency`: how many investigations run at once.

Two limits, both counted per namespace (the OperatorConfig's): `maxRunning` over every run of
the namespace's Workflows and `perWorkflow` over the runs of one Workflow. A run that finds no
free slot waits; waiting runs start oldest first as slots free. On Argo the limits are Argo
semaphores: every compiled WorkflowTemplate names two keys of the ConfigMap `CONFIGMAP`, which
the controller writes from this section; the local executor reads the same keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from pydantic import Field, field_validator

from punchingfist.api.base import SpecModel

CONFIGMAP = "punchingfist-concurrency"
"""The ConfigMap whose keys are the semaphores' sizes (one per namespace, the operator's)."""
GLOBAL_KEY = "global"
"""Its key shared by every run of the namespace."""

_CRITICAL_BYPASS = (
    "not supported yet: Argo cannot take a semaphore of the "
    "WorkflowTemplate off one run (a Workflow's own spec.synchronization replaces the "
    "template's only with other locks, and Argo refuses it when templateReferencing is Strict "
    "or Secure): remove criticalBypass or set it to false, and raise maxRunning/perWorkflow "
    "if critical alerts must not wait"
)


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
    """Not supported yet: `true` (runs of critical alerts skip the limits) is refused."""

    @field_validator("critical_bypass")
    @classmethod
    def _no_bypass_yet(cls, value: bool) -> bool:
        if value:
            raise ValueError(_CRITICAL_BYPASS)
        return value

    def keys(self, workflow: str) -> list[str]:
        """The semaphore keys a run of `workflow` holds while it runs."""
        return [GLOBAL_KEY, workflow_key(workflow)]

    def sizes(self, workflows: Iterable[str]) -> dict[str, str]:
        """The ConfigMap's data: every semaphore's size, for these Workflows."""
        data = {GLOBAL_KEY: str(self.max_running)}
        data |= {workflow_key(name): str(self.per_workflow) for name in sorted(set(workflows))}
        return data
