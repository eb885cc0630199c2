"""An eval run's report for people: `render` one JSON report (results.Report.as_dict()) as
JSON, Markdown or one self-contained HTML page, and `compare` two of them side by side.

Both read the JSON form, so that a report written yesterday (`--output before.json`) renders and
compares like a fresh one. Scenario names, reasons and the model's answers are text an attacker
can shape (an alert's labels, a tool's output): Markdown escapes them for table cells, HTML is
rendered by Jinja2 with autoescaping on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from typing import Any, Literal

from jinja2 import Environment, FunctionLoader, StrictUndefined

Format = Literal["json", "md", "html"]
STATUS_ICON = {"passed": "✅", "failed": "❌", "skipped": "⏭"}
FIGURES = ("pass rate", "confidently wrong", "tokens", "cost", "latency p50", "latency p95")
"""The summary rows that `compare` puts side by side, in order."""


def _template(name: str) -> str:
    return (resources.files("punchingfist.evals") / "templates" / name).read_text("utf-8")


_templates = Environment(
    loader=FunctionLoader(_template),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


# Figures, as the report writes them.


def rate(passed: int, cases: int) -> str:
    """`23/30 (76.7 %)`; `0/0 (n/a)` when nothing ran."""
    if not cases:
        return f"{passed}/0 (n/a)"
    return f"{passed}/{cases} ({100 * passed / cases:.1f} %)"


def dollars(value: float | None) -> str:
    """`$0.0123`, or `unknown` when the model's price is not known."""
    return "unknown" if value is None else f"${value:.4f}"


def seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def _signed(value: float | None, unit: str = "", digits: int = 0) -> str:
    """`+1.5 s`, `-2`; no sign on no change; empty when either side is unknown."""
    if value is None:
        return ""
    if round(value, digits) == 0:
        return f"{0:.{digits}f}{unit}"
    return f"{value:+,.{digits}f}{unit}"


def _minus(b: float | None, a: float | None) -> float | None:
    return None if a is None or b is None else b - a


def _name(scenario: object, repeat: object, repeated: bool) -> str:
    """A case's name: its scenario, and its repeat (`crashloop #2`) when a scenario ran more
    than once."""
    return f"{scenario} #{repeat}" if repeated else str(scenario)


def _reasons(case: Mapping[str, Any]) -> list[str]:
    """Why a case failed or was skipped: its reasons, its error, whether it was confidently
    wrong."""
    reasons = [str(reason) for reason in case.get("reasons") or []]
    error = case.get("error")
    if error and str(error) not in reasons:
        reasons.append(str(error))
    if case.get("overconfident"):
        confidence = (case.get("answer") or {}).get("confidence")
        reasons.append(f"confidently wrong (confidence {confidence})")
    return reasons


