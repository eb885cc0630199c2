"""What a local run needs besides the manifest: its parameters, its secrets, and a model.

Secrets: a `secretKeyRef` of the compiled template is filled from, in order, the Secret
documents the compiler emitted (clear-text credentials in the resources), `--secrets-dir`
(files laid out as Kubernetes mounts them, DIR/NAME/KEY), and this process's environment
variable of the same name as the one the template sets (`LLM_API_KEY`, `SLACK_BOT_TOKEN`, ...).
Secret references (`vault://`, `aws://`, `azure://`, `env://`, the template's annotation
`punchingfist.io/secret-references`) are resolved here, in-process, when the run starts, and
reach the steps as environment variables; one that cannot be read fails the run before any
step starts, naming the reference.

The model, for workflows with agent steps, is the first of: a replay (`--replay`), an
endpoint from flags or `PUNCHINGFIST_LLM_ENDPOINT`, the workflow's own provider when it
answers (or, for a hosted one, when `LLM_API_KEY` is set), Ollama on localhost:11434, and,
only where the caller allows it (`punchingfist run` and `demo`, never `serve`), the replay of a
recorded scenario whose alert matches. A replay is labelled everywhere ("replayed model").
"""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from punchingfist.api import Source
from punchingfist.api.alerts import AlertmanagerPayload, event_from_payload
from punchingfist.api.runspec import SPEC_ENV, LLMSettings, RunParameters, TaskSpec
from punchingfist.compiler.naming import ANNOTATION_SECRET_REFERENCES, references_secret
from punchingfist.engine import secrets_from_documents
from punchingfist.errors import PunchingFistError
from punchingfist.runtime.agent.llm import (
    ENDPOINT_ENV,
    HOSTED,
    MODEL_ENV,
    SELF_HOSTED,
    base_url,
)
from punchingfist.runtime.agent.replay import LABEL, REPLAY_ENV
from punchingfist.secrets import SecretResolver

OLLAMA = "http://localhost:11434"
NO_MODEL = (
    "no model to run the agent steps: pass --llm-endpoint URL (any OpenAI-compatible API), "
    "start Ollama on localhost:11434, set LLM_API_KEY for a hosted provider, or pass "
    "--replay SCENARIO_DIR to replay recorded turns (labelled: no model runs)"
)
SCENARIOS = Path(__file__).resolve().parents[2] / "examples" / "scenarios"
"""Recorded scenarios shipped with the source tree (the replay model's default turns)."""


@dataclass(frozen=True)
class ModelChoice:
    environ: dict[str, str] = field(default_factory=dict)
    """Variables that point the agent steps at the chosen model."""
    label: str = ""
    replayed: bool = False


def event_parameters(
    data: Any, *, alert: int = 0, source: Source | None = None, origin: str = "event"
) -> dict[str, str]:
    """The run's parameters from an Alertmanager payload (or from an event already built)."""
    context = dict(source.spec.context) if source is not None else {}
    if isinstance(data, dict) and "alerts" in data and "version" in data:
        payload = AlertmanagerPayload.model_validate(data)
        if not 0 <= alert < len(payload.alerts):
            raise PunchingFistError(
                f"{origin}: alert {alert}: the payload has {len(payload.alerts)} alert(s)"
            )
        event = event_from_payload(payload, alert, context)
    elif isinstance(data, dict) and isinstance(data.get("alert"), dict):
        event = data
    else:
        raise PunchingFistError(
            f"{origin}: expected an Alertmanager webhook payload (version 4) or a run event "
            "(`punchingfist event` output)"
        )
    fingerprint = str((event.get("alert") or {}).get("fingerprint") or "")
    source_name = source.name if source is not None else "punchingfist-run"
    return RunParameters(event, source_name, fingerprint).arguments()


