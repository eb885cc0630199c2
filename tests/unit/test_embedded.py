"""Embedded mode's choices: which model, which secrets, which event; the replay model."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from punchingfist.api.runspec import LLMSettings
from punchingfist.cli.run import compile_one, pick_workflow
from punchingfist.errors import PunchingFistError
from punchingfist.executors.setup import (
    SCENARIOS,
    choose_model,
    event_parameters,
    gather_secrets,
    matching_scenarios,
)
from punchingfist.runtime.agent.decisions import decision_model
from punchingfist.runtime.agent.llm import LLMError, with_overrides
from punchingfist.runtime.agent.replay import LABEL, REPLAY_ENV, ReplayClient
from tests.conftest import EXAMPLES, load_folder

CRASH = json.loads((EXAMPLES / "alerts" / "pod-crashlooping.json").read_text())


def compiled(name: str) -> Any:
    resources = [*load_folder("workflows"), *load_folder("sinks"), *load_folder("operatorconfigs")]
    resources = [r for r in resources if r.kind != "OperatorConfig" or r.name == "punchingfist"]
    return compile_one(resources, pick_workflow(resources, name))


def test_event_parameters_from_a_payload_or_an_event() -> None:
    parameters = event_parameters(CRASH)
    event = json.loads(parameters["event"])
    assert event["alert"]["alertname"] == "PodCrashLooping"
    assert parameters["fingerprint"] == CRASH["alerts"][0]["fingerprint"]
    assert event_parameters(event)["event"] == parameters["event"]
    with pytest.raises(PunchingFistError, match="has 1 alert"):
        event_parameters(CRASH, alert=3)
    with pytest.raises(PunchingFistError, match="expected an Alertmanager webhook payload"):
        event_parameters({"hello": "world"})


def test_without_any_model_the_matching_scenarios_are_replayed_where_allowed() -> None:
    workflow = compiled("alert-triage-workflow")
    event = json.loads(event_parameters(CRASH)["event"])
    choice = choose_model(workflow.manifest, event, {}, probe=False, replay_fallback=True)
    assert choice.replayed and choice.label.startswith(LABEL)
    files = choice.environ[REPLAY_ENV].split(os.pathsep)
    assert {Path(f).parent.name for f in files} == {"oom-crash-loop", "crash-loop-triage"}
    other = {"alert": {"alertname": "NoRecordingForThis", "labels": {}}}
    with pytest.raises(PunchingFistError, match="no model to run the agent steps"):
        choose_model(workflow.manifest, other, {}, probe=False, replay_fallback=True)


def test_serve_never_replays_unless_told_to() -> None:
    """`serve` (the local executor's default): no model is an error naming --replay."""
    workflow = compiled("alert-triage-workflow")
    event = json.loads(event_parameters(CRASH)["event"])
    with pytest.raises(PunchingFistError, match=r"no model to run .* --replay SCENARIO_DIR"):
        choose_model(workflow.manifest, event, {}, probe=False)
    told = choose_model(
        workflow.manifest, event, {}, replay=str(SCENARIOS / "oom-crash-loop"), probe=False
    )
    assert told.replayed and told.label == f"{LABEL} (oom-crash-loop)"


def test_flags_env_and_hosted_keys_come_before_a_replay() -> None:
    manifest = compiled("alert-triage-workflow").manifest
    event = json.loads(event_parameters(CRASH)["event"])
    flag = choose_model(
        manifest, event, {}, endpoint="http://127.0.0.1:9/v1", model="m", probe=False
    )
    assert flag.environ == {"PF_LLM_ENDPOINT": "http://127.0.0.1:9/v1", "PF_LLM_MODEL": "m"}
    env = choose_model(manifest, event, {"PUNCHINGFIST_LLM_ENDPOINT": "http://h:1"}, probe=False)
    assert env.environ["PF_LLM_ENDPOINT"] == "http://h:1" and not env.replayed
    replay = choose_model(
        manifest,
        event,
        {},
        replay=str(SCENARIOS / "api-latency"),
        endpoint="http://ignored",
        probe=False,
    )
    assert replay.replayed and replay.environ[REPLAY_ENV].endswith("api-latency/scenario.yaml")
    with pytest.raises(PunchingFistError, match=r"no scenario\.yaml"):
        choose_model(manifest, event, {}, replay="/nonexistent", probe=False)
    fallback = choose_model(
        compiled("alert-triage").manifest, event, {}, probe=False, replay_fallback=True
    )
    assert fallback.replayed


def test_a_workflow_without_agent_steps_needs_no_model() -> None:
    cli_only = {"spec": {"templates": [{"name": "t", "container": {"env": []}}]}}
    choice = choose_model(cli_only, {}, {}, probe=False)
    assert choice.environ == {} and "no model needed" in choice.label


def test_endpoint_overrides_reach_the_runtime_settings() -> None:
    settings = LLMSettings(provider="openai", type="openai", model="gpt-4o")
    assert with_overrides(settings, {}) is settings
    changed = with_overrides(settings, {"PF_LLM_ENDPOINT": "http://x:1", "PF_LLM_MODEL": "q"})
    assert (changed.endpoint, changed.model, changed.type) == (
        "http://x:1",
        "q",
        "openai-compatible",
    )


def test_secrets_come_from_documents_then_files_then_the_environment(tmp_path: Path) -> None:
    manifest = {
        "spec": {
            "templates": [
                {
                    "container": {
                        "env": [
                            {
                                "name": "SLACK_BOT_TOKEN",
                                "valueFrom": {
                                    "secretKeyRef": {"name": "slack", "key": "bot-token"}
                                },
                            },
                            {
                                "name": "LLM_API_KEY",
                                "valueFrom": {"secretKeyRef": {"name": "llm", "key": "key"}},
                            },
                            {
                                "name": "WEBHOOK_TOKEN",
                                "valueFrom": {"secretKeyRef": {"name": "hook", "key": "t"}},
                            },
                        ]
                    }
                }
            ]
        }
    }
    (tmp_path / "slack").mkdir()
    (tmp_path / "slack" / "bot-token").write_text("xoxb-from-file\n")
    documents = [{"kind": "Secret", "metadata": {"name": "hook"}, "stringData": {"t": "doc"}}]
    environ = {"SLACK_BOT_TOKEN": "xoxb-env", "LLM_API_KEY": "sk-env", "WEBHOOK_TOKEN": "env"}
    secrets = gather_secrets(manifest, documents, environ, tmp_path)
    assert secrets == {"slack/bot-token": "xoxb-from-file", "llm/key": "sk-env", "hook/t": "doc"}
    assert gather_secrets(manifest, [], {}, None) == {}


def test_the_replay_picks_the_scenario_that_fits_the_steps_tools() -> None:
    both = os.pathsep.join(
        str(p) for p in (SCENARIOS / "crash-loop-triage", SCENARIOS / "oom-crash-loop")
    )
    assert ReplayClient(both, frozenset({"kubectl", "promql"})).path.endswith("oom-crash-loop")
    assert ReplayClient(both, frozenset({"kubectl", "curl"})).path.endswith("crash-loop-triage")
    client = ReplayClient(str(SCENARIOS / "crash-loop-triage"), frozenset({"kubectl", "curl"}))
    assert client.model == f"{LABEL} (crash-loop-triage)"
    model = decision_model(("kubectl", "curl"), (), final_only=False)
    first = client.decide(model, [])
    assert first.action.kind == "tool_calls" and len(first.action.calls) == 2
    assert client.decide(model, []).action.kind == "final_answer"
    with pytest.raises(LLMError, match="no more recorded turns"):
        client.decide(model, [])
    mismatch = ReplayClient(str(SCENARIOS / "oom-crash-loop"), frozenset({"kubectl", "curl"}))
    mismatch.decide(model, [])
    with pytest.raises(LLMError, match="does not fit this step's tools"):
        mismatch.decide(model, [])


def test_a_broken_scenario_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "scenario.yaml").write_text(yaml.safe_dump({"alert": {}}))
    with pytest.raises(LLMError, match="has no `turns` list"):
        ReplayClient(str(tmp_path))
    with pytest.raises(LLMError, match="cannot read the replay scenario"):
        ReplayClient(str(tmp_path / "missing"))


def test_scenarios_are_found_by_alertname() -> None:
    found = matching_scenarios({"alert": {"alertname": "PodCrashLooping"}})
    assert [p.name for p in found] == ["crash-loop-triage", "oom-crash-loop"]
    assert matching_scenarios({"alert": {"labels": {"alertname": "Nope"}}}) == []
