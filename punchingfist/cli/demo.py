"""`punchingfist demo`: the main job on one machine, offline, in about a minute.

The embedded server (SQLite, the local engine as executor) is started on the examples; the
sample crash-loop alert is posted to its Alertmanager webhook like Alertmanager would; the run
it queues is executed here, and its workflow sink chains the escalation run through the
server's own trigger API; then the stored alert, incident, runs and reports are shown, read
back through the server's API. A real Alertmanager is started on loopback when Debian's
`prometheus-alertmanager` is installed, and the annotation the run left on the alert is shown;
sinks with nothing to reach here (Slack, Jira, PagerDuty without credentials) say they are not
configured and show what they would have sent.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from punchingfist.api import OperatorConfig, Resource, Sink, load_resources
from punchingfist.api.sources import WebhookSource
from punchingfist.cli.assembly import ApiAuth, LocalRuns, ServerOptions, assemble
from punchingfist.cli.live import LiveObserver
from punchingfist.errors import PunchingFistError
from punchingfist.runs.report import render
from punchingfist.runtime.sinks.alertmanager import ENDPOINT_ENV as ALERTMANAGER_ENV
from punchingfist.runtime.sinks.workflow import ENDPOINT_ENV as SERVER_ENV
from punchingfist.runtime.sinks.workflow import TOKEN_ENV as SERVER_TOKEN_ENV

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ALERT = "alerts/pod-crashlooping.json"
WEBHOOK = "/webhook/triage-workflow"
"""The example Source `alertmanager-critical`: the design document's triage workflow (no gate),
whose Sink `workflow-escalation` chains `escalation-workflow` for a critical alert."""
WEBHOOK_SECRET = ("webhook-secret", "token")
"""The Secret the example webhook Sources authenticate with (the demo makes a random one)."""
FINISHED = ("succeeded", "failed", "error")
RUN_TIMEOUT = 300.0
SINK_BUDGET_SECONDS = "3"
"""A sink whose service does not answer gives up after this long."""
PLACEHOLDERS = {
    "slack": ("bot_token", "SLACK_BOT_TOKEN"),
    "pagerduty": ("routing_key", "PAGERDUTY_ROUTING_KEY"),
}
"""Clear-text credentials of the example Sinks (the design document's `xoxb-secret`,
`service-key`): the demo uses the variable's value from the environment instead, or none."""


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


def _resources(examples: Path, environ: dict[str, str]) -> tuple[list[Resource[Any]], list[str]]:
    """The examples' Sources, Workflows, Sinks and OperatorConfig, with their clear-text
    placeholder credentials replaced (see `PLACEHOLDERS`); and what was replaced."""
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
    replaced: list[str] = []
    for index, resource in enumerate(resources):
        if isinstance(resource, Sink) and resource.spec.type in PLACEHOLDERS:
            field, variable = PLACEHOLDERS[resource.spec.type]
            if getattr(resource.spec.config, field) is not None:
                value = environ.get(variable, "")
                config_ = resource.spec.config.model_copy(update={field: value})
                spec = resource.spec.model_copy(update={"config": config_})
                resources[index] = dataclasses.replace(resource, spec=spec)
                replaced.append(f"Sink {resource.name} ({variable})")
        elif isinstance(resource, OperatorConfig) and resource.spec.chat:
            chat = resource.spec.chat
            if chat.slack is not None and chat.slack.bot_token is not None:
                value = environ.get("SLACK_BOT_TOKEN", "")
                slack = chat.slack.model_copy(update={"bot_token": value})
                spec = resource.spec.model_copy(
                    update={"chat": chat.model_copy(update={"slack": slack})}
                )
                resources[index] = OperatorConfig(metadata=resource.metadata, spec=spec)
                replaced.append(f"OperatorConfig {resource.name} (SLACK_BOT_TOKEN)")
    return resources, replaced


