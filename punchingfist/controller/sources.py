"""Sources the controller serves: `schedule` (an Argo CronWorkflow) and `kubernetes` (a watch).

- `schedule`: `cron_workflow(source, namespace)` builds the CronWorkflow (pure); the Kopf
  handler `schedule_source` server-side-applies it, owned by the Source (deleting the Source
  deletes it), and deletes it when the Source stops being a schedule.
- `kubernetes`: `KubernetesWatch` watches the Source's resource (namespace, labelSelector) and
  queues a run of its workflow for each matching change, through the same outbox as webhook
  runs, at most once per object per `debounce` window (`Debouncer`). The Kopf daemon
  `kubernetes_source` runs one watch per Source and restarts it when the Source changes.

`register(registry, sessions=..., metrics=..., argo=...)` adds both handlers to the operator's
Kopf registry (`argo`: an `ArgoExecutor`, whose `api_client` the watches use).
`webhook`, `api` and `chat` Sources are served by the server (`punchingfist serve`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kopf
from hera.workflows import CronWorkflow, Parameter
from hera.workflows.models import OwnerReference, WorkflowMetadata, WorkflowTemplateRef
from sqlalchemy.orm import Session, sessionmaker

from punchingfist.api import API_VERSION, GROUP, VERSION, Source, parse_resource
from punchingfist.api.base import duration_seconds
from punchingfist.api.sources import KubernetesSource, ScheduleSource
from punchingfist.compiler.naming import LABEL_MANAGED_BY, LABEL_SOURCE, LABEL_WORKFLOW
from punchingfist.errors import InvalidResource, PunchingFistError
from punchingfist.executors.argo import ArgoExecutor
from punchingfist.kube import KubeGone, KubeNotFound, ResourceWatch
from punchingfist.runs.metrics import Metrics
from punchingfist.runs.queueing import queue_run

log = logging.getLogger("punchingfist.sources")

CRON_NAME_MAX = 52
"""Argo names a CronWorkflow's runs `<name>-<unix time>`: the name may have 52 characters."""
CHANGES = {"created": "ADDED", "updated": "MODIFIED", "deleted": "DELETED"}
"""A kubernetes Source's `event` -> the watch event type it reacts to."""
WATCH_SECONDS = 30
"""Each watch request ends after this long (then the next starts where it stopped); stopping
a watch waits for its request to end."""
DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


class SourceError(PunchingFistError):
    """A Source cannot be served as written (names the Source, the field and the fix)."""


# -- schedule -------------------------------------------------------------------------------


def cron_workflow_name(source: str) -> str:
    """The CronWorkflow of a schedule Source: the Source's name, cut to what Argo allows."""
    return source if len(source) <= CRON_NAME_MAX else source[:CRON_NAME_MAX].rstrip("-.")


def cron_workflow(source: Source, namespace: str, owner_uid: str | None = None) -> dict[str, Any]:
    """The Argo CronWorkflow that runs a schedule Source's workflow from its WorkflowTemplate."""
    spec = source.spec
    if not isinstance(spec, ScheduleSource):
        raise SourceError(f"{source.ref}: spec.type is {spec.type!r}, not 'schedule'")
    workflow = spec.trigger_workflow
    event = {
        "schedule": {
            "source": source.name,
            "cron": spec.config.cron,
            "timezone": spec.config.timezone,
        },
        "context": dict(spec.context),
    }
    labels = {LABEL_MANAGED_BY: "punchingfist", LABEL_SOURCE: source.name[:63]}
    owners = None
    if owner_uid:
        owners = [
            OwnerReference(
                api_version=API_VERSION,
                kind="Source",
                name=source.name,
                uid=owner_uid,
                controller=True,
                block_owner_deletion=True,
            )
        ]
    cron = CronWorkflow(
        name=cron_workflow_name(source.name),
        namespace=namespace,
        labels=labels,
        owner_references=owners,
        schedules=[spec.config.cron],
        timezone=spec.config.timezone,
        concurrency_policy="Forbid",  # a schedule that overruns skips, never piles up
        workflow_template_ref=WorkflowTemplateRef(name=workflow),
        workflow_metadata=WorkflowMetadata(labels={**labels, LABEL_WORKFLOW: workflow}),
        arguments=[
            Parameter(name="event", value=json.dumps(event, sort_keys=True)),
            Parameter(name="source", value=source.name),
            Parameter(name="fingerprint", value=""),
        ],
    )
    manifest: dict[str, Any] = cron.to_dict()
    return manifest


