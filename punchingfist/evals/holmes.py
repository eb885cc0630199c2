"""HolmesGPT's eval cases as scenarios (docs/evals.md, "HolmesGPT test cases").

A case is a folder with `test_case.yaml`:

    user_prompt       the question           -> Scenario.prompt (the step's goal), with an
                                                 alert made up to carry it (HolmesAsk)
    expected_output   free-text elements     -> expect.judge: only the LLM judge can score
                      (a string or a list)      them, so the scenario `needs_judge` and is
                                                skipped without one, never passed
    tags, description                        -> tags, description
    before_test, after_test, skip, ...       -> named in the description; never run here

and mock tool outputs: `*.txt` files whose first line is JSON naming the tool and the
parameters a call must have (`{"toolset_name", "tool_name", "match_params"}`), whose second
line is JSON of the tool's structured result (`status` success, error or no_data; `error`),
and whose rest is the output (kubectl's as `stdout:` and `stderr:` sections). Files of the
older format have the output from the second line on. Each becomes a recording of the typed
call that asks the same thing (`TOOLS`); a mock of a tool that has none is listed as
unsupported in the description, not dropped silently.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from punchingfist.evals.scenarios import HOLMES_FILE, Scenario, invalid, read_mapping

ALERTNAME = "HolmesAsk"
WILDCARD = "*"
"""A match_params value that matches any value: the field is left free."""

Mapper = Callable[[Mapping[str, Any]], dict[str, Any]]


def _kubectl(verb: str, *, kinds: bool = True, **fixed: Any) -> Mapper:
    """A kubectl call of `verb`: HolmesGPT's kind (unless the verb takes none), name (or
    pod_name, resource_name) and namespace as ours, plus `fixed` fields."""

    def typed(params: Mapping[str, Any]) -> dict[str, Any]:
        call: dict[str, Any] = {"tool": "kubectl", "verb": verb}
        kind = (params.get("kind") or params.get("resource_type")) if kinds else None
        name = params.get("name") or params.get("pod_name") or params.get("resource_name")
        for field, value in (("resource", kind), ("name", name)):
            if value:
                call[field] = value
        if params.get("namespace"):
            call["namespace"] = params["namespace"]
        return call | fixed

    return typed


def _asking(tool: str, field: str) -> Mapper:
    """A call of `tool` with HolmesGPT's parameter `field` as ours (free when not given)."""

    def typed(params: Mapping[str, Any]) -> dict[str, Any]:
        return {"tool": tool, **({field: params[field]} if params.get(field) else {})}

    return typed


TOOLS: dict[str, Mapper] = {
    "kubectl_describe": _kubectl("describe"),
    "kubectl_get_by_name": _kubectl("get"),
    "kubectl_get_yaml": _kubectl("get"),
    "kubectl_get_by_kind_in_namespace": _kubectl("get"),
    "kubectl_get_by_kind_in_cluster": _kubectl("get"),
    "kubectl_find_resource": _kubectl("get"),
    "kubectl_events": _kubectl("events", kinds=False),
    "kubectl_logs": _kubectl("logs"),
    "kubectl_logs_all_containers": _kubectl("logs"),
    "fetch_pod_logs": _kubectl("logs"),
    "kubectl_previous_logs": _kubectl("logs", previous=True),
    "kubectl_previous_logs_all_containers": _kubectl("logs", previous=True),
    "kubectl_top_pods": _kubectl("top", resource="pods"),
    "kubectl_top_nodes": _kubectl("top", resource="nodes"),
    "execute_prometheus_instant_query": _asking("promql", "query"),
    "execute_prometheus_range_query": _asking("promql", "query"),
    "fetch_webpage": _asking("curl", "url"),
}
"""HolmesGPT's tool -> our typed call. Parameters with no counterpart (a log filter, a
keyword, a range's start and end) are left free: the recording answers whatever the call asks
of them."""
NOTED = ("before_test", "after_test", "skip", "skip_reason", "evaluation", "mock_policy")


