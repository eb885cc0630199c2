"""One server process, put together in one place: the store, who may call the API, secrets and
metrics (the ServerState), the executor of runs, the controller beside the server (in a
cluster) and the HTTP server. `serve` and `demo` both assemble theirs here."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from punchingfist.api import OperatorConfig, Resource
from punchingfist.compiler import compile_resources
from punchingfist.errors import PunchingFistError

if TYPE_CHECKING:
    from punchingfist.controller import ControllerOptions, OperatorThread
    from punchingfist.engine import RunObserver
    from punchingfist.server import ServerState
    from punchingfist.server.access import Access


@dataclass(frozen=True)
class LocalRuns:
    """Runs executed here, on the local engine (embedded mode)."""

    workdir: Path
    environ: Mapping[str, str]
    secrets_dir: Path | None = None
    replay: str | None = None
    """Answer every agent step with this scenario's recorded model turns."""
    endpoint: str | None = None
    model: str | None = None
    replay_fallback: bool = False
    """With no model, replay a recorded scenario about the alert (the demo)."""
    observer: RunObserver | None = None
    parallel_runs: int = 4


@dataclass(frozen=True)
class InCluster:
    """The controller in the same process: the namespace's Sources and Workflows feed the
    server as they change, and runs on Argo are tracked."""

    options: ControllerOptions
    step_start_timeout: float = 180.0


@dataclass(frozen=True)
class ApiAuth:
    """Who may call /api/v1 (D13)."""

    mode: Literal["token", "kubernetes", "open"] = "token"
    token: str | None = None
    """token: this API token, for this process only (the demo's); None: the token file's."""
    token_file: str | None = None
    """token: the API token's file, made 0600 when missing (default: `api-token` beside a
    SQLite database, else in the user's state directory)."""


@dataclass(frozen=True)
class ServerOptions:
    """What a server process is made of; `assemble` builds it."""

    resources: list[Resource[Any]]
    """The Sources, Workflows, Sinks and OperatorConfig served (in a cluster: none, the
    controller feeds them)."""
    database_url: str
    auth: ApiAuth = field(default_factory=ApiAuth)
    namespace: str = "default"
    kubeconfig: str | None = None
    secrets_dir: Path | None = None
    executor: Literal["none", "argo"] | LocalRuns = "none"
    """Who starts queued runs: nobody (they wait in the outbox), Argo, or the local engine."""
    controller: InCluster | None = None
    intake_writers: int = 1
    dispatch_interval: float | None = None
    """Seconds between two looks at the outbox (default: the server's)."""


@dataclass
class Assembly:
    """The assembled server: its state, its ASGI app, and the controller thread, if any."""

    state: ServerState
    app: Any
    revision: str | None
    """The database's schema revision."""
    operator: OperatorThread | None = None

    def run(self, host: str, port: int) -> None:
        """Serve in the foreground until SIGTERM or Ctrl-C, then stop the controller."""
        import uvicorn

        # uvicorn shuts down gracefully on SIGTERM, then raises the signal again: let that one be
        # a no-op so the controller thread is stopped too and the exit status is 0.
        signal.signal(signal.SIGTERM, lambda signum, frame: None)
        try:
            uvicorn.run(self.app, host=host, port=port, log_level="info", access_log=True)
        finally:
            if self.operator is not None:
                self.operator.stop()
                print("punchingfist: controller stopped", file=sys.stderr)

    def start(self, stack: ExitStack, host: str, port: int, log_level: str = "warning") -> str:
        """Serve in a thread, stopped when `stack` closes; return the server's URL once it
        listens."""
        import uvicorn

        server = uvicorn.Server(uvicorn.Config(self.app, host=host, port=port, log_level=log_level))
        thread = threading.Thread(target=server.run, daemon=True, name="http-server")
        thread.start()
        if self.operator is not None:
            stack.callback(self.operator.stop)
        stack.callback(thread.join, 10)
        stack.callback(setattr, server, "should_exit", True)
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise PunchingFistError("the embedded server did not start")
            time.sleep(0.05)
        return f"http://{host}:{port}"


