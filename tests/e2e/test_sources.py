"""e2e: schedule Sources become CronWorkflows, kubernetes Sources watch the real API server;
and the Kopf handlers of tracking and sources run under a real Kopf operator."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import kopf
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from punchingfist.api import Source, load_resources
from punchingfist.controller import sources as source_handlers
from punchingfist.controller import tracking
from punchingfist.controller.sources import KubernetesWatch, reconcile_schedule
from punchingfist.executors.argo import ArgoExecutor
from punchingfist.kube import kube_api_client
from punchingfist.runs.dispatching import dispatch_pending
from punchingfist.runs.metrics import Metrics
from punchingfist.store import OutboxEntry, WorkflowRun
from tests.e2e.controlplane import ControlPlane

pytestmark = pytest.mark.timeout(300)


def source(text: str) -> Source:
    (found,) = load_resources(text)
    assert isinstance(found, Source)
    return found


def apply(control_plane: ControlPlane, text: str) -> dict[str, Any]:
    control_plane.kubectl("apply", "-n", control_plane.namespace, "-f", "-", stdin=text)
    name = source(text).name
    found: dict[str, Any] = control_plane.get_json(
        "sources.punchingfist.io", name, "-n", control_plane.namespace
    )
    return found


def eventually(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    value = _wait(check, timeout)
    if not value:
        raise AssertionError(f"{what} (after {timeout} s)")
    return value


def queued(sessions: sessionmaker[Session]) -> dict[str, dict[str, Any]]:
    """Runs in the outbox: name -> the run's parameters."""
    with sessions() as session:
        names = set(session.scalars(select(OutboxEntry.run_name)))
        return {
            r.name: r.parameters for r in session.scalars(select(WorkflowRun)) if r.name in names
        }


def pod(name: str, labels: dict[str, str]) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "main", "image": "busybox"}]},
        }
    )


SCHEDULE = """
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: %s}
spec:
  type: schedule
  config: {cron: "%s", timezone: Europe/Berlin}
  triggerWorkflow: tiered-investigation
  context: {purpose: nightly}
"""


def test_a_schedule_source_is_a_cronworkflow(control_plane: ControlPlane) -> None:
    namespace = control_plane.namespace
    argo = ArgoExecutor(str(control_plane.kubeconfig))
    body = apply(control_plane, SCHEDULE % ("nightly-maintenance", "0 2 * * *"))
    uid = body["metadata"]["uid"]
    assert (
        reconcile_schedule(
            source(SCHEDULE % ("nightly-maintenance", "0 2 * * *")), namespace, uid, argo
        )
        == "nightly-maintenance"
    )
    cron = control_plane.get_json(
        "cronworkflows.argoproj.io", "nightly-maintenance", "-n", namespace
    )
    spec = cron["spec"]
    assert (spec["schedules"], spec["timezone"], spec["concurrencyPolicy"]) == (
        ["0 2 * * *"],
        "Europe/Berlin",
        "Forbid",
    )
    assert spec["workflowSpec"]["workflowTemplateRef"] == {"name": "tiered-investigation"}
    labels = spec["workflowSpec"]["workflowMetadata"]["labels"]
    assert labels["punchingfist.io/workflow"] == "tiered-investigation"
    parameters = {p["name"]: p["value"] for p in spec["workflowSpec"]["arguments"]["parameters"]}
    assert parameters["source"] == "nightly-maintenance"
    assert json.loads(parameters["event"]) == {
        "schedule": {
            "source": "nightly-maintenance",
            "cron": "0 2 * * *",
            "timezone": "Europe/Berlin",
        },
        "context": {"purpose": "nightly"},
    }
    (owner,) = cron["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Source", "nightly-maintenance", uid)
    # A new schedule replaces the old one; a Source that is no schedule any more loses it.
    reconcile_schedule(
        source(SCHEDULE % ("nightly-maintenance", "30 3 * * 1-5")), namespace, uid, argo
    )
    cron = control_plane.get_json(
        "cronworkflows.argoproj.io", "nightly-maintenance", "-n", namespace
    )
    assert cron["spec"]["schedules"] == ["30 3 * * 1-5"]
    api = source(
        SCHEDULE.replace("type: schedule", "type: api").replace(
            'config: {cron: "%s", timezone: Europe/Berlin}', "config: {}"
        )
        % "nightly-maintenance"
    )
    assert reconcile_schedule(api, namespace, uid, argo) is None
    gone = control_plane.kubectl(
        "get", "cronworkflows.argoproj.io", "nightly-maintenance", "-n", namespace, check=False
    )
    assert gone.returncode != 0 and "NotFound" in gone.stderr