def load(folder: Path) -> Scenario:
    """The HolmesGPT case in `folder` as a scenario, with errors that name the file and the
    field."""
    file = folder / HOLMES_FILE
    case = read_mapping(file, "a test case is a mapping (user_prompt, expected_output, ...)")
    prompt = case.get("user_prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise invalid([f"{file}: user_prompt: the question to ask is required (text)"])
    expected = case.get("expected_output")
    elements = [expected] if isinstance(expected, str) else expected
    if (
        not isinstance(elements, list)
        or not elements
        or not all(isinstance(e, str) and e.strip() for e in elements)
    ):
        raise invalid(
            [
                f"{file}: expected_output: what a correct answer says is required (text, or a "
                "list of texts)"
            ]
        )
    recordings, unsupported, errors = [], set(), []
    for mock in sorted(folder.glob("*.txt")):
        try:
            found = mock_recording(mock)
        except ValueError as error:
            errors.append(f"{mock}: {error}")
            continue
        if found is None:
            continue  # not a mock: a note or a log the case's setup uses
        tool, recording = found
        if recording is None:
            unsupported.add(tool)
        else:
            recordings.append(recording)
    if errors:
        raise invalid(errors)
    tags = case.get("tags") or []
    data = {
        "name": folder.name,
        "path": str(folder),
        "description": _description(
            folder.name, case, prompt.strip(), unsupported, bool(recordings)
        ),
        "tags": ["holmesgpt", *(str(t) for t in tags if isinstance(tags, list))],
        "alert": {
            "labels": {"alertname": ALERTNAME, "case": folder.name},
            "annotations": {"summary": prompt.strip()},
        },
        "recordings": recordings,
        "prompt": prompt.strip(),
        "expect": {"judge": [e.strip() for e in elements]},
        "needs_judge": True,
    }
    try:
        return Scenario.model_validate(data)
    except ValidationError as error:  # a mock's parameters our calls cannot hold
        raise invalid(
            [f"{file}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]
        ) from error


def mock_recording(file: Path) -> tuple[str, dict[str, Any] | None] | None:
    """The tool a mock file answers for, and its recording (None: a tool we do not have);
    None for a text file that is no mock. Raises ValueError for a mock that cannot be read."""
    lines = file.read_text(errors="replace").split("\n")
    try:
        header = json.loads(lines[0])
    except ValueError:
        return None
    if not isinstance(header, dict) or not isinstance(header.get("tool_name"), str):
        return None
    tool = header["tool_name"]
    params = header.get("match_params") or {}
    if not isinstance(params, dict):
        raise ValueError("match_params: a mapping of the parameters a call must have")
    structured, body = _structured(lines[1:])
    mapper = TOOLS.get(tool)
    if mapper is None:
        return tool, None
    call = mapper({k: v for k, v in params.items() if v != WILDCARD})
    output = _output(body)
    recording: dict[str, Any] = {"call": call, "output": output}
    if structured.get("status") == "error":
        reason = structured.get("error") or output or "the tool failed"
        recording |= {"status": "error", "error": str(reason)}
    return tool, recording


def _structured(lines: list[str]) -> tuple[dict[str, Any], str]:
    """The structured-result line (the current format) and the output after it; the older
    format has the output from the first line on."""
    if lines:
        try:
            first = json.loads(lines[0])
        except ValueError:
            first = None
        if isinstance(first, dict):
            return first, "\n".join(lines[1:])
    return {}, "\n".join(lines)


_SECTIONS = re.compile(r"^stdout:\n(?P<out>.*?)(?:\n+stderr:\n?(?P<err>.*))?$", re.DOTALL)


def _output(body: str) -> str:
    """kubectl's `stdout:`/`stderr:` sections as one output (stderr only when it says
    something); any other text as it is."""
    sections = _SECTIONS.match(body.strip("\n") + "\n")
    if sections is None:
        return body.strip("\n")
    out, err = sections["out"].strip("\n"), (sections["err"] or "").strip()
    return out + (f"\n{err}" if err else "")


def _description(
    name: str, case: Mapping[str, Any], prompt: str, unsupported: set[str], mocked: bool
) -> str:
    parts = [str(case.get("description") or f"HolmesGPT case {name}: {prompt}").strip()]
    if unsupported:
        parts.append(
            "Unsupported tools (the agent has no such tool; their mocks are not used): "
            + ", ".join(sorted(unsupported))
        )
    if not mocked:
        parts.append("No mock tool outputs: every call is answered as not found")
    noted = [key for key in NOTED if case.get(key) not in (None, False, "")]
    if noted:
        parts.append(f"Not used here: {', '.join(noted)} (HolmesGPT's own runner reads them)")
    return " ".join(p if p.endswith((".", "?", "!")) else p + "." for p in parts)
