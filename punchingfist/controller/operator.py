"""The Kopf operator: indexes, change handlers, admission webhooks, and running it in a thread.

Handlers are registered on a registry of their own (`build_registry`), never Kopf's global
one, so tests and `punchingfist serve` can run several operators in one process.

    Workflow  create/update/resume  -> compile + apply + status (reconciling.py)
    Sink      create/update/resume  -> status; create/update/delete -> recompile its users
    OperatorConfig (the configured name) changes -> recompile every Workflow of the namespace
    Source    create/update/resume  -> status
    every event of Sources/Workflows -> the Catalog the server serves from
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import logging
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import kopf

from punchingfist.api import (
    API_VERSION,
    GROUP,
    VERSION,
    OperatorConfig,
    Sink,
    Source,
    Workflow,
    parse_resource,
)
from punchingfist.compiler import Defaults
from punchingfist.compiler.naming import critical_template
from punchingfist.controller import admission
from punchingfist.controller.concurrency import LimitsConfigMaps
from punchingfist.controller.reconciling import (
    Inputs,
    Outcome,
    as_resource,
    reconcile_workflow,
    sink_names,
    validate_resource,
)
from punchingfist.errors import PunchingFistError
from punchingfist.kube import Body, Connection, Kube, KubeError

log = logging.getLogger("punchingfist.controller")

DEFAULT_CONFIG_NAME = "punchingfist-config"
PROGRESS_PREFIX = "punchingfist.io"
RETRY_DELAY = 10.0
Key = tuple[str, str]


@dataclass(frozen=True)
class AdmissionOptions:
    """Where Kopf serves the validating webhook and how the API server reaches it."""

    addr: str = "0.0.0.0"
    port: int = 9443
    host: str | None = None
    """Host name in the webhook URL (default: addr); must match the certificate."""
    certfile: str | None = None
    pkeyfile: str | None = None
    cafile: str | None = None
    """CA bundle the API server verifies the webhook with (caBundle)."""
    managed: str | None = None
    """Name of the ValidatingWebhookConfiguration Kopf keeps up to date; None: installed by
    hand (the Helm chart)."""


@dataclass(frozen=True)
class ControllerOptions:
    namespaces: tuple[str, ...] = ("default",)
    clusterwide: bool = False
    operator_config: str = DEFAULT_CONFIG_NAME
    """Name of the OperatorConfig (in each Workflow's namespace) the compiler uses."""
    peering: str | None = None
    """Kopf peering object for leader election; None runs standalone."""
    priority: int = 0
    identity: str | None = None
    """This replica's name among peers (default: Kopf's host@pid; tests run two in one process)."""
    admission: AdmissionOptions | None = None
    workers: int = 16
    """Threads for the (synchronous) handlers."""
    defaults: Defaults = field(default_factory=Defaults)
    """What Workflows get where they name nothing: the runtime image (`--runtime-image`) and
    the step ServiceAccounts."""
    resync: float | None = None
    """Seconds between two checks of each unchanged Workflow: its template is applied again
    when it went missing or stale, and a compile that failed for a reason that went away is
    tried again. None (the default): only on changes and at start-up. Kopf's timers put its
    finalizer on every Workflow, which slows creating them (docs/operations.md, 'Performance
    decisions')."""


class Catalog:
    """Valid Sources, Ready Workflows, valid Sinks and the OperatorConfig by (namespace, name),
    for the server; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: dict[Key, Source] = {}
        self._workflows: dict[Key, Workflow] = {}
        self._sinks: dict[Key, Sink] = {}
        self._configs: dict[Key, OperatorConfig] = {}
        self._listeners: list[Callable[[Catalog], None]] = []

    def subscribe(self, listener: Callable[[Catalog], None]) -> None:
        self._listeners.append(listener)

    def sources(self, namespace: str | None = None) -> list[Source]:
        with self._lock:
            return [s for k, s in sorted(self._sources.items()) if namespace in (None, k[0])]

    def workflows(self, namespace: str | None = None) -> dict[str, Workflow]:
        with self._lock:
            return {
                k[1]: w for k, w in sorted(self._workflows.items()) if namespace in (None, k[0])
            }

    def sinks(self, namespace: str | None = None) -> dict[str, Sink]:
        with self._lock:
            return {k[1]: s for k, s in sorted(self._sinks.items()) if namespace in (None, k[0])}

    def config(self, namespace: str, name: str) -> OperatorConfig | None:
        with self._lock:
            return self._configs.get((namespace, name))

    def put(
        self, key: Key, resource: Source | Workflow | Sink | OperatorConfig | None, kind: str
    ) -> None:
        tables = {
            "Source": self._sources,
            "Workflow": self._workflows,
            "Sink": self._sinks,
            "OperatorConfig": self._configs,
        }
        table = cast(dict[Key, Any], tables[kind])
        with self._lock:
            before = table.get(key)
            if resource is None:
                table.pop(key, None)
            else:
                table[key] = resource
            changed = before != resource
        if changed:
            for listener in list(self._listeners):
                try:
                    listener(self)
                except Exception:
                    log.exception("a catalog listener failed")


@dataclass
class Controller:
    """What the handlers share: the API client, options, the catalog, per-Workflow locks."""

    kube: Kube
    connection: Connection
    options: ControllerOptions = field(default_factory=ControllerOptions)
    catalog: Catalog = field(default_factory=Catalog)
    _locks: defaultdict[Key, threading.Lock] = field(
        default_factory=lambda: defaultdict(threading.Lock)
    )
    _guard: threading.Lock = field(default_factory=threading.Lock)
    outcomes: Counter[str] = field(default_factory=Counter)
    """Reconciliations by result: applied, unchanged, failed (for tests and the benchmark)."""
    limits: LimitsConfigMaps = field(init=False)
    """The ConfigMaps sizing the templates' semaphores (OperatorConfig spec.concurrency)."""

    def __post_init__(self) -> None:
        self.limits = LimitsConfigMaps(self.kube)

    def lock(self, key: Key) -> threading.Lock:
        with self._guard:
            return self._locks[key]

    def reconcile(self, key: Key, body: Body, indexes: Indexes, *, force: bool = False) -> Outcome:
        """Compile + apply one Workflow, write its status, post its Events."""
        with self.lock(key):
            namespace = key[0]
            inputs = Inputs(
                workflow=body,
                sinks=indexes.sinks_of(namespace),
                config=indexes.config(namespace, self.options.operator_config),
                defaults=self.options.defaults,
            )
            # Before the template: Argo fails a run whose semaphore's ConfigMap key is missing.
            self.limits.ensure(
                namespace,
                inputs.config,
                lambda: [key[1], *(k[1] for k in indexes.in_namespace(namespace))],
            )
            outcome = reconcile_workflow(self.kube, inputs, force=force)
            result = (
                "applied"
                if outcome.applied
                else "unchanged"
                if outcome.status is None
                else ("failed")
            )
            with self._guard:
                self.outcomes[result] += 1
            if outcome.status is not None:
                self.kube.patch_status(API_VERSION, "workflows", namespace, key[1], outcome.status)
            _post(body, outcome)
            self.catalog.put(key, outcome.workflow if _ready(outcome, body) else None, "Workflow")
            return outcome

    def reconcile_many(self, keys: Iterable[Key], indexes: Indexes, why: str) -> None:
        """Recompile Workflows that depend on something that changed; retry temporary errors."""
        todo = [(key, body) for key in sorted(set(keys)) if (body := indexes.workflow(key))]
        failures = []

        def one(item: tuple[Key, Body]) -> str | None:
            try:
                self.reconcile(item[0], item[1], indexes)
            except KubeError as error:
                return f"Workflow {item[0][1]}: {error}"
            return None

        # Many users of one Sink: overlap their API round trips (each holds its own lock).
        with ThreadPoolExecutor(
            max_workers=max(1, min(8, len(todo))), thread_name_prefix="pf-dependents"
        ) as pool:
            # Kopf's event posting lives in context variables: each task runs in a copy.
            futures = [pool.submit(contextvars.copy_context().run, one, item) for item in todo]
            failures = [failure for future in futures if (failure := future.result())]
        if failures:
            raise kopf.TemporaryError(f"{why}: " + "; ".join(failures), delay=RETRY_DELAY)


def _ready(outcome: Outcome, body: Body) -> bool:
    if outcome.workflow is None:
        return False
    return outcome.status is None or any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (outcome.status or {}).get("conditions", [])
    )


