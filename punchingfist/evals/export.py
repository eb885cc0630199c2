"""`punchingfist eval export RUN`: a finished run as a scenario folder, so that a team builds its
regression suite from its own incidents (docs/evals.md, "From your own incidents").

The run is read through the server's REST API (`GET /api/v1/runs/{run}`, and what is
remembered of its incident: `GET /api/v1/incidents/{id}/knowledge`). Its agent step gives:

    alert        the run's alert: labels and annotations
    step         the step's goal (unrendered), tools and turn limit, as its result recorded them
    recordings   each distinct tool call with the output the model read (kept in the step's
                 result: redacted, cut to 4,000 characters, 48 kB per step)
    reference    the model's turns: each thought with the calls it asked for, then its answer
    expect       from the root cause a human confirmed (resolving the incident, or judging
                 the report right), else from the run's own answer, and the scenario says it
                 needs review: facts are the distinctive names (with a digit or a hyphen) of
                 that root cause that only the tool outputs show; the whole text goes to the
                 judge. Without such a name nothing deterministic can be checked, and the
                 scenario needs the judge (`needs_judge`).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import httpx
import yaml

from punchingfist.api.workflows import KubectlWrite
from punchingfist.errors import PunchingFistError
from punchingfist.evals.scenarios import SCENARIO_FILE, Scenario, load
from punchingfist.evals.tools import answer
from punchingfist.runtime.agent.decisions import FinalAnswer

Get = Callable[[str], Any]
"""A GET of the server's REST API: path -> the JSON answer (raises PunchingFistError)."""
MAX_FACTS = 3
SERVER_ENV, TOKEN_ENV = "PUNCHINGFIST_SERVER", "PUNCHINGFIST_TOKEN"
"""As `punchingfist incidents` reads them."""
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]*[A-Za-z0-9]")
_WRITES = frozenset(get_args(KubectlWrite))
_ANSWER_FIELDS = frozenset(FinalAnswer.model_fields) - {"kind"}
_STATED = ("summary", "problem_summary", "root_cause")
"""Where a fact is looked for by default (scenarios.Fact.where)."""


class ExportError(PunchingFistError):
    """A run that cannot become a scenario, and why."""


@dataclass(frozen=True)
class Truth:
    """The root cause a scenario expects, and where it came from."""

    text: str
    confirmed: bool
    source: str
    """In words, for the scenario's description."""


def export(
    run: str, get: Get, directory: Path, *, step: str | None = None, force: bool = False
) -> Path:
    """Write `<directory>/<run name>/scenario.yaml` of `run` (its name or id) and return the
    folder. The written scenario loads (`scenarios.load`) and its reference replays against its
    recordings (every call it makes has one), or nothing is written."""
    view = get(f"/api/v1/runs/{run}")
    knowledge = []
    if view.get("incident_id"):
        knowledge = get(f"/api/v1/incidents/{view['incident_id']}/knowledge")["items"]
    data, review = scenario_of(view, knowledge, step)
    folder: Path = directory / str(view["name"])
    file = folder / SCENARIO_FILE
    if file.exists() and not force:
        raise ExportError(f"{file} exists: give --force to replace it, or another -o DIRECTORY")
    folder.mkdir(parents=True, exist_ok=True)
    header = f"# Exported by `punchingfist eval export` from run {view['name']}.\n"
    if review:
        header += f"# REVIEW before relying on it: {review}\n"
    file.write_text(header + yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=100))
    unanswered = unmatched(load(folder))
    if unanswered:  # a defect of this module, never of the run: say which call
        file.unlink()
        raise ExportError(f"run {view['name']}: no recording answers {unanswered[0]}")
    return folder


