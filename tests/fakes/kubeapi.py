"""A fake Kubernetes API server for namespaced custom objects: real HTTP on loopback, speaking
the API server's wire format (paths, merge patch and server-side apply content types,
`Status` bodies with the code and reason of a refusal), so the kubernetes library runs for
real. It keeps the objects it was given and records every request (`requests`).

`fail_next(status)` makes the next request answer that status with a `Status` body, to
exercise what the client makes of 429, 5xx, 403 ... The e2e tier makes the same calls against
a real kube-apiserver.
"""

from __future__ import annotations

import re
from typing import Any

from kubernetes import client

from tests.fakes.saas import Answer, FakeService, Request

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "AlreadyExists",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}
_OBJECTS = re.compile(
    r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<namespace>[^/]+)/"
    r"(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?P<status>/status)?$"
)
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"


def status(code: int, message: str) -> dict[str, Any]:
    """A `Status` body as the API server answers a refused request."""
    return {
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "message": message,
        "reason": REASONS.get(code, "Unknown"),
        "code": code,
    }


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


def content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0]


class FakeKubeAPI(FakeService):
    """Namespaced custom objects (create, get, list, merge patch, apply, delete, status) and
    SelfSubjectReview, answering as `username`."""

    def __init__(self, username: str = "system:serviceaccount:default:punchingfist") -> None:
        super().__init__()
        self.username = username
        self.objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        """(apiVersion, plural, namespace, name) -> the object."""
        self._refusals: list[int] = []

    def configuration(self) -> client.Configuration:
        """A client configuration pointing at this server."""
        return client.Configuration(host=self.url)

    def fail_next(self, status: int, headers: dict[str, str] | None = None) -> None:
        """The next request is refused with `status` and a `Status` body."""
        self._refusals.append(status)

    def handle(self, request: Request) -> Answer:
        if self._refusals:
            code = self._refusals.pop(0)
            return code, status(code, f"scripted HTTP {code}")
        if request.path == "/apis/authentication.k8s.io/v1/selfsubjectreviews":
            review = request.json()
            return 201, {**review, "status": {"userInfo": {"username": self.username}}}
        match = _OBJECTS.match(request.path)
        if match is None:
            return 404, status(404, f"the server could not find {request.path}")
        parts = match.groupdict()
        api_version = f"{parts['group']}/{parts['version']}"
        plural, namespace, name = parts["plural"], parts["namespace"], parts["name"]
        if name is None:
            if request.method == "POST":
                return self._create((api_version, plural, namespace), request.json())
            items = [
                o for k, o in self.objects.items() if k[:3] == (api_version, plural, namespace)
            ]
            return 200, {"apiVersion": api_version, "kind": "List", "items": items}
        key = (api_version, plural, namespace, name)
        found = self.objects.get(key)
        if request.method == "PATCH" and content_type(request) == APPLY:
            if "fieldManager" not in request.query:
                return 422, status(422, "fieldManager is required for apply requests")
            self.objects[key] = request.json()  # JSON is YAML: the library sends JSON
            return (200 if found else 201), self.objects[key]
        if found is None:
            return 404, status(404, f'{plural}.{parts["group"]} "{name}" not found')
        if request.method == "GET":
            return 200, found
        if request.method == "DELETE":
            del self.objects[key]
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
        if request.method == "PATCH" and content_type(request) == MERGE:
            patch = request.json()
            self.objects[key] = merge(
                found, {"status": patch["status"]} if parts["status"] else patch
            )
            return 200, self.objects[key]
        return 415, status(415, f"unsupported {request.method} {content_type(request)}")

    def _create(self, collection: tuple[str, str, str], body: dict[str, Any]) -> Answer:
        name = body["metadata"]["name"]
        key = (*collection, name)
        if key in self.objects:
            return 409, status(409, f'{collection[1]} "{name}" already exists')
        self.objects[key] = body
        return 201, body
