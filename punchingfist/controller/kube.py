"""The Kubernetes API as the controller uses it: server-side apply, status, reads, deletes."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, TypedDict, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from punchingfist.api.base import GROUP, VERSION
from punchingfist.errors import PunchingFistError

FIELD_MANAGER = "punchingfist"
ARGO_GROUP, ARGO_VERSION = "argoproj.io", "v1alpha1"
_APPLY = "application/apply-patch+yaml"
_MERGE = "application/merge-patch+json"


class ObjectMeta(TypedDict, total=False):
    """The part of `metadata` the controller reads from a raw body."""

    name: str
    namespace: str
    uid: str
    generation: int
    labels: dict[str, str]
    annotations: dict[str, str]
    ownerReferences: list[dict[str, Any]]
    deletionTimestamp: str


class Body(TypedDict, total=False):
    """A raw Kubernetes object as the API server sends it."""

    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: dict[str, Any]
    status: dict[str, Any]


class KubeError(PunchingFistError):
    """The API server refused a request or could not be reached.

    ``temporary`` says whether retrying the same request later can succeed (5xx, 429, 409,
    connection errors) or not (4xx: the object itself is wrong, or RBAC forbids it).
    """

    def __init__(self, message: str, *, status: int | None, temporary: bool) -> None:
        self.status = status
        self.temporary = temporary
        super().__init__(message)


@dataclass(frozen=True)
class Connection:
    """Where the API server is and how to authenticate: what both clients (ours, Kopf's) use."""

    configuration: client.Configuration

    @classmethod
    def load(cls, kubeconfig: str | None = None, *, in_cluster: bool | None = None) -> Connection:
        """Read a kubeconfig file, the in-cluster service account, or (None) whichever exists."""
        configuration = client.Configuration()
        try:
            if in_cluster or (in_cluster is None and not kubeconfig and _has_service_account()):
                config.load_incluster_config(client_configuration=configuration)
            else:
                config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        except config.ConfigException as error:
            where = kubeconfig or ("the service account" if in_cluster else "the kubeconfig")
            raise PunchingFistError(
                f"cannot configure a Kubernetes client from {where}: {error}"
            ) from error
        return cls(configuration)

    def bearer_token(self) -> str | None:
        header = self.configuration.get_api_key_with_prefix(
            "BearerToken"
        ) or self.configuration.get_api_key_with_prefix("authorization")
        if not header:
            return None
        return str(header).split(" ", 1)[-1]


def _has_service_account() -> bool:
    return os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token")


class Kube:
    """A small synchronous client (the kubernetes library), safe to share between threads."""

    def __init__(self, connection: Connection) -> None:
        self._api = client.ApiClient(connection.configuration)
        self._custom = client.CustomObjectsApi(self._api)
        self._core = client.CoreV1Api(self._api)

    def close(self) -> None:
        self._api.close()

    # -- the objects the compiler emits -----------------------------------------------------

    def apply(self, document: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply one object (field manager `punchingfist`, conflicts forced)."""
        kind, name = document["kind"], document["metadata"]["name"]
        namespace = document["metadata"]["namespace"]
        with _errors(f"apply {kind} {namespace}/{name}"):
            if kind == "WorkflowTemplate":
                result = self._custom.patch_namespaced_custom_object(
                    ARGO_GROUP,
                    ARGO_VERSION,
                    namespace,
                    "workflowtemplates",
                    name,
                    document,
                    field_manager=FIELD_MANAGER,
                    force=True,
                    _content_type=_APPLY,
                )
            elif kind == "Secret" and document.get("apiVersion") == "v1":
                secret = self._core.patch_namespaced_secret(
                    name,
                    namespace,
                    document,
                    field_manager=FIELD_MANAGER,
                    force=True,
                    _content_type=_APPLY,
                )
                result = self._api.sanitize_for_serialization(secret)
            else:
                raise KubeError(
                    f"the controller does not apply {kind} objects", status=None, temporary=False
                )
        return cast(dict[str, Any], result)

    def get_template(self, namespace: str, name: str) -> dict[str, Any] | None:
        with _errors(f"read WorkflowTemplate {namespace}/{name}", missing_ok=True):
            return cast(
                dict[str, Any],
                self._custom.get_namespaced_custom_object(
                    ARGO_GROUP, ARGO_VERSION, namespace, "workflowtemplates", name
                ),
            )
        return None

    def delete_template(self, namespace: str, name: str) -> None:
        with _errors(f"delete WorkflowTemplate {namespace}/{name}", missing_ok=True):
            self._custom.delete_namespaced_custom_object(
                ARGO_GROUP, ARGO_VERSION, namespace, "workflowtemplates", name
            )

    def get_secret_owners(self, namespace: str, name: str) -> list[dict[str, Any]] | None:
        """The ownerReferences of a Secret, or None when there is no such Secret."""
        with _errors(f"read Secret {namespace}/{name}", missing_ok=True):
            secret = self._core.read_namespaced_secret(name, namespace)
            owners = (secret.metadata.owner_references if secret.metadata else None) or []
            return [self._api.sanitize_for_serialization(owner) for owner in owners]
        return None

    def delete_secret(self, namespace: str, name: str) -> None:
        with _errors(f"delete Secret {namespace}/{name}", missing_ok=True):
            self._core.delete_namespaced_secret(name, namespace)

    # -- our own resources ------------------------------------------------------------------

    def patch_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Merge-patch the status subresource (None values remove a field)."""
        with _errors(f"write the status of {plural}/{name}", missing_ok=True):
            self._custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                {"status": status},
                _content_type=_MERGE,
            )


class _errors:
    """Turn the client's exceptions into KubeError (temporary or not); 404 may be fine."""

    def __init__(self, what: str, *, missing_ok: bool = False) -> None:
        self.what = what
        self.missing_ok = missing_ok

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: Any, _tb: Any) -> bool:
        if error is None:
            return False
        if isinstance(error, KubeError):
            return False
        if isinstance(error, ApiException):
            if error.status == 404 and self.missing_ok:
                return True
            status = error.status or None
            temporary = status is None or status >= 500 or status in (409, 429)
            raise KubeError(
                f"cannot {self.what}: {reason(error)}", status=status, temporary=temporary
            ) from error
        if isinstance(error, (OSError, ValueError)) or type(error).__module__.startswith("urllib3"):
            raise KubeError(f"cannot {self.what}: {error}", status=None, temporary=True) from error
        return False


def reason(error: ApiException) -> str:
    """The API server's message of a refused request."""
    try:
        return str(json.loads(error.body or "").get("message") or error.reason)
    except (TypeError, ValueError):
        return f"{error.status} {error.reason}"