def scenario_of(
    run: Mapping[str, Any], knowledge: Sequence[Mapping[str, Any]], step: str | None = None
) -> tuple[dict[str, Any], str | None]:
    """The scenario (as its YAML mapping) of a run as the REST API shows it, and why it needs
    review (None when a human confirmed its root cause)."""
    name = run["name"]
    result = _agent_result(run, step)
    calls = [c for c in result.get("tool_calls") or [] if isinstance(c, dict)]
    if calls and not any("output" in c for c in calls):
        raise ExportError(
            f"run {name} was recorded before tool outputs were kept in step results: there is "
            "nothing to replay its calls with; export a run made since"
        )
    recordings = _recordings(calls)
    reference = _reference(result, calls)
    final = result.get("result") if isinstance(result.get("result"), dict) else None
    truth = _truth(run, final, knowledge)
    alert = _alert(run)
    expect, notes = _expect(truth, alert, recordings, final, calls)
    dropped = [str(c.get("id")) for c in calls if c.get("output_kept") is False]
    if dropped:
        notes.append(
            f"the outputs of {', '.join(dropped)} were not kept (a step keeps 48 kB): their "
            "recordings are empty, fill them in"
        )
    description = (
        f"Exported from run {name} (workflow {run.get('workflow_name')}, step "
        f"{result['step']}, {run.get('created_at') or 'unknown date'}). Root cause: "
        f"{truth.source}."
    )
    review = None if truth.confirmed else "no human confirmed this root cause"
    if notes:
        review = "; ".join(([review] if review else []) + notes)
    if review:
        description += f" REVIEW: {review}."
    data: dict[str, Any] = {
        "description": description,
        "tags": ["exported", *([] if truth.confirmed else ["needs-review"])],
        "alert": alert,
        "step": result.get("spec") or _guessed_step(calls),
        "recordings": recordings,
        "expect": expect,
        "reference": reference,
    }
    if not expect["root_cause"]:
        data["needs_judge"] = True
    return data, review


def unmatched(scenario: Scenario) -> list[dict[str, Any]]:
    """The reference's calls that no recording answers."""
    return [
        call
        for turn in scenario.reference
        for call in (turn.get("action") or {}).get("calls") or []
        if answer(scenario.recordings, call) is None
    ]


def _agent_result(run: Mapping[str, Any], step: str | None) -> dict[str, Any]:
    agents = [
        s
        for s in run.get("steps") or []
        if s.get("kind") == "agent" and isinstance(s.get("result"), dict)
    ]
    if step is not None:
        agents = [s for s in agents if s.get("name") == step]
    if not agents:
        which = f"no agent step {step!r}" if step else "no agent step with a result"
        raise ExportError(
            f"run {run['name']} has {which}: export a run whose investigation finished"
            + ("" if step else " (or name the step with --step)")
        )
    return dict(agents[0]["result"])


def _alert(run: Mapping[str, Any]) -> dict[str, Any]:
    event = (run.get("parameters") or {}).get("event") or {}
    alert = event.get("alert") or {}
    labels = dict(alert.get("labels") or {})
    if not labels.get("alertname"):
        raise ExportError(
            f"run {run['name']} is not about an alert (its event has no alert.labels.alertname):"
            " a scenario starts from one"
        )
    return {"labels": labels, "annotations": dict(alert.get("annotations") or {})}


def _typed(call: Mapping[str, Any]) -> dict[str, Any]:
    """An audit entry's call as the model wrote it (`tool` first)."""
    return {"tool": call["tool"], **(call.get("call") or {})}