def _post(body: Body, outcome: Outcome) -> None:
    for event in outcome.events:
        kopf.event(cast(Any, body), type=event.type, reason=event.reason, message=event.message)


@dataclass(frozen=True)
class Indexes:
    """Kopf's in-memory indexes, as the handlers receive them."""

    workflows: Mapping[Key, Iterable[Body]]
    sinks: Mapping[Key, Iterable[Body]]
    configs: Mapping[Key, Iterable[Body]]
    users: Mapping[Key, Iterable[str]]

    def workflow(self, key: Key) -> Body | None:
        return next(iter(self.workflows.get(key, ())), None)

    def sinks_of(self, namespace: str) -> dict[str, Body]:
        return {k[1]: next(iter(v)) for k, v in self.sinks.items() if k[0] == namespace and v}

    def config(self, namespace: str, name: str) -> Body | None:
        return next(iter(self.configs.get((namespace, name), ())), None)

    def users_of(self, namespace: str, sink: str) -> list[Key]:
        return [(namespace, name) for name in self.users.get((namespace, sink), ())]

    def in_namespace(self, namespace: str) -> list[Key]:
        return [key for key in self.workflows if key[0] == namespace]


def _snapshot(body: Any) -> Body:
    data = copy.deepcopy(dict(body))
    (data.get("metadata") or {}).pop("managedFields", None)
    return cast(Body, data)


