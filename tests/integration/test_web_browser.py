"""The web page in a real browser: headless Chromium (Debian's `chromium`, driven over the
DevTools protocol by tests.cluster.browser) against `serve` on the local engine. An alert starts
a run that waits at its approval gate; the browser signs in with the API token, clicks Approve,
and the gated step runs. Screenshots at laptop and phone width go to $WEB_SCREENSHOTS (default:
the test's folder; `WEB_SCREENSHOTS=docs/images` refreshes the documentation's)."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from punchingfist.api import load_resources
from punchingfist.compiler import compile_resources
from punchingfist.executors.local import LocalExecutor
from punchingfist.server import ServerState, create_app
from punchingfist.store import WorkflowRun, upgrade
from punchingfist.store.models import Approval, RunStep
from tests.cluster.browser import Chromium, chromium_path
from tests.conftest import EXAMPLES
from tests.integration.conftest import _unavailable
from tests.integration.servers import uvicorn_app

GATE = "resolution-attempt-approval"
LAPTOP, PHONE = (1280, 900), (390, 844)
SOURCE = """
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: am}
spec: {type: webhook, config: {path: /webhook/alerts}, triggerWorkflow: agent-alert-investigation}
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, ServerState]]:
    """`serve --executor local` (replayed model) on SQLite, over HTTP on loopback."""
    database = f"sqlite:///{tmp_path / 'punchingfist.db'}"
    upgrade(database)
    resources = load_resources(SOURCE)
    resources += load_resources((EXAMPLES / "workflows/agent-alert-investigation.yaml").read_text())
    for sink in sorted((EXAMPLES / "sinks").glob("*.yaml")):  # not configured here: none sends
        resources += load_resources(sink.read_text())
    state = ServerState.from_resources(resources, database, dispatch_interval=0.1)
    state.executor = LocalExecutor(
        {c.workflow.name: c for c in compile_resources(resources)},
        state.sessions,
        tmp_path / "runs",
        environ={
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": str(tmp_path / "home"),
            "PYTHONPATH": str(EXAMPLES.parent),
            "PF_SINK_BUDGET_SECONDS": "1",
        },
        metrics=state.metrics,
        replay=os.pathsep.join(
            str(EXAMPLES / "scenarios" / name) for name in ("oom-crash-loop", "crash-loop-triage")
        ),
    )
    with uvicorn_app(create_app(state)) as url:
        yield url, state
    state.engine.dispose()


def wait(
    what: str, probe: Callable[[], Any], timeout: float = 120, seen: Callable[[], Any] = str
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}: {seen()}")


def mark(chromium: Chromium) -> None:
    """Mark the document shown now, so that `loaded` waits for the next one."""
    chromium.evaluate("window.pfStale = true")


def visit(chromium: Chromium, url: str, shows: str | None = None) -> None:
    """Open `url`; wait until it (or where it redirects to, `shows`) is loaded."""
    mark(chromium)
    chromium.open(url)
    loaded(chromium, shows or urllib.parse.urlsplit(url).path)


def loaded(chromium: Chromium, path: str) -> None:
    """Wait until a new document (not the one `mark`ed) shows `path`, loaded."""
    wait(
        f"the browser to show {path}",
        lambda: chromium.evaluate(
            f"!window.pfStale && location.pathname === {json.dumps(path)}"
            " && document.readyState === 'complete'"
        ),
        60,
        lambda: chromium.evaluate("location.href + '\\n' + document.body.innerText"),
    )


def click(chromium: Chromium, selector: str) -> None:
    """A real mouse click in the middle of the element (scrolled into view first)."""
    box = chromium.evaluate(
        f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
        " if (!e) return null; e.scrollIntoView({block: 'center'});"
        " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2];"
        " })()"
    )
    assert box, f"no {selector} on the page: {chromium.evaluate('document.body.innerText')}"
    mark(chromium)  # a click that navigates: `loaded` waits for the next page
    for kind in ("mousePressed", "mouseReleased"):
        chromium.send(
            "Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1
        )


def type_into(chromium: Chromium, selector: str, text: str) -> None:
    click(chromium, selector)
    chromium.send("Input.insertText", text=text)


def screenshot(chromium: Chromium, path: Path) -> None:
    """The whole page (up to 2400 pixels tall) at the browser's width."""
    height = min(int(chromium.evaluate("document.documentElement.scrollHeight")), 2400)
    chromium.send(
        "Emulation.setDeviceMetricsOverride",
        width=chromium.width,
        height=max(height, 200),
        deviceScaleFactor=1,
        mobile=chromium.width < 600,
    )
    chromium.screenshot(path)
    chromium.send(
        "Emulation.setDeviceMetricsOverride",
        width=chromium.width,
        height=chromium.height,
        deviceScaleFactor=1,
        mobile=chromium.width < 600,
    )


