"""The runbook tool: list the runbooks that match the run's alert, read one of them.

Runbooks are Markdown files with a small YAML front matter saying which alerts they are for:

    ---
    title: Pod crash looping
    alertname: [KubePodCrashLooping, KubePodNotReady]
    labels: {namespace: payments}
    ---
    1. Look at the last logs ...

A runbook matches an alert when the alert's name is one of `alertname` (if given) and each of
`labels` equals the alert's label (a list: any of its values). Without `alertname` and
`labels` it matches every alert. Files without front matter are not runbooks (READMEs).

They come from the OperatorConfig's `spec.runbooks`: a git repository (cloned once per step,
with the real `git`, argv only, no shell, into a temporary directory) and ConfigMaps (every
key ending in `.md`). Alert text is only compared for equality: it never reaches an argv or a
path, and the model names a runbook only by a name `list` gave it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from punchingfist.api.runspec import RunbookConfigMaps, RunbookGit, RunbooksTask
from punchingfist.runtime.tools.base import Status, ToolResult, refused

MAX_FILE_BYTES = 256 * 1024
"""A larger file is not read (a runbook is a page, not a data dump)."""
MAX_RUNBOOKS = 500
CLONE_TIMEOUT = 60.0
NAME_PATTERN = r"^(git|configmap)/[A-Za-z0-9_][A-Za-z0-9._/-]{0,250}$"
_NAME = re.compile(NAME_PATTERN)

ConfigMapReader = Callable[[RunbookConfigMaps, str], list[dict[str, Any]]]
"""Reads the ConfigMaps of a source in a namespace: their API objects (metadata, data)."""


class RunbookError(Exception):
    """Runbooks could not be loaded (clone failed, ConfigMaps unreadable)."""


@dataclass(frozen=True)
class Runbook:
    name: str
    """`git/<path in the repository below its path>` or `configmap/<name>/<key>`."""
    title: str
    text: str
    alertnames: tuple[str, ...] = ()
    labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def matches(self, alert: Mapping[str, Any]) -> bool:
        given = alert.get("labels")
        labels: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
        name = str(alert.get("alertname") or labels.get("alertname") or "")
        if self.alertnames and name not in self.alertnames:
            return False
        return all(str(labels.get(key, "")) in wanted for key, wanted in self.labels.items())

    def summary(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"name": self.name, "title": self.title}
        if self.alertnames:
            shown["alertname"] = list(self.alertnames)
        if self.labels:
            shown["labels"] = {k: list(v) for k, v in self.labels.items()}
        return shown


def parse(name: str, text: str) -> Runbook | None:
    """A runbook from a Markdown file's text, or None when it has no front matter (a README).
    Raises ValueError when the front matter is there but wrong."""
    if not text.startswith("---\n"):
        return None
    end = text.find("\n---", 3)
    if end < 0:
        raise ValueError("front matter is not closed by a '---' line")
    try:
        meta = yaml.safe_load(text[4:end]) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"front matter is not YAML: {error}") from error
    if not isinstance(meta, Mapping):
        raise ValueError("front matter must be a mapping")
    alertnames = _strings(meta.get("alertname"), "alertname")
    labels_given = meta.get("labels") or {}
    if not isinstance(labels_given, Mapping):
        raise ValueError("labels must be a mapping of label name to value(s)")
    labels = {str(k): _strings(v, f"labels.{k}") for k, v in labels_given.items()}
    body = text[end + 4 :].lstrip("-").lstrip("\n")
    title = meta.get("title")
    return Runbook(
        name=name,
        title=str(title) if title else name.rsplit("/", 1)[-1],
        text=body,
        alertnames=alertnames,
        labels=labels,
    )


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str | int | float | bool):
        return (str(value),)
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return tuple(str(v) for v in value)
    raise ValueError(f"{where} must be a string or a list of strings")


@dataclass
class Loaded:
    runbooks: list[Runbook] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, name: str, text: str) -> None:
        if len(self.runbooks) >= MAX_RUNBOOKS:
            self.problems.append(f"{name}: more than {MAX_RUNBOOKS} runbooks; not read")
            return
        try:
            runbook = parse(name, text)
        except ValueError as error:
            self.problems.append(f"{name}: {error}")
            return
        if runbook is not None:
            self.runbooks.append(runbook)


def from_directory(root: Path, loaded: Loaded) -> None:
    """The `.md` files under `root` (a checkout): regular files only, never a symlink, never
    outside `root`."""
    base = root.resolve()
    for directory, subdirs, files in os.walk(base, followlinks=False):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for file in sorted(files):
            path = Path(directory) / file
            if not file.endswith(".md"):
                continue
            info = path.lstat()
            relative = path.relative_to(base).as_posix()
            if not stat.S_ISREG(info.st_mode) or not path.resolve().is_relative_to(base):
                loaded.problems.append(f"git/{relative}: not a regular file; skipped")
                continue
            if info.st_size > MAX_FILE_BYTES:
                loaded.problems.append(f"git/{relative}: larger than {MAX_FILE_BYTES} bytes")
                continue
            name = f"git/{relative}"
            if not _NAME.match(name):
                loaded.problems.append(f"{name}: a runbook's path may use only A-Z a-z 0-9 ._/-")
                continue
            loaded.add(name, path.read_text(errors="replace"))


def from_configmaps(items: Sequence[Mapping[str, Any]], loaded: Loaded) -> None:
    """Every `.md` key of each ConfigMap is a runbook named `configmap/<name>/<key>`."""
    for item in sorted(items, key=lambda i: str((i.get("metadata") or {}).get("name", ""))):
        cm = str((item.get("metadata") or {}).get("name", ""))
        for key, text in sorted((item.get("data") or {}).items()):
            name = f"configmap/{cm}/{key}"
            if not key.endswith(".md") or not isinstance(text, str):
                continue
            if not _NAME.match(name):
                loaded.problems.append(f"{name}: not a usable runbook name")
            elif len(text.encode()) > MAX_FILE_BYTES:
                loaded.problems.append(f"{name}: larger than {MAX_FILE_BYTES} bytes")
            else:
                loaded.add(name, text)


def git_env(git: RunbookGit, environ: Mapping[str, str], base: Mapping[str, str]) -> dict[str, str]:
    """What `git` runs with: no prompt, no system or user config, only the URL's protocol, and
    the token (if any) as an HTTP header set through the environment, never the argv."""
    env = dict(base) | {
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ALLOW_PROTOCOL": "file" if git.url.startswith("file://") else "https",
    }
    token = environ.get(git.credentials_env) if git.credentials_env else None
    if token:
        user, _, password = token.strip().rpartition(":")
        basic = base64.b64encode(f"{user or 'x-access-token'}:{password}".encode()).decode()
        env |= {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
        }
    return env


def clone(git: RunbookGit, into: Path, env: Mapping[str, str], timeout: float) -> None:
    """Fetch `git.ref` (a branch, tag or commit) of `git.url` at depth 1 and check it out
    into `into` (symlinks as plain files). Raises RunbookError."""
    steps = [
        ("init", ["git", "init", "--quiet", str(into)]),
        (
            "fetch",
            ["git", "-C", str(into), "fetch", "--quiet", "--depth", "1", "--", git.url, git.ref],
        ),
        (
            "checkout",
            [
                "git",
                "-C",
                str(into),
                "-c",
                "core.symlinks=false",
                "checkout",
                "--quiet",
                "FETCH_HEAD",
            ],
        ),
    ]
    for what, argv in steps:
        try:
            done = subprocess.run(
                argv,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise RunbookError(f"git {what} gave no answer within {timeout:g} s") from error
        except OSError as error:
            raise RunbookError(f"cannot run git: {error.strerror}") from error
        if done.returncode != 0:
            said = done.stderr.decode(errors="replace").strip().splitlines()[-2:]
            raise RunbookError(f"git {what} of {git.url} {git.ref}: {' '.join(said)}")


def kubectl_reader(
    binary: str = "kubectl", env: Mapping[str, str] | None = None, timeout: float = 30.0
) -> ConfigMapReader:
    """Reads ConfigMaps with kubectl and the step's service account (get/list configmaps)."""

    def read(source: RunbookConfigMaps, namespace: str) -> list[dict[str, Any]]:
        argv = [binary, "get", "configmaps", "--namespace", namespace, "--output", "json"]
        if source.selector:
            argv += ["--selector", ",".join(f"{k}={v}" for k, v in sorted(source.selector.items()))]
        argv += ["--", *source.names]
        try:
            done = subprocess.run(
                argv,
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise RunbookError(f"cannot read ConfigMaps: {error}") from error
        if done.returncode != 0:
            said = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
            raise RunbookError(f"cannot read ConfigMaps: {' '.join(said)}")
        body = json.loads(done.stdout)
        items = body.get("items") if body.get("kind") == "List" else [body]
        return [item for item in items or [] if isinstance(item, dict)]

    return read


@dataclass
class RunbookTool:
    """The tool of one agent step: loads the runbooks on its first call, then answers from
    memory."""

    sources: RunbooksTask
    alert: Mapping[str, Any]
    environ: Mapping[str, str]
    read_configmaps: ConfigMapReader
    tool_env: Mapping[str, str] = field(default_factory=dict)
    timeout: float = CLONE_TIMEOUT
    _loaded: Loaded | None = None
    _error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def load(self) -> Loaded:
        with self._lock:
            if self._loaded is None:
                self._loaded = Loaded()
                try:
                    self._load(self._loaded)
                except RunbookError as error:
                    self._error = str(error)
            return self._loaded

    def _load(self, loaded: Loaded) -> None:
        failures = []
        if self.sources.config_maps is not None:
            namespace = self.sources.config_maps.namespace or self.environ.get("PF_NAMESPACE")
            try:
                from_configmaps(
                    self.read_configmaps(self.sources.config_maps, namespace or "default"), loaded
                )
            except (RunbookError, ValueError) as error:
                failures.append(str(error))
        if self.sources.git is not None:
            git = self.sources.git
            with tempfile.TemporaryDirectory(prefix="pf-runbooks-") as temporary:
                checkout = Path(temporary) / "repo"
                try:
                    clone(git, checkout, git_env(git, self.environ, self.tool_env), self.timeout)
                    root = (checkout / git.path).resolve() if git.path else checkout
                    if not root.is_relative_to(checkout.resolve()) or not root.is_dir():
                        raise RunbookError(
                            f"path {git.path!r} is not a directory of the repository"
                        )
                    from_directory(root, loaded)
                except RunbookError as error:
                    failures.append(str(error))
                finally:
                    shutil.rmtree(checkout, ignore_errors=True)
        if failures:
            raise RunbookError("; ".join(failures))

    def matching(self) -> list[Runbook]:
        return [r for r in self.load().runbooks if r.matches(self.alert)]

    def run(self, action: str, name: str | None) -> ToolResult:
        matching = self.matching()
        details: dict[str, Any] = {"runbooks": [r.name for r in matching]}
        notes = list(self.load().problems)
        if self._error:
            notes.insert(0, f"some runbooks could not be loaded: {self._error}")
        if action == "list":
            body: dict[str, Any] = {"runbooks": [r.summary() for r in matching]}
            if notes:
                body["problems"] = notes
            status: Status = "error" if self._error and not matching else "ok"
            return ToolResult(
                status=status,
                output=json.dumps(body, ensure_ascii=False, indent=1),
                error=self._error if status == "error" else None,
                details=details,
            )
        if not name:
            return refused("read needs the `name` of a runbook from `list`")
        found = next((r for r in matching if r.name == name), None)
        if found is None:
            return refused(
                f"{name!r} is not one of the runbooks for this alert; call runbook list "
                "and use a name it gives"
            )
        return ToolResult(
            status="ok", output=f"# {found.title}\n\n{found.text}", details=details | {"read": name}
        )
