"""The one Kubernetes client over the wire (a fake API server on loopback, the kubernetes library
for real): the calls the controller and the Argo executor make, what each refusal becomes, and
the executor's SubmitError carrying the client's answer to "temporary?". The e2e tier makes the
same calls against a real kube-apiserver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from punchingfist.compiler.naming import ANNOTATION_STOPPED
from punchingfist.executors.argo import ArgoExecutor, workflow_manifest
from punchingfist.kube import (
    ARGO_API_VERSION,
    Connection,
    Kube,
    KubeConflict,
    KubeError,
    KubeForbidden,
    KubeNotFound,
    KubeServerError,
    KubeUnreachable,
)
from punchingfist.runs.dispatching import RunSubmission, SubmitError
from tests.e2e.controlplane import free_port
from tests.fakes.kubeapi import APPLY, FakeKubeAPI, content_type

WORKFLOWS = "/apis/argoproj.io/v1alpha1/namespaces/team/workflows"
TEMPLATES = "/apis/argoproj.io/v1alpha1/namespaces/team/workflowtemplates"


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    fake = FakeKubeAPI()
    with fake:
        yield fake


@pytest.fixture
def kube(api: FakeKubeAPI) -> Iterator[Kube]:
    client = Kube(Connection(api.configuration()))
    yield client
    client.close()


@pytest.fixture
def argo(kube: Kube) -> ArgoExecutor:
    return ArgoExecutor(kube=kube)


def run(name: str = "triage-0123456789") -> RunSubmission:
    event = {"alert": {"alertname": "HighLatency"}}
    return RunSubmission(name, "team", "triage", {"event": event, "source": "am"})


# -- the executor ----------------------------------------------------------------------------


def test_a_submitted_run_is_the_hera_built_workflow(api: FakeKubeAPI, argo: ArgoExecutor) -> None:
    argo.submit(run())
    read, request = api.requests  # the template first: does the run need secret references?
    assert (read.method, read.path) == ("GET", TEMPLATES + "/triage")
    assert (request.method, request.path) == ("POST", WORKFLOWS)
    assert request.json() == workflow_manifest(run())
    assert argo.get("triage-0123456789", "team")["spec"]["workflowTemplateRef"] == {
        "name": "triage"
    }


def test_a_run_submitted_twice_is_started_once(api: FakeKubeAPI, argo: ArgoExecutor) -> None:
    argo.submit(run())
    argo.submit(run())  # the API server answers 409: an earlier attempt got through
    assert [r.method for r in api.requests] == ["GET", "POST", "GET", "POST"]
    assert len(api.objects) == 1


@pytest.mark.parametrize(
    ("code", "temporary"),
    [(500, True), (503, True), (429, True), (400, False), (403, False), (422, False)],
)
def test_a_refused_submission_is_retried_only_when_the_client_says_temporary(
    api: FakeKubeAPI, argo: ArgoExecutor, code: int, temporary: bool
) -> None:
    api.fail_next(code)
    with pytest.raises(SubmitError, match=f"scripted HTTP {code}") as raised:
        argo.submit(run())
    assert raised.value.temporary is temporary
    assert isinstance(raised.value.__cause__, KubeError)
    assert raised.value.__cause__.temporary is temporary
    argo.submit(run())  # the next attempt goes through
    assert len(api.objects) == 1


def test_an_unreachable_api_server_is_a_temporary_submit_error() -> None:
    from kubernetes import client

    configuration = client.Configuration(host=f"http://127.0.0.1:{free_port()}")
    configuration.retries = 0
    argo = ArgoExecutor(kube=Kube(Connection(configuration)))
    with pytest.raises(SubmitError) as raised:
        argo.submit(run())
    assert raised.value.temporary
    assert isinstance(raised.value.__cause__, KubeUnreachable)


def test_a_missing_run_is_a_permanent_submit_error(argo: ArgoExecutor) -> None:
    with pytest.raises(SubmitError, match="not found") as raised:
        argo.get("gone", "team")
    assert not raised.value.temporary
    with pytest.raises(SubmitError) as raised:
        argo.stop("gone", "team", strategy="Stop", reason="stuck")
    assert not raised.value.temporary


def test_resume_answers_the_suspend_node_with_a_merge_patch(
    api: FakeKubeAPI, argo: ArgoExecutor
) -> None:
    argo.submit(run())
    gate = {"displayName": "fix-approval", "type": "Suspend", "phase": "Running"}
    api.objects[(ARGO_API_VERSION, "workflows", "team", "triage-0123456789")]["status"] = {
        "nodes": {"node-1": gate}
    }
    assert argo.waiting_gates("triage-0123456789", "team") == ["fix-approval"]
    argo.resume(
        "triage-0123456789", "team", "fix-approval", approved=True, approver="ana", comment="ok"
    )
    patch = api.requests[-1]
    assert (patch.method, content_type(patch)) == ("PATCH", "application/merge-patch+json")
    assert argo.waiting_gates("triage-0123456789", "team") == []
    node = argo.get("triage-0123456789", "team")["status"]["nodes"]["node-1"]
    assert node["phase"] == "Succeeded" and node["message"] == "approved by ana"
    assert {"name": "approver", "value": "ana"} in node["outputs"]["parameters"]


def test_stop_says_why_in_an_annotation(api: FakeKubeAPI, argo: ArgoExecutor) -> None:
    argo.submit(run())
    argo.stop("triage-0123456789", "team", strategy="Terminate", reason="the image is missing")
    workflow = argo.get("triage-0123456789", "team")
    assert workflow["spec"]["shutdown"] == "Terminate"
    assert workflow["metadata"]["annotations"] == {ANNOTATION_STOPPED: "the image is missing"}


def test_cron_workflows_are_applied_server_side_and_deleted(
    api: FakeKubeAPI, argo: ArgoExecutor
) -> None:
    cron = {
        "apiVersion": ARGO_API_VERSION,
        "kind": "CronWorkflow",
        "metadata": {"name": "nightly", "namespace": "team"},
        "spec": {"schedules": ["0 3 * * *"]},
    }
    argo.apply(cron, "cronworkflows")
    applied = api.requests[-1]
    assert applied.path == "/apis/argoproj.io/v1alpha1/namespaces/team/cronworkflows/nightly"
    assert content_type(applied) == "application/apply-patch+yaml"
    assert applied.query == {"fieldManager": "punchingfist", "force": "true"}
    assert argo.delete("cronworkflows", "team", "nightly") is True
    assert argo.delete("cronworkflows", "team", "nightly") is False


def test_template_exists_and_whoami(api: FakeKubeAPI, argo: ArgoExecutor, kube: Kube) -> None:
    assert argo.template_exists("triage", "team") is False
    kube.apply(
        {
            "apiVersion": ARGO_API_VERSION,
            "kind": "WorkflowTemplate",
            "metadata": {"name": "triage", "namespace": "team"},
        }
    )
    assert api.requests[-1].path.endswith("/namespaces/team/workflowtemplates/triage")
    assert argo.template_exists("triage", "team") is True
    assert argo.whoami() == "system:serviceaccount:default:punchingfist"
    api.fail_next(403)
    with pytest.raises(SubmitError) as raised:
        argo.template_exists("triage", "team")
    assert not raised.value.temporary


def test_the_executor_reads_a_kubeconfig(api: FakeKubeAPI, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": api.url}}],
                "users": [{"name": "ci", "user": {"token": "t0ken"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "ci"}}],
                "current-context": "fake",
            }
        )
    )
    ArgoExecutor(str(kubeconfig)).submit(run())
    assert api.requests[-1].headers["authorization"] == "Bearer t0ken"


# -- the client as the controller uses it --------------------------------------------------


def test_reads_of_missing_objects(kube: Kube) -> None:
    assert kube.get_template("team", "triage") is None
    assert kube.find(ARGO_API_VERSION, "workflows", "team", "gone") is None
    with pytest.raises(KubeNotFound):
        kube.get(ARGO_API_VERSION, "workflows", "team", "gone")
    kube.delete_template("team", "triage")  # nothing to delete: fine


def test_create_list_and_conflict(kube: Kube) -> None:
    manifest = workflow_manifest(run())
    kube.create(ARGO_API_VERSION, "workflows", "team", manifest)
    with pytest.raises(KubeConflict, match="already exists") as raised:
        kube.create(ARGO_API_VERSION, "workflows", "team", manifest)
    assert raised.value.status == 409 and not raised.value.temporary
    listed = kube.list_objects(ARGO_API_VERSION, "workflows", "team")
    assert [o["metadata"]["name"] for o in listed] == ["triage-0123456789"]
    assert kube.list_objects(ARGO_API_VERSION, "workflows", "elsewhere") == []


def test_status_is_merge_patched_on_the_subresource(api: FakeKubeAPI, kube: Kube) -> None:
    source = {
        "apiVersion": "punchingfist.io/v1alpha1",
        "kind": "Source",
        "metadata": {"name": "am", "namespace": "team"},
        "status": {"phase": "Pending", "message": "starting"},
    }
    kube.create("punchingfist.io/v1alpha1", "sources", "team", source)
    kube.patch_status(
        "punchingfist.io/v1alpha1", "sources", "team", "am", {"phase": "Ready", "message": None}
    )
    request = api.requests[-1]
    assert request.path == "/apis/punchingfist.io/v1alpha1/namespaces/team/sources/am/status"
    assert request.json() == {"status": {"phase": "Ready", "message": None}}
    found = kube.get("punchingfist.io/v1alpha1", "sources", "team", "am")
    assert found["status"] == {"phase": "Ready"}
    kube.patch_status("punchingfist.io/v1alpha1", "sources", "team", "deleted", {"phase": "x"})


def test_a_failing_api_server_is_a_temporary_kube_error(api: FakeKubeAPI, kube: Kube) -> None:
    api.fail_next(503)
    with pytest.raises(KubeServerError) as raised:
        kube.get_template("team", "triage")
    assert raised.value.temporary and raised.value.status == 503
    api.fail_next(403)
    with pytest.raises(KubeForbidden) as forbidden:
        kube.patch_status("punchingfist.io/v1alpha1", "sources", "team", "am", {})
    assert not forbidden.value.temporary
    assert str(forbidden.value) == "cannot write the status of sources/am: scripted HTTP 403"


def test_only_secrets_configmaps_and_custom_objects_are_applied(
    api: FakeKubeAPI, kube: Kube
) -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "c", "namespace": "t"}}
    with pytest.raises(KubeError, match="does not apply v1 Service") as raised:
        kube.apply(service)
    assert not raised.value.temporary
    assert api.requests == []
    config_map = {**service, "kind": "ConfigMap", "data": {"global": "3"}}
    with pytest.raises(KubeError):  # the fake serves no core ConfigMaps: the request is the point
        kube.apply(config_map)
    (request,) = api.requests
    assert (request.method, request.path) == ("PATCH", "/api/v1/namespaces/t/configmaps/c")
    assert content_type(request) == APPLY and request.query["fieldManager"] == "punchingfist"
    assert request.json()["data"] == {"global": "3"}
