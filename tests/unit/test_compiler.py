"""The compiler: shape of the Argo manifest, the runtime contract, D2/D3, errors."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
import yaml
from hera.workflows.models import WorkflowTemplate as ArgoWorkflowTemplate

from punchingfist.api import OperatorConfig, Sink, Workflow
from punchingfist.api.runspec import TaskSpec
from punchingfist.compiler import compile_workflow
from punchingfist.compiler.verifying import verify
from punchingfist.errors import CompileError
from punchingfist.runtime.context import build_context
from punchingfist.templating import compile_template
from tests.builders import make_sink, make_workflow


def templates(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in manifest["spec"]["templates"]}


def tasks(manifest: dict[str, Any], dag: str = "main") -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in templates(manifest)[dag]["dag"]["tasks"]}


def env(template: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in template["container"]["env"]}


def spec_of(template: dict[str, Any]) -> TaskSpec:
    return TaskSpec.decode(env(template)["PF_SPEC"])


CLI = {"name": "gather", "type": "cli", "command": 'echo "{{ .source.data.alert.alertname }}"'}
AGENT = {"name": "investigate", "type": "agent", "goal": "look at {{ .steps.gather.result }}"}


def test_examples_compile_validate_against_argo_models_and_verify(
    example_workflows: dict[str, Workflow],
    example_sinks: dict[str, Sink],
    example_config: OperatorConfig,
) -> None:
    assert len(example_workflows) >= 6
    for workflow in example_workflows.values():
        compiled = compile_workflow(workflow, example_sinks, example_config.spec)
        manifest = compiled.manifest
        model = ArgoWorkflowTemplate.model_validate(manifest)
        # Nothing was dropped: every key we emit is a field of Argo v4.0.5's schema.
        assert model.model_dump(by_alias=True, exclude_none=True, mode="json") == manifest
        verify(manifest, resource=workflow.ref)
        assert manifest["metadata"]["name"] == workflow.name


def test_compile_is_deterministic(
    example_workflows: dict[str, Workflow], example_sinks: dict[str, Sink]
) -> None:
    for workflow in example_workflows.values():
        first = yaml.safe_dump(compile_workflow(workflow, example_sinks).manifest)
        second = yaml.safe_dump(compile_workflow(workflow, example_sinks).manifest)
        assert first == second


def test_one_task_and_template_per_step_running_pf_runtime() -> None:
    manifest = compile_workflow(make_workflow([CLI, AGENT])).manifest
    assert list(tasks(manifest)) == ["gather", "investigate"]
    assert tasks(manifest)["investigate"]["depends"] == "gather"
    gather, investigate = templates(manifest)["gather"], templates(manifest)["investigate"]
    assert gather["container"]["command"] == ["pf-runtime", "cli"]
    assert investigate["container"]["command"] == ["pf-runtime", "agent"]
    assert (
        gather["outputs"]["parameters"][0]["valueFrom"]["path"] == "/tmp/punchingfist/result.json"
    )
    # the agent reads gather's result: passed as an argument, delivered as an env var
    argument = tasks(manifest)["investigate"]["arguments"]["parameters"][0]
    assert argument == {
        "name": "result-gather",
        "value": "{{tasks.gather.outputs.parameters.result}}",
    }
    assert env(investigate)["PF_RESULT_GATHER"] == "{{inputs.parameters.result-gather}}"
    assert spec_of(investigate).inputs == ["gather"]
    assert "onExit" not in manifest["spec"]


def test_user_template_text_never_reaches_argo() -> None:
    """D2: the only {{...}} in the manifest is the compiler's wiring; the step travels as data."""
    hostile = {
        "name": "gather",
        "type": "cli",
        "command": "echo {{ .source.data.alert.alertname }} {{workflow.parameters.event}}",
    }
    manifest = compile_workflow(make_workflow([hostile])).manifest
    text = json.dumps(manifest)
    assert ".source.data" not in text
    for tag in re.findall(r"\{\{(.*?)\}\}", text):
        assert re.match(r"^(=?workflow|tasks\.|inputs\.)", tag.strip()), tag
    assert spec_of(templates(manifest)["gather"]).cli is not None
    assert spec_of(templates(manifest)["gather"]).cli.command == hostile["command"]  # type: ignore[union-attr]