def _key(namespace: str | None, name: str | None) -> Key:
    return (namespace or "default", name or "")


def _temporary(error: KubeError) -> kopf.TemporaryError:
    return kopf.TemporaryError(str(error), delay=RETRY_DELAY)


def build_registry(controller: Controller) -> kopf.OperatorRegistry:
    """Every handler of the operator, on a registry of its own.

    Handlers take only keyword arguments (`kw`), as Kopf passes them.
    """
    registry = kopf.OperatorRegistry()
    options = controller.options
    on = kopf.on

    @on.startup(registry=registry)
    def configure(**kw: Any) -> None:
        settings: kopf.OperatorSettings = kw["settings"]
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix=PROGRESS_PREFIX
        )
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=PROGRESS_PREFIX, key="last-handled-configuration"
        )
        settings.persistence.finalizer = f"{PROGRESS_PREFIX}/controller"
        settings.posting.level = logging.WARNING  # our own kopf.event() calls still post
        settings.execution.max_workers = options.workers
        settings.watching.connect_timeout = 30
        settings.watching.server_timeout = 300
        settings.networking.request_timeout = 60
        if options.admission is not None:
            settings.admission.server = _webhook_server(options.admission)
            settings.admission.managed = options.admission.managed

    @on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        configuration = controller.connection.configuration
        return kopf.ConnectionInfo(
            server=configuration.host,
            ca_path=configuration.ssl_ca_cert,
            insecure=not configuration.verify_ssl,
            token=controller.connection.bearer_token(),
            certificate_path=configuration.cert_file,
            private_key_path=configuration.key_file,
        )

    # -- indexes (async: cheap, so they run on the loop instead of the handler threads) ------

    @kopf.index(GROUP, VERSION, "workflows", id="pf_workflows", registry=registry)
    async def pf_workflows(**kw: Any) -> dict[Key, Body]:
        return {_key(kw["namespace"], kw["name"]): _snapshot(kw["body"])}

    @kopf.index(GROUP, VERSION, "workflows", id="pf_users", registry=registry)
    async def pf_users(**kw: Any) -> dict[Key, str]:
        return {_key(kw["namespace"], sink): kw["name"] for sink in sink_names(kw["body"])}

    @kopf.index(GROUP, VERSION, "sinks", id="pf_sinks", registry=registry)
    async def pf_sinks(**kw: Any) -> dict[Key, Body]:
        return {_key(kw["namespace"], kw["name"]): _snapshot(kw["body"])}

    @kopf.index(GROUP, VERSION, "operatorconfigs", id="pf_configs", registry=registry)
    async def pf_configs(**kw: Any) -> dict[Key, Body]:
        return {_key(kw["namespace"], kw["name"]): _snapshot(kw["body"])}

    # -- Workflows ----------------------------------------------------------------------------

    @on.resume(GROUP, VERSION, "workflows", registry=registry)
    @on.create(GROUP, VERSION, "workflows", registry=registry)
    @on.update(GROUP, VERSION, "workflows", registry=registry)
    def workflow_changed(**kw: Any) -> None:
        try:
            controller.reconcile(
                _key(kw["namespace"], kw["name"]), _snapshot(kw["body"]), _indexes_of(kw)
            )
        except KubeError as error:
            raise _temporary(error) from error

    if options.resync:

        @kopf.timer(
            GROUP,
            VERSION,
            "workflows",
            id="resync",
            interval=options.resync,
            initial_delay=options.resync,
            idle=options.resync,
            registry=registry,
        )
        def workflow_resync(**kw: Any) -> None:
            """The same reconcile: it writes nothing while the template carries the inputs'
            hash (one GET per Workflow per interval)."""
            workflow_changed(**kw)

    @on.event(GROUP, VERSION, "workflows", registry=registry)
    async def workflow_event(**kw: Any) -> None:
        if kw["type"] != "DELETED":
            return
        controller.catalog.put(_key(kw["namespace"], kw["name"]), None, "Workflow")
        await _in_thread(_delete_owned, controller.kube, _snapshot(kw["body"]))

    # -- Sinks and the OperatorConfig: status, then the Workflows that use them -------------

    @on.resume(GROUP, VERSION, "sinks", registry=registry)
    @on.create(GROUP, VERSION, "sinks", registry=registry)
    @on.update(GROUP, VERSION, "sinks", registry=registry)
    def sink_changed(**kw: Any) -> None:
        snapshot = _snapshot(kw["body"])
        _write_plain(controller, "sinks", snapshot)
        parsed = _parsed(snapshot)  # the server resolves PagerDuty pages with it
        key = _key(kw["namespace"], kw["name"])
        controller.catalog.put(key, parsed if isinstance(parsed, Sink) else None, "Sink")
        if kw["reason"] != kopf.Reason.RESUME:  # resuming Workflows check their own inputs
            found, name = _indexes_of(kw), kw["name"]
            users = found.users_of(_key(kw["namespace"], name)[0], name)
            controller.reconcile_many(users, found, f"Sink/{name} changed")

    @on.event(GROUP, VERSION, "sinks", registry=registry)
    async def sink_event(**kw: Any) -> None:
        if kw["type"] == "DELETED":
            controller.catalog.put(_key(kw["namespace"], kw["name"]), None, "Sink")
            found, name = _indexes_of(kw), kw["name"]
            users = found.users_of(_key(kw["namespace"], name)[0], name)
            await _in_thread(
                _logged, controller.reconcile_many, users, found, f"Sink/{name} deleted"
            )

    @on.resume(GROUP, VERSION, "operatorconfigs", registry=registry)
    @on.create(GROUP, VERSION, "operatorconfigs", registry=registry)
    @on.update(GROUP, VERSION, "operatorconfigs", registry=registry)
    def config_changed(**kw: Any) -> None:
        snapshot, name = _snapshot(kw["body"]), kw["name"]
        namespace = _key(kw["namespace"], name)[0]
        _write_plain(controller, "operatorconfigs", snapshot)
        if name != options.operator_config:
            return
        controller.catalog.put((namespace, name), _parsed(snapshot), "OperatorConfig")
        if kw["reason"] != kopf.Reason.RESUME:
            found = _indexes_of(kw)
            controller.reconcile_many(
                found.in_namespace(namespace), found, f"OperatorConfig/{name} changed"
            )

    @on.event(GROUP, VERSION, "operatorconfigs", registry=registry)
    async def config_event(**kw: Any) -> None:
        name = kw["name"]
        if kw["type"] == "DELETED" and name == options.operator_config:
            namespace = _key(kw["namespace"], name)[0]
            controller.catalog.put((namespace, name), None, "OperatorConfig")
            found = _indexes_of(kw)
            await _in_thread(
                _logged,
                controller.reconcile_many,
                found.in_namespace(namespace),
                found,
                f"OperatorConfig/{name} deleted",
            )

    # -- Sources ---------------------------------------------------------------------------

    @on.resume(GROUP, VERSION, "sources", registry=registry)
    @on.create(GROUP, VERSION, "sources", registry=registry)
    @on.update(GROUP, VERSION, "sources", registry=registry)
    def source_changed(**kw: Any) -> None:
        _write_plain(controller, "sources", _snapshot(kw["body"]))

    @on.event(GROUP, VERSION, "sources", registry=registry)
    async def source_event(**kw: Any) -> None:
        parsed = None if kw["type"] == "DELETED" else _parsed(_snapshot(kw["body"]))
        controller.catalog.put(_key(kw["namespace"], kw["name"]), parsed, "Source")

    # -- admission -------------------------------------------------------------------------

    if options.admission is not None:
        _register_admission(registry, controller)
    return registry