@pytest.mark.timeout(300)
def test_approve_in_the_browser_and_the_gated_step_runs(
    served: tuple[str, ServerState], tmp_path: Path
) -> None:
    browser = chromium_path()
    if browser is None:
        _unavailable("Debian's chromium is not installed (hack/system-deps.sh installs it)")
        raise AssertionError
    url, state = served
    shots = Path(os.environ.get("WEB_SCREENSHOTS") or tmp_path)
    token = state.access.headers()["Authorization"].removeprefix("Bearer ")
    alert = (EXAMPLES / "alerts" / "pod-crashlooping.json").read_bytes()
    request = urllib.request.Request(
        f"{url}/webhook/alerts", alert, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        (run,) = json.load(answer)["runs"]

    def pending() -> bool:
        with state.sessions() as session:
            return (
                session.scalars(select(Approval).where(Approval.gate == GATE)).first() is not None
            )

    wait("the run to wait at its gate", pending)

    with Chromium(browser, *LAPTOP) as chromium:
        visit(chromium, f"{url}/ui/approvals", shows="/ui/login")  # nobody signed in yet
        type_into(chromium, "#token", token)
        click(chromium, "form button[type=submit]")
        loaded(chromium, "/ui/approvals")
        text = chromium.evaluate("document.body.innerText")
        assert run in text and GATE in text, text
        screenshot(chromium, shots / "web-approvals.png")
        type_into(chromium, "input[name=approver]", "carol")
        type_into(chromium, "input[name=comment]", "go ahead")
        click(chromium, "button.approve")
        loaded(chromium, f"/ui/runs/{run}")
        mark(chromium)  # from here on, the same document: only the page's script changes it
        shown = chromium.evaluate("document.querySelector('#run-status').textContent")
        assert shown == "running", f"the run page was loaded on a run that is {shown}"

        def finished() -> bool:
            with state.sessions() as session:
                found = WorkflowRun.named(session, run)
                return found is not None and found.status in ("succeeded", "failed", "error")

        wait("the run to finish", finished, 240)
        with state.sessions() as session:
            gate = session.scalars(select(Approval).where(Approval.gate == GATE)).one()
            assert (gate.decision, gate.approver, gate.channel, gate.comment) == (
                "approved",
                "carol",
                "web",
                "go ahead",
            )
            phases = {s.name: s.phase for s in session.scalars(select(RunStep))}
        assert phases[GATE] == "Succeeded" and phases["resolution-attempt"] == "Succeeded", phases
        with state.sessions() as session:
            final = WorkflowRun.named(session, run)
            assert final is not None
        # The page followed the run to its end by itself (its script; never reloaded).
        wait(
            "the page to follow the run to its end",
            lambda: chromium.evaluate(
                "window.pfStale === true && !document.body.dataset.live"
                f" && document.querySelector('#run-status').textContent === {final.status!r}"
            ),
            30,
        )
        assert "by carol via web" in chromium.evaluate("document.body.innerText")
        visit(chromium, f"{url}/ui/runs/{run}")
        text = chromium.evaluate("document.body.innerText")
        for shown in ("Report", "Root cause", "Confidence", "Tool calls", "resolution-attempt"):
            assert shown in text, (shown, text)
        tree = chromium.evaluate(
            "[...document.querySelectorAll('.tree > li')].map(li => ["
            "li.querySelector('.name').textContent,"
            " [...li.querySelectorAll(':scope ul .name')].map(n => n.textContent)])"
        )
        assert ["resolution-attempt", [GATE]] in tree, tree  # the gate under the step it held
        assert any(name == "on exit" and "pf-outputs" in below for name, below in tree), tree
        screenshot(chromium, shots / "web-run.png")
        visit(chromium, f"{url}/ui/")
        assert "PodCrashLooping" in chromium.evaluate("document.body.innerText")
        screenshot(chromium, shots / "web-incidents.png")
        incident = chromium.evaluate("document.querySelector('a.title').getAttribute('href')")
        visit(chromium, f"{url}{incident}")
        screenshot(chromium, shots / "web-incident.png")

    with Chromium(browser, *PHONE) as phone:
        visit(phone, f"{url}/ui/login")
        type_into(phone, "#token", token)
        click(phone, "form button[type=submit]")
        loaded(phone, "/ui/")
        visit(phone, f"{url}/ui/runs/{run}")
        wide = phone.evaluate("document.documentElement.scrollWidth")
        assert wide <= PHONE[0], f"the run page is {wide} px wide on a {PHONE[0]} px phone"
        screenshot(phone, shots / "web-run-phone.png")
    for name in ("web-approvals", "web-run", "web-incidents", "web-run-phone"):
        assert (shots / f"{name}.png").stat().st_size > 10_000, f"{name}.png is (nearly) blank"
