"""The one Kubernetes client of Punching Fist and its one error type.

`Connection` finds the API server, `Kube` makes the calls (custom objects, Secrets,
SelfSubjectReview), `Reviews` asks TokenReview and SubjectAccessReview, `ResourceWatch` watches
any served resource; all raise `KubeError`, whose `temporary` says whether to try again
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
    context_namespace,
    kube_api_client,
)
from punchingfist.kube.errors import (
    KubeConflict,
    KubeError,
    KubeForbidden,
    KubeGone,
    KubeInvalid,
    KubeNotFound,
    KubeServerError,
    KubeTooManyRequests,
    KubeUnauthorized,
    KubeUnreachable,
    error_class,
)
from punchingfist.kube.reviews import Reviewed, Reviews
from punchingfist.kube.watching import ResourceWatch

__all__ = [
    "ARGO_API_VERSION",
    "FIELD_MANAGER",
    "Body",
    "Connection",
    "Kube",
    "KubeConflict",
    "KubeError",
    "KubeForbidden",
    "KubeGone",
    "KubeInvalid",
    "KubeNotFound",
    "KubeServerError",
    "KubeTooManyRequests",
    "KubeUnauthorized",
    "KubeUnreachable",
    "ObjectMeta",
    "ResourceWatch",
    "Reviewed",
    "Reviews",
    "context_namespace",
    "error_class",
    "kube_api_client",
]
