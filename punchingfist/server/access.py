"""Who may call the control surface (D13): every `/api/v1` endpoint needs an authenticated caller.

    Access (protocol)        authenticate(headers) -> Caller | None; authorize(caller, Permission)
      KubernetesAccess       in the cluster: the bearer token is checked with a TokenReview and
                             each request authorized by a SubjectAccessReview on `punchingfist.io`
                             resources, so RBAC decides who reads, who approves, who reports
      TokenAccess            embedded mode: one generated token (stored 0600 beside the database)
      OpenAccess             `--insecure-open-api`: anyone may do anything (loud warning at start)

Approver tokens (OperatorConfig `spec.approvals.tokensSecret`) authenticate beside any of them
(`check`): their owners may read and approve, nothing else. Credentials are read from the
headers only, before any body is read. Tokens never reach a log line.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from punchingfist.kube import KubeError, Reviewed, Reviews

log = logging.getLogger("punchingfist.server.access")

GROUP = "punchingfist.io"
Verb = Literal["get", "list", "approve", "report", "trigger", "resolve"]
Resource = Literal["alerts", "incidents", "runs", "approvals", "sources"]
TOKEN_FILE = "api-token"
AUTHENTICATION_TTL = 60.0
AUTHORIZATION_TTL = 30.0
NEGATIVE_TTL = 5.0
CACHE_SIZE = 2048
POD_NAME = "authentication.kubernetes.io/pod-name"


@dataclass(frozen=True)
class Permission:
    """What a request does, as a SubjectAccessReview asks it: verb on a `punchingfist.io`
    resource, in the server's namespace, optionally one named object."""

    verb: Verb
    resource: Resource
    name: str | None = None

    def __str__(self) -> str:
        named = f"/{self.name}" if self.name else ""
        return f"{self.verb} {self.resource}.{GROUP}{named}"


@dataclass(frozen=True)
class Caller:
    username: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    approver: bool = False
    """Authenticated by an approver token: may read and approve only."""

    @property
    def pod(self) -> str | None:
        """The pod a projected ServiceAccount token was issued to, if any."""
        names = self.extra.get(POD_NAME) or ()
        return names[0] if names else None


class Access(Protocol):
    description: str

    def authenticate(self, headers: Mapping[str, str]) -> Caller | None: ...

    def authorize(self, caller: Caller, permission: Permission) -> bool: ...


def bearer_token(header: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header; empty for any other."""
    scheme, _, token = (header or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def token_owner(tokens: Mapping[str, str], given: str) -> str | None:
    """The name whose token `given` is, else None. Every token is compared in constant time,
    so the answer's timing tells nothing."""
    if not given:
        return None
    offered = given.encode()
    owner = None
    for name, token in sorted(tokens.items()):
        if token and hmac.compare_digest(offered, token.encode()):
            owner = name
    return owner


APPROVER_RIGHTS = frozenset({"get", "list", "approve"})


def check(
    access: Access,
    approver_tokens: Mapping[str, str] | None,
    headers: Mapping[str, str],
    permission: Permission,
) -> Caller | str | None:
    """The caller allowed `permission`; None when nobody is authenticated; the caller's name
    (a str) when it is authenticated but not allowed. An approver token (OperatorConfig
    `spec.approvals.tokensSecret`) names its owner, who may read and approve only."""
    owner = token_owner(approver_tokens or {}, bearer_token(headers.get("authorization")))
    if owner is not None:
        approver = Caller(owner, approver=True)
        return approver if permission.verb in APPROVER_RIGHTS else owner
    caller = access.authenticate(headers)
    if caller is None:
        return None
    return caller if access.authorize(caller, permission) else caller.username


class OpenAccess:
    description = "OPEN: no credentials needed (--insecure-open-api)"

    def authenticate(self, headers: Mapping[str, str]) -> Caller | None:
        return Caller("anonymous", groups=("system:unauthenticated",))

    def authorize(self, caller: Caller, permission: Permission) -> bool:
        return True


class TokenAccess:
    """One API token with every right (embedded mode)."""

    def __init__(self, token: str, *, where: str = "given") -> None:
        if len(token) < 16:
            raise ValueError("an API token needs at least 16 characters")
        self.token = token
        self.description = f"bearer token ({where})"

    def authenticate(self, headers: Mapping[str, str]) -> Caller | None:
        given = bearer_token(headers.get("authorization"))
        if given and hmac.compare_digest(given.encode(), self.token.encode()):
            return Caller("punchingfist:api-token", groups=("system:authenticated",))
        return None

    def authorize(self, caller: Caller, permission: Permission) -> bool:
        return True

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class _Expiring:
    """A small time-bounded cache (keys are hashes, never tokens)."""

    def __init__(self) -> None:
        self._items: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any) -> tuple[bool, Any]:
        with self._lock:
            found = self._items.get(key)
            if found is None or found[0] < time.monotonic():
                self._items.pop(key, None)
                return False, None
            return True, found[1]

    def put(self, key: Any, value: Any, ttl: float) -> None:
        with self._lock:
            if len(self._items) >= CACHE_SIZE:
                now = time.monotonic()
                self._items = {k: v for k, v in self._items.items() if v[0] >= now}
                if len(self._items) >= CACHE_SIZE:
                    self._items.clear()
            self._items[key] = (time.monotonic() + ttl, value)


