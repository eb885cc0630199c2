"""Argo variables: the `{{…}}` tags a compiled manifest uses, checked up front and substituted.

Substitution is one pass: a substituted value is never scanned again, so an alert label that
contains `{{ }}` stays literal text (as in Argo).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from punchingfist.engine.expressions import ExpressionError, evaluate_expr, parse_expr, paths
from punchingfist.errors import InvalidManifest, NotSupportedYet

_TAG = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_NAME = r"[A-Za-z0-9_][A-Za-z0-9_-]*"
_WORKFLOW_FIELDS = (
    "name",
    "uid",
    "namespace",
    "status",
    "failures",
    "duration",
    "creationTimestamp",
)
_SHAPES = [
    re.compile(rf"workflow\.(?:{'|'.join(_WORKFLOW_FIELDS)})"),
    re.compile(rf"workflow\.(?:parameters|outputs\.parameters)\.{_NAME}"),
    re.compile(rf"inputs\.parameters\.{_NAME}"),
    re.compile(rf"tasks\.{_NAME}\.outputs\.parameters\.{_NAME}"),
]
_EXPR_ROOTS = frozenset({"workflow", "inputs", "tasks"})


class UnresolvedVariable(InvalidManifest):
    """A `{{…}}` tag has no value here (e.g. the outputs of a task that never ran)."""


def tags(text: str) -> list[str]:
    """The tags of `text`, stripped (`{{ workflow.name }}` -> `workflow.name`)."""
    return [tag.strip() for tag in _TAG.findall(text)]


def check_tag(tag: str, *, where: str) -> None:
    """Refuse a tag the engine cannot resolve, naming it (NotSupportedYet) or its mistake."""
    if tag.startswith("="):
        for path in paths(parse_expr(tag[1:], where=f"{where}: {{{{{tag}}}}}")):
            if path.root not in _EXPR_ROOTS:
                raise NotSupportedYet(f"{where}: variable {path.root!r} in {{{{{tag}}}}}")
        return
    if not any(shape.fullmatch(tag) for shape in _SHAPES):
        raise NotSupportedYet(f"{where}: Argo variable {{{{{tag}}}}}")


@dataclass
class Scope:
    """The values visible to one template: flat Argo names -> strings."""

    values: dict[str, str] = field(default_factory=dict)

    def child(self, extra: Mapping[str, str]) -> Scope:
        return Scope({**self.values, **extra})

    def resolve(self, tag: str, *, where: str) -> str:
        tag = tag.strip()
        if tag.startswith("="):
            node = parse_expr(tag[1:], where=f"{where}: {{{{{tag}}}}}")
            try:
                value = evaluate_expr(node, self._nested(), where=f"{where}: {{{{{tag}}}}}")
            except ExpressionError as error:
                raise UnresolvedVariable(str(error)) from error
            return _text(value, tag, where)
        if tag not in self.values:
            raise UnresolvedVariable(f"{where}: {{{{{tag}}}}} has no value here")
        return self.values[tag]

    def substitute(self, text: str, *, where: str) -> str:
        return _TAG.sub(lambda match: self.resolve(match.group(1), where=where), text)

    def _nested(self) -> dict[str, Any]:
        """The flat names as nested maps, the way Argo's expr environment sees them."""
        root: dict[str, Any] = {}
        for name, value in self.values.items():
            *parents, leaf = name.split(".")
            node = root
            for part in parents:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    break
            else:
                node[leaf] = value
        return root


def _text(value: Any, tag: str, where: str) -> str:
    if value is None:
        raise UnresolvedVariable(f"{where}: {{{{{tag}}}}} evaluated to nil")
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)
