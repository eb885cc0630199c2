"""Small builders of resources for tests."""

from __future__ import annotations

from typing import Any

from punchingfist.api import Sink, Workflow, parse_resource


def make_workflow(steps: list[dict[str, Any]], name: str = "wf", **spec: Any) -> Workflow:
    resource = parse_resource(
        {
            "apiVersion": "punchingfist.io/v1alpha1",
            "kind": "Workflow",
            "metadata": {"name": name},
            "spec": {"steps": steps, **spec},
        }
    )
    assert isinstance(resource, Workflow)
    return resource


def make_sink(name: str, type_: str, config: dict[str, Any]) -> Sink:
    resource = parse_resource(
        {
            "apiVersion": "punchingfist.io/v1alpha1",
            "kind": "Sink",
            "metadata": {"name": name},
            "spec": {"type": type_, "config": config},
        }
    )
    assert isinstance(resource, Sink)
    return resource
