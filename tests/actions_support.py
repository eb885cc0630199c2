"""Every typed remediation action on every kind it applies to, and the chart's remediator roles
(the ClusterRoles the chart ships in agent-roles.yaml), for the RBAC tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter

from punchingfist.api.actions import ACTIONS, TARGET_KINDS, Action, AnyAction

ROLES = Path(__file__).resolve().parents[1] / "charts/punchingfist/templates/agent-roles.yaml"
REMEDIATOR = "punchingfist-remediator"
NODES = "punchingfist-remediator-nodes"
PARAMETERS: dict[str, dict[str, Any]] = {
    "scale": {"replicas": 2},
    "set-resources": {"container": "app", "limits": {"memory": "256Mi"}},
    "set-image": {"container": "app", "image": "registry.local/app:1.2.3"},
    "rollout-restart": {},
    "rollout-undo": {},
    "patch": {"patch": {"metadata": {"labels": {"fixed-by": "punchingfist"}}}},
    "delete-pod": {},
    "cordon": {},
    "uncordon": {},
}
"""The parameters of one valid action of each name (a name missing here fails `catalog`)."""
_ACTION: TypeAdapter[Any] = TypeAdapter(Action)


def catalog(namespace: str) -> list[AnyAction]:
    """One action of each name on each kind it applies to (`patch`: its default kinds), in
    `namespace` (a Node in none)."""
    missing = set(ACTIONS) - set(PARAMETERS)
    assert not missing, f"no example parameters for action(s) {sorted(missing)}"
    actions = []
    for name in ACTIONS:
        for kind in TARGET_KINDS[name]:
            target = {"kind": kind, "name": f"sample-{kind.lower()}"}
            if kind != "Node":
                target["namespace"] = namespace
            given = {"action": name, "target": target, **PARAMETERS[name]}
            actions.append(_ACTION.validate_python(given))
    return actions


def role_rules(name: str) -> list[dict[str, Any]]:
    """The rules of the chart's ClusterRole `name`."""
    documents = [d for d in yaml.safe_load_all(ROLES.read_text()) if d]
    (role,) = [d for d in documents if d["kind"] == "ClusterRole" and d["metadata"]["name"] == name]
    rules: list[dict[str, Any]] = role["rules"]
    return rules


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """Every (group, resource, verb) the rules allow, spelled out."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }
