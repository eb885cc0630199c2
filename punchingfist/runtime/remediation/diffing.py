"""The pure half of a remediation: what an object looks like to a person, the diff of two of
its versions, the pod template of an earlier rollout revision, and the verdict of a fix."""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import yaml

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
REVISION = "deployment.kubernetes.io/revision"
TEMPLATE_HASH = "pod-template-hash"
_BOOKKEEPING = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp")
_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
Outcome = Literal["fixed", "not fixed", "made worse"]


def bare(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object without what changes by itself or says nothing to an approver: status,
    managedFields, resourceVersion, generation, uid, creationTimestamp and the
    last-applied annotation."""
    plain = copy.deepcopy(dict(obj))
    plain.pop("status", None)
    metadata = dict(plain.get("metadata") or {})
    for key in _BOOKKEEPING:
        metadata.pop(key, None)
    annotations = dict(metadata.get("annotations") or {})
    annotations.pop(LAST_APPLIED, None)
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    plain["metadata"] = metadata
    return plain


def digest(obj: Mapping[str, Any]) -> str:
    """A hash of the object's content (`bare`): equal when only its status or version moved."""
    text = json.dumps(bare(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def as_yaml(obj: Mapping[str, Any]) -> str:
    return yaml.safe_dump(bare(obj), sort_keys=True, default_flow_style=False)


def diff(before: Mapping[str, Any], after: Mapping[str, Any] | None, name: str) -> str:
    """A unified diff of the object as it is and as it would be (`after` None: removed)."""
    old = as_yaml(before).splitlines(keepends=True)
    new = as_yaml(after).splitlines(keepends=True) if after is not None else []
    lines = difflib.unified_diff(old, new, fromfile=f"{name} (now)", tofile=f"{name} (after)")
    return "".join(lines)


def revision_template(
    replicasets: Iterable[Mapping[str, Any]], current: int, wanted: int | None
) -> tuple[int, dict[str, Any]]:
    """The revision to go back to (`wanted`, else the highest one below `current`) and its pod
    template, read from its ReplicaSet, without the pod-template-hash label the controller
    adds. ValueError when there is no such revision."""
    by_revision: dict[int, Mapping[str, Any]] = {}
    for rs in replicasets:
        annotations = (rs.get("metadata") or {}).get("annotations") or {}
        try:
            by_revision[int(annotations.get(REVISION, ""))] = rs
        except ValueError:
            continue
    if wanted is None:
        earlier = [revision for revision in by_revision if revision < current]
        if not earlier:
            raise ValueError(f"there is no revision before the current one ({current})")
        wanted = max(earlier)
    if wanted == current:
        raise ValueError(f"revision {wanted} is the current one: nothing to go back to")
    if wanted not in by_revision:
        known = ", ".join(str(r) for r in sorted(by_revision)) or "none"
        raise ValueError(f"there is no revision {wanted} (revisions kept: {known})")
    template = copy.deepcopy(dict((by_revision[wanted].get("spec") or {}).get("template") or {}))
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    labels.pop(TEMPLATE_HASH, None)
    template.setdefault("metadata", {})["labels"] = labels
    return wanted, template


def verdict(passed: bool, ready_before: int, ready_after: int, rolled_out: bool) -> Outcome:
    """`fixed` when the post-check passed; `made worse` when it failed and the workload has
    fewer ready replicas than before or its new pods never became Ready; else `not fixed`."""
    if passed:
        return "fixed"
    if ready_after < ready_before or not rolled_out:
        return "made worse"
    return "not fixed"


def expectation_holds(values: list[float], expect: str) -> bool:
    """Whether a PromQL answer meets `expect`: `empty` (no series) or a comparison such as
    `== 0` every value passes (an empty answer passes no comparison)."""
    if expect == "empty":
        return not values
    if not values:
        return False
    for symbol in ("==", "!=", "<=", ">=", "<", ">"):
        if expect.startswith(symbol):
            limit = float(expect[len(symbol) :])
            compare: Callable[[float, float], bool] = _COMPARISONS[symbol]
            return all(compare(value, limit) for value in values)
    raise ValueError(f"expect {expect!r}: write `empty` or a comparison such as `== 0`")
