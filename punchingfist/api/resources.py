"""Whole custom resources (apiVersion, kind, metadata, spec) and loading them from YAML."""

from __future__ import annotations

import copy
import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from punchingfist.api.base import API_VERSION, ObjectName, ResourceStatus
from punchingfist.api.operatorconfigs import OperatorConfigSpec
from punchingfist.api.sinks import SinkSpec
from punchingfist.api.sources import SourceSpec
from punchingfist.api.workflows import WorkflowSpec
from punchingfist.errors import InvalidInput, InvalidResource, PunchingFistError

SpecT = TypeVar("SpecT")


class Metadata(BaseModel):
    """Object metadata. Only the fields we read are typed; the API server owns the rest."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: ObjectName
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    uid: str | None = None
    generation: int | None = None


@dataclass(frozen=True)
class Resource(Generic[SpecT]):
    """A validated custom resource."""

    kind: ClassVar[str]
    metadata: Metadata
    spec: SpecT

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def ref(self) -> str:
        """How messages name the resource: `Kind/name`."""
        return f"{self.kind}/{self.metadata.name}"


class Source(Resource[Any]):
    kind = "Source"


class Workflow(Resource[WorkflowSpec]):
    kind = "Workflow"


class Sink(Resource[Any]):
    kind = "Sink"


class OperatorConfig(Resource[OperatorConfigSpec]):
    kind = "OperatorConfig"


KINDS: dict[str, tuple[type[Resource[Any]], TypeAdapter[Any]]] = {
    "Source": (Source, TypeAdapter(SourceSpec)),
    "Workflow": (Workflow, TypeAdapter(WorkflowSpec)),
    "Sink": (Sink, TypeAdapter(SinkSpec)),
    "OperatorConfig": (OperatorConfig, TypeAdapter(OperatorConfigSpec)),
}
STATUS_ADAPTER = TypeAdapter(ResourceStatus)


def parse_resource(body: Any, *, origin: str = "") -> Resource[Any]:
    """Validate one resource body (a dict as `kubectl get -o json` prints it)."""
    where = f"{origin}: " if origin else ""
    if not isinstance(body, dict):
        raise InvalidResource(
            f"{where}document", [("", "expected a mapping (a Kubernetes object)")]
        )
    kind = body.get("kind")
    name = body.get("metadata", {}).get("name") if isinstance(body.get("metadata"), dict) else None
    label = f"{where}{kind or '<no kind>'}/{name or '<no name>'}"
    if kind not in KINDS:
        raise InvalidResource(
            label, [("kind", f"expected one of {', '.join(KINDS)}, got {kind!r}")]
        )
    if body.get("apiVersion") != API_VERSION:
        raise InvalidResource(
            label,
            [("apiVersion", f"expected {API_VERSION!r}, got {body.get('apiVersion')!r}")],
        )
    problems: list[tuple[str, str]] = []
    resource_class, adapter = KINDS[kind]
    try:
        metadata = Metadata.model_validate(body.get("metadata"))
    except ValidationError as error:
        problems += format_validation_error(error, body.get("metadata"), prefix="metadata")
    try:
        spec = adapter.validate_python(body.get("spec"))
    except ValidationError as error:
        problems += format_validation_error(error, body.get("spec"), prefix="spec", adapter=adapter)
    unknown = sorted(set(body) - {"apiVersion", "kind", "metadata", "spec", "status"})
    problems += [(key, "unknown top-level field") for key in unknown]
    if problems:
        raise InvalidResource(label, problems)
    return resource_class(metadata=metadata, spec=spec)


def format_validation_error(
    error: ValidationError,
    data: Any,
    *,
    prefix: str,
    adapter: TypeAdapter[Any] | None = None,
) -> list[tuple[str, str]]:
    """Turn pydantic errors into (field path, message) pairs that follow the user's YAML.

    pydantic puts union tags and validator names into error locations; a location element
    that is not a key (or index) of the user's data at that depth is dropped, so the path reads
    like `spec.steps[1].agent.maxIterations`. With the `adapter` that validated `data`, an
    unknown field that an enclosing block accepts (a step's `timeoutMinutes` written inside its
    `agent:` block) is named with the path where it belongs.
    """
    problems: list[tuple[str, str]] = []
    for item in error.errors(include_url=False):
        parts = _data_path(item, data)
        path = prefix + "".join(_step(part) for part in parts)
        if item["type"] in ("union_tag_invalid", "union_tag_not_found"):
            path = f"{path}.type"
        if item["type"] == "extra_forbidden" and adapter is not None:
            found = _belongs_at(adapter, data, parts)
            if found is not None:
                home, already = found
                where = prefix + "".join(_step(part) for part in parts[:-1])
                belongs = prefix + "".join(_step(part) for part in home)
                message = f"unknown field {parts[-1]!r} in {where}; it belongs at {belongs}"
                problems.append((path, message + (", which is set already" if already else "")))
                continue
        problems.append((path, _message(item, _node(data, parts), list(item["loc"]))))
    return problems


def _data_path(item: Any, data: Any) -> list[str | int]:
    """The keys and indices of the user's data that an error's location walks through."""
    parts: list[str | int] = []
    node = data
    loc = list(item["loc"])
    for position, part in enumerate(loc):
        keyed = isinstance(node, dict) and isinstance(part, str) and part in node
        indexed = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if keyed or indexed:
            parts.append(part)
            node = node[part]
        elif item["type"] in ("missing", "extra_forbidden") and position == len(loc) - 1:
            parts.append(str(part))
    return parts


def _node(data: Any, parts: Sequence[str | int]) -> Any:
    """The value at `parts` (the last existing one, for a missing field)."""
    node = data
    for part in parts:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return node
    return node


def _step(part: str | int) -> str:
    return f"[{part}]" if isinstance(part, int) else f".{part}"


def _belongs_at(
    adapter: TypeAdapter[Any], data: Any, parts: Sequence[str | int]
) -> tuple[list[str | int], bool] | None:
    """Where an unknown field would be accepted: the nearest enclosing block that takes it
    (checked by validating the data with the field moved there), and whether that block sets
    it already; None when no enclosing block takes it."""
    field = parts[-1]
    if not isinstance(field, str):
        return None
    for depth in range(len(parts) - 2, -1, -1):
        home = [*parts[:depth], field]
        moved = copy.deepcopy(data)
        target = _node(moved, parts[:depth])
        inner = _node(moved, parts[:-1])
        if not isinstance(target, dict) or not isinstance(inner, dict):
            continue
        already = field in target
        value = inner.pop(field)
        target.setdefault(field, value)
        try:
            adapter.validate_python(moved)
        except ValidationError as error:
            if any(
                item["type"] == "extra_forbidden" and _data_path(item, moved) == home
                for item in error.errors(include_url=False)
            ):
                continue
        return home, already
    return None


def _message(item: Any, node: Any, loc: list[Any]) -> str:
    kind = item["type"]
    if kind == "extra_forbidden":
        field = str(loc[-1])
        hint = ""
        names = [name for name in _KNOWN_FIELD_NAMES if name != field]
        close = difflib.get_close_matches(field, names, n=1)
        if close:
            hint = f"; did you mean {close[0]!r}?"
        return f"unknown field {field!r}{hint}"
    if kind == "missing":
        return "required field is missing"
    if kind == "union_tag_invalid":
        ctx = item.get("ctx", {})
        return f"unknown type {ctx.get('tag')!r}; expected one of {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return "field `type` is missing"
    message: str = item["msg"]
    return message.removeprefix("Value error, ")


def _collect_field_names() -> set[str]:
    names: set[str] = set()

    def walk(schema: Any) -> None:
        if isinstance(schema, dict):
            for key, value in schema.items():
                if key == "properties" and isinstance(value, dict):
                    names.update(value)
                walk(value)
        elif isinstance(schema, list):
            for value in schema:
                walk(value)

    for _, adapter in KINDS.values():
        walk(adapter.json_schema(by_alias=True))
    return names


_KNOWN_FIELD_NAMES = sorted(_collect_field_names())


def load_documents(text: str, *, origin: str = "<input>") -> list[Any]:
    """Parse multi-document YAML; a syntax error names the file, line and column."""
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{origin}:{mark.line + 1}:{mark.column + 1}" if mark else origin
        problem = getattr(error, "problem", None) or str(error)
        raise InvalidResource(where, [("", f"YAML syntax error: {problem}")]) from error


def load_resources(text: str, *, origin: str = "<input>") -> list[Resource[Any]]:
    """Parse and validate every punchingfist resource in a YAML stream.

    Problems of all documents are collected, so one run reports every mistake.
    """
    resources: list[Resource[Any]] = []
    problems: list[PunchingFistError] = []
    for document in load_documents(text, origin=origin):
        try:
            resources.append(parse_resource(document, origin=origin))
        except InvalidResource as error:
            problems.append(error)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise InvalidInput(problems)
    return resources
