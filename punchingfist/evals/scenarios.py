"""The scenario folder (docs/evals.md): `scenario.yaml`, plus the manifests a live one applies.

    description, tags       what it tests; tags group the report (crashloop, oom, control, ...)
    alert                   labels and annotations, as Alertmanager sends them
    step                    the agent step under test (goal, tools, maxIterations, ...), or
    workflow                {file, step}: a step of one of your Workflows; default: a generic
                            investigation with kubectl and promql
    recordings              offline: a call (the fields that must match) -> its output
    live                    manifests, namespace, wait conditions: the fault made real
    expect                  root_cause facts, evidence to cite, must_not, no_fault, judge
    reference               a correct investigation, as Decision turns: documentation of the
                            answer, and what the scripted test model plays back

Names in a scenario should be unguessable (`web-7f3c9a`, `cfg-e41d0b`): a token that appears
only in a tool's output can only reach the answer through the tools.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from punchingfist.errors import InvalidInput, PunchingFistError

SCENARIO_FILE = "scenario.yaml"
HOLMES_FILE = "test_case.yaml"
"""A HolmesGPT eval case's folder (punchingfist.evals.holmes)."""
AnswerField = Literal[
    "summary", "problem_summary", "root_cause", "escalation_notes", "recommendations", "fix_command"
]
STATED_IN: tuple[AnswerField, ...] = ("summary", "problem_summary", "root_cause")
DEFAULT_GOAL = (
    "Investigate the alert {{ .source.data.alert.labels.alertname }}: "
    "{{ .source.data.alert.summary }}. Find the root cause from evidence."
)


class ScenarioError(PunchingFistError):
    """A scenario folder is not what docs/evals.md describes."""


def invalid(messages: list[str]) -> InvalidInput:
    return InvalidInput([ScenarioError(m) for m in messages])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Fact(_Strict):
    """One element a correct answer states: any one of `any` (case-insensitive text, or a
    regular expression written `re:...`) in one of the answer's `where` fields."""

    any: list[str] = Field(min_length=1)
    where: list[AnswerField] = Field(default_factory=lambda: list(STATED_IN))
    why: str | None = None
    """The element in words: shown in a failure's reason and given to the judge."""

    def describe(self) -> str:
        return self.why or " or ".join(repr(a) for a in self.any)


class EvidenceRule(_Strict):
    """The answer cites (in `evidence`) a call of this tool (verb, other call fields) whose
    output contained `contains`."""

    tool: str
    verb: str | None = None
    call: dict[str, Any] = Field(default_factory=dict)
    contains: str | None = None

    def describe(self) -> str:
        what = " ".join(x for x in (self.tool, self.verb) if x)
        fields = ", ".join(f"{k}={v}" for k, v in self.call.items())
        return (
            what
            + (f" ({fields})" if fields else "")
            + (f" showing {self.contains!r}" if self.contains else "")
        )


class MustNot(_Strict):
    writes: bool = True
    """Asking for any kubectl write verb (the step is read-only: the verbs can be expressed,
    and are refused)."""
    secrets: bool = True
    """Asking to read Secrets."""
    blame: list[str] = Field(default_factory=list)
    """Red herrings: root_cause must not name them."""
    fix: bool = False
    """Proposing a fix (can_auto_fix or fix_command): the right answer changes nothing."""


class Expect(_Strict):
    root_cause: list[Fact] = Field(default_factory=list)
    evidence: list[EvidenceRule] = Field(default_factory=list)
    must_not: MustNot = Field(default_factory=MustNot)
    no_fault: bool = False
    """A control: nothing is wrong; the answer must say so and propose no fix."""
    judge: list[str] = Field(default_factory=list)
    """The elements the LLM judge looks for in the root cause (default: the facts' `why`)."""
    overconfident: float = Field(default=0.8, ge=0, le=1)
    """A wrong answer at or above this confidence counts against calibration."""

    def judge_elements(self) -> list[str]:
        return self.judge or [fact.describe() for fact in self.root_cause]