def test_environment_values_cannot_smuggle_argo_tags() -> None:
    workflow = make_workflow([CLI], runtime={"environment": {"X": "{{workflow.name}}"}})
    with pytest.raises(CompileError, match=r"spec\.runtime\.environment\.X"):
        compile_workflow(workflow)


def test_conditional_step_with_approval_gate() -> None:
    conditional = {
        "name": "fix",
        "type": "conditional",
        "condition": "{{ .steps.investigate.result.can_auto_fix }}",
        "approvalTimeoutMinutes": 30,
        "agent": {"goal": "fix it", "tools": ["kubectl"], "approvalRequired": True},
    }
    manifest = compile_workflow(make_workflow([CLI, AGENT, conditional])).manifest
    dag = tasks(manifest)
    assert list(dag) == [
        "gather",
        "investigate",
        "fix-condition",
        "fix-approval-request",
        "fix-approval",
        "fix",
    ]
    condition = "'{{tasks.fix-condition.outputs.parameters.condition}}' == 'true'"
    approved = "'{{tasks.fix-approval.outputs.parameters.approved}}' == 'true'"
    assert dag["fix-condition"]["depends"] == "investigate"
    assert dag["fix-approval-request"]["when"] == condition
    assert dag["fix-approval"]["when"] == condition
    assert dag["fix"]["when"] == f"{condition} && {approved}"
    assert dag["fix"]["depends"] == "fix-approval"
    # a failed approval request (chat down) does not block the gate
    assert "fix-approval-request.Failed" in dag["fix-approval"]["depends"]
    gate = templates(manifest)["fix-approval"]
    assert gate["suspend"] == {"duration": "1800"}
    outputs = {p["name"]: p["valueFrom"] for p in gate["outputs"]["parameters"]}
    # the deadline (auto-resume) applies the defaults: no answer means denied
    assert outputs["approved"] == {"default": "false", "supplied": {}}
    assert set(outputs) == {"approved", "approver", "comment"}
    fix = templates(manifest)["fix"]
    assert env(fix)["PF_APPROVED"] == "{{inputs.parameters.approved}}"
    assert spec_of(fix).gated is True
    assert spec_of(templates(manifest)["fix-condition"]).condition == conditional["condition"]
    assert spec_of(templates(manifest)["fix-approval-request"]).approval.gate == "fix-approval"  # type: ignore[union-attr]
    # when-gated outputs have defaults (Argo >= 4.0.7 fails readers of skipped nodes otherwise)
    assert "default" in fix["outputs"]["parameters"][0]["valueFrom"]
    condition_outputs = templates(manifest)["fix-condition"]["outputs"]["parameters"]
    assert condition_outputs[0]["valueFrom"]["default"] == "false"


def test_approval_on_a_plain_step() -> None:
    remediate = {
        "name": "remediate",
        "type": "agent",
        "goal": "fix",
        "approvalRequired": True,
        "serviceAccount": "punchingfist-remediator",
    }
    manifest = compile_workflow(make_workflow([AGENT | {"goal": "g"}, remediate])).manifest
    dag = tasks(manifest)
    assert list(dag) == [
        "investigate",
        "remediate-approval-request",
        "remediate-approval",
        "remediate",
    ]
    assert dag["remediate-approval-request"]["depends"] == "investigate"
    assert dag["remediate"]["when"] == (
        "'{{tasks.remediate-approval.outputs.parameters.approved}}' == 'true'"
    )
    assert templates(manifest)["remediate"]["serviceAccountName"] == "punchingfist-remediator"