def _recordings(calls: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One recording per distinct call (a repeat was refused by the toolbox, which refuses it
    again on replay)."""
    seen, recordings = set(), []
    for call in calls:
        typed = _typed(call)
        key = repr(sorted(typed.items()))
        if key in seen:
            continue
        seen.add(key)
        recording: dict[str, Any] = {"call": typed, "output": call.get("output") or ""}
        if call.get("status") != "ok":
            recording |= {"status": "error", "error": call.get("error") or str(call.get("status"))}
        recordings.append(recording)
    return recordings


def _reference(
    result: Mapping[str, Any], calls: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The model's turns: its thought for each, with the calls that turn asked for, and the
    final answer's turn last."""
    thoughts = [str(t) for t in result.get("thoughts") or []]
    final = result.get("result")
    turns = max([int(c.get("turn") or 0) for c in calls] + [0])
    reference: list[dict[str, Any]] = []
    for turn in range(1, turns + 1):
        asked = [_typed(c) for c in calls if c.get("turn") == turn]
        if asked:
            thought = thoughts[turn - 1] if turn <= len(thoughts) else ""
            reference.append({"thought": thought, "action": {"kind": "tool_calls", "calls": asked}})
    if isinstance(final, dict):
        answer_turn = {k: v for k, v in final.items() if k in _ANSWER_FIELDS and v is not None}
        thought = thoughts[-1] if len(thoughts) > turns else ""
        reference.append({"thought": thought, "action": {"kind": "final_answer", **answer_turn}})
    return reference


def _truth(
    run: Mapping[str, Any], final: Mapping[str, Any] | None, knowledge: Sequence[Mapping[str, Any]]
) -> Truth:
    """The root cause a human confirmed (the incident's knowledge: a human's own entry first,
    then this run's, then another run's), else the run's own answer."""
    confirmed = sorted(
        (e for e in knowledge if e.get("confirmed") and e.get("root_cause")),
        key=lambda e: (e.get("run_id") is not None, e.get("run_id") != run.get("id")),
    )
    if confirmed:
        entry = confirmed[0]
        whose = (
            "a human's"
            if entry.get("run_id") is None
            else "the run's answer"
            if entry.get("run_id") == run.get("id")
            else "another run's answer"
        )
        by = entry.get("confirmed_by") or "a human"
        return Truth(str(entry["root_cause"]), True, f"{whose}, confirmed by {by}")
    answered = (final or {}).get("root_cause")
    if not answered:
        raise ExportError(
            f"run {run['name']} has no root cause to expect: its step gave no answer and no "
            "human confirmed one (`punchingfist incidents resolve ID --root-cause TEXT`)"
        )
    own = next((e for e in knowledge if e.get("run_id") == run.get("id")), None)
    wrong = own is not None and own.get("verdict") == "wrong"
    judged = " (a human judged it WRONG)" if wrong else ""
    return Truth(str(answered), False, f"the run's own answer, not confirmed by a human{judged}")


def _expect(
    truth: Truth,
    alert: Mapping[str, Any],
    recordings: Sequence[Mapping[str, Any]],
    final: Mapping[str, Any] | None,
    calls: Sequence[Mapping[str, Any]],
) -> tuple[dict[str, Any], list[str]]:
    """`expect` of the truth, and what a reviewer should know about it."""
    tokens = distinctive(truth.text, recordings, alert)[:MAX_FACTS]
    facts = [{"any": [t], "why": f"names {t}, as the root cause does"} for t in tokens]
    notes = []
    if not facts:
        notes.append(
            "no name of the root cause appears only in tool output, so no fact is checked "
            "without the judge: add root_cause facts"
        )
    stated = " ".join(str((final or {}).get(k) or "") for k in _STATED).lower()
    missed = [t for t in tokens if t.lower() not in stated]
    if missed:
        notes.append(
            f"the run's answer does not name {', '.join(missed)}: its reference fails these "
            "facts (the run was wrong, or the facts need another wording)"
        )
    writes = any((c.get("call") or {}).get("verb") in _WRITES for c in calls)
    expect: dict[str, Any] = {
        "root_cause": facts,
        "evidence": _evidence(tokens, final, calls),
        "judge": [truth.text],
    }
    if writes:
        notes.append("the step asked for kubectl write verbs: must_not.writes is off")
        expect["must_not"] = {"writes": False}
    return expect, notes


def distinctive(
    text: str, recordings: Sequence[Mapping[str, Any]], alert: Mapping[str, Any]
) -> list[str]:
    """The names in `text` (at least 5 characters, with a digit or a hyphen) that the tool
    outputs show and the alert does not: an answer can only have them from the tools."""
    shown = "\n".join(str(r.get("output") or "") for r in recordings).lower()
    given = " ".join(
        str(v) for part in ("labels", "annotations") for v in (alert.get(part) or {}).values()
    ).lower()
    tokens: list[str] = []
    for token in _TOKEN.findall(text):
        named = len(token) >= 5 and (any(c.isdigit() for c in token) or "-" in token)
        lowered = token.lower()
        if named and lowered in shown and lowered not in given and token not in tokens:
            tokens.append(token)
    return tokens


def _evidence(
    tokens: Sequence[str], final: Mapping[str, Any] | None, calls: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """For each name, a call of the kind the answer cited whose output showed it."""
    cited = [c for c in calls if c.get("id") in set((final or {}).get("evidence") or [])]
    rules = []
    for token in tokens:
        found = next((c for c in cited if token.lower() in str(c.get("output")).lower()), None)
        if found is not None:
            verb = (found.get("call") or {}).get("verb")
            rules.append({"tool": found["tool"], **({"verb": verb} if verb else {})})
            rules[-1]["contains"] = token
    return rules


def _guessed_step(calls: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """A run recorded before steps kept their spec: the default goal with the tools it used."""
    tools = sorted({str(c.get("tool")) for c in calls})
    return {"tools": tools} if tools else None


class _Dumper(yaml.SafeDumper):
    """Multi-line text (tool output, goals) as readable `|` blocks."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """`punchingfist eval export`'s arguments."""
    parser.add_argument("run", metavar="RUN", help="the run's name (or id)")
    parser.add_argument(
        "-o",
        "--output",
        metavar="DIRECTORY",
        default=".",
        help="where to write the scenario folder <RUN>/ (default: the current directory)",
    )
    parser.add_argument(
        "--step", metavar="NAME", help="the agent step to export (default: the run's first)"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing scenario")
    parser.add_argument(
        "--server",
        metavar="URL",
        default=os.environ.get(SERVER_ENV),
        help=f"the Punching Fist server, e.g. http://punchingfist:8080 (default: ${SERVER_ENV})",
    )
    parser.add_argument(
        "--token-file",
        metavar="PATH",
        help="the bearer token to send (the server's api-token file in embedded mode; "
        f"default: ${TOKEN_ENV}); it needs `get` on runs and incidents",
    )


def export_command(args: argparse.Namespace) -> int:
    """Run `punchingfist eval export` with parsed `args`; errors raise PunchingFistError."""
    get = rest_api(args.server, args.token_file)
    folder = export(args.run, get, Path(args.output), step=args.step, force=args.force)
    scenario = load(folder)
    print(
        f"wrote {folder / SCENARIO_FILE}: {len(scenario.recordings)} recordings, "
        f"{len(scenario.reference)} reference turns, {len(scenario.expect.root_cause)} facts"
    )
    if "needs-review" in scenario.tags or scenario.needs_judge:
        print(f"review it: {scenario.description}")
    return 0


def rest_api(server: str | None, token_file: str | None) -> Get:
    """GETs of the server's REST API with the bearer token in `token_file`, else
    $PUNCHINGFIST_TOKEN (as `punchingfist incidents` sends it)."""
    if not server:
        raise ExportError(f"give --server URL (or set ${SERVER_ENV})")
    try:
        token = (
            Path(token_file).expanduser().read_text()
            if token_file
            else os.environ.get(TOKEN_ENV, "")
        ).strip()
    except OSError as error:
        raise ExportError(f"--token-file: {error}") from error
    if not token:
        raise ExportError(
            "the server needs credentials: give --token-file PATH (the server's api-token file "
            f"in embedded mode) or set ${TOKEN_ENV}"
        )
    base, headers = server.rstrip("/"), {"Authorization": f"Bearer {token}"}

    def get(path: str) -> Any:
        try:
            response = httpx.get(base + path, headers=headers, timeout=30)
        except httpx.HTTPError as error:
            raise ExportError(f"cannot reach the server at {base}: {error}") from error
        if response.status_code >= 400:
            try:
                message = response.json().get("error") or response.text
            except (ValueError, AttributeError):
                message = response.text
            raise ExportError(f"the server refused ({response.status_code}) GET {path}: {message}")
        return response.json()

    return get