def _register_admission(registry: kopf.OperatorRegistry, controller: Controller) -> None:
    config_name = controller.options.operator_config
    operations: list[Literal["CREATE", "UPDATE"]] = ["CREATE", "UPDATE"]

    def unchanged(kw: Mapping[str, Any]) -> bool:
        # Kopf's own bookkeeping (annotations) must never be refused, even on an old object.
        old, new = kw.get("old"), kw.get("new")
        return old is not None and new is not None and old.get("spec") == new.get("spec")

    def guarded(check: Callable[[], list[str]], kw: Mapping[str, Any]) -> None:
        try:
            kw["warnings"].extend(check())
        except admission.Rejected as error:
            raise kopf.AdmissionError(str(error), code=422) from error

    @kopf.on.validate(
        GROUP, VERSION, "workflows", id="workflows", operations=operations, registry=registry
    )
    def validate_workflow(**kw: Any) -> None:
        if unchanged(kw):
            return
        found, namespace = _indexes_of(kw), kw["namespace"] or "default"
        guarded(
            lambda: admission.review_workflow(
                _snapshot(kw["body"]),
                found.sinks_of(namespace),
                found.config(namespace, config_name),
            ),
            kw,
        )

    @kopf.on.validate(GROUP, VERSION, "sinks", id="sinks", operations=operations, registry=registry)
    def validate_sink(**kw: Any) -> None:
        if unchanged(kw):
            return
        found, namespace = _indexes_of(kw), kw["namespace"] or "default"
        users = {
            key[1]: user
            for key in found.users_of(namespace, kw["name"])
            if (user := found.workflow(key)) is not None
        }
        guarded(
            lambda: admission.review_sink(
                _snapshot(kw["body"]),
                users,
                found.sinks_of(namespace),
                found.config(namespace, config_name),
            ),
            kw,
        )

    @kopf.on.validate(
        GROUP, VERSION, "sources", id="sources", operations=operations, registry=registry
    )
    @kopf.on.validate(
        GROUP,
        VERSION,
        "operatorconfigs",
        id="operatorconfigs",
        operations=operations,
        registry=registry,
    )
    def validate_plain(**kw: Any) -> None:
        if unchanged(kw):
            return
        guarded(lambda: admission.review_plain(_snapshot(kw["body"])), kw)


