"""The chart's remediator roles grant exactly what the typed actions need (#25): every request
`required_access` says previewing, applying, checking and rolling back an action makes (the
same list the preview asks RBAC about), and nothing more."""

from __future__ import annotations

from punchingfist.api.actions import ACTIONS, TARGET_KINDS, Access, required_access
from tests.actions_support import NODES, REMEDIATOR, catalog, grants, role_rules

NAMESPACE = "shop"


def _needed(cluster_scope: bool) -> set[tuple[str, str, str]]:
    return {
        (access.group, access.resource, access.verb)
        for action in catalog(NAMESPACE)
        for access in required_access(action)
        if (access.namespace is None) == cluster_scope
    }


def test_the_catalog_has_every_action_on_every_kind_it_applies_to() -> None:
    actions = catalog(NAMESPACE)
    assert {a.action for a in actions} == set(ACTIONS)
    assert len(actions) == sum(len(TARGET_KINDS[name]) for name in ACTIONS)


def test_every_request_of_every_action_is_granted_by_the_chart() -> None:
    remediator, nodes = grants(role_rules(REMEDIATOR)), grants(role_rules(NODES))
    missing = []
    for action in catalog(NAMESPACE):
        for access in required_access(action):
            # A namespaced request is granted by the namespaced binding of the remediator role,
            # a cluster-scoped one (a Node) only by the cluster-wide node role.
            held = nodes if access.namespace is None else remediator
            if (access.group, access.resource, access.verb) not in held:
                missing.append(f"{action.action} of a {action.target.kind}: {access}")
    assert missing == []


def test_the_chart_grants_nothing_the_actions_do_not_need() -> None:
    assert grants(role_rules(REMEDIATOR)) == _needed(cluster_scope=False)
    assert grants(role_rules(NODES)) == _needed(cluster_scope=True)


def test_least_privilege_holds() -> None:
    remediator, nodes = grants(role_rules(REMEDIATOR)), grants(role_rules(NODES))
    assert nodes == {("", "nodes", "get"), ("", "nodes", "patch")}
    everything = remediator | nodes
    assert {r for _, r, v in everything if v == "delete"} == {"pods"}
    assert not {v for _, _, v in everything} & {"create", "update", "deletecollection", "*"}
    assert not {r for _, r, _ in everything} & {"secrets", "*", "deployments/scale"}
    assert "nodes" not in {r for _, r, _ in remediator}, "bound per namespace: no effect"


def test_the_requests_of_the_actions() -> None:
    def names(action: dict[str, object]) -> list[str]:
        (found,) = [
            a
            for a in catalog(NAMESPACE)
            if a.action == action["action"] and a.target.kind == action["kind"]
        ]
        return [str(access) for access in required_access(found)]

    assert names({"action": "rollout-undo", "kind": "Deployment"}) == [
        "get deployments.apps/sample-deployment in shop",
        "patch deployments.apps/sample-deployment in shop",
        "list replicasets.apps in shop",
        "list deployments.apps in shop",
        "watch deployments.apps in shop",
        "list pods in shop",
    ]
    assert names({"action": "set-image", "kind": "DaemonSet"})[1] == (
        "patch daemonsets.apps/sample-daemonset in shop"
    )
    assert names({"action": "delete-pod", "kind": "Pod"}) == [
        "get pods/sample-pod in shop",
        "delete pods/sample-pod in shop",
        "get replicasets.apps in shop",
        "get statefulsets.apps in shop",
        "get daemonsets.apps in shop",
        "list pods in shop",
    ]
    assert names({"action": "cordon", "kind": "Node"}) == [
        "get nodes/sample-node",
        "patch nodes/sample-node",
    ]
    assert names({"action": "patch", "kind": "ConfigMap"}) == [
        "get configmaps/sample-configmap in shop",
        "patch configmaps/sample-configmap in shop",
    ]
    assert Access("apps", "deployments", "list", "shop").object() == "deployments.apps"
