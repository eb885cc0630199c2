"""The Argo executor: create a Workflow from the compiled WorkflowTemplate (workflowTemplateRef)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, cast

from punchingfist.compiler.naming import (
    ANNOTATION_STOPPED,
    LABEL_FINGERPRINT,
    LABEL_SOURCE,
    LABEL_WORKFLOW,
)
from punchingfist.runs.dispatching import RunSubmission, SubmitError

FIELD_MANAGER = "punchingfist"


def workflow_manifest(run: RunSubmission) -> dict[str, Any]:
    parameters = run.parameters
    labels = {LABEL_WORKFLOW: run.workflow, "app.kubernetes.io/managed-by": "punchingfist"}
    for label, key in ((LABEL_SOURCE, "source"), (LABEL_FINGERPRINT, "fingerprint")):
        value = str(parameters.get(key, ""))[:63]
        if value:
            labels[label] = value
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": run.name, "namespace": run.namespace, "labels": labels},
        "spec": {
            "workflowTemplateRef": {"name": run.workflow},
            "arguments": {
                "parameters": [
                    {"name": "event", "value": json.dumps(parameters.get("event", {}))},
                    {"name": "source", "value": str(parameters.get("source", "manual"))},
                    {"name": "fingerprint", "value": str(parameters.get("fingerprint", ""))},
                ]
            },
        },
    }


class ArgoExecutor:
    """Creates Argo Workflows through the Kubernetes API (kubeconfig or in-cluster config)."""

    name = "argo"

    def __init__(self, kubeconfig: str | None = None) -> None:
        from kubernetes import client

        self.api_client = kube_api_client(kubeconfig)
        self._api = client.CustomObjectsApi(self.api_client)
        self._errors = client.exceptions.ApiException

    def submit(self, run: RunSubmission) -> None:
        try:
            self._api.create_namespaced_custom_object(
                "argoproj.io", "v1alpha1", run.namespace, "workflows", workflow_manifest(run)
            )
        except self._errors as error:
            if error.status == 409:
                return  # already submitted: an earlier attempt got through
            reason = _reason(error)
            temporary = error.status is None or error.status >= 500 or error.status == 429
            raise SubmitError(
                f"Argo refused run {run.name}: {reason}", temporary=temporary
            ) from error
        except Exception as error:  # connection errors of urllib3
            raise SubmitError(f"cannot reach the Kubernetes API: {error}") from error

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
            raise SubmitError(f"run {name} is not waiting at gate {gate!r}", temporary=False)
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
        try:
            self._api.patch_namespaced_custom_object(
                "argoproj.io", "v1alpha1", namespace, "workflows", name, patch
            )
        except self._errors as error:
            raise SubmitError(f"cannot resume run {name}: {_reason(error)}") from error

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
        try:
            return cast(
                dict[str, Any],
                self._api.get_namespaced_custom_object(
                    "argoproj.io", "v1alpha1", namespace, "workflows", name
                ),
            )
        except self._errors as error:
            raise SubmitError(
                f"cannot read run {name}: {_reason(error)}", temporary=error.status != 404
            ) from error

    def stop(self, name: str, namespace: str, *, strategy: str, reason: str) -> None:
        """Shut a run down (`Stop`: its exit handler still runs; `Terminate`: it does not),
        saying why in the annotation ANNOTATION_STOPPED, as `argo stop` / `argo terminate`."""
        patch = {
            "metadata": {"annotations": {ANNOTATION_STOPPED: reason[:1000]}},
            "spec": {"shutdown": strategy},
        }
        try:
            self._api.patch_namespaced_custom_object(
                "argoproj.io", "v1alpha1", namespace, "workflows", name, patch
            )
        except self._errors as error:
            raise SubmitError(
                f"cannot stop run {name}: {_reason(error)}", temporary=error.status != 404
            ) from error

    def template_exists(self, name: str, namespace: str) -> bool:
        """Whether the WorkflowTemplate `name` is in `namespace`."""
        try:
            self._api.get_namespaced_custom_object(
                "argoproj.io", "v1alpha1", namespace, "workflowtemplates", name
            )
        except self._errors as error:
            if error.status == 404:
                return False
            raise SubmitError(f"cannot read WorkflowTemplate {name}: {_reason(error)}") from error
        return True

    def apply(self, manifest: dict[str, Any], plural: str) -> None:
        """Server-side apply an argoproj.io object (e.g. a CronWorkflow); we own its fields."""
        metadata = manifest["metadata"]
        try:
            self._api.patch_namespaced_custom_object(
                "argoproj.io",
                "v1alpha1",
                metadata["namespace"],
                plural,
                metadata["name"],
                manifest,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type="application/apply-patch+yaml",
            )
        except self._errors as error:
            raise SubmitError(
                f"cannot apply {manifest['kind']} {metadata['name']}: {_reason(error)}",
                temporary=error.status is None or error.status >= 500 or error.status == 429,
            ) from error

    def delete(self, plural: str, namespace: str, name: str) -> bool:
        """Delete an argoproj.io object; False when it was not there."""
        try:
            self._api.delete_namespaced_custom_object(
                "argoproj.io", "v1alpha1", namespace, plural, name
            )
        except self._errors as error:
            if error.status == 404:
                return False
            raise SubmitError(f"cannot delete {plural}/{name}: {_reason(error)}") from error
        return True

    def whoami(self) -> str:
        """The user name the API server knows our credentials by (SelfSubjectReview)."""
        from kubernetes import client

        body = client.V1SelfSubjectReview(
            api_version="authentication.k8s.io/v1", kind="SelfSubjectReview"
        )
        try:
            review = client.AuthenticationV1Api(self.api_client).create_self_subject_review(body)
        except self._errors as error:
            raise SubmitError(f"cannot tell who we are: {_reason(error)}") from error
        user = review.status.user_info if review.status is not None else None
        if user is None or not user.username:
            raise SubmitError("the API server did not say who we are", temporary=False)
        return str(user.username)


def kube_api_client(kubeconfig: str | None = None) -> Any:
    """A Kubernetes ApiClient: the kubeconfig given, else in-cluster, else ~/.kube/config."""
    from kubernetes import client, config

    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


def _reason(error: Any) -> str:
    try:
        return str(json.loads(error.body).get("message", error.reason))
    except (TypeError, ValueError):
        return f"{error.status} {error.reason}"