def _indexes_of(kwargs: Mapping[str, Any]) -> Indexes:
    return Indexes(
        workflows=kwargs["pf_workflows"],
        sinks=kwargs["pf_sinks"],
        configs=kwargs["pf_configs"],
        users=kwargs["pf_users"],
    )


def _webhook_server(options: AdmissionOptions) -> kopf.WebhookServer:
    return kopf.WebhookServer(
        addr=options.addr,
        port=options.port,
        host=options.host,
        certfile=options.certfile,
        pkeyfile=options.pkeyfile,
        cafile=options.cafile,
    )


def _parsed(body: Body) -> Any:
    try:
        return parse_resource(as_resource(body))
    except PunchingFistError:
        return None


def _write_plain(controller: Controller, plural: str, body: Body) -> None:
    meta = body.get("metadata") or {}
    outcome = validate_resource(body)
    try:
        if outcome.status is not None:
            controller.kube.patch_status(
                API_VERSION,
                plural,
                meta.get("namespace", "default"),
                meta.get("name", ""),
                outcome.status,
            )
    except KubeError as error:
        if error.temporary:
            raise _temporary(error) from error
        raise kopf.PermanentError(str(error)) from error
    _post(body, outcome)


def _delete_owned(kube: Kube, body: Body) -> None:
    """Delete what a deleted Workflow owned, now (the garbage collector would, later)."""
    meta = body.get("metadata") or {}
    namespace, name, uid = meta.get("namespace", "default"), meta.get("name", ""), meta.get("uid")
    try:
        for template_name in (name, critical_template(name)):  # critical: criticalBypass
            template = kube.get_template(namespace, template_name)
            owners = ((template or {}).get("metadata") or {}).get("ownerReferences") or []
            if any(o.get("uid") == uid for o in owners):
                kube.delete_template(namespace, template_name)
        secret = f"{name}-punchingfist"
        secret_owners = kube.get_secret_owners(namespace, secret) or []
        if any(o.get("uid") == uid for o in secret_owners):
            kube.delete_secret(namespace, secret)
    except KubeError as error:
        log.warning(
            "Workflow %s/%s deleted; its template stays until the garbage collector removes it: %s",
            namespace,
            name,
            error,
        )


