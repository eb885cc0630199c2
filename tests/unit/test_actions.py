"""Typed remediation actions: validation, policy, the patch each applies, the preconditions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from punchingfist.api.actions import (
    Action,
    ActionPolicy,
    AnyAction,
    as_command,
    change,
    describe,
    refusal,
)

ACTION: TypeAdapter[Any] = TypeAdapter(Action)
WEB = {"kind": "deployment", "namespace": "shop", "name": "web"}


def action(**given: Any) -> AnyAction:
    parsed: AnyAction = ACTION.validate_python(given)
    return parsed


def test_set_resources_is_a_strategic_patch_of_one_container() -> None:
    fix = action(action="set-resources", target=WEB, container="app", limits={"memory": "256Mi"})
    assert fix.target.kind == "Deployment"
    assert describe(fix) == "set container app of deployment shop/web to limits memory=256Mi"
    assert as_command(fix) == (
        "kubectl set resources deployment/web -n shop -c app --limits=memory=256Mi"
    )
    applied = change(fix)
    assert applied.type == "strategic"
    assert applied.body == {
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "app", "resources": {"limits": {"memory": "256Mi"}}}]
                }
            }
        }
    }
    guarded = applied.guarded("4711")
    assert guarded["metadata"] == {"resourceVersion": "4711"} and "spec" in guarded


def test_each_action_builds_its_change() -> None:
    now = datetime(2026, 12, 3, 4, 5, 6, tzinfo=UTC)
    scale = change(action(action="scale", target=WEB, replicas=3))
    assert (scale.type, scale.body) == ("merge", {"spec": {"replicas": 3}})
    restart = change(action(action="rollout-restart", target=WEB), now=now)
    annotations = restart.body["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"kubectl.kubernetes.io/restartedAt": "2026-12-03T04:05:06Z"}
    image = change(action(action="set-image", target=WEB, container="app", image="web:1.4.2"))
    assert image.body["spec"]["template"]["spec"]["containers"] == [
        {"name": "app", "image": "web:1.4.2"}
    ]
    undo = action(action="rollout-undo", target=WEB, revision=6)
    with pytest.raises(ValueError, match="needs the pod template"):
        change(undo)
    back = change(undo, template={"spec": {"containers": []}})
    assert back.type == "json" and back.body[0]["path"] == "/spec/template"
    assert back.guarded("9")[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "9"}
    pod = {"kind": "pod", "namespace": "shop", "name": "web-1"}
    assert change(action(action="delete-pod", target=pod)).type == "delete"
    node = {"kind": "Node", "name": "n1"}
    assert change(action(action="cordon", target=node)).body == {"spec": {"unschedulable": True}}
    assert change(action(action="uncordon", target=node)).body == {"spec": {"unschedulable": False}}


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            {"action": "scale", "target": {**WEB, "kind": "DaemonSet"}, "replicas": 2},
            "scale applies",
        ),
        ({"action": "delete-pod", "target": WEB}, "delete-pod applies to Pod"),
        ({"action": "set-resources", "target": WEB, "container": "app"}, "needs limits or"),
        (
            {"action": "patch", "target": {**WEB, "kind": "Secret"}, "patch": {"data": {}}},
            "never patched",
        ),
        (
            {"action": "patch", "target": WEB, "patch": {"metadata": {"name": "other"}}},
            "may not change metadata name",
        ),
        (
            {"action": "patch", "target": WEB, "patch_type": "json", "patch": {"a": 1}},
            "a json patch",
        ),
        (
            {"action": "cordon", "target": {"kind": "Node", "namespace": "x", "name": "n"}},
            "no namespace",
        ),
        (
            {"action": "scale", "target": {"kind": "Deployment", "name": "w"}, "replicas": 1},
            "needs its",
        ),
        ({"action": "set-image", "target": WEB, "container": "app", "image": "$(evil)"}, "pattern"),
        ({"action": "rollout-undo", "target": {**WEB, "kind": "StatefulSet"}}, "Deployment"),
        ({"action": "exec", "target": WEB}, "does not match any of the expected tags"),
    ],
)
def test_invalid_actions_say_why(given: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ACTION.validate_python(given)


def test_the_policy_decides_what_may_be_applied() -> None:
    policy = ActionPolicy()
    patch = action(action="patch", target=WEB, patch={"spec": {"paused": False}})
    assert "patch is not among this step's actions" in (refusal(patch, policy) or "")
    allowing = ActionPolicy.model_validate(
        {"actions": ["patch", "scale"], "patchKinds": ["ConfigMap"], "namespaces": ["shop"]}
    )
    assert refusal(patch, allowing) == "patch may change ConfigMap, not a Deployment"
    elsewhere = action(action="scale", target={**WEB, "namespace": "kube-system"}, replicas=1)
    assert "kube-system is outside the namespaces" in (refusal(elsewhere, allowing) or "")
    many = action(action="scale", target=WEB, replicas=200)
    assert "above this step's maxReplicas (50)" in (refusal(many, allowing) or "")
    assert refusal(action(action="scale", target=WEB, replicas=2), allowing) is None
    with pytest.raises(ValidationError, match="Secret can never be patched"):
        ActionPolicy.model_validate({"patchKinds": ["secrets"]})
