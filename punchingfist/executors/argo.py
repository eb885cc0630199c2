"""The Argo executor: create a Workflow from the compiled WorkflowTemplate (workflowTemplateRef).

A run about a critical alert starts from the Workflow's critical template when the controller
has applied one (OperatorConfig concurrency `criticalBypass`): the same template without the
semaphores, so the run skips the concurrency limits.

The Workflow is built with Hera; every API call goes through `punchingfist.kube.Kube`, whose
`KubeError` says what is temporary: the executor's `SubmitError`s carry that answer on.

Secret references of the template (`vault://`, `aws://`, `azure://`, `k8s://`, `env://`; its
annotation `punchingfist.io/secret-references`) are resolved here, by the operator, when the
run is submitted, into the run's own Secret `<run>-secrets`, owned by the Argo Workflow (deleted
with it), which the steps read as they read any Secret: step pods never see a manager's
credentials. A reference that cannot be read fails the run before it starts, naming it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from hera.workflows import Parameter, Workflow
from hera.workflows.models import WorkflowTemplateRef

from punchingfist.api.limits import is_critical
from punchingfist.api.runspec import RunParameters
from punchingfist.compiler.naming import (
    ANNOTATION_CRITICAL_OF,
    ANNOTATION_STOPPED,
    LABEL_FINGERPRINT,
    LABEL_MANAGED_BY,
    LABEL_SOURCE,
    LABEL_WORKFLOW,
    critical_template,
)
from punchingfist.executors.setup import resolve_references, template_references
from punchingfist.kube import (
    ARGO_API_VERSION,
    Connection,
    Kube,
    KubeConflict,
    KubeError,
)
from punchingfist.runs.dispatching import RunSubmission, SubmitError
from punchingfist.secrets import SecretError, SecretResolver


def workflow_manifest(run: RunSubmission, template: str | None = None) -> dict[str, Any]:
    """The Workflow of one run: the WorkflowTemplate `template` (default: `run.workflow`'s
    own) with the run's parameters, labelled as a run of the punchingfist Workflow."""
    parameters = RunParameters.of(run.parameters)
    labels = {LABEL_WORKFLOW: run.workflow, LABEL_MANAGED_BY: "punchingfist"}
    named = {LABEL_SOURCE: parameters.source, LABEL_FINGERPRINT: parameters.fingerprint}
    labels |= {label: value[:63] for label, value in named.items() if value}
    arguments = parameters.arguments() | {"source": parameters.source or "manual"}
    workflow = Workflow(
        name=run.name,
        namespace=run.namespace,
        labels=labels,
        workflow_template_ref=WorkflowTemplateRef(name=template or run.workflow),
        arguments=[Parameter(name=k, value=v) for k, v in arguments.items()],
    )
    manifest: dict[str, Any] = workflow.to_dict()
    return manifest


def _run_secret(
    run: RunSubmission, values: dict[str, str], owner: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The run's Secret of resolved references, owned by its Workflow once that exists."""
    metadata: dict[str, Any] = {
        "name": f"{run.name}-secrets",
        "namespace": run.namespace,
        "labels": {LABEL_MANAGED_BY: "punchingfist", LABEL_WORKFLOW: run.workflow},
    }
    if owner is not None:
        metadata["ownerReferences"] = [
            {
                "apiVersion": ARGO_API_VERSION,
                "kind": "Workflow",
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
                "blockOwnerDeletion": True,
            }
        ]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "stringData": values,
    }


@contextmanager
def _submitting() -> Iterator[None]:
    """A KubeError becomes a SubmitError, temporary when the KubeError is."""
    try:
        yield
    except KubeError as error:
        raise SubmitError(str(error), temporary=error.temporary) from error


