"""The Workflow the Argo executor submits for a run, built with Hera: a workflowTemplateRef to
the compiled WorkflowTemplate, the run's parameters, and the labels run tracking selects on."""

from __future__ import annotations

import json

import pytest

from punchingfist.executors.argo import ArgoExecutor, workflow_manifest
from punchingfist.kube import Connection, Kube
from punchingfist.runs.dispatching import RunSubmission, SubmitError


def test_a_run_of_an_alert_is_a_workflow_of_its_template() -> None:
    event = {"alert": {"alertname": "KubePodCrashLooping", "labels": {"pod": "api-0"}}}
    run = RunSubmission(
        name="triage-0123456789",
        namespace="monitoring",
        workflow="triage",
        parameters={"event": event, "source": "alertmanager", "fingerprint": "a1b2c3"},
    )
    assert workflow_manifest(run) == {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "name": "triage-0123456789",
            "namespace": "monitoring",
            "labels": {
                "punchingfist.io/workflow": "triage",
                "app.kubernetes.io/managed-by": "punchingfist",
                "punchingfist.io/source": "alertmanager",
                "punchingfist.io/fingerprint": "a1b2c3",
            },
        },
        "spec": {
            "workflowTemplateRef": {"name": "triage"},
            "arguments": {
                "parameters": [
                    {"name": "event", "value": json.dumps(event)},
                    {"name": "source", "value": "alertmanager"},
                    {"name": "fingerprint", "value": "a1b2c3"},
                ]
            },
        },
    }


def test_a_run_without_parameters_is_a_manual_one_with_empty_values() -> None:
    manifest = workflow_manifest(RunSubmission("wf-abcde", "default", "wf", {}))
    assert manifest["metadata"]["labels"] == {
        "punchingfist.io/workflow": "wf",
        "app.kubernetes.io/managed-by": "punchingfist",
    }
    assert manifest["spec"]["arguments"]["parameters"] == [
        {"name": "event", "value": "{}"},
        {"name": "source", "value": "manual"},
        {"name": "fingerprint", "value": ""},
    ]


def test_label_values_are_cut_to_what_kubernetes_allows() -> None:
    source, fingerprint = "s" * 80, "f" * 64
    run = RunSubmission("wf-x", "default", "wf", {"source": source, "fingerprint": fingerprint})
    labels = workflow_manifest(run)["metadata"]["labels"]
    assert labels["punchingfist.io/source"] == "s" * 63
    assert labels["punchingfist.io/fingerprint"] == "f" * 63
    parameters = workflow_manifest(run)["spec"]["arguments"]["parameters"]
    assert parameters[1:] == [
        {"name": "source", "value": source},
        {"name": "fingerprint", "value": fingerprint},
    ]


def test_a_run_name_argo_cannot_take_is_a_permanent_submit_error() -> None:
    from kubernetes import client

    executor = ArgoExecutor(kube=Kube(Connection(client.Configuration(host="http://127.0.0.1:1"))))
    with pytest.raises(SubmitError, match="no more than 63 characters") as raised:
        executor.submit(RunSubmission("r" * 64, "default", "wf", {}))
    assert not raised.value.temporary