def reconcile_schedule(
    source: Source, namespace: str, uid: str | None, argo: ArgoExecutor
) -> str | None:
    """Apply the Source's CronWorkflow, or delete it when the Source is no (longer a) schedule.
    Returns the name of the CronWorkflow applied."""
    name = cron_workflow_name(source.name)
    if not isinstance(source.spec, ScheduleSource):
        if argo.delete("cronworkflows", namespace, name):
            log.info("%s is no schedule any more: deleted CronWorkflow %s", source.ref, name)
        return None
    argo.apply(cron_workflow(source, namespace, uid), "cronworkflows")
    return name


# -- kubernetes -----------------------------------------------------------------------------


@dataclass
class Debouncer:
    """At most one admission per key in `window` seconds. `clock` is monotonic seconds."""

    window: float
    clock: Callable[[], float] = time.monotonic
    _last: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def admit(self, key: str) -> bool:
        now = self.clock()
        with self._lock:
            if len(self._last) > 10_000:  # forget keys whose window has passed
                self._last = {k: t for k, t in self._last.items() if now - t < self.window}
            last = self._last.get(key)
            if last is not None and now - last < self.window:
                return False
            self._last[key] = now
            return True


def parse_resource_name(resource: str) -> tuple[str, str]:
    """`pods` -> ("", "pods"); `deployments.apps` -> ("apps", "deployments")."""
    plural, _, group = resource.strip().partition(".")
    return group, plural.lower()