def _alertmanager(stack: ExitStack, base: Path) -> str | None:
    """A real Alertmanager on loopback when Debian's `prometheus-alertmanager` is installed
    (stopped when `stack` closes); its URL, or None."""
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        return None
    folder = base / "alertmanager"
    folder.mkdir(parents=True, exist_ok=True)
    config = {"route": {"receiver": "nobody"}, "receivers": [{"name": "nobody"}]}
    (folder / "alertmanager.yml").write_text(json.dumps(config))
    url = f"http://127.0.0.1:{_free_port()}"
    log = stack.enter_context((folder / "alertmanager.log").open("wb"))
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={folder / 'alertmanager.yml'}",
            f"--storage.path={folder / 'data'}",
            f"--web.listen-address={url.removeprefix('http://')}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    stack.callback(process.wait, 10)
    stack.callback(process.terminate)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1):
                return url
        except OSError:
            time.sleep(0.2)
    _say(f"   (Alertmanager did not start; see {folder / 'alertmanager.log'})")
    return None


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
        port = _free_port()
        environ = dict(os.environ) | {
            "PF_SINK_BUDGET_SECONDS": SINK_BUDGET_SECONDS,
            # The workflow sink chains into this server's trigger API with its API token.
            SERVER_ENV: f"http://127.0.0.1:{port}",
            SERVER_TOKEN_ENV: token,
        }
        alertmanager = _alertmanager(stack, base)
        if alertmanager:
            environ[ALERTMANAGER_ENV] = alertmanager
        else:
            environ.pop(ALERTMANAGER_ENV, None)
        resources, replaced = _resources(examples, environ)
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
            resources,
            database,
            auth=ApiAuth("token", token=token),
            secrets_dir=base / "secrets",
            executor=local,
            dispatch_interval=0.2,
        )
        assembly = assemble(options)
        state = assembly.state
        url = assembly.start(stack, "127.0.0.1", port)
        api = _Server(url, token)
        _say(
            f"① embedded server on {url}: {len(state.sources)} Sources, "
            f"{len(state.workflows)} Workflows, SQLite at {base / 'punchingfist.db'}, "
            "runs on the local engine"
        )
        _web_page(url, token, base)  # (#24 part 3: the web page)
        if alertmanager:
            _say(f"   Alertmanager {alertmanager} (prometheus-alertmanager on loopback)")
        else:
            _say(
                "   no Alertmanager here (install Debian's prometheus-alertmanager, or set "
                f"{ALERTMANAGER_ENV}): its sinks will say not configured"
            )
        if replaced:
            _say(
                "   the examples' clear-text credentials are placeholders (xoxb-secret, "
                f"service-key): {', '.join(replaced)} take the variable from your environment "
                "instead; unset, those sinks say not configured and show what they would send"
            )
        at_path = [
            s.name
            for s in state.sources
            if isinstance(s.spec, WebhookSource) and s.spec.config.path == WEBHOOK
        ]
        payload = (examples / ALERT).read_bytes()
        answer = api.call(WEBHOOK, payload, token=webhook_token)
        names = answer["runs"]
        _say(
            f"② Alertmanager-style POST of {ALERT} to {WEBHOOK} (bearer token of Secret "
            f"{WEBHOOK_SECRET[0]}) → {answer['new']} new alert, {len(names)} investigation of "
            f"its Alertmanager group: {', '.join(names) or 'none'} (Source "
            f"{', '.join(at_path) or 'none'} listens at {WEBHOOK}; the other webhook Sources "
            "have their own paths)"
        )
        if not names:
            raise PunchingFistError("the alert started no run: check the examples' Sources")
        _say("③ the investigations, live from the local engine (one run at a time):")
        runs = [_wait(api, name) for name in names]
        chained = _chained(runs)
        runs += [_wait(api, name) for name, _ in chained]
        _show(api, runs)
        if alertmanager:
            _show_alertmanager(alertmanager, _alertname(payload))
        _say()
        why = [f"{name} (Source {', '.join(at_path)} at {WEBHOOK})" for name in names]
        why += [f"{name} (chained by {reason})" for name, reason in chained]
        _say(f"⑥ one alert started {len(runs)} investigation(s): {'; '.join(why)}")
        failed = [run["name"] for run in runs if run["status"] != "succeeded"]
        _say(
            "   every run Succeeded (skipped sinks are marked ⏭️)"
            if not failed
            else f"   not Succeeded: {', '.join(failed)}"
        )
        _stay_up(url)  # (#24 part 3: the web page)
        return 0 if not failed else 1
    return 1


def _web_page(url: str, token: str, base: Path) -> None:
    """Where the web page is and how to sign in: the demo's API token, in a 0600 file (not on
    the terminal)."""
    path = base / "api-token"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    _say(f"   web page: {url}/ui/ (sign in with the API token in {path})")


def _stay_up(url: str) -> None:
    """At a terminal, keep the server (and its web page) up until Enter or Ctrl-C; elsewhere
    (make demo in CI, tests) end now."""
    if not sys.stdin.isatty():
        return
    _say(f"   the web page stays up at {url}/ui/: press Enter (or Ctrl-C) to stop")
    try:
        input()
    except (EOFError, KeyboardInterrupt):
        _say()


def _wait(api: _Server, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        run: dict[str, Any] = api.call(f"/api/v1/runs/{name}")
        if run["status"] in FINISHED or time.monotonic() > deadline:
            return run
        time.sleep(0.3)


def _chained(runs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The runs the workflow sinks of `runs` started: (run name, which sink and why)."""
    found = []
    for run in runs:
        for delivery in run.get("sink_deliveries", []):
            record = delivery.get("detail") or {}
            started = record.get("external_id")
            chaining = delivery["sink_type"] == "workflow" and delivery["outcome"] == "delivered"
            if chaining and started:
                how = (record.get("result") or {}).get("detail") or "started"
                sink = delivery["sink_name"]
                found.append((str(started), f"Sink {sink} of {run['name']}: {how}"))
    return found


def _alertname(payload: bytes) -> str:
    """The name of the first alert of an Alertmanager notification."""
    alerts = json.loads(payload).get("alerts") or [{}]
    return str((alerts[0].get("labels") or {}).get("alertname", ""))


def _show_alertmanager(url: str, alertname: str) -> None:
    """What the run left on the alert in Alertmanager: its `ai_` annotations."""
    query = urllib.parse.quote(f'alertname="{alertname}"')
    with urllib.request.urlopen(f"{url}/api/v2/alerts?filter={query}", timeout=10) as response:
        alerts = json.loads(response.read())
    _say()
    _say(f"⑤ the alert in Alertmanager ({url}/#/alerts):")
    for alert in alerts:
        notes = {k: v for k, v in (alert.get("annotations") or {}).items() if k.startswith("ai_")}
        state = alert["status"]["state"]
        _say(f"   {alert['labels'].get('alertname')} {state}, annotated by the run:")
        for key, value in sorted(notes.items()):
            _say(f"     {key}: {str(value)[:200]}")
    if not alerts:
        _say("   (no such alert: the Alertmanager sink did not deliver)")


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