def secret_references(manifest: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(env variable, "SECRET/KEY") for every secretKeyRef of the manifest's containers."""
    for template in manifest.get("spec", {}).get("templates", []):
        for variable in (template.get("container") or {}).get("env") or []:
            reference = (variable.get("valueFrom") or {}).get("secretKeyRef")
            if reference:
                yield variable["name"], f"{reference['name']}/{reference['key']}"


def template_references(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Key of the run's Secret -> the secret reference it holds (the compiler's annotation)."""
    annotations = (manifest.get("metadata") or {}).get("annotations") or {}
    text = annotations.get(ANNOTATION_SECRET_REFERENCES)
    found: dict[str, str] = json.loads(text) if text else {}
    return found


def resolve_references(
    manifest: Mapping[str, Any], resolver: SecretResolver, who: str
) -> dict[str, str]:
    """The template's secret references, resolved: key of the run's Secret -> value. Raises
    SecretError naming the first reference that cannot be read."""
    return {
        key: resolver.resolve(reference, who)
        for key, reference in sorted(template_references(manifest).items())
    }


def gather_secrets(
    manifest: Mapping[str, Any],
    objects: Sequence[Mapping[str, Any]],
    environ: Mapping[str, str],
    secrets_dir: Path | None = None,
    resolver: SecretResolver | None = None,
    who: str = "punchingfist run",
) -> dict[str, str]:
    secrets = secrets_from_documents(list(objects))
    if template_references(manifest):
        found = resolve_references(manifest, resolver or SecretResolver(environ=environ), who)
        secrets |= {f"{references_secret()}/{key}": value for key, value in found.items()}
    for variable, key in secret_references(manifest):
        if key in secrets:
            continue
        file = secrets_dir / key if secrets_dir is not None else None
        if file is not None and file.is_file():
            secrets[key] = file.read_text().strip()
        elif environ.get(variable):
            secrets[key] = environ[variable]
    return secrets


def agent_settings(manifest: Mapping[str, Any]) -> list[LLMSettings]:
    """The model settings of the manifest's agent tasks (from their PF_SPEC)."""
    found = []
    for template in manifest.get("spec", {}).get("templates", []):
        for variable in (template.get("container") or {}).get("env") or []:
            if variable.get("name") == SPEC_ENV and variable.get("value"):
                spec = TaskSpec.decode(variable["value"])
                if spec.agent is not None:
                    found.append(spec.agent.llm)
    return found


def choose_model(
    manifest: Mapping[str, Any],
    event: Mapping[str, Any],
    environ: Mapping[str, str],
    *,
    replay: str | None = None,
    endpoint: str | None = None,
    model: str | None = None,
    probe: bool = True,
    replay_fallback: bool = False,
) -> ModelChoice:
    """The model of the agent steps. With no model configured or answering, a recorded scenario
    about the same alert is replayed only with `replay_fallback`; else it is an error."""
    settings = agent_settings(manifest)
    if not settings:
        return ModelChoice(label="no agent steps: no model needed")
    if replay:  # one scenario folder, or several separated by the OS path separator
        return _replay(*(path for path in replay.split(os.pathsep) if path))
    endpoint = endpoint or environ.get("PUNCHINGFIST_LLM_ENDPOINT")
    model = model or environ.get("PUNCHINGFIST_LLM_MODEL")
    if endpoint:
        chosen = {ENDPOINT_ENV: endpoint} | ({MODEL_ENV: model} if model else {})
        return ModelChoice(chosen, f"{endpoint} ({model or 'model of each step'})")
    own = settings[0]
    if own.type in HOSTED and own.endpoint is None and environ.get("LLM_API_KEY"):
        return ModelChoice(label=f"{own.provider}/{own.model} (LLM_API_KEY)")
    if probe and (own.type in SELF_HOSTED or own.endpoint) and _answers(base_url(own)):
        return ModelChoice(label=f"{own.provider} at {base_url(own)} ({own.model})")
    ollama = _ollama_models() if probe else []
    if ollama:
        name = model or ollama[0]
        chosen = {ENDPOINT_ENV: OLLAMA, MODEL_ENV: name, "PF_LLM_MODE": "json_schema"}
        return ModelChoice(chosen, f"Ollama at {OLLAMA} ({name})")
    scenarios = matching_scenarios(event) if replay_fallback else []
    if not scenarios:
        raise PunchingFistError(NO_MODEL)
    return _replay(*scenarios)


def _replay(*paths: str | Path) -> ModelChoice:
    files = []
    for path in paths:
        folder = Path(path)
        file = folder / "scenario.yaml" if folder.is_dir() else folder
        if not file.is_file():
            raise PunchingFistError(f"--replay {path}: no scenario.yaml there")
        files.append(file.resolve())
    names = ", ".join(f.parent.name for f in files)
    value = os.pathsep.join(str(f) for f in files)
    return ModelChoice({REPLAY_ENV: value}, f"{LABEL} ({names})", replayed=True)


def matching_scenarios(event: Mapping[str, Any], root: Path = SCENARIOS) -> list[Path]:
    """Recorded scenarios about the same alertname, if the source tree ships some."""
    alert = event.get("alert") or {}
    name = alert.get("alertname") or (alert.get("labels") or {}).get("alertname")
    found = []
    for file in sorted(root.glob("*/scenario.yaml")):
        try:
            recorded = yaml.safe_load(file.read_text())
        except (OSError, yaml.YAMLError):
            continue
        labels = (recorded.get("alert") or {}).get("labels") or {}
        if name and labels.get("alertname") == name:
            found.append(file.parent)
    return found


def _answers(url: str, timeout: float = 1.5) -> bool:
    """Whether an OpenAI-compatible API answers at `url`. Name resolution has no timeout of its
    own (an offline machine can hang on it), so the probe runs in a thread that is not waited
    for beyond `timeout`."""
    answer: list[bool] = []

    def probe() -> None:
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/models", timeout=timeout) as response:
                answer.append(response.status < 500)
        except (urllib.error.URLError, OSError, ValueError):
            answer.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answer and answer[0])


def _ollama_models() -> list[str]:
    try:
        with urllib.request.urlopen(f"{OLLAMA}/api/tags", timeout=0.5) as response:
            data = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return []
    return [m["name"] for m in data.get("models", []) if isinstance(m, dict) and m.get("name")]