async def _in_thread(fn: Callable[..., None], *args: Any) -> None:
    """Blocking API calls off the event loop, with Kopf's context (its Event posting)."""
    await asyncio.get_running_loop().run_in_executor(
        None, contextvars.copy_context().run, fn, *args
    )


def _logged(fn: Callable[..., None], *args: Any) -> None:
    try:
        fn(*args)
    except (kopf.TemporaryError, KubeError) as error:
        log.warning("%s", error)


# -- running ---------------------------------------------------------------------------------


class OperatorThread:
    """Kopf in a thread with its own event loop, beside another server (uvicorn)."""

    def __init__(self, controller: Controller, registry: kopf.OperatorRegistry | None = None):
        self.controller = controller
        self.registry = registry or build_registry(controller)
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kopf-operator", daemon=True)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self, timeout: float = 60.0) -> None:
        """Start and wait until Kopf has logged in and filled its indexes."""
        self._thread.start()
        if not self.ready.wait(timeout):
            self.stop()
            raise PunchingFistError(
                f"the controller did not start within {timeout:.0f} s"
                + (f": {self.error}" if self.error else "")
            )

    def stop(self, timeout: float = 30.0) -> None:
        self.stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            asyncio.run(
                run_operator(
                    self.controller, self.registry, ready_flag=self.ready, stop_flag=self.stopping
                )
            )
        except BaseException as error:
            self.error = error
            log.exception("the controller stopped")


async def run_operator(
    controller: Controller,
    registry: kopf.OperatorRegistry | None = None,
    *,
    ready_flag: threading.Event | None = None,
    stop_flag: threading.Event | None = None,
    liveness_endpoint: str | None = None,
) -> None:
    """Run the operator until `stop_flag` is set (or SIGINT/SIGTERM in the main thread)."""
    options = controller.options
    await kopf.operator(
        registry=registry or build_registry(controller),
        clusterwide=options.clusterwide,
        namespaces=[] if options.clusterwide else list(options.namespaces),
        standalone=options.peering is None,
        peering_name=options.peering,
        priority=options.priority,
        identity=cast(Any, options.identity),
        ready_flag=ready_flag,
        stop_flag=stop_flag,
        liveness_endpoint=liveness_endpoint,
        memo=kopf.Memo(),
    )


def connect(
    kubeconfig: str | Path | None = None,
    *,
    in_cluster: bool | None = None,
    options: ControllerOptions | None = None,
) -> Controller:
    """A Controller with a Kubernetes client (kubeconfig file, service account or default)."""
    connection = Connection.load(str(kubeconfig) if kubeconfig else None, in_cluster=in_cluster)
    return Controller(
        kube=Kube(connection), connection=connection, options=options or ControllerOptions()
    )