KUBERNETES = """
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: %s}
spec:
  type: kubernetes
  config: {resource: pods, event: %s, labelSelector: app=%s, namespace: e2e, debounce: 1h}
  triggerWorkflow: investigate-alert
"""


@contextmanager
def watching(watch: KubernetesWatch) -> Iterator[None]:
    """Run the watch in a thread until the block ends; yields once it is listening."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            watch.run(lambda: not stop.is_set())
        except BaseException as error:  # reported by the test
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert watch.listening.wait(60), f"the watch did not start: {errors}"
        yield
    finally:
        stop.set()
        thread.join(timeout=90)
        assert not errors, errors


def test_kubernetes_source_created_objects_start_runs(
    control_plane: ControlPlane, sessions: sessionmaker[Session]
) -> None:
    namespace = control_plane.namespace
    control_plane.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=pod("critical-before", {"app": "critical-service"}),
    )
    metrics = Metrics(CollectorRegistry())
    watch = KubernetesWatch(
        source(KUBERNETES % ("critical-pods", "created", "critical-service")),
        namespace,
        kube_api_client(str(control_plane.kubeconfig)),
        sessions,
        metrics,
        watch_seconds=3,
    )
    with watching(watch):
        control_plane.kubectl(
            "apply", "-n", namespace, "-f", "-", stdin=pod("unlabelled", {"app": "other"})
        )
        control_plane.kubectl(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            stdin=pod("critical-1", {"app": "critical-service"}),
        )
        (name,) = eventually(lambda: list(queued(sessions)), "no run for the new pod")
    event = queued(sessions)[name]["event"]
    # The pod that existed before the watch and the unlabelled one started nothing.
    assert event["kubernetes"]["name"] == "critical-1" and event["kubernetes"]["event"] == "created"
    assert event["object"]["metadata"]["labels"] == {"app": "critical-service"}
    assert "managedFields" not in event["object"]["metadata"]
    assert queued(sessions)[name]["fingerprint"] == event["kubernetes"]["uid"]
    # The same outbox as webhook runs: the dispatcher makes it an Argo Workflow.
    assert dispatch_pending(sessions, ArgoExecutor(str(control_plane.kubeconfig))) == 1
    created = control_plane.get_json("workflows.argoproj.io", name, "-n", namespace)
    assert created["spec"]["workflowTemplateRef"] == {"name": "investigate-alert"}
    parameters = {p["name"]: p["value"] for p in created["spec"]["arguments"]["parameters"]}
    assert json.loads(parameters["event"])["kubernetes"]["name"] == "critical-1"
    assert parameters["source"] == "critical-pods"


def test_kubernetes_source_updates_are_debounced_per_object(
    control_plane: ControlPlane, sessions: sessionmaker[Session]
) -> None:
    namespace = control_plane.namespace
    for name in ("flappy", "marker"):
        control_plane.kubectl(
            "apply", "-n", namespace, "-f", "-", stdin=pod(name, {"app": "flappy"})
        )
    watch = KubernetesWatch(
        source(KUBERNETES % ("flappy-pods", "updated", "flappy")),
        namespace,
        kube_api_client(str(control_plane.kubeconfig)),
        sessions,
        Metrics(CollectorRegistry()),
        watch_seconds=3,
    )
    with watching(watch):
        control_plane.kubectl("annotate", "pod", "flappy", "-n", namespace, "step=1")
        eventually(lambda: len(queued(sessions)) == 1, "no run for the first update")
        control_plane.kubectl("annotate", "pod", "flappy", "-n", namespace, "step=2", "--overwrite")
        # Events of one watch arrive in order: once the marker's run is queued, the second
        # update of `flappy` has been seen too.
        control_plane.kubectl("annotate", "pod", "marker", "-n", namespace, "step=1")
        eventually(lambda: len(queued(sessions)) >= 2, "no run for the marker pod")
    names = sorted(p["event"]["kubernetes"]["name"] for p in queued(sessions).values())
    assert names == ["flappy", "marker"]
    flappy = next(
        p for p in queued(sessions).values() if p["event"]["kubernetes"]["name"] == "flappy"
    )
    assert flappy["event"]["object"]["metadata"]["annotations"] == {"step": "1"}


def test_secrets_are_never_watched(
    control_plane: ControlPlane, sessions: sessionmaker[Session]
) -> None:
    from punchingfist.controller.sources import SourceError

    text = KUBERNETES.replace("resource: pods", "resource: secrets")
    with pytest.raises(SourceError, match="Secrets are never read"):
        KubernetesWatch(
            source(text % ("secret-watch", "created", "x")),
            "e2e",
            kube_api_client(str(control_plane.kubeconfig)),
            sessions,
            Metrics(CollectorRegistry()),
        )


def test_the_kopf_handlers_under_a_real_operator(
    control_plane: ControlPlane, sessions: sessionmaker[Session]
) -> None:
    """Kopf itself runs the handlers: a schedule Source applied with kubectl gets its
    CronWorkflow, a kubernetes Source's daemon queues a run for a new pod, and a labelled
    Argo Workflow gets a run record."""
    namespace = control_plane.namespace
    metrics = Metrics(CollectorRegistry())
    registry = kopf.OperatorRegistry()
    tracking.register(registry, sessions=sessions, metrics=metrics)
    source_handlers.register(
        registry,
        sessions=sessions,
        metrics=metrics,
        argo=ArgoExecutor(str(control_plane.kubeconfig)),
    )
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False
    settings.watching.server_timeout = 30
    stop, ready = threading.Event(), threading.Event()
    plane = control_plane.pki
    credentials = kopf.ConnectionInfo(
        server=control_plane.server,
        ca_path=plane.path("ca.crt"),
        certificate_path=plane.path("admin.crt"),
        private_key_path=plane.path("admin.key"),
        default_namespace=namespace,
    )

    @kopf.on.login(id="e2e-admin", registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return credentials

    failures: list[BaseException] = []

    def operate() -> None:
        try:
            asyncio.run(
                kopf.operator(
                    registry=registry,
                    standalone=True,
                    namespaces=[namespace],
                    settings=settings,
                    stop_flag=stop,
                    ready_flag=ready,
                )
            )
        except BaseException as error:  # reported by the test
            failures.append(error)
            ready.set()

    thread = threading.Thread(target=operate, daemon=True)
    thread.start()
    try:
        assert ready.wait(60) and not failures, f"Kopf did not start: {failures}"
        apply(control_plane, SCHEDULE % ("kopf-nightly", "15 4 * * *"))
        cron = eventually(
            lambda: (
                control_plane.kubectl(
                    "get",
                    "-o",
                    "json",
                    "cronworkflows.argoproj.io",
                    "kopf-nightly",
                    "-n",
                    namespace,
                    check=False,
                ).stdout
            ),
            "Kopf applied no CronWorkflow",
        )
        assert json.loads(cron)["spec"]["schedules"] == ["15 4 * * *"]
        apply(control_plane, KUBERNETES % ("kopf-pods", "created", "kopf-watched"))
        # The daemon's watch starts after its listing (whose pods are not new): create pods
        # until one is seen.
        for index in range(45):
            control_plane.kubectl(
                "apply",
                "-n",
                namespace,
                "-f",
                "-",
                stdin=pod(f"kopf-{index}", {"app": "kopf-watched"}),
            )
            if _wait(lambda: queued(sessions), 2):
                break
        assert queued(sessions), "the kubernetes Source's daemon queued no run"
        workflow = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Workflow",
            "metadata": {
                "name": "kopf-tracked",
                "labels": {
                    "punchingfist.io/workflow": "investigate-alert",
                    "workflows.argoproj.io/controller-instanceid": "not-this-controller",
                },
            },
            "spec": {"workflowTemplateRef": {"name": "investigate-alert"}},
        }
        control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(workflow))

        def tracked() -> bool:
            with sessions() as session:
                return WorkflowRun.named(session, "kopf-tracked") is not None

        eventually(tracked, "the tracking handler recorded no run")
    finally:
        stop.set()
        thread.join(timeout=60)


def _wait(check: Callable[[], Any], seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    return None