def assemble(options: ServerOptions) -> Assembly:
    """Migrate the database, then build the state, the executor, the app and (in a cluster)
    start the controller."""
    from punchingfist.server import ServerState, create_app
    from punchingfist.server.state import SecretStore
    from punchingfist.store import upgrade
    from punchingfist.store.audit import secret_audit

    revision = upgrade(options.database_url)
    executor: Any = None
    if options.executor == "argo":
        from punchingfist.executors.argo import ArgoExecutor

        executor = ArgoExecutor(options.kubeconfig)
    config = next((r.spec for r in options.resources if isinstance(r, OperatorConfig)), None)
    secrets = SecretStore(options.secrets_dir, resolver=_resolver(options, config))
    approvers = frozenset(config.approvals.approvers) if config and config.approvals else None
    tokens = approver_tokens(config.approvals if config else None, secrets)
    tokens_secret = config.approvals.tokens_secret if config and config.approvals else None
    if tokens == {}:
        assert config is not None and config.approvals is not None
        raise PunchingFistError(
            f"spec.approvals.tokensSecret {config.approvals.tokens_secret!r}: no tokens found "
            f"(give --secrets-dir DIR with DIR/{config.approvals.tokens_secret}/APPROVER files)"
        )
    interval = options.dispatch_interval
    tuning = {} if interval is None else {"dispatch_interval": interval}
    state = ServerState.from_resources(
        options.resources,
        options.database_url,
        namespace=options.namespace,
        executor=executor,
        secrets=secrets,
        approvers=approvers or frozenset(),
        approver_tokens=tokens,
        approver_tokens_secret=tokens_secret,
        slack_signing_secret=slack_signing_secret(config, secrets),
        slack_signing_ref=_signing_ref(config),
        daily_llm_budget_usd=daily_llm_budget(config),
        intake_writers=options.intake_writers,
        access=_access(options),
        **tuning,
    )
    secrets.resolver.audit = secret_audit(state.sessions)  # every read of a manager, stored
    if executor is not None:
        executor.resolver = secrets.resolver
    if isinstance(options.executor, LocalRuns):
        state.executor = _local_executor(options.resources, state, options.executor)
    app = create_app(state)
    operator = (
        _start_controller(options, options.controller, state, app) if options.controller else None
    )
    return Assembly(state, app, revision, operator)


def _resolver(options: ServerOptions, config: Any) -> Any:
    """The secret references' resolver of this server: OperatorConfig `secretManager` and
    `secretRotation`, this process's environment (VAULT_TOKEN, AWS_*, AZURE_*), Kubernetes
    Secrets through the cluster client when there is one (`assemble` stores its audit)."""
    from punchingfist.secrets import SecretResolver

    kubernetes = None
    if options.executor == "argo" or options.controller is not None:
        from punchingfist.kube import Connection, Kube

        kubernetes = Kube(Connection.load(options.kubeconfig)).secret_value
    return SecretResolver.for_config(config, kubernetes=kubernetes)


def _signing_ref(config: Any) -> Any:
    """OperatorConfig `spec.chat.slack.signingSecret` (a SecretKeyRef), None when unset."""
    chat = config.chat if config is not None else None
    return chat.slack.signing_secret if chat is not None and chat.slack is not None else None


def slack_signing_secret(config: Any, secrets: Any) -> str | None:
    """The Slack signing secret OperatorConfig `spec.chat.slack.signingSecret` names (read from
    the mounted Secret), None when there is none: `/slack/interactions` then answers 404."""
    signing = _signing_ref(config)
    if signing is None:
        return None
    value: str | None = secrets.get(signing.secret_ref, signing.key)
    return value


def daily_llm_budget(config: Any) -> float | None:
    """OperatorConfig `spec.llm.dailyBudgetUsd`, None when there is none."""
    llm = config.llm if config is not None else None
    return llm.daily_budget_usd if llm is not None else None


def approver_tokens(approvals: Any, secrets: Any) -> dict[str, str] | None:
    """Approver -> token from OperatorConfig `spec.approvals.tokensSecret`; None when there is
    none. Such a token authenticates its owner, who may read and approve (server.access)."""
    if approvals is None or not approvals.tokens_secret:
        return None
    return {name: token for name, token in secrets.keys(approvals.tokens_secret).items() if token}


def _access(options: ServerOptions) -> Access:
    """Who may call the control surface (D13), said on stderr at start."""
    from punchingfist.server.access import (
        KubernetesAccess,
        OpenAccess,
        TokenAccess,
        load_or_create_token,
    )

    auth = options.auth
    if auth.mode == "open":
        print(
            "punchingfist: WARNING: --insecure-open-api: /api/v1 needs NO credentials. Anyone "
            "who can reach this server can read every alert and run, approve fixes and forge "
            "step reports. Never expose it beyond this machine.",
            file=sys.stderr,
        )
        return OpenAccess()
    if auth.mode == "kubernetes":
        from punchingfist.kube import kube_api_client

        cluster = KubernetesAccess(kube_api_client(options.kubeconfig), options.namespace)
        print(f"punchingfist: /api/v1 callers: {cluster.description}", file=sys.stderr)
        return cluster
    if auth.token is not None:
        return TokenAccess(auth.token, where="made for this process")
    path = _api_token_path(auth.token_file, options.database_url)
    try:
        token, created = load_or_create_token(path)
    except (OSError, ValueError) as error:
        raise PunchingFistError(f"API token: {error}") from error
    access = TokenAccess(token, where=str(path))
    made = "made now" if created else "kept"
    print(
        f"punchingfist: /api/v1 needs `Authorization: Bearer <token>`; the API token is in "
        f"{path} ({made}, mode 0600)",
        file=sys.stderr,
    )
    return access


