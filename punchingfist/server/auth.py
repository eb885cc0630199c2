"""Webhook authentication: bearer token or API key from a Secret (or a secret reference, read
through the server's cache), compared in constant time."""

from __future__ import annotations

import hmac

from punchingfist.api import Source
from punchingfist.api.sources import Authentication
from punchingfist.secrets import is_reference
from punchingfist.server.access import bearer_token
from punchingfist.server.state import SecretStore


def allowed(source: Source, headers: dict[str, str], secrets: SecretStore) -> bool | None:
    """True/False for a Source with authentication; None when it has none."""
    auth: Authentication | None = getattr(source.spec.config, "authentication", None)
    if auth is None or auth.type == "none":
        return None
    if auth.secret_ref is None:
        return False  # an authentication block without a secret admits nobody
    expected = secrets.get(auth.secret_ref, auth.key)
    if not expected:
        return False
    if auth.type == "bearer":
        given = bearer_token(headers.get((auth.header or "authorization").lower()))
    else:
        given = headers.get((auth.header or "x-api-key").lower(), "")
    return hmac.compare_digest(given.encode(), expected.encode())


def reads_a_manager(sources: list[Source]) -> bool:
    """Whether checking these Sources may read a secret manager (a reference: a network call
    once its cached value expires), so the check belongs off the event loop."""
    auths = [getattr(s.spec.config, "authentication", None) for s in sources]
    return any(a is not None and a.secret_ref and is_reference(a.secret_ref) for a in auths)
