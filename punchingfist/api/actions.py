"""Typed remediation actions (#25): what a fix changes, on which object, with which values.

The model proposes a fix as one `Action` (FinalAnswer.fix), never as a command string; a step's
`ActionPolicy` says which actions it may apply, to which kinds and namespaces. Every action but
`delete-pod` is applied as one patch of its target (`change`), so that the same body is first
sent as a server-side dry run (the preview a human approves, with the object's
resourceVersion) and then applied with that resourceVersion as a precondition: an object edited
since the preview is a conflict, never overwritten.

    scale            Deployment | StatefulSet | ReplicaSet   replicas
    set-resources    a workload's container                 limits, requests (cpu, memory)
    set-image        a workload's container                 image
    rollout-restart  Deployment | StatefulSet | DaemonSet   (the restartedAt annotation)
    rollout-undo     Deployment                             revision (default: the previous)
    patch            an allow-listed kind                   strategic merge or JSON patch
    delete-pod       Pod
    cordon, uncordon Node
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NamedTuple, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from punchingfist.api.base import DNSLabel, SpecModel

QUANTITY = r"^[0-9]{1,6}(\.[0-9]{1,3})?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$"
NAME = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
NAMESPACE = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
IMAGE = r"^[a-z0-9][a-z0-9._/:-]{0,250}(@sha256:[a-f0-9]{64})?$"
ActionName = Literal[
    "scale",
    "set-resources",
    "set-image",
    "rollout-restart",
    "rollout-undo",
    "patch",
    "delete-pod",
    "cordon",
    "uncordon",
]
ACTIONS: tuple[str, ...] = ActionName.__args__  # type: ignore[attr-defined]
DEFAULT_ACTIONS: tuple[ActionName, ...] = (
    "scale",
    "set-resources",
    "set-image",
    "rollout-restart",
    "rollout-undo",
    "delete-pod",
)
"""What a remediation step may apply unless its policy says otherwise: `patch`, `cordon` and
`uncordon` are opt-in."""
SCALABLE = ("Deployment", "StatefulSet", "ReplicaSet")
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet")
RESTARTABLE = ("Deployment", "StatefulSet", "DaemonSet")
PATCHABLE = ("Deployment", "StatefulSet", "DaemonSet", "ConfigMap", "Service")
"""The kinds `patch` may change unless the policy lists others."""
TARGET_KINDS: dict[str, tuple[str, ...]] = {
    "scale": SCALABLE,
    "set-resources": WORKLOADS,
    "set-image": WORKLOADS,
    "rollout-restart": RESTARTABLE,
    "rollout-undo": ("Deployment",),
    "patch": PATCHABLE,
    "delete-pod": ("Pod",),
    "cordon": ("Node",),
    "uncordon": ("Node",),
}
"""The kinds each action applies to (`patch`: its default kinds, a policy may list others)."""
NEVER = frozenset(
    {
        "Secret",
        "Namespace",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "PersistentVolume",
        "Node",
    }
)
"""Kinds no action changes through `patch` (a Node only by cordon/uncordon), whatever a policy
says: credentials, access, cluster-wide machinery and storage."""
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
RESOURCES: dict[str, tuple[str, str]] = {
    "Deployment": ("apps", "deployments"),
    "StatefulSet": ("apps", "statefulsets"),
    "DaemonSet": ("apps", "daemonsets"),
    "ReplicaSet": ("apps", "replicasets"),
    "Pod": ("", "pods"),
    "ConfigMap": ("", "configmaps"),
    "Service": ("", "services"),
    "Node": ("", "nodes"),
    "HorizontalPodAutoscaler": ("autoscaling", "horizontalpodautoscalers"),
}
"""The API group and resource of each kind an action may change."""
POD_CONTROLLERS = ("ReplicaSet", "StatefulSet", "DaemonSet")
"""The controllers whose pods delete-pod's check waits to see replaced: delete-pod is offered
only for their pods."""
_KINDS = {k.lower(): k for k in (*WORKLOADS, *PATCHABLE, *NEVER, "Pod", "HorizontalPodAutoscaler")}
_KINDS |= {
    "deploy": "Deployment",
    "deployments": "Deployment",
    "sts": "StatefulSet",
    "statefulsets": "StatefulSet",
    "ds": "DaemonSet",
    "daemonsets": "DaemonSet",
    "rs": "ReplicaSet",
    "replicasets": "ReplicaSet",
    "po": "Pod",
    "pods": "Pod",
    "cm": "ConfigMap",
    "configmaps": "ConfigMap",
    "svc": "Service",
    "services": "Service",
    "hpa": "HorizontalPodAutoscaler",
    "secrets": "Secret",
    "ns": "Namespace",
    "no": "Node",
    "nodes": "Node",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_Strict):
    """The object the action changes."""

    kind: str = Field(description="Its kind: Deployment, StatefulSet, Pod, Node, ...")
    namespace: str | None = Field(
        default=None, pattern=NAMESPACE, description="Its namespace (none for a Node)."
    )
    name: str = Field(pattern=NAME)

    @field_validator("kind")
    @classmethod
    def _known(cls, value: str) -> str:
        kind = _KINDS.get(value.lower())
        if kind is None:
            raise ValueError(f"unknown kind {value!r}; e.g. Deployment, StatefulSet, Pod, Node")
        return kind

    @model_validator(mode="after")
    def _scoped(self) -> Target:
        if self.kind == "Node" and self.namespace is not None:
            raise ValueError("a Node has no namespace")
        if self.kind != "Node" and self.namespace is None:
            raise ValueError(f"a {self.kind} needs its namespace")
        return self

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind.lower()} {where}{self.name}"

    def kubectl(self) -> list[str]:
        """`KIND/NAME` and the namespace flag, for kubectl's argv."""
        namespaced = [f"--namespace={self.namespace}"] if self.namespace else []
        return [*namespaced, f"{self.kind.lower()}/{self.name}"]