def _api_token_path(given: str | None, url: str) -> Path:
    """--api-token-file, else `api-token` beside a SQLite database file, else in the user's
    state directory."""
    from sqlalchemy import make_url

    if given:
        return Path(given).expanduser().resolve()
    parsed = make_url(url)
    database = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if database and database != ":memory:":
        return Path(database).resolve().parent / "api-token"
    state_home = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state_home / "punchingfist" / "api-token"


def _local_executor(resources: list[Resource[Any]], state: ServerState, local: LocalRuns) -> Any:
    """The local engine as the server's executor: every Workflow compiled once, up front."""
    from punchingfist.executors.local import LocalExecutor

    compiled = {c.workflow.name: c for c in compile_resources(resources)}
    if local.replay:
        print(
            f"⚠️  --replay {local.replay}: every agent step answers with recorded turns; NO "
            "MODEL RUNS. Results are labelled 'replayed model' and not recorded as triage.",
            file=sys.stderr,
        )
    return LocalExecutor(
        compiled,
        state.sessions,
        local.workdir,
        environ=dict(local.environ),
        secrets_dir=local.secrets_dir,
        replay=local.replay,
        endpoint=local.endpoint,
        model=local.model,
        replay_fallback=local.replay_fallback,
        metrics=state.metrics,
        observer=local.observer,
        parallel_runs=local.parallel_runs,
        resolver=state.secrets.resolver,
    )


def _start_controller(
    options: ServerOptions, cluster: InCluster, state: ServerState, app: Any
) -> OperatorThread:
    """Kopf in its own thread; the Sources and Workflows of the namespace feed the server."""
    import logging

    from punchingfist.controller import Catalog, OperatorThread, build_registry, connect
    from punchingfist.server import add_source_routes

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    namespace = options.namespace
    controller = connect(options.kubeconfig, options=cluster.options)

    def refresh(catalog: Catalog) -> None:
        state.sources = catalog.sources(namespace)
        state.workflows = catalog.workflows(namespace)
        state.sinks = catalog.sinks(namespace)
        found = catalog.config(namespace, cluster.options.operator_config)
        approvals = found.spec.approvals if found else None
        state.approvers = frozenset(approvals.approvers) if approvals else frozenset()
        state.approver_tokens = approver_tokens(approvals, state.secrets)
        state.approver_tokens_secret = approvals.tokens_secret if approvals else None
        state.secrets.resolver.configure(found.spec if found else None)
        state.slack_signing_secret = slack_signing_secret(
            found.spec if found else None, state.secrets
        )
        state.slack_signing_ref = _signing_ref(found.spec if found else None)
        state.daily_llm_budget_usd = daily_llm_budget(found.spec if found else None)
        if state.approver_tokens == {}:
            logging.getLogger("punchingfist.server").error(
                "spec.approvals.tokensSecret %r holds no tokens: approvers without a "
                "Kubernetes identity cannot answer until it does",
                approvals.tokens_secret if approvals else "",
            )
        add_source_routes(app)

    controller.catalog.subscribe(refresh)
    registry = build_registry(controller)
    # With the store at hand, the same operator tracks runs and runs the Sources' handlers.
    from punchingfist.controller import sources, tracking
    from punchingfist.controller.stalls import Watchdog
    from punchingfist.executors.argo import ArgoExecutor

    argo = (
        state.executor
        if isinstance(state.executor, ArgoExecutor)
        else ArgoExecutor(options.kubeconfig)
    )
    watchdog = Watchdog(argo.get, argo.stop, grace=cluster.step_start_timeout)
    tracking.register(registry, sessions=state.sessions, metrics=state.metrics, watchdog=watchdog)
    sources.register(registry, sessions=state.sessions, metrics=state.metrics, argo=argo)
    operator = OperatorThread(controller, registry)

    def running() -> str | None:
        if not operator.alive:
            return f"the controller stopped: {operator.error or 'no reason given'}"
        return None if operator.ready.is_set() else "the controller is starting"

    state.probes.append(running)
    operator.start()
    return operator
