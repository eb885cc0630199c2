"""The CRD spec models: every example loads, mistakes are named by field path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from punchingfist.api import (
    AgentStep,
    ConditionalStep,
    OperatorConfig,
    Sink,
    Source,
    Workflow,
    load_resources,
    parse_resource,
)
from punchingfist.errors import InvalidInput, InvalidResource

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def workflow(steps: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "punchingfist.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "wf"},
        "spec": {"steps": steps, **spec},
    }


def problems(body: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(InvalidResource) as caught:
        parse_resource(body)
    return caught.value.problems


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*/*.yaml")), ids=lambda p: p.name)
def test_every_example_loads(path: Path) -> None:
    (resource,) = load_resources(path.read_text(), origin=str(path))
    assert resource.name == path.stem


def test_examples_cover_every_type() -> None:
    resources = [r for p in EXAMPLES.glob("*/*.yaml") for r in load_resources(p.read_text())]
    source_types = {r.spec.type for r in resources if isinstance(r, Source)}
    sink_types = {r.spec.type for r in resources if isinstance(r, Sink)}
    step_types = {s.type for r in resources if isinstance(r, Workflow) for s in r.spec.steps}
    assert source_types == {"webhook", "chat", "schedule", "api", "kubernetes"}
    assert sink_types >= {"slack", "alertmanager", "prometheus", "jira", "pagerduty", "workflow"}
    assert step_types == {"cli", "agent", "conditional", "remediation"}
    assert any(isinstance(r, OperatorConfig) and r.spec.secrets for r in resources)


def test_design_document_workflow_reads_as_written() -> None:
    text = (EXAMPLES / "workflows" / "agent-alert-investigation.yaml").read_text()
    (wf,) = load_resources(text)
    assert isinstance(wf, Workflow)
    investigate = wf.spec.steps[1]
    assert isinstance(investigate, AgentStep)
    assert [t.name for t in investigate.tools] == ["kubectl", "promql", "curl", "debug-pod"]
    assert investigate.tools[3].command == "/usr/local/bin/debug-pod.sh"
    assert investigate.max_iterations == 15 and investigate.timeout_minutes == 10
    resolution = wf.spec.steps[2]
    assert isinstance(resolution, ConditionalStep)
    assert resolution.gated and resolution.action.max_iterations == 5  # type: ignore[union-attr]
    assert [s.name for s in wf.spec.sinks] == [
        "slack-investigation-results",
        "alertmanager-annotation",
        "pagerduty-escalation",
    ]
    assert wf.spec.sinks[2].condition == "{{ not .outputs.auto_fixed }}"
    assert wf.spec.runtime.llm_config is not None
    assert wf.spec.runtime.llm_config.model == "llama-3.1-70b"


def test_unknown_field_is_named_with_its_path_and_a_suggestion() -> None:
    body = workflow([{"name": "a", "type": "agent", "goal": "g", "maxIteratons": 3}])
    assert problems(body) == [
        (
            "spec.steps[0].maxIteratons",
            "unknown field 'maxIteratons'; did you mean 'maxIterations'?",
        )
    ]


def test_unknown_step_type_names_the_choices() -> None:
    ((path, message),) = problems(workflow([{"name": "a", "type": "shell", "command": "x"}]))
    assert path == "spec.steps[0].type"
    assert "'shell'" in message and "'cli', 'agent', 'conditional'" in message


def test_missing_required_field() -> None:
    assert problems(workflow([{"name": "a", "type": "cli"}])) == [
        ("spec.steps[0].command", "required field is missing")
    ]


def test_rig_config_is_another_name_for_policy() -> None:
    step = {
        "name": "a",
        "type": "agent",
        "goal": "g",
        "rigConfig": {"retryPolicy": {"maxAttempts": 3, "backoff": "exponential"}},
    }
    wf = parse_resource(workflow([step]))
    policy = wf.spec.steps[0].policy
    assert policy is not None and policy.retry_policy is not None
    assert policy.retry_policy.max_attempts == 3
    both = {**step, "policy": {}}
    ((path, message),) = problems(workflow([both]))
    assert path == "spec.steps[0]" and "not both" in message


def test_conditional_needs_exactly_one_action() -> None:
    step = {"name": "c", "type": "conditional", "condition": "{{ true }}"}
    ((_, message),) = problems(workflow([step]))
    assert "exactly one action" in message


def test_duplicate_step_names_are_rejected() -> None:
    steps = [{"name": "a", "type": "cli", "command": "x"}] * 2
    ((path, message),) = problems(workflow(steps))
    assert path == "spec" and "'a' is used twice" in message


@pytest.mark.parametrize("name", ["Upper", "under_score", "-lead", "x" * 41])
def test_step_names_must_be_dns_labels(name: str) -> None:
    ((path, _),) = problems(workflow([{"name": name, "type": "cli", "command": "x"}]))
    assert path == "spec.steps[0].name"


def test_tools_and_sinks_accept_names_or_objects() -> None:
    wf = parse_resource(
        workflow(
            [{"name": "a", "type": "agent", "goal": "g", "tools": ["kubectl", {"name": "curl"}]}],
            sinks=["one", {"name": "two", "condition": "{{ true }}"}],
        )
    )
    assert [t.name for t in wf.spec.steps[0].tools] == ["kubectl", "curl"]
    assert [(s.name, s.condition) for s in wf.spec.sinks] == [("one", None), ("two", "{{ true }}")]


def test_reserved_environment_names_are_refused() -> None:
    body = workflow(
        [{"name": "a", "type": "cli", "command": "x"}], runtime={"environment": {"PF_SPEC": "x"}}
    )
    ((path, message),) = problems(body)
    assert path == "spec.runtime.environment" and "reserved" in message


def test_source_config_follows_its_type() -> None:
    body = {
        "apiVersion": "punchingfist.io/v1alpha1",
        "kind": "Source",
        "metadata": {"name": "s"},
        "spec": {"type": "schedule", "config": {"cron": "daily"}, "triggerWorkflow": "wf"},
    }
    ((path, message),) = problems(body)
    assert path == "spec.config.cron" and "five fields" in message
    body["spec"]["config"] = {"cron": "0 2 * * *", "path": "/x"}
    ((path, message),) = problems(body)
    assert path == "spec.config.path" and message.startswith("unknown field 'path'")


def test_wrong_api_version_and_kind() -> None:
    body = workflow([{"name": "a", "type": "cli", "command": "x"}])
    assert problems({**body, "apiVersion": "punchingfist.io/v1"})[0][0] == "apiVersion"
    assert problems({**body, "kind": "Workflw"})[0][0] == "kind"


def test_every_bad_document_is_reported() -> None:
    good = workflow([{"name": "a", "type": "cli", "command": "x"}])
    bad1 = workflow([{"name": "a", "type": "cli"}])
    bad2 = {**good, "kind": "Nope"}
    text = yaml.safe_dump_all([good, bad1, bad2])
    with pytest.raises(InvalidInput) as caught:
        load_resources(text, origin="f.yaml")
    assert len(caught.value.errors) == 2


def test_yaml_syntax_error_names_line_and_column() -> None:
    with pytest.raises(InvalidResource) as caught:
        load_resources("kind: Workflow\n  bad: [\n", origin="f.yaml")
    assert str(caught.value).startswith("f.yaml:")
    assert "YAML syntax error" in str(caught.value)


def test_pagerduty_needs_a_routing_key() -> None:
    body = {
        "apiVersion": "punchingfist.io/v1alpha1",
        "kind": "Sink",
        "metadata": {"name": "pd"},
        "spec": {"type": "pagerduty", "config": {"action": "trigger"}},
    }
    ((path, message),) = problems(body)
    assert path == "spec.config" and "routingKeySecret" in message


def test_operator_config_secret_roles_are_checked() -> None:
    body = {
        "apiVersion": "punchingfist.io/v1alpha1",
        "kind": "OperatorConfig",
        "metadata": {"name": "c"},
        "spec": {"secrets": {"llmKey": {"secretRef": "s", "key": "k"}}},
    }
    ((path, message),) = problems(body)
    assert path == "spec" and "'llmKey'" in message and "llmApiKey" in message
