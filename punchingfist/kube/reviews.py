"""Asking the API server who a token belongs to (TokenReview) and what RBAC allows it
(SubjectAccessReview): the server's `KubernetesAccess` asks through these."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from punchingfist.kube.errors import api_errors


@dataclass(frozen=True)
class Reviewed:
    """A token's owner as the API server authenticated it."""

    username: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)


class Reviews:
    """TokenReview and SubjectAccessReview (`create` on both: `system:auth-delegator`)."""

    def __init__(self, api_client: Any) -> None:
        self._authentication = client.AuthenticationV1Api(api_client)
        self._authorization = client.AuthorizationV1Api(api_client)

    def token(self, token: str) -> Reviewed | None:
        """Who `token` belongs to; None when the API server does not authenticate it.
        `KubeError` when it could not be asked."""
        review = client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token))
        with api_errors("review a token (TokenReview)"):
            answer = self._authentication.create_token_review(review)
        status = answer.status
        if status is None or not status.authenticated or status.user is None:
            return None
        user = status.user
        extra = {k: tuple(v or ()) for k, v in (user.extra or {}).items()}
        return Reviewed(str(user.username), tuple(user.groups or ()), str(user.uid or ""), extra)

    def allowed(
        self,
        who: Reviewed,
        *,
        group: str,
        resource: str,
        verb: str,
        namespace: str,
        name: str | None = None,
    ) -> bool:
        """Whether RBAC lets `who` do `verb` on `resource`. `KubeError` when it could not be
        asked."""
        spec = client.V1SubjectAccessReviewSpec(
            user=who.username,
            groups=list(who.groups),
            uid=who.uid or None,
            extra={k: list(v) for k, v in who.extra.items()} or None,
            resource_attributes=client.V1ResourceAttributes(
                group=group, resource=resource, verb=verb, namespace=namespace, name=name
            ),
        )
        with api_errors(f"review access to {verb} {resource} (SubjectAccessReview)"):
            answer = self._authorization.create_subject_access_review(
                client.V1SubjectAccessReview(spec=spec)
            )
        return bool(answer.status and answer.status.allowed)
