"""The HTML eval report in a real browser (Debian's headless `chromium`): the summary shows the
pass rate, hostile text in an answer stays text (no script of it runs), and the page
fits a phone's width, its wide tables scrolling inside their own box.

The laptop-width screenshot goes to $EVAL_REPORT_SCREENSHOT when set, else into the test's
directory; docs/images/eval-report.png is made with

    EVAL_REPORT_SCREENSHOT=docs/images/eval-report.png .venv/bin/pytest \\
        tests/integration/test_evals_report_browser.py
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from punchingfist.evals.report import render
from punchingfist.evals.results import CaseResult, Report
from tests.cluster.browser import Chromium, chromium_path
from tests.conftest import unavailable

HOSTILE = "<script>window.pwned = 1</script>blamed the node"
PAGE = """(() => {
  const cell = (id) => document.getElementById(id)?.innerText ?? "";
  const table = document.getElementById("scenarios");
  if (!table) return {ready: false};
  for (const details of document.querySelectorAll("details")) details.open = true;
  const scenarios = table.parentElement;
  return {
    ready: document.readyState === "complete",
    summary: cell("summary"),
    scenarios: cell("scenarios"),
    answers: [...document.querySelectorAll("details")].map((d) => d.innerText).join("\\n"),
    pwned: typeof window.pwned !== "undefined",
    innerWidth: window.innerWidth,
    scrollWidth: document.documentElement.scrollWidth,
    tableScrolls: scenarios.scrollWidth > scenarios.clientWidth,
    tableOverflow: getComputedStyle(scenarios).overflowX,
    height: document.documentElement.scrollHeight,
  };
})()"""


def _case(scenario: str, tags: list[str], status: str, **fields: Any) -> CaseResult:
    total = fields.pop("tokens", 9000)
    return CaseResult(
        scenario=scenario,
        tags=tags,
        status=status,  # type: ignore[arg-type]
        tokens={"prompt": total - total // 10, "completion": total // 10, "total": total},
        tool_calls=[{"id": f"call-{n}"} for n in range(fields.pop("calls", 5))],
        **fields,
    )


def _report() -> dict[str, Any]:
    """A run of nine scenarios, as a user would see one: passes, failures, a skip."""
    cost = 0.0000008  # per token
    cases = [
        _case(
            "crashloop-missing-configmap",
            ["crashloop", "config"],
            "passed",
            turns=4,
            tokens=8100,
            seconds=14.2,
        ),
        _case("crashloop-bad-command", ["crashloop"], "passed", turns=5, tokens=9600, seconds=17.9),
        _case(
            "oom-limit-too-low",
            ["oom", "resources"],
            "failed",
            turns=7,
            tokens=15400,
            seconds=31.5,
            overconfident=True,
            reasons=["root cause does not state: the memory limit (256Mi)"],
            answer={
                "summary": "The pod restarts.",
                "root_cause": HOSTILE,
                "confidence": 0.9,
                "evidence": ["call-2"],
            },
        ),
        _case("image-pull-typo", ["image"], "passed", turns=3, tokens=6200, seconds=9.8),
        _case("pending-no-capacity", ["scheduling"], "passed", turns=6, tokens=12800, seconds=22.4),
        _case(
            "readiness-probe-wrong-port",
            ["probes"],
            "failed",
            turns=8,
            tokens=18900,
            seconds=40.1,
            reasons=[
                "evidence: no cited kubectl describe call showed 'readiness probe failed'",
                "blamed a red herring: 'DNS'",
            ],
            answer={
                "summary": "DNS resolution fails in the cluster.",
                "root_cause": "CoreDNS is overloaded.",
                "confidence": 0.55,
                "evidence": [],
            },
        ),
        _case("healthy-control", ["control"], "passed", turns=2, tokens=4100, seconds=6.3),
        _case(
            "pvc-unbound", ["storage", "scheduling"], "passed", turns=5, tokens=10100, seconds=19.0
        ),
        _case(
            "node-pressure-live",
            ["live"],
            "skipped",
            calls=0,
            tokens=0,
            reasons=["live scenario without recordings: run with --live"],
        ),
    ]
    for case in cases:
        case.cost_usd = round(case.tokens["total"] * cost, 6) if case.status != "skipped" else None
    return Report(
        model={"name": "qwen2.5:32b", "endpoint": "http://127.0.0.1:11434/v1", "mode": "offline"},
        judge={"model": "gpt-4.1", "endpoint": "https://api.openai.com/v1"},
        started="2026-12-03T04:00:00Z",
        finished="2026-12-03T04:03:20Z",
        options={"repeat": 1, "jobs": 4, "live": False},
        results=cases,
    ).as_dict()


def _shown(chromium: Chromium) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        shown: dict[str, Any] = chromium.evaluate(PAGE) or {}
        if shown.get("ready") and shown.get("summary"):
            return shown
        assert time.monotonic() < deadline, f"the report did not load: {shown}"
        time.sleep(0.1)


def _viewport(chromium: Chromium, width: int, height: int, mobile: bool) -> None:
    chromium.send(
        "Emulation.setDeviceMetricsOverride",
        width=width,
        height=height,
        deviceScaleFactor=1,
        mobile=mobile,
    )


@pytest.mark.timeout(120)
def test_the_html_report_reads_on_a_laptop_and_a_phone(tmp_path: Path) -> None:
    browser = chromium_path()
    if browser is None:
        unavailable("Debian's chromium is not installed (hack/system-deps.sh)", "integration")
    page = tmp_path / "report.html"
    page.write_text(render(_report(), "html"), encoding="utf-8")
    screenshot = Path(os.environ.get("EVAL_REPORT_SCREENSHOT") or tmp_path / "eval-report.png")

    with Chromium(browser, width=1280, height=800) as chromium:
        chromium.open(page.as_uri())
        laptop = _shown(chromium)
        assert "Pass rate\t6/8 (75.0 %)" in laptop["summary"], laptop["summary"]
        assert "Confidently wrong\t1" in laptop["summary"], laptop["summary"]
        assert laptop["scrollWidth"] <= laptop["innerWidth"], laptop
        # Hostile text is shown as text, and nothing of it ran.
        assert not laptop["pwned"]
        assert HOSTILE in laptop["answers"]
        assert "CoreDNS is overloaded." in laptop["answers"]
        # The whole page, folded answers closed again, at laptop width.
        chromium.open(page.as_uri())
        _shown(chromium)
        height = chromium.evaluate(
            'document.querySelectorAll("details").forEach(d => d.open = false);'
            "document.documentElement.scrollHeight"
        )
        _viewport(chromium, 1280, min(height, 2000), mobile=False)
        time.sleep(0.3)  # the resized page is drawn on the next frame
        chromium.screenshot(screenshot)

        _viewport(chromium, 390, 844, mobile=True)
        chromium.open(page.as_uri())
        phone = _shown(chromium)
    assert phone["innerWidth"] == 390, "the page does not set a device-width viewport"
    assert phone["scrollWidth"] <= phone["innerWidth"], phone
    # The scenario table is wider than a phone: it scrolls inside its own box.
    assert phone["tableScrolls"] and phone["tableOverflow"] == "auto", phone
    assert "6/8 (75.0 %)" in phone["summary"]
    assert screenshot.stat().st_size > 20_000, "the screenshot is (nearly) blank"