def _option(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _ran(summary: Mapping[str, Any]) -> int:
    return int(summary.get("passed", 0)) + int(summary.get("failed", 0))


def _view(report: dict[str, Any]) -> dict[str, Any]:
    """What Markdown and HTML both show, as text: the run, the summary, tags and cases."""
    summary = report["summary"]
    model = report.get("model") or {}
    options = report.get("options") or {}
    results = report.get("results") or []
    repeated = int(options.get("repeat") or 1) > 1 or any(
        int(case.get("repeat", 1)) > 1 for case in results
    )
    tokens, cost, latency = summary["tokens"], summary["cost_usd"], summary["seconds"]
    cases = []
    for index, case in enumerate(results, 1):
        answer = case.get("answer") or {}
        cases.append(
            {
                "id": f"case-{index}",
                "status": case["status"],
                "icon": STATUS_ICON.get(case["status"], "?"),
                "name": _name(case["scenario"], case.get("repeat", 1), repeated),
                "reasons": _reasons(case),
                "turns": case.get("turns", 0),
                "tool_calls": len(case.get("tool_calls") or []),
                "tokens": f"{(case.get('tokens') or {}).get('total', 0):,}",
                "cost": dollars(case.get("cost_usd")),
                "seconds": f"{case.get('seconds', 0.0):.1f}",
                "answer": {
                    "summary": str(answer.get("summary") or "(none)"),
                    "root_cause": str(answer.get("root_cause") or "(none)"),
                    "confidence": str(answer.get("confidence", "(none)")),
                },
                "judge": case.get("judge"),
                "log": case.get("log"),
            }
        )
    judge = report.get("judge")
    return {
        "model": str(model.get("name") or "(unnamed model)"),
        "endpoint": str(model.get("endpoint") or ""),
        "mode": str(model.get("mode") or ""),
        "judge": f"{judge.get('model')} at {judge.get('endpoint')}" if judge else "none",
        "started": str(report.get("started", "")),
        "finished": str(report.get("finished", "")),
        "options": ", ".join(f"{key} {_option(value)}" for key, value in options.items()),
        "summary": [
            ("Model", str(model.get("name") or "(unnamed model)")),
            ("Pass rate", rate(summary["passed"], _ran(summary))),
            ("Skipped", str(summary.get("skipped", 0))),
            ("Confidently wrong", str(summary.get("overconfident", 0))),
            ("Tokens", f"{tokens['total']:,} total, {tokens['mean']:,} mean per case"),
            ("Cost", f"{dollars(cost['total'])} total, {dollars(cost['per_case'])} per case"),
            (
                "Latency",
                f"p50 {seconds(latency['p50'])}, p95 {seconds(latency['p95'])}"
                f" ({seconds(latency.get('total'))} in all)",
            ),
            ("Turns", f"{(summary.get('turns') or {}).get('mean', 0)} mean per case"),
        ],
        "tags": [
            (tag, rate(entry["passed"], entry["cases"]))
            for tag, entry in (summary.get("by_tag") or {}).items()
        ],
        "cases": cases,
        "failed": [case for case in cases if case["status"] == "failed"],
    }


# Markdown


_MARKDOWN = str.maketrans({c: "\\" + c for c in "\\|<>[]"})


def cell(text: object) -> str:
    """`text` safe in a Markdown table cell: `\\ | < > [ ]` escaped, so that it shows as written
    and a renderer makes no column, HTML or link of it; line breaks as `<br>`."""
    return "<br>".join(line.strip() for line in str(text).translate(_MARKDOWN).splitlines())


def _table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> list[str]:
    header = [cell(name) for name in header]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return [*lines, ""]


def _markdown(view: dict[str, Any]) -> str:
    lines = [
        f"# Eval report: {cell(view['model'])}",
        "",
        f"{cell(view['model'])} at {cell(view['endpoint'] or 'an unnamed endpoint')}"
        f" ({cell(view['mode'] or 'no mode')}); judge: {cell(view['judge'])};"
        f" {cell(view['started'])} to {cell(view['finished'])}; {cell(view['options'])}",
        "",
        "## Summary",
        "",
        *_table(["Figure", "Value"], view["summary"]),
        "## By tag",
        "",
        *(_table(["Tag", "Pass rate"], view["tags"]) if view["tags"] else ["No tags.", ""]),
        "## Scenarios",
        "",
        *_table(
            ["", "Scenario", "Reasons", "Turns", "Tool calls", "Tokens", "Cost", "Seconds"],
            (
                [
                    case["icon"],
                    case["name"],
                    "; ".join(case["reasons"]),
                    case["turns"],
                    case["tool_calls"],
                    case["tokens"],
                    case["cost"],
                    case["seconds"],
                ]
                for case in view["cases"]
            ),
        ),
    ]
    return "\n".join(lines)


def _written(
    data: dict[str, Any],
    fmt: Format,
    view: Callable[[dict[str, Any]], dict[str, Any]],
    markdown: Callable[[dict[str, Any]], str],
    template: str,
) -> str:
    """`data` as JSON, or its `view` as Markdown or through the HTML `template`."""
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if fmt == "md":
        return markdown(view(data))
    if fmt == "html":
        return _templates.get_template(template).render(view=view(data))
    raise ValueError(f"unknown report format {fmt!r}: use json, md or html")


def render(report: dict[str, Any], fmt: Format) -> str:
    """One report (results.Report.as_dict()) as `json` (the dict, indented), `md` or `html`."""
    return _written(report, fmt, _view, _markdown, "report.html")


# Two reports side by side


def _key(case: Mapping[str, Any]) -> tuple[str, int]:
    return str(case["scenario"]), int(case.get("repeat", 1))


def _changed(key: tuple[str, int], a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "scenario": key[0],
        "repeat": key[1],
        "a": {"status": a["status"], "reasons": _reasons(a)},
        "b": {"status": b["status"], "reasons": _reasons(b)},
    }


def comparison(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """What `compare` shows, as data: both summaries, pass rate by tag with B - A, and the cases
    (scenario, repeat) whose status differs or that only one report has."""
    first = {_key(case): case for case in a.get("results") or []}
    second = {_key(case): case for case in b.get("results") or []}
    differences: dict[str, list[dict[str, Any]]] = {
        "passed_in_a_failed_in_b": [],
        "failed_in_a_passed_in_b": [],
        "other_changes": [],
    }
    for key, case in first.items():
        other = second.get(key)
        if other is None or other["status"] == case["status"]:
            continue
        statuses = (case["status"], other["status"])
        group = {
            ("passed", "failed"): "passed_in_a_failed_in_b",
            ("failed", "passed"): "failed_in_a_passed_in_b",
        }.get(statuses, "other_changes")
        differences[group].append(_changed(key, case, other))
    tags_a = a["summary"].get("by_tag") or {}
    tags_b = b["summary"].get("by_tag") or {}
    by_tag = {
        tag: {
            "a": tags_a.get(tag),
            "b": tags_b.get(tag),
            "delta": _rounded(
                _minus(
                    (tags_b.get(tag) or {}).get("pass_rate"),
                    (tags_a.get(tag) or {}).get("pass_rate"),
                )
            ),
        }
        for tag in sorted({*tags_a, *tags_b})
    }
    return {
        "a": {"model": a.get("model"), "started": a.get("started"), "summary": a["summary"]},
        "b": {"model": b.get("model"), "started": b.get("started"), "summary": b["summary"]},
        "by_tag": by_tag,
        **differences,
        "only_in_a": [{"scenario": s, "repeat": r} for s, r in first if (s, r) not in second],
        "only_in_b": [{"scenario": s, "repeat": r} for s, r in second if (s, r) not in first],
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _figures(summary: Mapping[str, Any]) -> dict[str, tuple[str, float | None]]:
    """Each of FIGURES as (text, number to subtract)."""
    tokens, cost, latency = summary["tokens"], summary["cost_usd"], summary["seconds"]
    ran = _ran(summary)
    return {
        "pass rate": (rate(summary["passed"], ran), summary.get("pass_rate")),
        "confidently wrong": (str(summary["overconfident"]), summary["overconfident"]),
        "tokens": (f"{tokens['total']:,} ({tokens['mean']:,} mean)", tokens["total"]),
        "cost": (f"{dollars(cost['total'])} ({dollars(cost['per_case'])} per case)", cost["total"]),
        "latency p50": (seconds(latency["p50"]), latency["p50"]),
        "latency p95": (seconds(latency["p95"]), latency["p95"]),
    }


def _delta(figure: str, b: float | None, a: float | None) -> str:
    difference = _minus(b, a)
    if figure == "pass rate":
        return _signed(None if difference is None else 100 * difference, " pts", 1)
    if figure == "cost":
        if difference is None:
            return ""
        return ("+" if difference > 0 else "-" if difference < 0 else "") + dollars(abs(difference))
    if figure.startswith("latency"):
        return _signed(difference, " s", 1)
    return _signed(difference)


def _compare_view(data: dict[str, Any]) -> dict[str, Any]:
    figures_a, figures_b = _figures(data["a"]["summary"]), _figures(data["b"]["summary"])

    def side(entry: Mapping[str, Any] | None) -> str:
        return "not run" if entry is None else rate(entry["passed"], entry["cases"])

    def name(case: Mapping[str, Any]) -> str:
        return _name(case["scenario"], case["repeat"], case["repeat"] != 1)

    def change(case: Mapping[str, Any]) -> str:
        return " → ".join(STATUS_ICON.get(case[s]["status"], "?") for s in ("a", "b"))

    def models(side: str) -> str:
        return str((data[side]["model"] or {}).get("name") or "(unnamed model)")

    return {
        "a": models("a"),
        "b": models("b"),
        "summary": [
            (
                figure.capitalize(),
                figures_a[figure][0],
                figures_b[figure][0],
                _delta(figure, figures_b[figure][1], figures_a[figure][1]),
            )
            for figure in FIGURES
        ],
        "tags": [
            (
                tag,
                side(entry["a"]),
                side(entry["b"]),
                _signed(None if entry["delta"] is None else 100 * entry["delta"], " pts", 1),
            )
            for tag, entry in data["by_tag"].items()
        ],
        "sections": [
            (title, [(name(case), change(case), case[why]["reasons"]) for case in data[group]])
            for title, group, why in (
                ("Passed in A, failed in B (B's reasons)", "passed_in_a_failed_in_b", "b"),
                ("Failed in A, passed in B (A's reasons)", "failed_in_a_passed_in_b", "a"),
                ("Other changes (B's reasons)", "other_changes", "b"),
            )
        ],
        "only": [
            ("Only in A", [name(case) for case in data["only_in_a"]]),
            ("Only in B", [name(case) for case in data["only_in_b"]]),
        ],
    }


def _compare_markdown(view: dict[str, Any]) -> str:
    a, b = f"A: {view['a']}", f"B: {view['b']}"
    lines = [
        f"# Eval comparison: {cell(view['a'])} (A) and {cell(view['b'])} (B)",
        "",
        "## Summary",
        "",
        *_table(["Figure", a, b, "B - A"], view["summary"]),
        "## By tag",
        "",
        *(_table(["Tag", a, b, "B - A"], view["tags"]) if view["tags"] else ["No tags.", ""]),
    ]
    for title, cases in view["sections"]:
        lines += [f"## {title}", ""]
        rows = ([name, change, "; ".join(why)] for name, change, why in cases)
        lines += _table(["Scenario", "A → B", "Reasons"], rows) if cases else ["None.", ""]
    for title, names in view["only"]:
        if names:
            lines += [f"## {title}", "", *(f"- {cell(name)}" for name in names), ""]
    return "\n".join(lines)


def compare(a: dict[str, Any], b: dict[str, Any], fmt: Format) -> str:
    """Two reports side by side (`punchingfist eval compare A.json B.json`): as `json` (the
    `comparison` dict), `md` or `html`."""
    return _written(comparison(a, b), fmt, _compare_view, _compare_markdown, "compare.html")