class Amounts(_Strict):
    cpu: Annotated[str, Field(pattern=QUANTITY)] | None = None
    memory: Annotated[str, Field(pattern=QUANTITY)] | None = None

    def given(self) -> dict[str, str]:
        return {k: v for k, v in (("cpu", self.cpu), ("memory", self.memory)) if v}


def _kinds(target: Target, kinds: tuple[str, ...], action: str) -> None:
    if target.kind not in kinds:
        raise ValueError(f"{action} applies to {', '.join(kinds)}, not {target.kind}")


class Scale(_Strict):
    """Set a workload's replicas."""

    action: Literal["scale"]
    target: Target
    replicas: int = Field(ge=0, le=1000)

    @model_validator(mode="after")
    def _fits(self) -> Scale:
        _kinds(self.target, TARGET_KINDS[self.action], self.action)
        return self


class SetResources(_Strict):
    """Set a container's resource limits and/or requests."""

    action: Literal["set-resources"]
    target: Target
    container: str = Field(pattern=NAME)
    limits: Amounts | None = None
    requests: Amounts | None = None

    def amounts(self) -> dict[str, dict[str, str]]:
        """The given limits and requests, by name, each without its unset quantities."""
        given = (("limits", self.limits), ("requests", self.requests))
        return {which: a.given() for which, a in given if a is not None and a.given()}

    @model_validator(mode="after")
    def _fits(self) -> SetResources:
        _kinds(self.target, TARGET_KINDS[self.action], self.action)
        if not self.amounts():
            raise ValueError("set-resources needs limits or requests (cpu, memory)")
        return self


class SetImage(_Strict):
    """Set a container's image."""

    action: Literal["set-image"]
    target: Target
    container: str = Field(pattern=NAME)
    image: str = Field(pattern=IMAGE)

    @model_validator(mode="after")
    def _fits(self) -> SetImage:
        _kinds(self.target, TARGET_KINDS[self.action], self.action)
        return self


class RolloutRestart(_Strict):
    """Restart a workload's pods, the way `kubectl rollout restart` does."""

    action: Literal["rollout-restart"]
    target: Target

    @model_validator(mode="after")
    def _fits(self) -> RolloutRestart:
        _kinds(self.target, TARGET_KINDS[self.action], self.action)
        return self