class ArgoExecutor:
    """Creates Argo Workflows through the Kubernetes API (kubeconfig or in-cluster config)."""

    name = "argo"

    def __init__(
        self,
        kubeconfig: str | None = None,
        *,
        kube: Kube | None = None,
        resolver: SecretResolver | None = None,
    ) -> None:
        self.kube = kube if kube is not None else Kube(Connection.load(kubeconfig))
        self.api_client = self.kube.api_client
        """The kubernetes library's ApiClient (the watches of kubernetes Sources use it)."""
        self.resolver = resolver or SecretResolver(kubernetes=self.kube.secret_value)
        """Resolves the runs' secret references (the server sets OperatorConfig's)."""

    def submit(self, run: RunSubmission) -> None:
        template, found = self._template(run)
        try:
            manifest = workflow_manifest(run, template)
        except ValueError as error:  # Hera's checks, e.g. a name longer than 63 characters
            raise SubmitError(f"run {run.name}: {error}", temporary=False) from error
        values = self._secrets(run, template, found)
        with _submitting():
            if values:  # before the Workflow, so its pods never wait for it
                self.kube.apply(_run_secret(run, values))
            try:
                created = self.kube.create(ARGO_API_VERSION, "workflows", run.namespace, manifest)
            except KubeConflict:  # already submitted: an earlier attempt got through
                if not values:
                    return
                created = self.kube.get(ARGO_API_VERSION, "workflows", run.namespace, run.name)
            except KubeError:
                if values:
                    self.kube.delete_secret(run.namespace, f"{run.name}-secrets")
                raise
            if values:  # now owned by the run: Kubernetes deletes it with the Workflow
                self.kube.apply(_run_secret(run, values, owner=created))

    def _secrets(
        self, run: RunSubmission, template: str, found: dict[str, Any] | None
    ) -> dict[str, str]:
        """The template's secret references, resolved for this run (empty: it has none).
        `found`: the template when `_template` has read it already."""
        if found is None:
            with _submitting():
                found = self.kube.find(
                    ARGO_API_VERSION, "workflowtemplates", run.namespace, template
                )
        if not template_references(found or {}):
            return {}
        try:
            return resolve_references(found or {}, self.resolver, f"run {run.name}")
        except SecretError as error:
            raise SubmitError(f"run {run.name}: {error}", temporary=False) from None

    def _template(self, run: RunSubmission) -> tuple[str, dict[str, Any] | None]:
        """The template the run starts from: for a run about a critical alert the Workflow's
        critical template when it exists (the controller applies it only with
        `criticalBypass`), else the Workflow's own; with the critical one as read (so that it
        is not read again for its secret references)."""
        if not is_critical(RunParameters.of(run.parameters).event):
            return run.workflow, None
        critical = critical_template(run.workflow)
        with _submitting():
            found = self.kube.find(ARGO_API_VERSION, "workflowtemplates", run.namespace, critical)
        annotations = ((found or {}).get("metadata") or {}).get("annotations") or {}
        if annotations.get(ANNOTATION_CRITICAL_OF) == run.workflow:
            return critical, found
        return run.workflow, None

    def resume(
        self,
        name: str,
        namespace: str,
        gate: str,
        *,
        approved: bool,
        approver: str,
        comment: str,
        channel: str = "api",
    ) -> None:
        """Answer a suspend node the way `argo node set` + `argo resume` do (the `channel` is
        the server's to record)."""
        nodes = self._nodes(name, namespace)
        waiting = [
            node_id
            for node_id, node in nodes.items()
            if node.get("displayName") == gate
            and node.get("type") == "Suspend"
            and node.get("phase") == "Running"
        ]
        if not waiting:
            opening = not any(node.get("displayName") == gate for node in nodes.values())
            soon = " yet (its approval request is being sent): try again in a few seconds"
            raise SubmitError(
                f"run {name} is not waiting at gate {gate!r}{soon if opening else ''}",
                temporary=False,
            )
        finished = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        values = {
            "approved": "true" if approved else "false",
            "approver": approver,
            "comment": comment,
        }
        patch = {
            "status": {
                "nodes": {
                    waiting[0]: {
                        "phase": "Succeeded",
                        "finishedAt": finished,
                        "message": f"{'approved' if approved else 'denied'} by {approver}",
                        "outputs": {
                            "parameters": [{"name": k, "value": v} for k, v in values.items()]
                        },
                    }
                }
            }
        }
        with _submitting():
            self.kube.patch(ARGO_API_VERSION, "workflows", namespace, name, patch)

    def waiting_gates(self, name: str, namespace: str) -> list[str]:
        """Approval gates (suspend nodes `<step>-approval`) the run is waiting at."""
        return sorted(
            str(node.get("displayName"))
            for node in self._nodes(name, namespace).values()
            if node.get("type") == "Suspend"
            and node.get("phase") == "Running"
            and str(node.get("displayName", "")).endswith("-approval")
        )

    def _nodes(self, name: str, namespace: str) -> dict[str, Any]:
        nodes: dict[str, Any] = (self.get(name, namespace).get("status") or {}).get("nodes") or {}
        return nodes

    def get(self, name: str, namespace: str) -> dict[str, Any]:
        """The Argo Workflow (run) `name`, as the API server returns it."""
        with _submitting():
            return self.kube.get(ARGO_API_VERSION, "workflows", namespace, name)

    def stop(self, name: str, namespace: str, *, strategy: str, reason: str) -> None:
        """Shut a run down (`Stop`: its exit handler still runs; `Terminate`: it does not),
        saying why in the annotation ANNOTATION_STOPPED, as `argo stop` / `argo terminate`."""
        patch = {
            "metadata": {"annotations": {ANNOTATION_STOPPED: reason[:1000]}},
            "spec": {"shutdown": strategy},
        }
        with _submitting():
            self.kube.patch(ARGO_API_VERSION, "workflows", namespace, name, patch)

    def template_exists(self, name: str, namespace: str) -> bool:
        """Whether the WorkflowTemplate `name` is in `namespace`."""
        with _submitting():
            return (
                self.kube.find(ARGO_API_VERSION, "workflowtemplates", namespace, name) is not None
            )

    def apply(self, manifest: dict[str, Any], plural: str) -> None:
        """Server-side apply an argoproj.io object (e.g. a CronWorkflow); we own its fields."""
        with _submitting():
            self.kube.apply(manifest, plural)

    def delete(self, plural: str, namespace: str, name: str) -> bool:
        """Delete an argoproj.io object; False when it was not there."""
        with _submitting():
            return self.kube.delete(ARGO_API_VERSION, plural, namespace, name)

    def whoami(self) -> str:
        """The user name the API server knows our credentials by (SelfSubjectReview)."""
        with _submitting():
            return self.kube.whoami()
