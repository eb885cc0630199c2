"""The preview of a `delete-pod` fix on the real API server (#25): a pod is offered for deletion
only when a ReplicaSet, StatefulSet or DaemonSet will replace it, because the post-check follows
that controller to a Ready replacement. A pod of a Job, or one without a controller, is never
offered, and the preview says why (no kubelet here: the pods never run; the API server's
server-side dry run of the deletion is what is asked)."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from punchingfist.api.actions import ActionPolicy
from punchingfist.runtime.remediation import preview
from punchingfist.runtime.remediation.kube import Kube
from tests.e2e.controlplane import ControlPlane
from tests.unit.test_remediation import task_spec


def _pod(plane: ControlPlane, namespace: str, name: str, owners: list[dict[str, Any]]) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "ownerReferences": owners},
        "spec": {"containers": [{"name": "app", "image": "registry.local/shop/app:1"}]},
    }
    plane.kubectl("apply", "-f", "-", stdin=json.dumps(pod))


def _owner(kind: str, api_version: str) -> list[dict[str, Any]]:
    """A controller reference (the owner itself need not exist: no garbage collector runs)."""
    return [
        {
            "apiVersion": api_version,
            "kind": kind,
            "name": f"{kind.lower()}-1",
            "uid": str(uuid.uuid4()),
            "controller": True,
        }
    ]


def test_only_a_pod_that_a_workload_replaces_is_offered_for_deletion(
    control_plane: ControlPlane,
) -> None:
    namespace = f"del-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl("create", "namespace", namespace)
    # no kube-controller-manager here to make the namespace's default ServiceAccount
    control_plane.kubectl("create", "serviceaccount", "default", "-n", namespace)
    pods = {
        "web-1": _owner("ReplicaSet", "apps/v1"),
        "report-1": _owner("Job", "batch/v1"),
        "lonely": [],
    }
    for name, owners in pods.items():
        _pod(control_plane, namespace, name, owners)
    kube = Kube({"KUBECONFIG": str(control_plane.kubeconfig), "PATH": os.environ["PATH"]})

    def offered(pod: str) -> dict[str, Any]:
        action = {
            "action": "delete-pod",
            "target": {"kind": "Pod", "namespace": namespace, "name": pod},
        }
        spec, environ = task_spec(action, ActionPolicy(namespaces=[namespace]))
        shown: dict[str, Any] = preview(spec, environ, kube)["result"]["preview"]
        return shown

    web = offered("web-1")
    assert web["offered"] is True and web["dry_run"] == "accepted", web
    job = offered("report-1")
    assert job["offered"] is False and job["dry_run"] != "accepted"
    assert "controller is a Job: its replacement cannot be checked" in job["refused"]
    lonely = offered("lonely")
    assert lonely["offered"] is False and "no controller" in lonely["refused"]
    left = control_plane.get_json("pods", "-n", namespace)["items"]
    assert sorted(p["metadata"]["name"] for p in left) == sorted(pods), "nothing deleted"
