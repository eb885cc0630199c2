"""`punchingfist demo`: the main job on one machine, offline, in about a minute.

The embedded server (SQLite, the local engine as executor) is started on the examples; the
sample crash-loop alert is posted to its Alertmanager webhook like Alertmanager would; the run
it queues is executed here; then the stored alert, incident, run and report are shown, read
back through the server's own API.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from punchingfist.api import OperatorConfig, Resource, load_resources
from punchingfist.compiler import compile_resources
from punchingfist.embedded.live import LiveObserver
from punchingfist.runs.report import render
from punchingfist.errors import PunchingFistError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ALERT = "alerts/pod-crashlooping.json"
FINISHED = ("succeeded", "failed", "error")
RUN_TIMEOUT = 300.0
SINK_BUDGET_SECONDS = "3"
"""Sinks with nothing to reach (no Slack, no Alertmanager here) give up after this long."""


def _resources(examples: Path) -> list[Resource[Any]]:
    resources: list[Resource[Any]] = []
    for folder in ("sources", "workflows", "sinks"):
        for file in sorted((examples / folder).glob("*.yaml")):
            resources += load_resources(file.read_text(), origin=str(file))
    config = examples / "operatorconfigs" / "punchingfist-config.yaml"
    resources += [
        r
        for r in load_resources(config.read_text(), origin=str(config))
        if isinstance(r, OperatorConfig)
    ]
    return resources


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class _Server:
    """The embedded server, called with its API token (the read API needs one)."""

    url: str
    token: str

    def call(self, path: str, body: bytes | None = None) -> Any:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"}
        request = urllib.request.Request(self.url + path, data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


def _say(text: str = "") -> None:
    print(text, flush=True)


def run_demo(args: Any) -> int:
    import uvicorn

    from punchingfist.executors.local import LocalExecutor
    from punchingfist.server import ServerState, create_app
    from punchingfist.server.access import TokenAccess
    from punchingfist.store import upgrade

    examples = Path(args.examples) if args.examples else EXAMPLES
    if not (examples / ALERT).is_file():
        raise PunchingFistError(
            f"the demo needs the examples folder of the source tree ({examples / ALERT} is "
            "missing): pass --examples DIR"
        )
    with ExitStack() as stack:
        base = (
            Path(args.keep).resolve()
            if args.keep
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="punchingfist-demo-")))
        )
        base.mkdir(parents=True, exist_ok=True)
        database = f"sqlite:///{base / 'punchingfist.db'}"
        resources = _resources(examples)
        upgrade(database)
        token = secrets.token_urlsafe(32)
        state = ServerState.from_resources(
            resources, database, dispatch_interval=0.2, access=TokenAccess(token, where="demo")
        )
        environ = dict(os.environ) | {"PF_SINK_BUDGET_SECONDS": SINK_BUDGET_SECONDS}
        state.executor = LocalExecutor(
            {c.workflow.name: c for c in compile_resources(resources)},
            state.sessions,
            base / "runs",
            environ=environ,
            endpoint=args.llm_endpoint,
            model=args.llm_model,
            replay_fallback=True,
            metrics=state.metrics,
            observer=LiveObserver(sys.stdout),
            parallel_runs=1,
        )
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(state), host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True, name="demo-server")
        thread.start()
        stack.callback(thread.join, 10)
        stack.callback(setattr, server, "should_exit", True)
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise PunchingFistError("the embedded server did not start")
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        api = _Server(url, token)
        _say(
            f"① embedded server on {url}: {len(state.sources)} Sources, "
            f"{len(state.workflows)} Workflows, SQLite at {base / 'punchingfist.db'}, "
            "runs on the local engine"
        )
        payload = (examples / ALERT).read_bytes()
        answer = api.call("/webhook/alerts", payload)
        names = answer["runs"]
        _say(
            f"② Alertmanager-style POST of {ALERT} to /webhook/alerts → "
            f"{answer['new']} new alert; {len(names)} Sources match it, so {len(names)} runs: "
            f"{', '.join(names) or 'none'}"
        )
        if not names:
            raise PunchingFistError("the alert started no run: check the examples' Sources")
        _say("③ the investigations, live from the local engine (one run at a time):")
        runs = [_wait(api, name) for name in names]
        _show(api, runs)
        return 0 if all(run["status"] in FINISHED for run in runs) else 1
    return 1


def _wait(api: _Server, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        run: dict[str, Any] = api.call(f"/api/v1/runs/{name}")
        if run["status"] in FINISHED or time.monotonic() > deadline:
            return run
        time.sleep(0.3)


def _show(api: _Server, runs: list[dict[str, Any]]) -> None:
    alert = api.call(f"/api/v1/alerts/{runs[0]['alert_id']}")
    incident = api.call(f"/api/v1/incidents/{runs[0]['incident_id']}")
    _say()
    _say("④ what the store now holds (read back through the API):")
    replayed = any(((r.get("outputs") or {}).get("report") or {}).get("replayed") for r in runs)
    triaged = "yes" if alert.get("triage_completed_at") else "no"
    if replayed and triaged == "no":
        triaged = "no (a replayed answer is not recorded as triage)"
    _say(
        f"   alert     {alert['alert_name']} [{alert['severity']}] {alert['status']} | "
        f"fingerprint {alert['fingerprint']} | triaged: {triaged} | "
        f"ai_confidence {alert.get('ai_confidence')}"
    )
    _say(
        f"   incident  {incident['title']} | {incident['status']} | "
        f"{incident['alerts_count']} alert(s)"
    )
    for run in runs:
        steps = ", ".join(f"{s['name']}={s['phase']}" for s in run.get("steps", []))
        deliveries = ", ".join(
            f"{d['sink_name']}={d['outcome']}" for d in run.get("sink_deliveries", [])
        )
        _say(
            f"   run       {run['name']} ({run['workflow_name']}) {run['status']} | "
            f"steps: {steps} | sinks: {deliveries or 'none'}"
        )
    for run in runs:
        report = (run.get("outputs") or {}).get("report")
        if report:
            _say()
            _say(render(report))
