"""What the model may ask of kubectl (D12): one typed action, never an argv.

    KubectlCall
      verb        get | describe | logs | events | top | rollout-history | rollout-status
                  (writes, gated) rollout-restart | rollout-undo | scale | delete | set-resources
      namespace   always given; the step's allowed namespaces are checked when it runs
      resource, name, label_selector, field_selector, container, previous, since, tail,
      output, revision, replicas, limits, requests      each only where its verb uses it

Every value is checked by pattern here, so a bad call is a validation error the model reads
and corrects: no value can start with `-`, name a file, a URL or a server, and Secrets cannot
be named in any spelling (`secret`, `secrets.v1`, `all`, ...). `kubectl.argv` builds the
command from a valid call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from punchingfist.api.workflows import KubectlRead, KubectlWrite

RESOURCE_PATTERN = r"^[a-z][a-z0-9-]{0,62}(\.[a-z0-9][a-z0-9-]{0,62}){0,5}$"
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
NAMESPACE_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
LABEL_SELECTOR_PATTERN = r"^[A-Za-z0-9!][A-Za-z0-9=!,._/() -]{0,299}$"
_FIELD_TERM = r"[A-Za-z][A-Za-z0-9._]{0,99}(=|==|!=)[A-Za-z0-9._:/-]{0,253}"
FIELD_SELECTOR_PATTERN = rf"^{_FIELD_TERM}(,{_FIELD_TERM}){{0,9}}$"
SINCE_PATTERN = r"^[1-9][0-9]{0,4}[smh]$"
QUANTITY_PATTERN = r"^[0-9]{1,6}(\.[0-9]{1,3})?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$"
MAX_TAIL = 2000
DEFAULT_TAIL = 200

_NEVER = {"secret", "secrets", "all"}
"""Resource types never read: Secrets in any spelling, and `all` (which would list them)."""
_WORKLOADS = (
    "deployment",
    "deployments",
    "deploy",
    "statefulset",
    "statefulsets",
    "sts",
    "daemonset",
    "daemonsets",
    "ds",
)
_PODS = ("pod", "pods", "po")


@dataclass(frozen=True)
class Action:
    """One verb: the kubectl words it runs, the fields it needs and may take, its resources."""

    words: tuple[str, ...]
    required: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()
    resources: tuple[str, ...] | None = None
    """The resource types it accepts; None: any readable type."""
    writes: bool = False


def _action(words: str, required: str, optional: str = "", **rest: Any) -> Action:
    return Action(
        tuple(words.split()), frozenset(required.split()), frozenset(optional.split()), **rest
    )


_LOGS = "name resource label_selector container previous since tail"
_SCALABLE = (*_WORKLOADS[:6], "replicaset", "replicasets", "rs")
ACTIONS: dict[str, Action] = {
    "get": _action("get", "resource", "name label_selector field_selector output"),
    "describe": _action("describe", "resource", "name label_selector"),
    "logs": _action("logs", "", _LOGS, resources=(*_PODS, *_WORKLOADS, "job", "jobs")),
    "events": _action("get events", "", "name field_selector"),
    "top": _action("top", "resource", "name label_selector", resources=(*_PODS, "node", "nodes")),
    "rollout-history": _action(
        "rollout history", "resource name", "revision", resources=_WORKLOADS
    ),
    "rollout-status": _action("rollout status", "resource name", resources=_WORKLOADS),
    "rollout-restart": _action(
        "rollout restart", "resource name", resources=_WORKLOADS, writes=True
    ),
    "rollout-undo": _action(
        "rollout undo", "resource name", "revision", resources=_WORKLOADS, writes=True
    ),
    "scale": _action("scale", "resource name replicas", resources=_SCALABLE, writes=True),
    "delete": _action("delete", "resource name", resources=_PODS, writes=True),
    "set-resources": _action(
        "set resources",
        "resource name",
        "container limits requests",
        resources=_WORKLOADS[:6],
        writes=True,
    ),
}
_ARGUMENTS = (
    "resource",
    "name",
    "label_selector",
    "field_selector",
    "container",
    "previous",
    "since",
    "tail",
    "output",
    "revision",
    "replicas",
    "limits",
    "requests",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Amounts(_Strict):
    """CPU and memory for set-resources, as Kubernetes quantities (`250m`, `1Gi`)."""

    cpu: Annotated[str, Field(pattern=QUANTITY_PATTERN)] | None = None
    memory: Annotated[str, Field(pattern=QUANTITY_PATTERN)] | None = None

    @model_validator(mode="after")
    def _something(self) -> Amounts:
        if self.cpu is None and self.memory is None:
            raise ValueError("give cpu, memory or both")
        return self


class KubectlCall(_Strict):
    """Ask kubectl one thing. Give `verb` and `namespace`, then only the fields that verb uses:
    get (resource; name, label_selector, field_selector, output), describe (resource; name,
    label_selector), logs (name of a pod, or resource+name of a workload, or label_selector;
    container, previous, since, tail), events (name of the object; field_selector), top
    (resource pod or node; name, label_selector), rollout-history (resource, name; revision),
    rollout-status (resource, name). Behind an approved gate only: rollout-restart and
    rollout-undo (resource, name; revision), scale (resource, name, replicas), delete (resource
    pod, name), set-resources (resource, name; container, limits, requests)."""

    tool: Literal["kubectl"]
    verb: KubectlRead | KubectlWrite
    namespace: Annotated[str, Field(pattern=NAMESPACE_PATTERN)] = Field(
        description="The namespace, always given, e.g. production."
    )
    resource: Annotated[str, Field(pattern=RESOURCE_PATTERN)] | None = Field(
        default=None, description="A resource type, e.g. pods, deployment, svc, events."
    )
    name: Annotated[str, Field(pattern=NAME_PATTERN)] | None = Field(
        default=None, description="One object's name, e.g. my-app-pod-xyz."
    )
    label_selector: Annotated[str, Field(pattern=LABEL_SELECTOR_PATTERN)] | None = Field(
        default=None, description="e.g. app=payment-service,tier!=cache"
    )
    field_selector: Annotated[str, Field(pattern=FIELD_SELECTOR_PATTERN)] | None = Field(
        default=None, description="e.g. status.phase!=Running or type=Warning"
    )
    container: Annotated[str, Field(pattern=NAMESPACE_PATTERN)] | None = None
    previous: bool | None = Field(
        default=None, description="logs: the previous (crashed) container's logs."
    )
    since: Annotated[str, Field(pattern=SINCE_PATTERN)] | None = Field(
        default=None, description="logs: only this recent, e.g. 30s, 15m, 2h."
    )
    tail: Annotated[int, Field(ge=1, le=MAX_TAIL)] | None = Field(
        default=None, description=f"logs: the last lines (default {DEFAULT_TAIL})."
    )
    output: Literal["wide", "yaml", "json", "name"] | None = None
    revision: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    replicas: Annotated[int, Field(ge=0, le=100)] | None = None
    limits: Amounts | None = None
    requests: Amounts | None = None

    @field_validator("resource")
    @classmethod
    def _readable(cls, value: str | None) -> str | None:
        if value is not None and value.split(".")[0] in _NEVER:
            raise ValueError(
                "Secrets are never readable, and `all` would include them: name the resource "
                "types you need, e.g. pods, deployments, configmaps"
            )
        return value

    @model_validator(mode="after")
    def _fits_the_verb(self) -> KubectlCall:
        action = ACTIONS[self.verb]
        given = {field for field in _ARGUMENTS if getattr(self, field) is not None}
        for field in sorted(given - action.required - action.optional):
            users = [verb for verb, a in ACTIONS.items() if field in a.required | a.optional]
            raise ValueError(
                f"`{field}` is not used by verb {self.verb}; it is for {', '.join(users)}"
            )
        for field in sorted(action.required - given):
            raise ValueError(f"verb {self.verb} needs `{field}`")
        if action.resources and self.resource and self.resource not in action.resources:
            raise ValueError(f"verb {self.verb} takes resource {' or '.join(action.resources)}")
        if self.verb == "logs":
            if (self.name is None) == (self.label_selector is None):
                raise ValueError("logs needs either `name` (a pod) or `label_selector`")
            if self.resource is not None and self.name is None:
                raise ValueError("logs with a `resource` needs its `name`")
        if self.verb == "set-resources" and self.limits is None and self.requests is None:
            raise ValueError("set-resources needs `limits`, `requests` or both")
        return self


class KubectlReadCall(KubectlCall):
    """Ask kubectl one thing (read only: this step is not behind an approved gate, so no verb
    that changes the cluster exists here; propose a fix as the final answer's `fix`). Give
    `verb` and `namespace`, then only the fields that verb uses: get (resource; name,
    label_selector, field_selector, output), describe (resource; name, label_selector), logs
    (name of a pod, or resource+name of a workload, or label_selector; container, previous,
    since, tail), events (name of the object; field_selector), top (resource pod or node; name,
    label_selector), rollout-history (resource, name; revision), rollout-status (resource,
    name)."""

    verb: KubectlRead
