"""`punchingfist demo`: the main job on one machine, offline, in about a minute.

The embedded server (SQLite, the local engine as executor) is started on the examples; the
sample crash-loop alert is posted to its Alertmanager webhook like Alertmanager would; the run
it queues is executed here; then the stored alert, incident, run and report are shown, read
back through the server's own API.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from punchingfist.api import OperatorConfig, Resource, load_resources
from punchingfist.cli.assembly import ApiAuth, LocalRuns, ServerOptions, assemble
from punchingfist.cli.live import LiveObserver
from punchingfist.errors import PunchingFistError
from punchingfist.runs.report import render

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ALERT = "alerts/pod-crashlooping.json"
WEBHOOK = "/webhook/triage"
"""The example Source `critical-alerts`: the design document's triage workflow, no gate."""
WEBHOOK_SECRET = ("webhook-secret", "token")
"""The Secret the example webhook Sources authenticate with (the demo makes a random one)."""
FINISHED = ("succeeded", "failed", "error")
RUN_TIMEOUT = 300.0
SINK_BUDGET_SECONDS = "3"
"""Sinks with nothing to reach (no Slack, no Alertmanager here) give up after this long."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="the whole loop on this machine: an alert in, an investigation run, a report out",
        description=(
            "Start the embedded server on the examples (SQLite in a temporary directory, the "
            "local engine as executor), fire the sample crash-loop alert at its webhook, let the "
            "design document's triage workflow run, and show the stored alert, incident, run "
            "and report. Offline: with no model configured it replays a recorded scenario."
        ),
    )
    demo.add_argument(
        "--examples",
        default=None,
        metavar="DIR",
        help="the examples folder (default: the one beside this package)",
    )
    demo.add_argument("--keep", metavar="DIR", help="keep the database and run files in DIR")
    demo.add_argument("--llm-endpoint", metavar="URL", help="use this model instead of a replay")
    demo.add_argument("--llm-model", metavar="NAME", help="the model at --llm-endpoint")
    demo.set_defaults(handler=run_demo)


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

    def call(self, path: str, body: bytes | None = None, token: str | None = None) -> Any:
        bearer = token or self.token
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {bearer}"}
        request = urllib.request.Request(self.url + path, data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


def _say(text: str = "") -> None:
    print(text, flush=True)


def run_demo(args: argparse.Namespace) -> int:
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
        token = secrets.token_urlsafe(32)
        webhook_token = secrets.token_urlsafe(32)
        secret = base / "secrets" / WEBHOOK_SECRET[0] / WEBHOOK_SECRET[1]
        secret.parent.mkdir(parents=True, exist_ok=True)
        secret.write_text(webhook_token)
        environ = dict(os.environ) | {"PF_SINK_BUDGET_SECONDS": SINK_BUDGET_SECONDS}
        local = LocalRuns(
            base / "runs",
            environ,
            endpoint=args.llm_endpoint,
            model=args.llm_model,
            replay_fallback=True,
            observer=LiveObserver(sys.stdout),
            parallel_runs=1,
        )
        options = ServerOptions(
            _resources(examples),
            database,
            auth=ApiAuth("token", token=token),
            secrets_dir=base / "secrets",
            executor=local,
            dispatch_interval=0.2,
        )
        assembly = assemble(options)
        state = assembly.state
        url = assembly.start(stack, "127.0.0.1", _free_port())
        api = _Server(url, token)
        _say(
            f"① embedded server on {url}: {len(state.sources)} Sources, "
            f"{len(state.workflows)} Workflows, SQLite at {base / 'punchingfist.db'}, "
            "runs on the local engine"
        )
        payload = (examples / ALERT).read_bytes()
        answer = api.call(WEBHOOK, payload, token=webhook_token)
        names = answer["runs"]
        _say(
            f"② Alertmanager-style POST of {ALERT} to {WEBHOOK} (bearer token of Secret "
            f"{WEBHOOK_SECRET[0]}) → {answer['new']} new alert, {len(names)} investigation of "
            f"its Alertmanager group: {', '.join(names) or 'none'}"
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
