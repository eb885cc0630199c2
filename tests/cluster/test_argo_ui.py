"""The Argo UI for step logs (#20): `argo server` (our build of `argo`, with Argo's web app in
it) on a loopback port against the cluster, and headless Chromium on a finished run's page with
its agent step selected and the step's log open. The page must show the run's name and the
agent's turns as a user reads them: the thought, the kubectl call, the final answer.

The log viewer is a terminal drawn on a canvas (xterm.js, from argo-ui), so its text is not in
the DOM: the test reads the terminal's rows (those on screen) from the viewer component.
`scripts/argo-ui-screenshot.sh` runs this test with ARGO_UI_SCREENSHOT set, to refresh the
screenshot in docs/."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hack.cluster import layout
from hack.cluster.layout import NODE_IP
from tests.cluster.browser import Chromium, chromium_path, stop
from tests.cluster.support import NAMESPACE, LiveCluster, ready_template, unique, workflow
from tests.conftest import unavailable
from tests.fakes.openai_server import FakeOpenAI

MODALS = ("FIRST_TIME_USER_MODAL", "FEEDBACK_MODAL", "NEW_VERSION_MODAL")
THOUGHT = "List the pods in the namespace to see what runs there."
ANSWER = "Nothing is broken: every pod in the namespace runs."

# What the page shows, as {text, rows}: the page's visible text and the lines of the log
# viewer's terminal that are on screen, wrapped rows joined (xterm's buffer, through the React
# component that holds it: argo-ui's LogsViewer keeps it as `terminal`).
SHOWN = """(() => {
  const rows = [];
  const viewer = document.querySelector('.logs-viewer');
  const key = viewer && Object.keys(viewer).find(k => k.startsWith('__reactFiber$'));
  let fiber = key ? viewer[key] : null;
  while (fiber && !(fiber.stateNode && fiber.stateNode.terminal)) fiber = fiber.return;
  const terminal = fiber ? fiber.stateNode.terminal : null;
  if (terminal) {
    const buffer = terminal.buffer.active;
    for (let y = buffer.viewportY; y < buffer.viewportY + terminal.rows; y++) {
      const line = buffer.getLine(y);
      if (!line) continue;
      if (line.isWrapped && rows.length) rows[rows.length - 1] += line.translateToString(true);
      else rows.push(line.translateToString(true));
    }
  }
  return {text: document.body ? document.body.innerText : '', rows};
})()"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def argo_server(cluster: LiveCluster) -> Iterator[str]:
    """`argo server` with the admin kubeconfig's rights (`--auth-mode=server`), plain HTTP,
    for as long as the block runs; yields its loopback URL once it answers."""
    port = _free_port()
    log = cluster.layout.logs / "argo-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as output:
        server = subprocess.Popen(
            [
                cluster.binaries["ARGO"],
                "server",
                "--kubeconfig",
                str(cluster.layout.kubeconfig),
                "--namespace",
                layout.ARGO_NAMESPACE,
                "--auth-mode=server",
                "--secure=false",
                f"--port={port}",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            # No first-visit survey, feedback or new-version pop-up over the page.
            env={**os.environ, **dict.fromkeys(MODALS, "false")},
        )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if server.poll() is not None:
            raise AssertionError(f"argo server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/v1/version", timeout=5) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    try:
        cluster.wait(answers, "argo server to answer", 60, lambda: log.read_text()[-2000:])
        yield url
    finally:
        stop(server)


def _agent_run(cluster: LiveCluster) -> tuple[str, dict[str, Any]]:
    """A finished run whose agent step lists the pods (one real kubectl call) and answers."""
    name, key = unique("ui-agent"), f"sk-{uuid.uuid4().hex}"
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}}
    cluster.apply({**secret, "stringData": {"api-key": key}})
    get_pods = {"tool": "kubectl", "verb": "get", "resource": "pods", "namespace": NAMESPACE}
    turns: list[dict[str, Any]] = [
        {"thought": THOUGHT, "action": {"kind": "tool_calls", "calls": [get_pods]}},
        {
            "thought": "The pods are running; nothing to fix.",
            "action": {
                "kind": "final_answer",
                "summary": ANSWER,
                "problem_summary": "No problem found.",
                "root_cause": "None: the alert is a test.",
                "can_auto_fix": False,
                "confidence": 0.9,
                "escalation_notes": "None.",
                "severity_assessment": "info",
                "recommendations": [],
                "evidence": ["call-1"],
            },
        },
    ]
    with FakeOpenAI(turns, host=NODE_IP) as llm:
        llm_config = {
            "provider": "openai-compatible",
            "endpoint": llm.url,
            "model": "fake-model",
            "apiKeySecret": {"secretRef": name, "key": "api-key"},
        }
        step = {
            "name": "investigate",
            "type": "agent",
            "goal": "Is anything broken in the namespace?",
            "tools": ["kubectl"],
            "maxIterations": 3,
            "policy": {"safety": {"allowedNamespaces": [NAMESPACE]}},
        }
        cluster.apply(workflow(name, [step], llmConfig=llm_config))
        ready_template(cluster, name)
        event = json.dumps({"alert": {"alertname": "UiCheck"}})
        run = cluster.submit(name, f"event={event}", "source=manual")
        finished = cluster.finished(run)
        assert finished["status"]["phase"] == "Succeeded", cluster.describe_run(run)
    assert len(llm.requests) == 2, llm.requests
    return run, cluster.step_node(finished, "investigate")


@pytest.mark.timeout(480)
def test_the_argo_ui_shows_a_finished_agent_step_and_its_log(
    cluster: LiveCluster, tmp_path: Path
) -> None:
    browser = chromium_path()
    if browser is None:
        unavailable("Debian's chromium is not installed (make system-deps)", "cluster")
    run, node = _agent_run(cluster)

    with argo_server(cluster) as url:
        with urllib.request.urlopen(f"{url}/", timeout=10) as response:
            index = response.read().decode()
        assert "<script" in index, f"argo was built without its web app: {index[:300]}"
        page = (
            f"{url}/workflows/{NAMESPACE}/{run}?tab=workflow&nodeId={node['id']}"
            f"&sidePanel=logs:{node['id']}:main"
        )
        with Chromium(browser) as chromium:
            chromium.open(page)
            shown: dict[str, Any] = {}

            def readable() -> bool:
                shown.update(chromium.evaluate(SHOWN) or {})
                rows = "\n".join(shown.get("rows", []))
                return run in shown.get("text", "") and THOUGHT in rows and ANSWER in rows

            cluster.wait(readable, f"the UI to show {run}'s agent step log", 90, lambda: str(shown))
            time.sleep(1)  # the terminal's canvas is drawn on the next frame
            screenshot = Path(os.environ.get("ARGO_UI_SCREENSHOT") or tmp_path / "argo-ui.png")
            chromium.screenshot(screenshot)

    # The step, as the node panel names it, and the agent's turns in the terminal, in words.
    assert "investigate" in shown["text"], shown["text"][-2000:]
    rows = "\n".join(shown["rows"])
    assert f"| run {run} | step 'investigate'" in rows, rows
    assert "turn 1/3" in rows and "turn 2/3" in rows, rows
    (call,) = [row for row in shown["rows"] if "[call-1]" in row]
    assert "kubectl get --namespace=punchingfist -- pods -> ok" in call, rows
    assert "2 turns, 1 tool calls" in rows, rows
    assert screenshot.stat().st_size > 20_000, "the screenshot is (nearly) blank"
