"""Names of the Argo templates, tasks and parameters the compiler emits."""

from __future__ import annotations

import hashlib

ENTRYPOINT = "main"
EXIT_HANDLER = "exit-handler"
OUTPUTS_TASK = "pf-outputs"
RESULT_PARAM = "result"
CONDITION_PARAM = "condition"
OUTPUTS_PARAM = "outputs"
APPROVAL_PARAMS = ("approved", "approver", "comment")
PARAMETERS = ("event", "source", "fingerprint")
"""Workflow parameters every compiled template takes."""

LABEL_WORKFLOW = "punchingfist.io/workflow"
LABEL_SOURCE = "punchingfist.io/source"
LABEL_FINGERPRINT = "punchingfist.io/fingerprint"
LABEL_STEP = "punchingfist.io/step"
LABEL_TASK = "punchingfist.io/task"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
ANNOTATION_SPEC_HASH = "punchingfist.io/spec-sha256"
ANNOTATION_COMPILER = "punchingfist.io/compiler-version"
ANNOTATION_CRITICAL_OF = "punchingfist.io/critical-bypass-of"
"""On the template runs of critical alerts start from (OperatorConfig concurrency
`criticalBypass`): the Workflow's own template, which it copies without the semaphores."""
ANNOTATION_SECRET_REFERENCES = "punchingfist.io/secret-references"
"""On a template whose steps read secret references: JSON {key of the run's Secret: reference}
(compiler.credentials); the executor resolves them when a run starts."""
ANNOTATION_STOPPED = "punchingfist.io/stopped-because"
"""On an Argo Workflow the operator shut down: why (e.g. a step's image cannot be pulled)."""


def condition_task(step: str) -> str:
    return f"{step}-condition"


def approval_request_task(step: str) -> str:
    return f"{step}-approval-request"


def approval_task(step: str) -> str:
    return f"{step}-approval"


def preview_task(step: str) -> str:
    """A remediation step's preview (server-side dry run, diff, RBAC), before its gate."""
    return f"{step}-preview"


def rollback_task(step: str) -> str:
    """A remediation step's rollback behind its own gate (onFailure ask)."""
    return f"{step}-rollback"


ROLLBACK_PARAM = "rollback"
"""Output of a remediation task with onFailure ask: `true` when the failed fix waits for its
rollback approval."""
OFFERED_PARAM = "offered"
"""Output of a remediation preview task: `true` when the fix is offered for approval."""
PREVIEW_PARAM = "preview"
"""Output of a remediation preview task: the Preview an approver sees (JSON)."""


def sink_task(sink: str) -> str:
    return f"sink-{sink}"


def global_result(step: str) -> str:
    """globalName of a step's result; an identifier, so Argo expressions can read it."""
    return "pf_result_" + step.replace("-", "_")


def result_input(step: str) -> str:
    """Input parameter of a template that carries an earlier step's result."""
    return f"result-{step}"


def references_secret() -> str:
    """The Secret a run's resolved secret references are read from: its own, named after the
    run (Argo substitutes `{{workflow.name}}`; the local engine fills it in-process)."""
    return "{{workflow.name}}-secrets"


def secret_name(workflow: str) -> str:
    """The Secret the compiler emits for credentials written in clear text."""
    return f"{workflow}-punchingfist"


CRITICAL_SUFFIX = "-critical"
_NAME_LENGTH = 63  # a label value: `argo submit --from` labels runs with their template's name


def critical_template(workflow: str) -> str:
    """The template critical runs start from (`criticalBypass`): `<workflow>-critical`, or,
    when that is longer than 63 characters, the Workflow's name cut short with a hash of it."""
    name = workflow + CRITICAL_SUFFIX
    if len(name) <= _NAME_LENGTH:
        return name
    digest = hashlib.sha256(workflow.encode()).hexdigest()[:8]
    kept = workflow[: _NAME_LENGTH - len(CRITICAL_SUFFIX) - len(digest) - 1].rstrip("-.")
    return f"{kept}-{digest}{CRITICAL_SUFFIX}"