class KubernetesAccess:
    """TokenReview + SubjectAccessReview against the cluster's API server (needs `create` on
    `tokenreviews` and `subjectaccessreviews`: the chart binds `system:auth-delegator`)."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        self._reviews = Reviews(api_client)
        self.namespace = namespace
        self.description = (
            f"Kubernetes bearer tokens (TokenReview), RBAC on {GROUP} resources in namespace "
            f"{namespace} (SubjectAccessReview)"
        )
        self._callers = _Expiring()
        self._decisions = _Expiring()

    def authenticate(self, headers: Mapping[str, str]) -> Caller | None:
        given = bearer_token(headers.get("authorization"))
        if not given:
            return None
        key = hashlib.sha256(given.encode()).digest()
        cached, caller = self._callers.get(key)
        if cached:
            return caller  # type: ignore[no-any-return]
        caller, ttl = self._review(given)
        self._callers.put(key, caller, ttl)
        return caller

    def _review(self, token: str) -> tuple[Caller | None, float]:
        try:
            owner = self._reviews.token(token)
        except KubeError as error:
            # Not cached: the next request asks again. Refusing is the safe answer meanwhile.
            log.warning("TokenReview failed (%s): the caller is refused", error)
            return None, 0.0
        if owner is None:
            return None, NEGATIVE_TTL
        return Caller(owner.username, owner.groups, owner.uid, owner.extra), AUTHENTICATION_TTL

    def authorize(self, caller: Caller, permission: Permission) -> bool:
        key = (caller.username, caller.groups, caller.uid, str(permission))
        cached, allowed = self._decisions.get(key)
        if cached:
            return bool(allowed)
        allowed, ttl = self._review_access(caller, permission)
        self._decisions.put(key, allowed, ttl)
        return allowed

    def _review_access(self, caller: Caller, permission: Permission) -> tuple[bool, float]:
        who = Reviewed(caller.username, caller.groups, caller.uid, dict(caller.extra))
        try:
            allowed = self._reviews.allowed(
                who,
                group=GROUP,
                resource=permission.resource,
                verb=permission.verb,
                namespace=self.namespace,
                name=permission.name,
            )
        except KubeError as error:
            log.warning("SubjectAccessReview failed (%s): %s is refused", error, permission)
            return False, 0.0
        return allowed, AUTHORIZATION_TTL if allowed else NEGATIVE_TTL


def load_or_create_token(path: Path) -> tuple[str, bool]:
    """The API token in `path`, made (random, 0600) when the file does not exist yet.
    Returns (token, whether it was created now)."""
    if path.exists():
        mode = path.stat().st_mode & 0o077
        if mode:
            raise PermissionError(
                f"{path} is readable by others (mode {oct(path.stat().st_mode & 0o777)}): "
                f"run `chmod 600 {path}`"
            )
        token = path.read_text().strip()
        if len(token) < 16:
            raise ValueError(
                f"{path} holds no usable token (16 characters or more): delete it "
                "and a new one is made at the next start"
            )
        return token, False
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    with open(path, "x", opener=lambda p, flags: _open_private(p, flags)) as handle:
        handle.write(token + "\n")
    return token, True


def _open_private(path: str, flags: int) -> int:
    import os

    return os.open(path, flags, 0o600)
