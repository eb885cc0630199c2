"""Resolve secret references, briefly cached, every access audited.

A value is kept for `ttl` seconds (30 by default; OperatorConfig `spec.secretRotation`'s
`checkInterval` when enabled), so a value rotated in the manager is used by the next run or
request after that, without restarting anything. When the manager cannot be read after a value
expired, the old value is used for `grace` seconds more (`secretRotation.gracePeriod`, 0 unless
enabled), then the read fails.

Every access is audited: one structured log line on `punchingfist.secrets.audit` (who: the
operator, the server or a run's name; which reference; from the cache or the manager; the
outcome), and, for every read from a manager, the `audit` callback (the store's
`secret_accesses` table). Values are never logged, stored or put in an error.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from punchingfist.api.base import duration_seconds
from punchingfist.api.operatorconfigs import OperatorConfigSpec, SecretManagerConfig
from punchingfist.secrets.providers import (
    AwsProvider,
    AzureProvider,
    EnvProvider,
    KubernetesProvider,
    KubernetesReader,
    Provider,
    VaultProvider,
)
from punchingfist.secrets.references import SecretError, parse_reference

audit_log = logging.getLogger("punchingfist.secrets.audit")
DEFAULT_TTL = 30.0


@dataclass(frozen=True)
class SecretAccess:
    """One audited access: never the value."""

    reference: str
    who: str
    at: datetime
    source: str
    """`manager` (read from the secret manager), `cache`, or `stale` (the old value in the
    grace period)."""
    outcome: str
    """`ok`, or the error's message (which names the reference, never a value)."""


AuditSink = Callable[[SecretAccess], None]


@dataclass
class _Cached:
    value: str
    read_at: float


class SecretResolver:
    """Reference -> value through its scheme's provider, cached for `ttl` seconds."""

    def __init__(
        self,
        manager: SecretManagerConfig | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        kubernetes: KubernetesReader | None = None,
        ttl: float = DEFAULT_TTL,
        grace: float = 0.0,
        audit: AuditSink | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.environ = os.environ if environ is None else environ
        self.kubernetes = kubernetes
        self.ttl, self.grace, self.audit, self.clock = ttl, grace, audit, clock
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()
        self.providers = self._providers(manager)
        self._manager = manager

    def _providers(self, manager: SecretManagerConfig | None) -> dict[str, Provider]:
        env = self.environ
        return {
            "env": EnvProvider(env),
            "k8s": KubernetesProvider(self.kubernetes),
            "vault": VaultProvider(manager, env),
            "aws": AwsProvider(manager, env),
            "azure": AzureProvider(manager, env),
        }

    def configure(self, config: OperatorConfigSpec | None) -> None:
        """Follow a changed OperatorConfig (in a cluster): its `secretManager` and
        `secretRotation`; the cache is emptied when the manager changed."""
        manager = config.secret_manager if config is not None else None
        self.ttl, self.grace = _rotation(config)
        if manager != self._manager:
            with self._lock:
                self.providers = self._providers(manager)
                self._manager = manager
                self._cache.clear()

    @classmethod
    def for_config(
        cls,
        config: OperatorConfigSpec | None,
        *,
        environ: Mapping[str, str] | None = None,
        kubernetes: KubernetesReader | None = None,
        audit: AuditSink | None = None,
    ) -> SecretResolver:
        """The resolver an OperatorConfig describes (`secretManager`, `secretRotation`)."""
        ttl, grace = _rotation(config)
        return cls(
            config.secret_manager if config is not None else None,
            environ=environ,
            kubernetes=kubernetes,
            ttl=ttl,
            grace=grace,
            audit=audit,
        )

    def resolve(self, text: str, who: str) -> str:
        """The value of reference `text`, read on behalf of `who`; SecretError names the
        reference and the fix."""
        now = self.clock()
        with self._lock:
            cached = self._cache.get(text)
        if cached is not None and now - cached.read_at < self.ttl:
            self._record(text, who, "cache", "ok")
            return cached.value
        try:
            reference = parse_reference(text)
            value = self.providers[reference.scheme].read(reference)
        except SecretError as error:
            if cached is not None and now - cached.read_at < self.ttl + self.grace:
                self._record(text, who, "stale", f"ok (manager failed: {error})")
                return cached.value
            self._record(text, who, "manager", str(error))
            raise
        with self._lock:
            self._cache[text] = _Cached(value, now)
        self._record(text, who, "manager", "ok")
        return value

    def _record(self, text: str, who: str, source: str, outcome: str) -> None:
        access = SecretAccess(text, who, datetime.now(UTC), source, outcome)
        log = audit_log.info if outcome == "ok" else audit_log.warning
        log(
            "secret access: reference=%s who=%s source=%s outcome=%s",
            text,
            who,
            source,
            outcome,
            extra={"secret_reference": text, "who": who, "source": source, "outcome": outcome},
        )
        if self.audit is not None and source != "cache":
            try:
                self.audit(access)
            except Exception as error:  # an audit store that fails must not stop the read
                audit_log.error("secret access of %s by %s not stored: %s", text, who, error)


def _rotation(config: OperatorConfigSpec | None) -> tuple[float, float]:
    """(time to live, grace) of `secretRotation` when enabled, else (30 s, 0)."""
    rotation = config.secret_rotation if config is not None else None
    if rotation is None or not rotation.enabled:
        return DEFAULT_TTL, 0.0
    return duration_seconds(rotation.check_interval), duration_seconds(rotation.grace_period)
