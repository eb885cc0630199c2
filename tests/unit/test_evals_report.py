"""The eval report for people: Markdown and HTML show the summary, tags and every case with
hostile text escaped; `compare` finds the cases whose status changed between two runs."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from punchingfist.evals.report import compare, comparison, render
from punchingfist.evals.results import CaseResult, Report

HOSTILE = "<script>window.pwned = 1</script> named the wrong pod"
PIPE = "root cause says 'memory | OOM'\nwhich is a red herring: [runbook](https://evil.example)"


def case(scenario: str, status: str, **fields: Any) -> CaseResult:
    fields.setdefault("tokens", {"prompt": 900, "completion": 100, "total": 1000})
    fields.setdefault("cost_usd", 0.01)
    return CaseResult(scenario=scenario, status=status, **fields)  # type: ignore[arg-type]


def report(model: str, *results: CaseResult) -> dict[str, Any]:
    return Report(
        model={"name": model, "endpoint": "http://127.0.0.1:11434/v1", "mode": "offline"},
        judge=None,
        started="2026-12-03T04:00:00Z",
        finished="2026-12-03T04:05:00Z",
        options={"repeat": 1, "jobs": 2, "live": False},
        results=list(results),
    ).as_dict()


def before() -> dict[str, Any]:
    return report(
        "qwen2.5:32b",
        case(
            "crashloop-missing-configmap",
            "passed",
            tags=["crashloop", "config"],
            turns=4,
            tool_calls=[{"id": "call-1"}, {"id": "call-2"}],
            seconds=12.0,
        ),
        case(
            "oom-limit-too-low",
            "failed",
            tags=["oom"],
            reasons=[HOSTILE, PIPE],
            turns=6,
            overconfident=True,
            seconds=30.0,
            answer={
                "summary": "<img src=x onerror=alert(1)>",
                "root_cause": "the node",
                "confidence": 0.92,
                "evidence": [],
            },
        ),
        case("image-pull-typo", "passed", tags=["crashloop"], seconds=20.0),
        case("live-only", "skipped", reasons=["live scenario without recordings: use --live"]),
    )


def rows(markdown: str, heading: str) -> list[list[str]]:
    """The cells of the table under `## heading`, header and rule left out."""
    section = markdown.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]


def test_markdown_shows_the_summary_tags_and_every_case() -> None:
    markdown = render(before(), "md")

    summary = dict(rows(markdown, "Summary"))
    assert summary["Model"] == "qwen2.5:32b"
    assert summary["Pass rate"] == "2/3 (66.7 %)"  # of the cases that ran: the skip is not one
    assert summary["Skipped"] == "1"
    assert summary["Confidently wrong"] == "1"
    assert summary["Tokens"] == "3,000 total, 1,000 mean per case"
    assert summary["Cost"] == "$0.0300 total, $0.0100 per case"
    assert summary["Latency"] == "p50 20.0 s, p95 30.0 s (62.0 s in all)"
    assert dict(rows(markdown, "By tag")) == {
        "config": "1/1 (100.0 %)",
        "crashloop": "2/2 (100.0 %)",
        "oom": "0/1 (0.0 %)",
    }
    cases = {row[1]: row for row in rows(markdown, "Scenarios")}
    assert cases["crashloop-missing-configmap"] == [
        "✅",
        "crashloop-missing-configmap",
        "",
        "4",
        "2",
        "1,000",
        "$0.0100",
        "12.0",
    ]
    assert cases["live-only"][0] == "⏭"
    assert cases["live-only"][2] == "live scenario without recordings: use --live"
    assert cases["oom-limit-too-low"][0] == "❌"


def test_markdown_escapes_reasons_for_a_table_cell() -> None:
    markdown = render(before(), "md")

    (line,) = [line for line in markdown.splitlines() if "oom-limit-too-low" in line]
    # One row: the reason's `|` does not open a column, its line break does not end the row,
    # `<script>` is text, not HTML a renderer would pass through, and a link is no link.
    assert line.count("|") - line.count("\\|") == 9, line
    assert "\\<script\\>window.pwned = 1\\</script\\> named the wrong pod" in line
    assert "'memory \\| OOM'<br>which is a red herring: \\[runbook\\](https://evil.example)" in line
    assert "confidently wrong (confidence 0.92)" in line
    assert "<script>" not in markdown


def test_an_unknown_price_is_shown_as_unknown() -> None:
    unpriced = report("llama3.1:8b", case("a", "passed", cost_usd=None), case("b", "failed"))

    markdown = render(unpriced, "md")

    assert dict(rows(markdown, "Summary"))["Cost"] == "unknown total, unknown per case"
    assert {row[1]: row[6] for row in rows(markdown, "Scenarios")} == {
        "a": "unknown",
        "b": "$0.0100",
    }
    html = render(unpriced, "html")
    assert "<td>unknown total, unknown per case</td>" in html


class Page(HTMLParser):
    """The page's text and the elements a self-contained, script-free page must not have."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


def test_html_is_one_escaped_self_contained_page() -> None:
    html = render(before(), "html")
    page = parse(html)
    text = "".join(page.text)

    elements = [tag for tag, _ in page.tags]
    assert "script" not in elements and "img" not in elements and "link" not in elements
    assert not [attrs for _, attrs in page.tags if any(k.startswith("on") for k in attrs)]
    assert not re.search(r"\b(src|href)=\"(https?:)?//", html), "an external asset"
    assert "<style>" in html and '<meta name="viewport"' in html
    # The hostile text is there, as text.
    assert HOSTILE in text
    assert "&lt;script&gt;window.pwned = 1&lt;/script&gt;" in html
    assert "<img src=x onerror=alert(1)>" in text
    assert "memory | OOM" in text
    for shown in (
        "2/3 (66.7 %)",
        "3,000 total, 1,000 mean per case",
        "$0.0300 total",
        "p50 20.0 s, p95 30.0 s",
        "1/1 (100.0 %)",
        "live scenario without recordings",
    ):
        assert shown in text, shown