class RolloutUndo(_Strict):
    """Put a Deployment's pod template back to an earlier revision (default: the previous)."""

    action: Literal["rollout-undo"]
    target: Target
    revision: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _fits(self) -> RolloutUndo:
        _kinds(self.target, TARGET_KINDS[self.action], self.action)
        return self


class JsonPatchOp(_Strict):
    op: Literal["add", "remove", "replace", "test"]
    path: str = Field(pattern=r"^(/[^/]*)+$")
    value: Any = None


class Patch(_Strict):
    """Patch an object of an allowed kind: a strategic merge patch (an object) or a JSON patch
    (a list of operations)."""

    action: Literal["patch"]
    target: Target
    patch_type: Literal["strategic", "json"] = "strategic"
    patch: dict[str, Any] | list[JsonPatchOp]

    @model_validator(mode="after")
    def _fits(self) -> Patch:
        if self.target.kind in NEVER:
            raise ValueError(f"a {self.target.kind} is never patched by a remediation")
        if (self.patch_type == "json") != isinstance(self.patch, list):
            raise ValueError("a json patch is a list of operations, a strategic one an object")
        if not self.patch:
            raise ValueError("the patch is empty")
        if isinstance(self.patch, dict) and "metadata" in self.patch:
            touched = set(self.patch["metadata"] or {}) - {"labels", "annotations"}
            if touched:
                raise ValueError(f"a patch may not change metadata {', '.join(sorted(touched))}")
        return self


class DeletePod(_Strict):
    """Delete one pod (its controller makes a new one)."""

    action: Literal["delete-pod"]
    target: Target

    @model_validator(mode="after")
    def _fits(self) -> DeletePod:
        _kinds(self.target, TARGET_KINDS[self.action], self.action)
        return self


class Cordon(_Strict):
    """Mark a Node unschedulable (`cordon`) or schedulable again (`uncordon`)."""

    action: Literal["cordon", "uncordon"]
    target: Target

    @model_validator(mode="after")
    def _fits(self) -> Cordon:
        _kinds(self.target, TARGET_KINDS[self.action], self.action)
        return self


Action = Annotated[
    Union[Scale, SetResources, SetImage, RolloutRestart, RolloutUndo, Patch, DeletePod, Cordon],  # noqa: UP007
    Field(discriminator="action"),
]


class ActionPolicy(SpecModel):
    """Which fixes a remediation step may apply (a Workflow step's `remediation.policy`)."""

    actions: list[ActionName] = Field(default_factory=lambda: list(DEFAULT_ACTIONS))
    """The actions it may apply. Default: scale, set-resources, set-image, rollout-restart,
    rollout-undo, delete-pod (`patch`, `cordon` and `uncordon` must be listed)."""
    patch_kinds: list[str] = Field(default_factory=lambda: list(PATCHABLE))
    """The kinds `patch` may change (never Secrets, Namespaces, RBAC, CRDs, webhooks, PVs)."""
    namespaces: list[DNSLabel] | None = None
    """The namespaces it may change objects in. Default: the step's allowedNamespaces, else
    any the remediator account can."""
    max_replicas: int = Field(default=50, ge=0, le=1000)

    @field_validator("patch_kinds")
    @classmethod
    def _patchable(cls, value: list[str]) -> list[str]:
        kinds = []
        for given in value:
            kind = _KINDS.get(given.lower(), given)
            if kind in NEVER:
                raise ValueError(f"{kind} can never be patched by a remediation")
            kinds.append(kind)
        return kinds


AnyAction = (
    Scale | SetResources | SetImage | RolloutRestart | RolloutUndo | Patch | DeletePod | Cordon
)


def refusal(action: AnyAction, policy: ActionPolicy) -> str | None:
    """Why `policy` does not allow `action`, or None when it does."""
    if action.action not in policy.actions:
        return (
            f"{action.action} is not among this step's actions ({', '.join(policy.actions)}): "
            "add it to remediation.policy.actions to allow it"
        )
    target = action.target
    if policy.namespaces is not None and target.namespace not in policy.namespaces:
        where = target.namespace or "(cluster scope)"
        allowed = ", ".join(policy.namespaces)
        return f"{where} is outside the namespaces this step may change ({allowed})"
    if isinstance(action, Patch) and target.kind not in policy.patch_kinds:
        return f"patch may change {', '.join(policy.patch_kinds)}, not a {target.kind}"
    if isinstance(action, Scale) and action.replicas > policy.max_replicas:
        return (
            f"scale to {action.replicas} is above this step's maxReplicas ({policy.max_replicas})"
        )
    return None


