"""The final answer proposes a fix as one typed action (#25): its schema, its validation, and the
command derived from it (the model never writes the command that a fix runs)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from instructor import openai_schema
from pydantic import ValidationError

from punchingfist.api.actions import ACTIONS, describe
from punchingfist.runtime.agent.decisions import FinalAnswer, decision_model, proposed_fix

WEB = {"kind": "Deployment", "namespace": "shop", "name": "web"}
FIXES: dict[str, dict[str, Any]] = {
    "scale": {"action": "scale", "target": WEB, "replicas": 3},
    "set-resources": {
        "action": "set-resources",
        "target": WEB,
        "container": "app",
        "limits": {"memory": "1Gi"},
        "requests": {"cpu": "250m"},
    },
    "set-image": {"action": "set-image", "target": WEB, "container": "app", "image": "web:1.4.2"},
    "rollout-restart": {"action": "rollout-restart", "target": WEB},
    "rollout-undo": {"action": "rollout-undo", "target": WEB, "revision": 6},
    "patch": {
        "action": "patch",
        "target": {"kind": "Service", "namespace": "auth", "name": "login"},
        "patch_type": "json",
        "patch": [{"op": "replace", "path": "/spec/ports/0/targetPort", "value": 3000}],
    },
    "delete-pod": {"action": "delete-pod", "target": {**WEB, "kind": "Pod", "name": "web-1"}},
    "cordon": {"action": "cordon", "target": {"kind": "Node", "name": "node-3"}},
    "uncordon": {"action": "uncordon", "target": {"kind": "Node", "name": "node-3"}},
}
COMMANDS = {
    "scale": "kubectl scale deployment/web -n shop --replicas=3",
    "set-resources": (
        "kubectl set resources deployment/web -n shop -c app --limits=memory=1Gi "
        "--requests=cpu=250m"
    ),
    "set-image": "kubectl set image deployment/web -n shop app=web:1.4.2",
    "rollout-restart": "kubectl rollout restart deployment/web -n shop",
    "rollout-undo": "kubectl rollout undo deployment/web -n shop --to-revision=6",
    "patch": (
        "kubectl patch service/login -n auth --type=json "
        '-p \'[{"op":"replace","path":"/spec/ports/0/targetPort","value":3000}]\''
    ),
    "delete-pod": "kubectl delete pod/web-1 -n shop",
    "cordon": "kubectl cordon node-3",
    "uncordon": "kubectl uncordon node-3",
}


def answer(**given: Any) -> dict[str, Any]:
    return {
        "kind": "final_answer",
        "summary": "web is OOM-killed.",
        "problem_summary": "Exit code 137.",
        "root_cause": "The memory limit is too low.",
        "can_auto_fix": True,
        "confidence": 0.8,
        "escalation_notes": "none",
        **given,
    }


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


@pytest.mark.parametrize("final_only", [False, True])
def test_the_decision_schema_builds_for_tool_calling_and_json_schema(final_only: bool) -> None:
    decision = decision_model(("kubectl", "promql"), (), final_only)
    tools = openai_schema(decision).openai_schema["parameters"]  # instructor's TOOLS mode
    for schema in (tools, decision.model_json_schema()):  # JSON_SCHEMA mode (Ollama)
        defs = schema["$defs"]
        final = defs["FinalAnswer"]["properties"]
        assert "fix" in final and "fix_command" not in final
        fix_refs = {n["$ref"] for n in _walk(final["fix"]) if "$ref" in n}
        assert len(fix_refs) == len({a for a in ACTIONS if a != "uncordon"})  # one per class
        for node in _walk(schema):
            if "$ref" in node:  # every reference resolves within the one document
                assert node["$ref"].removeprefix("#/$defs/") in defs, node["$ref"]
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, node.get("title")
        assert json.loads(json.dumps(schema)) == schema


@pytest.mark.parametrize("name", ACTIONS)
def test_a_final_answer_with_each_action_validates_and_derives_its_command(name: str) -> None:
    final = FinalAnswer.model_validate(answer(fix=FIXES[name]))
    assert final.fix is not None and final.fix.action == name
    assert final.can_auto_fix is True
    assert final.fix_command == COMMANDS[name]
    shown = proposed_fix(final.model_dump(mode="json"))
    assert shown == f"{describe(final.fix)} ({COMMANDS[name]})"


def test_a_command_the_model_writes_is_never_the_fix() -> None:
    # with an action, the command is the action's, whatever the model wrote beside it
    written = answer(fix=FIXES["scale"], fix_command="kubectl delete namespace shop")
    assert FinalAnswer.model_validate(written).fix_command == COMMANDS["scale"]
    # without one (an answer recorded before fixes were actions), it is text: nothing to apply
    legacy = FinalAnswer.model_validate(answer(fix_command="kubectl delete namespace shop"))
    assert legacy.can_auto_fix is False and legacy.fix is None
    assert proposed_fix(legacy.model_dump()) == "kubectl delete namespace shop"
    assert proposed_fix(answer()) is None


@pytest.mark.parametrize(
    ("fix", "message"),
    [
        ({"action": "delete-namespace", "target": WEB}, "does not match any of the expected tags"),
        ({**FIXES["patch"], "target": {**WEB, "kind": "Secret"}}, "never patched"),
        ({**FIXES["set-image"], "image": "web; rm -rf /"}, "pattern"),
    ],
)
def test_an_action_that_is_not_one_is_refused(fix: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        FinalAnswer.model_validate(answer(fix=fix))
