"""The Kubernetes API as Punching Fist uses it: server-side apply, reads, patches, deletes.

`Connection.load` finds the API server (a kubeconfig, the in-cluster service account);
`Kube` makes the calls, synchronously (the kubernetes library), and raises `KubeError`.
Objects are named by `apiVersion` (`argoproj.io/v1alpha1`) and plural (`workflows`).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, cast

from kubernetes import client, config

from punchingfist.errors import PunchingFistError
from punchingfist.kube.errors import KubeError, api_errors

FIELD_MANAGER = "punchingfist"
ARGO_API_VERSION = "argoproj.io/v1alpha1"
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


def context_namespace(kubeconfig: str | None) -> str:
    """The namespace of the kubeconfig's current context (in a pod: its own), else default."""
    mounted = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    if not kubeconfig and mounted.is_file():
        return mounted.read_text().strip() or "default"
    try:
        _, active = config.list_kube_config_contexts(config_file=kubeconfig)
    except (config.ConfigException, OSError):
        return "default"
    return str((active or {}).get("context", {}).get("namespace") or "default")


def _has_service_account() -> bool:
    return os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token")


def kube_api_client(kubeconfig: str | None = None) -> Any:
    """A kubernetes library ApiClient: the kubeconfig given, else the service account, else
    ~/.kube/config (for the library's other APIs, e.g. TokenReview)."""
    return client.ApiClient(Connection.load(kubeconfig).configuration)


def _group_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