def describe(action: AnyAction) -> str:
    """One line for humans: what changes, on which object."""
    target = action.target
    if isinstance(action, Scale):
        return f"scale {target} to {action.replicas} replicas"
    if isinstance(action, SetResources):
        parts = [
            f"{which} {', '.join(f'{k}={v}' for k, v in values.items())}"
            for which, values in action.amounts().items()
        ]
        return f"set container {action.container} of {target} to {'; '.join(parts)}"
    if isinstance(action, SetImage):
        return f"set container {action.container} of {target} to image {action.image}"
    if isinstance(action, RolloutRestart):
        return f"restart the pods of {target}"
    if isinstance(action, RolloutUndo):
        which = f"revision {action.revision}" if action.revision else "its previous revision"
        return f"roll {target} back to {which}"
    if isinstance(action, Patch):
        return f"{action.patch_type} patch of {target}: {json.dumps(_plain(action.patch))}"
    if isinstance(action, DeletePod):
        return f"delete {target}"
    return f"{action.action} {target}"


def _plain(patch: dict[str, Any] | list[JsonPatchOp]) -> Any:
    if isinstance(patch, list):
        return [op.model_dump(exclude_none=True) for op in patch]
    return patch


def _containers(action: SetResources | SetImage) -> dict[str, Any]:
    container: dict[str, Any] = {"name": action.container}
    if isinstance(action, SetImage):
        container["image"] = action.image
    else:
        resources = action.amounts()
        container["resources"] = resources
    return {"spec": {"template": {"spec": {"containers": [container]}}}}


class Change(_Strict):
    """How an action is applied: a patch of its target (`type` strategic, merge or json), or a
    deletion (`type` delete)."""

    type: Literal["strategic", "merge", "json", "delete"]
    body: Any = None

    def guarded(self, resource_version: str | None) -> Any:
        """The body with `resource_version` as a precondition: the API server answers 409
        Conflict when the object changed since."""
        if resource_version is None or self.type == "delete":
            return self.body
        if self.type == "json":
            test = {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version}
            return [test, *self.body]
        body = dict(self.body)
        metadata = dict(body.get("metadata") or {})
        metadata["resourceVersion"] = resource_version
        return {**body, "metadata": metadata}


def change(action: AnyAction, now: datetime | None = None, template: Any = None) -> Change:
    """The patch (or deletion) that applies `action`. `rollout-undo` needs `template`: the pod
    template of the revision to go back to (read from its ReplicaSet)."""
    if isinstance(action, Scale):
        return Change(type="merge", body={"spec": {"replicas": action.replicas}})
    if isinstance(action, SetResources | SetImage):
        return Change(type="strategic", body=_containers(action))
    if isinstance(action, RolloutRestart):
        stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        annotations = {RESTARTED_AT: stamp}
        return Change(
            type="strategic",
            body={"spec": {"template": {"metadata": {"annotations": annotations}}}},
        )
    if isinstance(action, RolloutUndo):
        if template is None:
            raise ValueError("rollout-undo needs the pod template of the revision to go back to")
        return Change(
            type="json", body=[{"op": "replace", "path": "/spec/template", "value": template}]
        )
    if isinstance(action, Patch):
        if isinstance(action.patch, list):
            return Change(type="json", body=_plain(action.patch))
        return Change(type="strategic", body=action.patch)
    if isinstance(action, DeletePod):
        return Change(type="delete")
    return Change(type="merge", body={"spec": {"unschedulable": action.action == "cordon"}})