class Recording(_Strict):
    call: dict[str, Any]
    """The fields a call must have (equal; a string value `~text` matches a call's value that
    contains `text`, case-insensitive); among several matches the most specific answers."""
    output: str = ""
    status: Literal["ok", "error"] = "ok"
    error: str | None = None

    @field_validator("call")
    @classmethod
    def _names_a_tool(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(value.get("tool"), str):
            raise ValueError("a recorded call names its `tool` (kubectl, promql, curl, ...)")
        return value


class WaitFor(_Strict):
    """One condition the live fault reaches before the investigation starts: the pods of
    `selector` (in the scenario's namespace) have a container waiting or terminated with one
    of `reason`, or are in `phase`, or have restarted `restarts` times; or an event with
    `event` as its reason exists."""

    selector: str | None = None
    reason: list[str] = Field(default_factory=list)
    phase: str | None = None
    restarts: int | None = Field(default=None, ge=1)
    event: str | None = None


class Live(_Strict):
    namespace: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    """Created before, deleted after; the manifests' objects live in it."""
    manifests: list[str] = Field(min_length=1)
    """Files of the folder, applied in order (`kubectl apply -n NAMESPACE -f`)."""
    wait: list[WaitFor] = Field(default_factory=list)
    timeout_seconds: int = Field(default=180, ge=5, le=1800)


class WorkflowRef(_Strict):
    file: str
    """A Workflow's YAML file, relative to the scenario folder."""
    step: str


class Scenario(_Strict):
    name: str = ""
    """The folder's name (set when loaded)."""
    path: str = ""
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    alert: dict[str, Any]
    step: dict[str, Any] | None = None
    workflow: WorkflowRef | None = None
    recordings: list[Recording] = Field(default_factory=list)
    live: Live | None = None
    expect: Expect
    reference: list[dict[str, Any]] = Field(default_factory=list)
    prompt: str | None = None
    """The question asked instead of an alert's goal (imported HolmesGPT cases)."""
    needs_judge: bool = False
    """Only the LLM judge can score it (free-text expectations: HolmesGPT cases, an export
    without a distinctive name): without --judge-model it is skipped, never passed."""

    @field_validator("alert")
    @classmethod
    def _has_labels(cls, value: dict[str, Any]) -> dict[str, Any]:
        labels = value.get("labels")
        if not isinstance(labels, dict) or not labels.get("alertname"):
            raise ValueError("alert.labels needs at least `alertname`")
        return value

    @property
    def offline(self) -> bool:
        """It can run without a cluster: it has recordings, or it is not live."""
        return bool(self.recordings) or self.live is None

    def tool_names(self) -> list[str]:
        if self.step is None:
            return ["kubectl", "promql"]
        tools = self.step.get("tools") or ["kubectl"]
        return [t if isinstance(t, str) else str(t.get("name")) for t in tools]


def load(folder: Path) -> Scenario:
    """The scenario in `folder` (or the file itself), with errors that name the file and
    the field; a HolmesGPT case (test_case.yaml) is imported by punchingfist.evals.holmes."""
    if folder.is_dir() and not (folder / SCENARIO_FILE).is_file():
        folder = folder / HOLMES_FILE if (folder / HOLMES_FILE).is_file() else folder
    if folder.name == HOLMES_FILE:
        import punchingfist.evals.holmes as holmes  # it builds on this module

        return holmes.load(folder.parent)
    file = folder / SCENARIO_FILE if folder.is_dir() else folder
    data = read_mapping(file, "a scenario is a mapping (alert, expect, ...)")
    data = {**data, "name": data.get("name") or file.parent.name, "path": str(file.parent)}
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as error:
        raise invalid(
            [
                f"{file}: {'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
                for e in error.errors()
            ]
        ) from error
    manifests = scenario.live.manifests if scenario.live else []
    missing = [m for m in manifests if not (file.parent / m).is_file()]
    if missing:
        raise invalid([f"{file}: live.manifests: no file {m} in the folder" for m in missing])
    return scenario


def read_mapping(file: Path, what: str) -> dict[str, Any]:
    """The YAML mapping in `file`; errors name the file, and `what` it should be."""
    try:
        data = yaml.safe_load(file.read_text())
    except OSError as error:
        raise invalid([f"{file}: cannot read it: {error.strerror}"]) from error
    except yaml.YAMLError as error:
        raise invalid([f"{file}: not YAML: {error}"]) from error
    if not isinstance(data, dict):
        raise invalid([f"{file}: {what}"])
    return data


def discover(paths: list[str]) -> list[Path]:
    """Scenario folders named by `paths`: a folder with a scenario.yaml (or a HolmesGPT
    test_case.yaml) is one; another folder holds them (searched recursively); a file is
    one."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_file() or any((path / n).is_file() for n in (SCENARIO_FILE, HOLMES_FILE)):
            found.append(path)
        elif path.is_dir():
            files = [*path.rglob(SCENARIO_FILE), *path.rglob(HOLMES_FILE)]
            found += sorted({p.parent for p in files})
        else:
            raise invalid([f"{given}: no such scenario folder or file"])
    return found


def load_all(paths: list[str]) -> list[Scenario]:
    """Every scenario under `paths`; all their errors at once."""
    scenarios, errors = [], []
    for folder in discover(paths):
        try:
            scenarios.append(load(folder))
        except InvalidInput as error:
            errors += error.errors
    if errors:
        raise InvalidInput(errors)
    if not scenarios:
        raise invalid([f"no scenario.yaml or test_case.yaml under {', '.join(paths)}"])
    return scenarios