def object_event(source: Source, change: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The event of a run about one Kubernetes object (`.source.data`). The object is data."""
    metadata = dict(obj.get("metadata") or {})
    metadata.pop("managedFields", None)
    annotations = {
        k: v for k, v in (metadata.get("annotations") or {}).items() if k not in DROPPED_ANNOTATIONS
    }
    if annotations or "annotations" in metadata:
        metadata["annotations"] = annotations
    assert isinstance(source.spec, KubernetesSource)
    return {
        "kubernetes": {
            "event": change,
            "resource": source.spec.config.resource,
            "kind": obj.get("kind", ""),
            "apiVersion": obj.get("apiVersion", ""),
            "namespace": metadata.get("namespace", ""),
            "name": metadata.get("name", ""),
            "uid": metadata.get("uid", ""),
        },
        "object": {**obj, "metadata": metadata},
        "context": dict(source.spec.context),
    }


class KubernetesWatch:
    """One kubernetes Source's watch: matching changes queue runs (debounced per object)."""

    def __init__(
        self,
        source: Source,
        namespace: str,
        api_client: Any,
        sessions: sessionmaker[Session],
        metrics: Metrics,
        debouncer: Debouncer | None = None,
        watch_seconds: int = WATCH_SECONDS,
    ) -> None:
        spec = source.spec
        if not isinstance(spec, KubernetesSource):
            raise SourceError(f"{source.ref}: spec.type is {spec.type!r}, not 'kubernetes'")
        group, plural = parse_resource_name(spec.config.resource)
        if plural in ("secrets", "secret"):
            raise SourceError(
                f"{source.ref}: spec.config.resource: Secrets are never read by Punching Fist; "
                "watch another resource (for example events or pods)"
            )
        self.source, self.config = source, spec.config
        self.namespace = namespace
        self.group, self.plural = group, plural
        self.api_client = api_client
        self.sessions, self.metrics = sessions, metrics
        self.debouncer = debouncer or Debouncer(duration_seconds(spec.config.debounce))
        self.queued: list[str] = []
        self.watch_seconds = watch_seconds
        self.listening = threading.Event()
        """Set once the watch has listed the existing objects: later changes are seen."""

    def handle(self, event_type: str, obj: dict[str, Any]) -> str | None:
        """One watch event; returns the run it queued, if any."""
        change = self.config.event
        if event_type != CHANGES[change]:
            return None
        metadata = obj.get("metadata") or {}
        uid = str(metadata.get("uid") or f"{metadata.get('namespace')}/{metadata.get('name')}")
        if not self.debouncer.admit(uid):
            log.debug("%s: %s %s within the debounce window", self.source.ref, change, uid)
            return None
        version = metadata.get("resourceVersion", "")
        key = f"{self.config.resource}/{uid}/{change}/{version}"
        event = object_event(self.source, change, obj)
        name, created = queue_run(
            self.sessions, self.source, event, key, namespace=self.namespace, fingerprint=uid[:63]
        )
        if not created:
            return None
        self.metrics.runs_queued.labels(self.source.spec.trigger_workflow).inc()
        log.info(
            "%s: %s %s/%s -> run %s",
            self.source.ref,
            change,
            metadata.get("namespace", ""),
            metadata.get("name", ""),
            name,
        )
        self.queued.append(name)
        return name

    def run(self, keep_going: Callable[[], bool]) -> None:
        """Watch until `keep_going()` is false. Objects that exist when the watch starts are
        not changes: the watch starts at the listing's resourceVersion."""
        try:
            watch = ResourceWatch(self.api_client, self.group, self.plural)
        except KubeNotFound as error:
            raise SourceError(
                f"{self.source.ref}: spec.config.resource: {error}; write the plural name, "
                "with the group for non-core resources (e.g. pods, events, deployments.apps)"
            ) from error
        scope = {"label_selector": self.config.label_selector}
        if self.config.namespace:
            scope["namespace"] = self.config.namespace
        version = None
        while keep_going():
            if version is None:
                version = watch.version(**scope)
                self.listening.set()
            try:
                for change, raw in watch.events(version, self.watch_seconds, **scope):
                    version = (raw.get("metadata") or {}).get("resourceVersion") or version
                    self.handle(change, raw)
                    if not keep_going():
                        return
            except KubeGone:
                version = None  # expired: list again


def register(
    registry: kopf.OperatorRegistry,
    *,
    sessions: sessionmaker[Session],
    metrics: Metrics,
    argo: ArgoExecutor,
) -> None:
    """Add the Source handlers to `registry`: `punchingfist-schedule` (create, update, resume)
    and the daemon `punchingfist-kubernetes-watch`."""

    @kopf.on.resume(GROUP, VERSION, "sources", id="punchingfist-schedule", registry=registry)
    @kopf.on.create(GROUP, VERSION, "sources", id="punchingfist-schedule", registry=registry)
    @kopf.on.update(GROUP, VERSION, "sources", id="punchingfist-schedule", registry=registry)
    def schedule_source(
        body: kopf.Body, namespace: str | None, uid: str | None, logger: Any, **_: Any
    ) -> None:
        """Keep a schedule Source's CronWorkflow as the Source says. (Nothing is returned: a
        handler's return value would land in the Source's status, which the reconciler owns.)"""
        try:
            source = _source(body)
        except InvalidResource as error:
            raise kopf.PermanentError(str(error)) from error
        try:
            name = reconcile_schedule(source, namespace or "default", uid, argo)
        except PunchingFistError as error:
            raise kopf.TemporaryError(str(error), delay=30) from error
        if name:
            logger.info("CronWorkflow %s applied (%s)", name, source.spec.config.cron)

    @kopf.daemon(
        GROUP,
        VERSION,
        "sources",
        id="punchingfist-kubernetes-watch",
        registry=registry,
        when=lambda spec, **_: spec.get("type") == "kubernetes",
        cancellation_timeout=WATCH_SECONDS + 5,
    )
    def kubernetes_source(
        body: kopf.Body,
        namespace: str | None,
        stopped: kopf.DaemonStopped,
        logger: Any,
        **_: Any,
    ) -> None:
        """Serve a kubernetes Source until it is deleted; a changed Source restarts the watch."""
        try:
            source = _source(body)
            watch = KubernetesWatch(
                source, namespace or "default", argo.api_client, sessions, metrics
            )
        except (InvalidResource, SourceError) as error:
            raise kopf.PermanentError(str(error)) from error
        generation = body.get("metadata", {}).get("generation")

        def keep_going() -> bool:
            return not stopped and body.get("metadata", {}).get("generation") == generation

        logger.info(
            "watching %s for %s objects", source.spec.config.resource, source.spec.config.event
        )
        try:
            watch.run(keep_going)
        except SourceError as error:
            raise kopf.PermanentError(str(error)) from error
        if not stopped:
            raise kopf.TemporaryError("the Source changed: restarting its watch", delay=1)


def _source(body: Any) -> Source:
    """The Source of a Kopf body (validated as `kubectl apply` would have it)."""
    plain = json.loads(json.dumps(dict(body), default=dict))
    source = parse_resource(plain)
    assert isinstance(source, Source)  # the handlers watch sources.punchingfist.io only
    return source