class Kube:
    """A small synchronous client (the kubernetes library), safe to share between threads."""

    def __init__(self, connection: Connection) -> None:
        self.api_client = client.ApiClient(connection.configuration)
        self._custom = client.CustomObjectsApi(self.api_client)
        self._core = client.CoreV1Api(self.api_client)

    def close(self) -> None:
        self.api_client.close()

    # -- custom objects (apiVersion `group/version`, plural) ---------------------------------

    def apply(self, document: dict[str, Any], plural: str | None = None) -> dict[str, Any]:
        """Server-side apply one object (field manager `punchingfist`, conflicts forced): a
        core Secret or ConfigMap, or a custom object (`plural` defaults to the kind in lower
        case + s)."""
        kind, name = document["kind"], document["metadata"]["name"]
        namespace = document["metadata"]["namespace"]
        api_version = str(document.get("apiVersion", ""))
        with api_errors(f"apply {kind} {namespace}/{name}"):
            core = {
                "Secret": self._core.patch_namespaced_secret,
                "ConfigMap": self._core.patch_namespaced_config_map,
            }
            if kind in core and api_version == "v1":
                applied = core[kind](
                    name,
                    namespace,
                    document,
                    field_manager=FIELD_MANAGER,
                    force=True,
                    _content_type=_APPLY,
                )
                return cast(dict[str, Any], self.api_client.sanitize_for_serialization(applied))
            if "/" not in api_version:
                raise KubeError(f"Punching Fist does not apply {api_version} {kind} objects")
            result = self._custom.patch_namespaced_custom_object(
                *_group_version(api_version),
                namespace,
                plural or f"{kind.lower()}s",
                name,
                document,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type=_APPLY,
            )
        return cast(dict[str, Any], result)

    def create(
        self, api_version: str, plural: str, namespace: str, document: dict[str, Any]
    ) -> dict[str, Any]:
        """Create a custom object; `KubeConflict` when one of that name exists."""
        name = document["metadata"]["name"]
        with api_errors(f"create {document['kind']} {namespace}/{name}"):
            result = self._custom.create_namespaced_custom_object(
                *_group_version(api_version), namespace, plural, document
            )
        return cast(dict[str, Any], result)

    def get(self, api_version: str, plural: str, namespace: str, name: str) -> dict[str, Any]:
        """A custom object; `KubeNotFound` when there is none."""
        found = self._read(api_version, plural, namespace, name, missing_ok=False)
        assert found is not None  # without missing_ok, a 404 raised
        return found

    def find(
        self, api_version: str, plural: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        """A custom object, or None when there is none."""
        return self._read(api_version, plural, namespace, name, missing_ok=True)

    def _read(
        self, api_version: str, plural: str, namespace: str, name: str, *, missing_ok: bool
    ) -> dict[str, Any] | None:
        with api_errors(f"read {plural} {namespace}/{name}", missing_ok=missing_ok):
            return cast(
                dict[str, Any],
                self._custom.get_namespaced_custom_object(
                    *_group_version(api_version), namespace, plural, name
                ),
            )
        return None

    def list_objects(self, api_version: str, plural: str, namespace: str) -> list[dict[str, Any]]:
        """The custom objects of one type in `namespace`."""
        with api_errors(f"list {plural} in {namespace}"):
            listing = self._custom.list_namespaced_custom_object(
                *_group_version(api_version), namespace, plural
            )
        return list(cast(dict[str, Any], listing).get("items") or [])

    def patch(
        self, api_version: str, plural: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch a custom object (None values remove a field)."""
        with api_errors(f"patch {plural} {namespace}/{name}"):
            result = self._custom.patch_namespaced_custom_object(
                *_group_version(api_version), namespace, plural, name, patch, _content_type=_MERGE
            )
        return cast(dict[str, Any], result)

    def patch_status(
        self, api_version: str, plural: str, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        """Merge-patch the status subresource (None values remove a field); a deleted object
        has no status to write."""
        with api_errors(f"write the status of {plural}/{name}", missing_ok=True):
            self._custom.patch_namespaced_custom_object_status(
                *_group_version(api_version),
                namespace,
                plural,
                name,
                {"status": status},
                _content_type=_MERGE,
            )

    def delete(self, api_version: str, plural: str, namespace: str, name: str) -> bool:
        """Delete a custom object; False when it was not there."""
        with api_errors(f"delete {plural} {namespace}/{name}", missing_ok=True):
            self._custom.delete_namespaced_custom_object(
                *_group_version(api_version), namespace, plural, name
            )
            return True
        return False

    # -- what the controller compiles: WorkflowTemplates and their Secrets -------------------

    def get_template(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.find(ARGO_API_VERSION, "workflowtemplates", namespace, name)

    def delete_template(self, namespace: str, name: str) -> None:
        self.delete(ARGO_API_VERSION, "workflowtemplates", namespace, name)

    def get_secret_owners(self, namespace: str, name: str) -> list[dict[str, Any]] | None:
        """The ownerReferences of a Secret, or None when there is no such Secret."""
        with api_errors(f"read Secret {namespace}/{name}", missing_ok=True):
            secret = self._core.read_namespaced_secret(name, namespace)
            owners = (secret.metadata.owner_references if secret.metadata else None) or []
            return [self.api_client.sanitize_for_serialization(owner) for owner in owners]
        return None

    def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        """One key of a Secret, decoded; None when the Secret or the key is missing (for
        `k8s://` secret references, read by the operator, never by steps)."""
        with api_errors(f"read Secret {namespace}/{name}", missing_ok=True):
            secret = self._core.read_namespaced_secret(name, namespace)
            data = secret.data or {}
            if key not in data:
                return None
            return base64.b64decode(data[key]).decode()
        return None

    def delete_secret(self, namespace: str, name: str) -> None:
        with api_errors(f"delete Secret {namespace}/{name}", missing_ok=True):
            self._core.delete_namespaced_secret(name, namespace)

    # -- who we are ------------------------------------------------------------------------

    def whoami(self) -> str:
        """The user name the API server knows our credentials by (SelfSubjectReview)."""
        body = client.V1SelfSubjectReview(
            api_version="authentication.k8s.io/v1", kind="SelfSubjectReview"
        )
        with api_errors("tell who we are"):
            review = client.AuthenticationV1Api(self.api_client).create_self_subject_review(body)
        user = review.status.user_info if review.status is not None else None
        if user is None or not user.username:
            raise KubeError("the API server did not say who we are")
        return str(user.username)
