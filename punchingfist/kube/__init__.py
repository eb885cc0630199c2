"""The one Kubernetes client of Punching Fist and its one error type.

`Connection` finds the API server, `Kube` makes the calls (custom objects, Secrets,
SelfSubjectReview) and raises `KubeError`, whose `temporary` says whether to try again
(errors.py draws the tree). Nothing here knows Punching Fist's resources: callers name the
`apiVersion` and plural of what they read or write.
"""

from punchingfist.kube.client import (
    ARGO_API_VERSION,
    FIELD_MANAGER,
    Body,
    Connection,
    Kube,
    ObjectMeta,
    kube_api_client,
)
from punchingfist.kube.errors import (
    KubeConflict,
    KubeError,
    KubeForbidden,
    KubeInvalid,
    KubeNotFound,
    KubeServerError,
    KubeTooManyRequests,
    KubeUnauthorized,
    KubeUnreachable,
    error_class,
)

__all__ = [
    "ARGO_API_VERSION",
    "FIELD_MANAGER",
    "Body",
    "Connection",
    "Kube",
    "KubeConflict",
    "KubeError",
    "KubeForbidden",
    "KubeInvalid",
    "KubeNotFound",
    "KubeServerError",
    "KubeTooManyRequests",
    "KubeUnauthorized",
    "KubeUnreachable",
    "ObjectMeta",
    "error_class",
    "kube_api_client",
]
