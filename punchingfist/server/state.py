"""What the server knows: its database, the resources it serves, secrets, metrics."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from secrets import token_urlsafe
from typing import Any, Generic, TypeVar

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from punchingfist.api import Resource, SecretKeyRef, Sink, Source, Workflow
from punchingfist.api.sources import WebhookSource
from punchingfist.runs.batching import IntakeWriter
from punchingfist.runs.dispatching import Executor
from punchingfist.runs.metrics import Metrics
from punchingfist.secrets import SecretError, SecretResolver, is_reference
from punchingfist.server.access import Access, TokenAccess
from punchingfist.store import make_engine, session_factory

MAX_BODY_BYTES = 1024 * 1024


log = logging.getLogger("punchingfist.server")
T = TypeVar("T")


class SecretStore:
    """Secrets by (name, key): files laid out as Kubernetes mounts them (DIR/NAME/KEY), read on
    every call (a mounted Secret that Kubernetes updates is used at once), and secret
    references (`vault://PATH#KEY`...) through `resolver`, whose cache re-reads them every 30 s:
    the server's checks (webhook tokens, approver tokens, the Slack signing secret, sinks'
    tokens) use rotated values without a restart."""

    def __init__(
        self,
        directory: Path | None = None,
        values: dict[tuple[str, str], str] | None = None,
        resolver: SecretResolver | None = None,
    ):
        self.directory = directory
        self.values = dict(values or {})
        self.resolver = resolver or SecretResolver()

    def _reference(self, reference: str) -> str | None:
        """The value of a reference for the server, None (logged, naming it) when unreadable."""
        try:
            return self.resolver.resolve(reference, "server")
        except SecretError as error:
            log.error("%s", error)
            return None

    def keys(self, name: str) -> dict[str, str]:
        """Every key of Secret `name` and its value (the files of DIR/NAME, without the
        hidden entries Kubernetes adds to a mounted Secret); for a reference, the keys of the
        JSON object it holds."""
        if is_reference(name):
            text = self._reference(name)
            try:
                data = json.loads(text) if text else {}
            except ValueError:
                data = None
            if not isinstance(data, dict):
                log.error("%s does not hold a JSON object of name: token", name)
                return {}
            return {str(k): str(v) for k, v in data.items()}
        found = {key: value for (secret, key), value in self.values.items() if secret == name}
        folder = self.directory / name if self.directory is not None else None
        if folder is not None and folder.is_dir():
            for path in sorted(folder.iterdir()):
                if not path.name.startswith(".") and path.is_file():
                    found.setdefault(path.name, path.read_text().strip())
        return found

    def get(self, name: str, key: str) -> str | None:
        if is_reference(name):
            return self._reference(name)
        if (name, key) in self.values:
            return self.values[(name, key)]
        if self.directory is not None:
            path = self.directory / name / key
            if path.is_file():
                return path.read_text().strip()
        return None


class _Reread(Generic[T]):
    """A field of ServerState read again from the server's secrets on every access (files of a
    mounted Secret as Kubernetes updates them, references through their 30 s cache) while the
    field named `source` says where from, so a rotated credential is used without a restart;
    else the value it was given."""

    def __init__(self, source: str, read: Callable[[SecretStore, Any], T | None]) -> None:
        self.source, self.read = source, read

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = f"_{name}"

    def __get__(self, state: Any, owner: type | None = None) -> T | None:
        if state is None:
            return None  # the dataclass field's default
        where = getattr(state, self.source, None)
        if where:
            return self.read(state.secrets, where)
        found: T | None = getattr(state, self.slot, None)
        return found

    def __set__(self, state: Any, value: T | None) -> None:
        setattr(state, self.slot, value)


def _tokens(secrets: SecretStore, name: str) -> dict[str, str]:
    return {k: v for k, v in secrets.keys(name).items() if v}


def _signing(secrets: SecretStore, ref: SecretKeyRef) -> str | None:
    return secrets.get(ref.secret_ref, ref.key)


@dataclass
class ServerState:
    engine: Engine
    sources: list[Source] = field(default_factory=list)
    workflows: dict[str, Workflow] = field(default_factory=dict)
    sinks: dict[str, Sink] = field(default_factory=dict)
    """The Sinks by name: the server resolves PagerDuty pages with them (`server.pages`)."""
    secrets: SecretStore = field(default_factory=SecretStore)
    namespace: str = "default"
    max_body_bytes: int = MAX_BODY_BYTES
    metrics: Metrics = field(default_factory=lambda: Metrics(CollectorRegistry()))
    executor: Executor | None = None
    """Starts queued runs; None keeps them in the outbox (embedded mode without an engine)."""
    dispatch_interval: float = 1.0
    daily_llm_budget_usd: float | None = None
    """OperatorConfig spec.llm.dailyBudgetUsd: the dispatcher refuses runs once today's spend
    reaches it; None: no daily budget."""
    approvers: frozenset[str] = frozenset()
    """Who may answer approval gates (OperatorConfig spec.approvals.approvers); empty: anyone."""
    approver_tokens: _Reread[dict[str, str]] = _Reread("approver_tokens_secret", _tokens)
    """Approver name -> API token (spec.approvals.tokensSecret). When set, the REST approval
    endpoint knows the approver by the bearer token, not by the body (and, empty, refuses
    everyone). None: the body names the approver. Re-read on every access when
    `approver_tokens_secret` is set."""
    approver_tokens_secret: str | None = None
    """spec.approvals.tokensSecret: a Secret's name or a reference whose keys (a JSON object's,
    for a reference) are approver names and values their tokens."""
    slack_signing_secret: _Reread[str] = _Reread("slack_signing_ref", _signing)
    """The Slack signing secret (spec.chat.slack.signingSecret); None: /slack/* answers 404.
    Re-read on every access when `slack_signing_ref` is set."""
    slack_signing_ref: SecretKeyRef | None = None
    """Where the Slack signing secret is: a Secret's key, or a reference."""
    access: Access = field(
        default_factory=lambda: TokenAccess(token_urlsafe(32), where="made for this process")
    )
    """Who may call `/api/v1` (D13). By default a token made for this process only, which
    nobody else knows."""
    probes: list[Callable[[], str | None]] = field(default_factory=list)
    """Extra health checks (the controller, in-cluster): None when fine, else why not."""
    intake_writers: int = 1
    """Writer threads for the webhook (`IntakeWriter`; more than one needs PostgreSQL)."""
    sessions: sessionmaker[Session] = field(init=False)
    wake: threading.Event = field(init=False, default_factory=threading.Event)
    writer: IntakeWriter = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = session_factory(self.engine)
        self.writer = IntakeWriter(self.sessions, self.namespace, writers=self.intake_writers)

    @classmethod
    def from_resources(
        cls, resources: Iterable[Resource[Any]], database_url: str | None = None, **kwargs: Any
    ) -> ServerState:
        items = list(resources)
        return cls(
            engine=make_engine(database_url),
            sources=[r for r in items if isinstance(r, Source)],
            workflows={r.name: r for r in items if isinstance(r, Workflow)},
            sinks={r.name: r for r in items if isinstance(r, Sink)},
            **kwargs,
        )

    def webhook_sources(self, path: str) -> list[Source]:
        return [
            s
            for s in self.sources
            if isinstance(s.spec, WebhookSource) and s.spec.config.path == path
        ]

    def webhook_paths(self) -> set[str]:
        return {s.spec.config.path for s in self.sources if isinstance(s.spec, WebhookSource)} | {
            "/webhook/alerts"
        }