def test_html_shows_each_failed_answer_in_details() -> None:
    html = render(before(), "html")

    (details,) = re.findall(r"<details id=\"(case-\d)\">(.*?)</details>", html, re.S)
    case_id, body = details
    assert f'<a href="#{case_id}">oom-limit-too-low</a>' in html
    assert "❌ oom-limit-too-low" in body
    assert "<dt>Root cause</dt><dd>the node</dd>" in body
    assert "<dt>Confidence</dt><dd>0.92</dd>" in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body


def test_json_is_the_report_itself() -> None:
    data = before()

    assert json.loads(render(data, "json")) == data


def test_a_repeated_scenario_is_named_with_its_repeat() -> None:
    data = report("m", case("a", "passed", repeat=1), case("a", "failed", repeat=2))

    assert [row[1] for row in rows(render(data, "md"), "Scenarios")] == ["a #1", "a #2"]


def after() -> dict[str, Any]:
    return report(
        "gpt-4.1-mini",
        case(
            "crashloop-missing-configmap",
            "failed",
            tags=["crashloop", "config"],
            reasons=["did not name cart-cfg-e41d0b | the ConfigMap"],
            seconds=8.0,
            cost_usd=None,
        ),
        case("oom-limit-too-low", "passed", tags=["oom"], seconds=14.0),
        case("live-only", "passed", tags=["live"], seconds=50.0),
        case("new-scenario", "passed"),
    )


def test_compare_finds_the_cases_whose_status_changed() -> None:
    data = comparison(before(), after())

    assert data["passed_in_a_failed_in_b"] == [
        {
            "scenario": "crashloop-missing-configmap",
            "repeat": 1,
            "a": {"status": "passed", "reasons": []},
            "b": {"status": "failed", "reasons": ["did not name cart-cfg-e41d0b | the ConfigMap"]},
        }
    ]
    (fixed,) = data["failed_in_a_passed_in_b"]
    assert fixed["scenario"] == "oom-limit-too-low"
    assert fixed["a"]["reasons"] == [HOSTILE, PIPE, "confidently wrong (confidence 0.92)"]
    (other,) = data["other_changes"]
    assert (other["scenario"], other["a"]["status"], other["b"]["status"]) == (
        "live-only",
        "skipped",
        "passed",
    )
    assert data["only_in_a"] == [{"scenario": "image-pull-typo", "repeat": 1}]
    assert data["only_in_b"] == [{"scenario": "new-scenario", "repeat": 1}]
    assert data["by_tag"]["crashloop"]["delta"] == -1.0
    assert data["by_tag"]["oom"]["delta"] == 1.0
    assert data["by_tag"]["live"] == {
        "a": None,
        "b": {"cases": 1, "passed": 1, "pass_rate": 1.0},
        "delta": None,
    }
    assert json.loads(compare(before(), after(), "json")) == data


def test_compare_markdown_puts_the_two_runs_side_by_side() -> None:
    markdown = compare(before(), after(), "md")

    summary = {row[0]: row[1:] for row in rows(markdown, "Summary")}
    assert summary["Pass rate"] == ["2/3 (66.7 %)", "3/4 (75.0 %)", "+8.3 pts"]
    assert summary["Confidently wrong"] == ["1", "0", "-1"]
    assert summary["Tokens"] == ["3,000 (1,000 mean)", "4,000 (1,000 mean)", "+1,000"]
    assert summary["Cost"] == ["$0.0300 ($0.0100 per case)", "unknown (unknown per case)", ""]
    assert summary["Latency p50"] == ["20.0 s", "8.0 s", "-12.0 s"]
    tags = {row[0]: row[1:] for row in rows(markdown, "By tag")}
    assert tags["crashloop"] == ["2/2 (100.0 %)", "0/1 (0.0 %)", "-100.0 pts"]
    assert tags["live"] == ["not run", "1/1 (100.0 %)", ""]
    assert rows(markdown, "Passed in A, failed in B (B's reasons)") == [
        ["crashloop-missing-configmap", "✅ → ❌", "did not name cart-cfg-e41d0b \\| the ConfigMap"]
    ]
    (fixed,) = rows(markdown, "Failed in A, passed in B (A's reasons)")
    assert fixed[:2] == ["oom-limit-too-low", "❌ → ✅"]
    assert "\\<script\\>" in fixed[2] and "<script>" not in markdown
    assert "## Only in A\n\n- image-pull-typo" in markdown
    assert "## Only in B\n\n- new-scenario" in markdown


def test_compare_html_escapes_and_lists_the_changes() -> None:
    html = compare(before(), after(), "html")
    text = "".join(parse(html).text)

    assert "script" not in [tag for tag, _ in parse(html).tags]
    assert HOSTILE in text
    for shown in (
        "Passed in A, failed in B",
        "crashloop-missing-configmap",
        "✅ → ❌",
        "did not name cart-cfg-e41d0b | the ConfigMap",
        "Only in A",
        "image-pull-typo",
        "Only in B",
        "new-scenario",
        "+8.3 pts",
        "not run",
    ):
        assert shown in text, shown


@pytest.mark.parametrize(
    "render_one", [lambda fmt: render(before(), fmt), lambda fmt: compare(before(), after(), fmt)]
)
def test_an_unknown_format_is_refused_by_name(render_one: Any) -> None:
    with pytest.raises(ValueError, match="unknown report format 'pdf': use json, md or html"):
        render_one("pdf")
