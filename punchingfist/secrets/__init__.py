"""Secrets from references (`vault://`, `aws://`, `azure://`, `k8s://`, `env://`): parsing,
the providers of each manager, and a briefly cached, audited resolver (issue #26)."""

from punchingfist.secrets.references import (
    SCHEMES,
    SecretError,
    SecretReference,
    is_reference,
    parse_reference,
)
from punchingfist.secrets.resolver import DEFAULT_TTL, SecretAccess, SecretResolver

__all__ = [
    "DEFAULT_TTL",
    "SCHEMES",
    "SecretAccess",
    "SecretError",
    "SecretReference",
    "SecretResolver",
    "is_reference",
    "parse_reference",
]
