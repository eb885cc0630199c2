"""The pure parts of schedule and kubernetes Sources: the CronWorkflow builder, the debouncer,
the event of a Kubernetes object."""

from __future__ import annotations

import json

import pytest

from punchingfist.api import Source, load_resources
from punchingfist.controller.sources import (
    Debouncer,
    SourceError,
    cron_workflow,
    cron_workflow_name,
    object_event,
    parse_resource_name,
)
from tests.e2e.controlplane import ROOT


def example(name: str) -> Source:
    (found,) = load_resources((ROOT / f"examples/sources/{name}.yaml").read_text())
    assert isinstance(found, Source)
    return found


def test_cron_workflow_of_the_design_documents_schedule() -> None:
    manifest = cron_workflow(example("nightly-maintenance"), "ops", owner_uid="1234")
    assert (manifest["kind"], manifest["metadata"]["name"], manifest["metadata"]["namespace"]) == (
        "CronWorkflow",
        "nightly-maintenance",
        "ops",
    )
    spec = manifest["spec"]
    assert (spec["schedules"], spec["timezone"]) == (["0 2 * * *"], "UTC")
    assert spec["workflowSpec"]["workflowTemplateRef"] == {"name": "tiered-investigation"}
    assert manifest["metadata"]["ownerReferences"][0]["uid"] == "1234"
    parameters = {p["name"]: p["value"] for p in spec["workflowSpec"]["arguments"]["parameters"]}
    assert json.loads(parameters["event"])["schedule"]["source"] == "nightly-maintenance"
    with pytest.raises(SourceError, match="not 'schedule'"):
        cron_workflow(example("critical-pod-created"), "ops")


def test_cron_workflow_names_fit_argo() -> None:
    assert cron_workflow_name("a" * 60) == "a" * 52
    assert cron_workflow_name("x" * 51 + "-y") == "x" * 51


def test_debouncer_admits_once_per_object_and_window() -> None:
    now = [100.0]
    debouncer = Debouncer(60, clock=lambda: now[0])
    assert debouncer.admit("pod-a") and not debouncer.admit("pod-a")
    assert debouncer.admit("pod-b")
    now[0] += 59.9
    assert not debouncer.admit("pod-a")
    now[0] += 0.2
    assert debouncer.admit("pod-a")


def test_resource_names_and_object_events() -> None:
    assert parse_resource_name("pods") == ("", "pods")
    assert parse_resource_name("deployments.apps") == ("apps", "deployments")
    obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-1",
            "namespace": "prod",
            "uid": "u-1",
            "managedFields": [{"x": 1}],
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
                "note": "{{ .env.LLM_API_KEY }}",
            },
        },
    }
    event = object_event(example("critical-pod-created"), "created", obj)
    assert event["kubernetes"] == {
        "event": "created",
        "resource": "pods",
        "kind": "Pod",
        "apiVersion": "v1",
        "namespace": "prod",
        "name": "web-1",
        "uid": "u-1",
    }
    assert event["object"]["metadata"]["annotations"] == {"note": "{{ .env.LLM_API_KEY }}"}
    assert "managedFields" not in event["object"]["metadata"]
    assert "managedFields" in obj["metadata"]  # the watched object is not changed
