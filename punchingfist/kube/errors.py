"""What the Kubernetes API answered, as one error type that says whether to try again.

    KubeError                 the API server refused a request (other 4xx)       permanent
    ├── KubeUnreachable       no answer: connection refused, TLS, timeout         temporary
    ├── KubeServerError       5xx                                                 temporary
    ├── KubeTooManyRequests   429 (the API server's rate limits)                  temporary
    ├── KubeUnauthorized      401 (the credentials are wrong or expired)          permanent
    ├── KubeForbidden         403 (RBAC forbids it)                               permanent
    ├── KubeNotFound          404                                                 permanent
    ├── KubeConflict          409 (exists already, or changed meanwhile)          permanent
    ├── KubeGone              410 (a watch's resourceVersion expired: list again)  permanent
    └── KubeInvalid           422 (the object fails the API server's validation)  permanent

`error_class(status)` is the one place that decides which is which; callers test `temporary`
(retry the same request later?) or catch a subclass, never the HTTP status. The client
library's exceptions are chained as the cause (`raise ... from`).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from kubernetes.client.exceptions import ApiException

from punchingfist.errors import PunchingFistError


class KubeError(PunchingFistError):
    """The API server refused a request or could not be reached. ``status`` is the HTTP status
    (None: no answer); ``temporary`` says whether the same request can succeed later."""

    temporary: ClassVar[bool] = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class KubeUnreachable(KubeError):
    """No answer from the API server (connection, TLS, timeout)."""

    temporary = True


class KubeServerError(KubeError):
    """The API server failed (5xx)."""

    temporary = True


class KubeTooManyRequests(KubeError):
    """The API server throttles us (429)."""

    temporary = True


class KubeUnauthorized(KubeError):
    """The credentials are not accepted (401)."""


class KubeForbidden(KubeError):
    """RBAC forbids the request (403)."""


class KubeNotFound(KubeError):
    """No such object, or no such resource type (404)."""


class KubeConflict(KubeError):
    """The object exists already, or changed since it was read (409)."""


class KubeGone(KubeError):
    """410: a watch's resourceVersion is too old; list again and watch from the listing."""


class KubeInvalid(KubeError):
    """The API server's validation refuses the object (422)."""


_BY_STATUS: dict[int, type[KubeError]] = {
    401: KubeUnauthorized,
    403: KubeForbidden,
    404: KubeNotFound,
    409: KubeConflict,
    410: KubeGone,
    422: KubeInvalid,
    429: KubeTooManyRequests,
}


def error_class(status: int | None) -> type[KubeError]:
    """The error of an answer with HTTP `status` (None: no answer)."""
    if status is None:
        return KubeUnreachable
    if status >= 500:
        return KubeServerError
    return _BY_STATUS.get(status, KubeError)


def kube_error(what: str, error: BaseException) -> KubeError | None:
    """The KubeError `cannot <what>: ...` of an exception of the client library (None: not an
    API or connection error)."""
    if isinstance(error, KubeError):
        return error
    if isinstance(error, ApiException):
        status = error.status or None
        return error_class(status)(f"cannot {what}: {reason(error)}", status=status)
    if isinstance(error, (OSError, ValueError)) or type(error).__module__.startswith("urllib3"):
        return KubeUnreachable(f"cannot {what}: {error}")
    return None


class api_errors:
    """Turn the client's exceptions into KubeError; with `missing_ok`, a 404 ends the block
    quietly (the code after the `with` runs)."""

    def __init__(self, what: str, *, missing_ok: bool = False) -> None:
        self.what = what
        self.missing_ok = missing_ok

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: Any, _tb: Any) -> bool:
        if error is None or isinstance(error, KubeError):
            return False
        if self.missing_ok and isinstance(error, ApiException) and error.status == 404:
            return True
        translated = kube_error(self.what, error)
        if translated is None:
            return False
        raise translated from error


def reason(error: ApiException) -> str:
    """The API server's message of a refused request."""
    try:
        return str(json.loads(error.body or "").get("message") or error.reason)
    except (TypeError, ValueError, AttributeError):
        return f"{error.status} {error.reason}"