def test_step_settings_reach_the_template() -> None:
    step = {
        **AGENT,
        "goal": "g",
        "timeoutMinutes": 10,
        "rigConfig": {
            "retryPolicy": {"maxAttempts": 3, "backoff": "exponential"},
            "safety": {"requireApproval": ["delete", "patch", "scale"], "tokenBudget": 5000},
        },
    }
    manifest = compile_workflow(
        make_workflow(
            [step],
            runtime={
                "serviceAccount": "punchingfist-agent",
                "environment": {"PROMETHEUS_URL": "http://p:9090"},
            },
        )
    ).manifest
    template = templates(manifest)["investigate"]
    assert template["activeDeadlineSeconds"] == 600
    assert template["retryStrategy"] == {
        "backoff": {"cap": "5m", "duration": "10s", "factor": 2},
        "limit": 2,
        "retryPolicy": "OnFailure",
    }
    assert manifest["spec"]["serviceAccountName"] == "punchingfist-agent"
    assert env(template)["PROMETHEUS_URL"] == "http://p:9090"
    agent = spec_of(template).agent
    assert agent is not None
    assert agent.require_approval == ["delete", "patch", "scale"] and agent.token_budget == 5000
    assert spec_of(template).environment == ["PROMETHEUS_URL"]


def test_labels_tie_a_run_to_workflow_source_and_fingerprint() -> None:
    manifest = compile_workflow(make_workflow([CLI])).manifest
    metadata = manifest["spec"]["workflowMetadata"]
    assert metadata["labels"]["punchingfist.io/workflow"] == "wf"
    assert metadata["labelsFrom"] == {
        "punchingfist.io/source": {"expression": "workflow.parameters.source"},
        "punchingfist.io/fingerprint": {"expression": "workflow.parameters.fingerprint"},
    }
    names = [p["name"] for p in manifest["spec"]["arguments"]["parameters"]]
    assert names == ["event", "source", "fingerprint"]
    assert templates(manifest)["gather"]["metadata"]["labels"]["punchingfist.io/step"] == "gather"


def test_sinks_run_in_the_exit_handler_in_parallel_with_conditions() -> None:
    sinks = [
        make_sink("slack", "slack", {"channel": "#ops", "botTokenSecret": {"secretRef": "chat"}}),
        make_sink("pd", "pagerduty", {"routingKey": "service-key"}),
    ]
    workflow = make_workflow(
        [CLI, AGENT],
        outputs=[{"name": "auto_fixed", "value": "{{ .steps.x.success | default false }}"}],
        sinks=["slack", {"name": "pd", "condition": "{{ not .outputs.auto_fixed }}"}],
    )
    with pytest.raises(CompileError, match=r"spec\.outputs\[0\]\.value: there is no step 'x'"):
        compile_workflow(workflow, sinks)
    workflow = make_workflow(
        [CLI, AGENT],
        outputs=[{"name": "auto_fixed", "value": "{{ .steps.investigate.success }}"}],
        sinks=["slack", {"name": "pd", "condition": "{{ not .outputs.auto_fixed }}"}],
    )
    compiled = compile_workflow(workflow, sinks)
    manifest = compiled.manifest
    assert manifest["spec"]["onExit"] == "exit-handler"
    exit_tasks = tasks(manifest, "exit-handler")
    assert list(exit_tasks) == ["pf-outputs", "sink-slack", "sink-pd"]
    assert exit_tasks["sink-slack"]["depends"] == exit_tasks["sink-pd"]["depends"]
    assert "pf-outputs.Failed" in exit_tasks["sink-pd"]["depends"]
    pd = templates(manifest)["sink-pd"]
    assert spec_of(pd).sink.condition == "{{ not .outputs.auto_fixed }}"  # type: ignore[union-attr]
    assert "routingKey" not in spec_of(pd).sink.config  # type: ignore[union-attr]
    assert env(pd)["PF_WORKFLOW_STATUS"] == "{{workflow.status}}"
    # step results reach the exit handler through global outputs, with a default
    argument = exit_tasks["sink-pd"]["arguments"]["parameters"][0]
    assert argument["value"] == "{{=workflow?.outputs?.parameters?.pf_result_gather ?? ''}}"
    # the clear-text routing key moved into a generated Secret, referenced by secretKeyRef
    assert env(pd)["PAGERDUTY_ROUTING_KEY"] == {
        "secretKeyRef": {"key": "sink-pd", "name": "wf-punchingfist"}
    }
    (secret,) = compiled.objects
    assert secret["kind"] == "Secret" and secret["stringData"] == {"sink-pd": "service-key"}
    assert "service-key" not in json.dumps(manifest)
    assert compiled.warnings and "routingKey" in compiled.warnings[0]
    slack = templates(manifest)["sink-slack"]
    assert env(slack)["SLACK_BOT_TOKEN"] == {"secretKeyRef": {"key": "token", "name": "chat"}}


