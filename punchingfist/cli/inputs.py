"""What commands read: resources from YAML files and folders, alerts from webhook payloads."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from punchingfist.api import Resource, load_resources
from punchingfist.api.alerts import AlertmanagerPayload, event_from_payload
from punchingfist.api.resources import format_validation_error
from punchingfist.errors import InvalidInput, InvalidResource, PunchingFistError

_YAML_SUFFIXES = (".yaml", ".yml", ".json")


def alert_event(filename: str, index: int, option: str) -> tuple[dict[str, Any], str]:
    """The event of alert `index` of an Alertmanager payload file, and its fingerprint."""
    origin, text = next(_texts([filename]))
    try:
        payload = AlertmanagerPayload.model_validate_json(text)
    except ValidationError as error:
        problems = format_validation_error(error, _loose_json(text), prefix="payload")
        raise InvalidResource(origin, problems, what="Alertmanager payload") from error
    if not 0 <= index < len(payload.alerts):
        raise PunchingFistError(
            f"{origin}: {option} {index}: the payload has {len(payload.alerts)} alert(s)"
        )
    return event_from_payload(payload, index), payload.alerts[index].fingerprint


def _loose_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def read_resources(paths: Sequence[str]) -> Iterator[Resource[Any]]:
    problems: list[PunchingFistError] = []
    for origin, text in _texts(paths):
        try:
            yield from load_resources(text, origin=origin)
        except InvalidInput as error:
            problems += error.errors
        except PunchingFistError as error:
            problems.append(error)
    if problems:
        raise InvalidInput(problems)


def _texts(paths: Sequence[str]) -> Iterator[tuple[str, str]]:
    for raw in paths:
        if raw == "-":
            yield "<stdin>", sys.stdin.read()
            continue
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in _YAML_SUFFIXES)
            files = [p for p in files if _is_resource_file(p)]
        elif path.exists():
            files = [path]
        else:
            raise PunchingFistError(f"{raw}: no such file or directory")
        for file in files:
            try:
                yield str(file), file.read_text()
            except (OSError, UnicodeDecodeError) as error:
                raise PunchingFistError(f"{file}: cannot read: {error}") from error


def _is_resource_file(path: Path) -> bool:
    """Files in a directory are read only when they hold Kubernetes-style objects: alert
    payloads and recorded scenarios beside the resources are not. A file that does not parse is
    read, so that its error is reported."""
    try:
        documents = list(yaml.safe_load_all(path.read_text()))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return True
    return any(isinstance(d, dict) and ("apiVersion" in d or "kind" in d) for d in documents)
