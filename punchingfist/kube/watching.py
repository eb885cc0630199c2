"""Watching any resource type the API server serves, found by group and plural (discovery):
what a `kubernetes` Source watches."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from punchingfist.kube.errors import KubeGone, KubeNotFound, api_errors


class ResourceWatch:
    """List, then watch from the listing's resourceVersion, one resource type. Raises
    `KubeNotFound` when the API server serves no such resource, `KubeGone` when the watch's
    resourceVersion expired (list again), other `KubeError`s as the API server answers."""

    def __init__(self, api_client: Any, group: str, plural: str) -> None:
        with api_errors(f"discover the resource {plural}"):
            self._client: Any = DynamicClient(api_client)  # type: ignore[no-untyped-call]
            self._resource = self._find(group, plural)

    def _find(self, group: str, plural: str) -> Any:
        try:
            if group:
                found = self._client.resources.search(group=group, name=plural)
                preferred = [r for r in found if getattr(r, "preferred", False)]
                if preferred or found:
                    return (preferred or found)[0]
                raise ResourceNotFoundError(plural)
            return self._client.resources.get(api_version="v1", name=plural)
        except ResourceNotFoundError as error:
            served = f"{plural}.{group}" if group else plural
            raise KubeNotFound(f"the API server serves no {served!r}", status=404) from error

    def version(self, **scope: Any) -> str:
        """The resourceVersion of a listing (`namespace`, `label_selector`): changes after it
        are the watch's."""
        with api_errors("list the watched resource"):
            listing = self._resource.get(**scope)
        return str(listing.metadata.resourceVersion)

    def events(
        self, version: str, timeout: int, **scope: Any
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(type, object) of each change after `version`, for up to `timeout` seconds."""
        with api_errors("watch the resource"):
            for event in self._client.watch(
                self._resource, resource_version=version, timeout=timeout, **scope
            ):
                raw = event.get("raw_object") or {}
                if event.get("type") == "ERROR":
                    raise KubeGone("the watch's resourceVersion expired", status=410)
                yield str(event.get("type")), raw