def test_least_privilege_secrets(example_config: OperatorConfig) -> None:
    config = example_config.spec.model_copy(
        update={
            "secrets": {
                "llmApiKey": parse_secret("llm-credentials", "api-key"),
                "prometheusToken": parse_secret("monitoring", "prometheus-token"),
            }
        }
    )
    manifest = compile_workflow(
        make_workflow([CLI, AGENT], runtime={"llmConfig": {"provider": "local"}}), (), config
    ).manifest
    assert "LLM_API_KEY" not in env(templates(manifest)["gather"])
    assert "PROMETHEUS_TOKEN" not in env(templates(manifest)["gather"])
    agent_env = env(templates(manifest)["investigate"])
    assert agent_env["PROMETHEUS_TOKEN"] == {
        "secretKeyRef": {"key": "prometheus-token", "name": "monitoring"}
    }
    assert "LLM_API_KEY" in agent_env
    llm = spec_of(templates(manifest)["investigate"]).agent.llm  # type: ignore[union-attr]
    assert (llm.provider, llm.endpoint, llm.model) == (
        "local",
        "http://llm-service:8080",
        "llama-3.1-70b",
    )


def parse_secret(name: str, key: str) -> Any:
    from punchingfist.api import SecretKeyRef

    return SecretKeyRef(secret_ref=name, key=key)


