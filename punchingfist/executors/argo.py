"""The Argo executor: create a Workflow from the compiled WorkflowTemplate (workflowTemplateRef)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, cast

from punchingfist.compiler.naming import LABEL_FINGERPRINT, LABEL_SOURCE, LABEL_WORKFLOW
from punchingfist.executors.base import RunSubmission, SubmitError


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
        from kubernetes import client, config

        if kubeconfig:
            api_client = config.new_client_from_config(config_file=kubeconfig)
        else:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            api_client = client.ApiClient()
        self._api = client.CustomObjectsApi(api_client)
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
        self, name: str, namespace: str, gate: str, *, approved: bool, approver: str,
        comment: str,
    ) -> None:  # fmt: skip
        """Answer a suspend node the way `argo node set` + `argo resume` do."""
        try:
            workflow: dict[str, Any] = cast(
                dict[str, Any],
                self._api.get_namespaced_custom_object(
                    "argoproj.io", "v1alpha1", namespace, "workflows", name
                ),
            )
        except self._errors as error:
            raise SubmitError(f"cannot read run {name}: {_reason(error)}",
                              temporary=error.status != 404) from error  # fmt: skip
        nodes = (workflow.get("status") or {}).get("nodes") or {}
        waiting = [
            node_id for node_id, node in nodes.items()
            if node.get("displayName") == gate and node.get("type") == "Suspend"
            and node.get("phase") == "Running"
        ]  # fmt: skip
        if not waiting:
            raise SubmitError(f"run {name} is not waiting at gate {gate!r}", temporary=False)
        finished = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        values = {"approved": "true" if approved else "false", "approver": approver,
                  "comment": comment}  # fmt: skip
        patch = {"status": {"nodes": {waiting[0]: {
            "phase": "Succeeded",
            "finishedAt": finished,
            "message": f"{'approved' if approved else 'denied'} by {approver}",
            "outputs": {"parameters": [{"name": k, "value": v} for k, v in values.items()]},
        }}}}  # fmt: skip
        try:
            self._api.patch_namespaced_custom_object(
                "argoproj.io", "v1alpha1", namespace, "workflows", name, patch
            )
        except self._errors as error:
            raise SubmitError(f"cannot resume run {name}: {_reason(error)}") from error


def _reason(error: Any) -> str:
    try:
        return str(json.loads(error.body).get("message", error.reason))
    except (TypeError, ValueError):
        return f"{error.status} {error.reason}"