def as_command(action: AnyAction) -> str:
    """The kubectl command a human would type for it (shown beside the typed action)."""
    target = action.target
    ns = f" -n {target.namespace}" if target.namespace else ""
    ref = f"{target.kind.lower()}/{target.name}"
    if isinstance(action, Scale):
        return f"kubectl scale {ref}{ns} --replicas={action.replicas}"
    if isinstance(action, SetResources):
        flags = " ".join(
            f"--{which}={','.join(f'{k}={v}' for k, v in values.items())}"
            for which, values in action.amounts().items()
        )
        return f"kubectl set resources {ref}{ns} -c {action.container} {flags}"
    if isinstance(action, SetImage):
        return f"kubectl set image {ref}{ns} {action.container}={action.image}"
    if isinstance(action, RolloutRestart):
        return f"kubectl rollout restart {ref}{ns}"
    if isinstance(action, RolloutUndo):
        to = f" --to-revision={action.revision}" if action.revision else ""
        return f"kubectl rollout undo {ref}{ns}{to}"
    if isinstance(action, Patch):
        body = json.dumps(_plain(action.patch), separators=(",", ":"))
        return f"kubectl patch {ref}{ns} --type={action.patch_type} -p '{body}'"
    if isinstance(action, DeletePod):
        return f"kubectl delete {ref}{ns}"
    return f"kubectl {action.action} {target.name}"


class Rbac(_Strict):
    allowed: bool
    account: str
    """Who would apply it: the remediator's ServiceAccount (`system:serviceaccount:NS:NAME`)."""
    reason: str = ""


class Preview(_Strict):
    """What an approver sees before a fix (the remediation preview task's result `preview`):
    the action, its target, the server-side dry run's diff and what RBAC says. `offered` is
    False when the policy refuses the action, the API server rejects the dry run or RBAC
    denies it: then there is nothing to approve."""

    action: dict[str, Any]
    description: str
    command: str
    """The kubectl command a human would type for the same change (for reading only)."""
    target: str
    resource_version: str | None = None
    """The version of the object the diff was made against: the fix applies only to it."""
    diff: str = ""
    """A unified diff of the object as it is and as it would be (YAML, status and bookkeeping
    fields left out); for delete-pod, the whole object as removed."""
    dry_run: Literal["accepted", "rejected", "not run"] = "not run"
    dry_run_error: str | None = None
    rbac: Rbac | None = None
    refused: str | None = None
    """Why the step's policy refuses the action."""
    offered: bool = False


class Access(NamedTuple):
    """One kind of API request a remediation makes: `verb` on `group`/`resource`, in
    `namespace` (None: cluster scope), on the object `name` (None: any, e.g. a list)."""

    group: str
    resource: str
    verb: str
    namespace: str | None
    name: str | None = None

    def object(self) -> str:
        """`RESOURCE.GROUP[/NAME]` as `kubectl auth can-i` takes it, e.g. `deployments.apps/web`."""
        what = f"{self.resource}.{self.group}" if self.group else self.resource
        return f"{what}/{self.name}" if self.name else what

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"{self.verb} {self.object()}{where}"


def _resource(kind: str) -> tuple[str, str]:
    return RESOURCES.get(kind, ("", kind.lower() + "s"))


def required_access(action: AnyAction) -> list[Access]:
    """Every kind of API request the remediation of `action` makes, as its account: the
    preview (read the target; the server-side dry run needs the change's own verb; rollout-undo
    lists the ReplicaSets to find the revision), the change itself, the default post-check
    (`kubectl rollout status` lists and watches the workload, the pods are listed; delete-pod's
    check reads the pod's controller) and the rollback (the same verb as the change).

    The preview asks RBAC about each of them (a fix its account could apply but not verify is
    not offered), and the chart's `punchingfist-remediator` role grants exactly their union."""
    target = action.target

    def on(kind: str, verb: str, name: str | None = None) -> Access:
        group, resource = _resource(kind)
        return Access(group, resource, verb, target.namespace, name)

    changes = "delete" if isinstance(action, DeletePod) else "patch"
    needed = [on(target.kind, "get", target.name), on(target.kind, changes, target.name)]
    if isinstance(action, RolloutUndo):
        needed.append(on("ReplicaSet", "list"))
    if isinstance(action, DeletePod):
        needed += [*(on(kind, "get") for kind in POD_CONTROLLERS), on("Pod", "list")]
    elif target.kind in WORKLOADS:
        if target.kind != "ReplicaSet":
            needed += [on(target.kind, "list"), on(target.kind, "watch")]
        needed.append(on("Pod", "list"))
    return needed