@pytest.mark.parametrize(
    ("steps", "extra", "field", "message"),
    [
        (
            [CLI, {**AGENT, "goal": "{{ .steps.later.result }}"}, {**CLI, "name": "later"}],
            {},
            "spec.steps[1].goal",
            "step 'later' runs later",
        ),
        (
            [{**AGENT, "goal": "{{ .steps.nope.result }}"}],
            {},
            "spec.steps[0].goal",
            "there is no step 'nope'",
        ),
        (
            [{**CLI, "command": "{{ .steps.gather.result }}"}],
            {},
            "spec.steps[0].command",
            "cannot read its own result",
        ),
        ([{**AGENT, "goal": "{{ .steps.gather.result "}], {}, "spec.steps[0].goal", "never closed"),
        (
            [{**AGENT, "goal": "{{ .alert.name }}"}],
            {},
            "spec.steps[0].goal",
            "unknown variable 'alert'",
        ),
        (
            [{**AGENT, "goal": "g", "tools": ["kubectl", "nmap"]}],
            {},
            "spec.steps[0].tools[1].name",
            "unknown tool 'nmap'",
        ),
        (
            [{**AGENT, "goal": "g", "tools": [{"name": "kubectl", "command": "/bin/sh"}]}],
            {},
            "spec.steps[0].tools[0].command",
            "built-in tool",
        ),
        ([CLI], {"sinks": ["missing"]}, "spec.sinks[0].name", "unknown Sink 'missing'"),
        (
            [CLI],
            {"runtime": {"llmConfig": {"provider": "gemini"}}},
            "spec.runtime.llmConfig.provider",
            "unknown LLM provider 'gemini'",
        ),
        ([{**CLI, "name": "main"}], {}, "spec.steps[0].name", "reserved"),
        (
            [
                {
                    "name": "a",
                    "type": "conditional",
                    "condition": "{{ true }}",
                    "cli": {"command": "x"},
                },
                {**CLI, "name": "a-condition"},
            ],
            {},
            "spec.steps[1].name",
            "already uses",
        ),
    ],
)
def test_compile_errors_name_resource_step_and_field(
    steps: list[dict[str, Any]], extra: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(CompileError) as caught:
        compile_workflow(make_workflow(steps, **extra))
    assert caught.value.resource == "Workflow/wf"
    assert caught.value.field == field
    assert message in caught.value.message


def test_sink_template_reading_an_undeclared_output_is_an_error() -> None:
    sink = make_sink("s", "slack", {"template": "{{ .workflow.outputs.nothing }}"})
    with pytest.raises(CompileError) as caught:
        compile_workflow(make_workflow([CLI], sinks=["s"]), [sink])
    assert caught.value.resource == "Sink/s"
    assert caught.value.field == "spec.config.template"
    assert "no output 'nothing'" in caught.value.message


def test_step_names_are_readable_as_workflow_outputs() -> None:
    """`{{ .workflow.outputs.gather }}` in a sink's message shows what the step `gather` found:
    the step publishes its result as a global output, the sink task is handed it, and the
    sink's context reads it under the step's name."""
    sink = make_sink("s", "slack", {"template": "gather found: {{ .workflow.outputs.gather }}"})
    manifest = compile_workflow(make_workflow([CLI], sinks=["s"]), [sink]).manifest
    (published,) = templates(manifest)["gather"]["outputs"]["parameters"]
    arguments = tasks(manifest, "exit-handler")["sink-s"]["arguments"]["parameters"]
    handed = {p["name"]: p["value"] for p in arguments}["result-gather"]
    assert handed == f"{{{{=workflow?.outputs?.parameters?.{published['globalName']} ?? ''}}}}"
    delivered = templates(manifest)["sink-s"]
    assert env(delivered)["PF_RESULT_GATHER"] == "{{inputs.parameters.result-gather}}"
    result = {
        "step": "gather",
        "kind": "cli",
        "success": True,
        "phase": "Succeeded",
        "result": "HighCPU",
    }
    spec = spec_of(delivered)
    assert spec.sink is not None
    context = build_context(spec, {"PF_RESULT_GATHER": json.dumps(result)})
    message = compile_template(spec.sink.config["template"]).render(context)
    assert message == "gather found: HighCPU"


def test_semantic_check_catches_broken_manifests() -> None:
    manifest = compile_workflow(make_workflow([CLI, AGENT])).manifest
    broken = copy.deepcopy(manifest)
    broken["spec"]["entrypoint"] = "nope"
    with pytest.raises(CompileError, match="entrypoint"):
        verify(broken, resource="Workflow/wf")
    broken = copy.deepcopy(manifest)
    tasks_ = broken["spec"]["templates"][0]["dag"]["tasks"]
    tasks_[0]["depends"] = "investigate"
    with pytest.raises(CompileError, match="cycle"):
        verify(broken, resource="Workflow/wf")
    broken = copy.deepcopy(manifest)
    broken["spec"]["templates"][0]["dag"]["tasks"][1]["template"] = "missing"
    with pytest.raises(CompileError, match="missing template"):
        verify(broken, resource="Workflow/wf")
    broken = copy.deepcopy(manifest)
    broken["spec"]["templates"][0]["dag"]["tasks"][1]["depends"] = "ghost"
    with pytest.raises(CompileError, match="missing task 'ghost'"):
        verify(broken, resource="Workflow/wf")
    broken = copy.deepcopy(manifest)
    broken["spec"]["templates"][1]["container"]["env"][1]["value"] = "{{ .source.data }}"
    with pytest.raises(CompileError, match="user text must never reach Argo"):
        verify(broken, resource="Workflow/wf")
    broken = copy.deepcopy(manifest)
    broken["spec"]["templates"][0]["dag"]["tasks"][1].pop("depends")
    with pytest.raises(CompileError, match="not an ancestor"):
        verify(broken, resource="Workflow/wf")
