"""Embedded mode end to end: `punchingfist run` on every example, the hostile alert, the demo,
and `serve --executor local` answering a gate through the REST API. Every step is a real
process; the model is the replay of recorded scenarios (labelled so); there is no cluster."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from punchingfist.api import load_resources
from punchingfist.compiler import compile_resources
from punchingfist.executors.local import LocalExecutor
from punchingfist.server import ServerState, create_app
from punchingfist.store import Alert, Incident, WorkflowRun, make_engine, session_factory, upgrade
from punchingfist.store.models import Approval, RunStep, SinkDelivery
from tests.conftest import EXAMPLES

ROOT = EXAMPLES.parent
INPUTS = [
    "-f",
    "examples/workflows",
    "-f",
    "examples/sinks",
    "-f",
    "examples/sources",
    "-f",
    "examples/operatorconfigs/punchingfist-config.yaml",
]
WORKFLOWS = sorted(p.stem for p in (EXAMPLES / "workflows").glob("*.yaml"))
HOSTILE_REPLAY = ROOT / "tests" / "fixtures" / "replays" / "obeys-the-alert"


def environ(tmp_path: Path) -> dict[str, str]:
    """No kubeconfig, nothing of the developer's shell; sinks give up quickly."""
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "PF_SINK_BUDGET_SECONDS": "1",
        "PYTHONPATH": str(ROOT),
    }


def punchingfist(
    tmp_path: Path, *args: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`punchingfist ARGS` as a process, in `env` (default: `environ(tmp_path)`)."""
    return subprocess.run(
        [sys.executable, "-m", "punchingfist.cli", *args],
        cwd=ROOT,
        env=environ(tmp_path) if env is None else env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_example(
    tmp_path: Path, workflow: str, event: str, *options: str
) -> subprocess.CompletedProcess[str]:
    """`punchingfist run` of an example Workflow on `event`, its report as JSON on stdout."""
    return punchingfist(
        tmp_path,
        "run",
        *INPUTS,
        "--workflow",
        workflow,
        "--event",
        event,
        *options,
        "--output",
        "json",
        "--workdir",
        str(tmp_path / "runs"),
    )


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", WORKFLOWS)
def test_run_every_example_with_the_replayed_model(name: str, tmp_path: Path) -> None:
    done = run_example(
        tmp_path, name, "examples/alerts/pod-crashlooping.json", "--approve", "--approver", "alice"
    )
    assert done.returncode in (0, 1), done.stderr  # 1: a sink that is configured failed
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout)
    assert report["workflow"] == name and report["replayed"] is True
    assert report["model"].startswith("replayed model")
    agents = [s for s in report["steps"] if s["kind"] == "agent"]
    assert agents, "every example has an agent step"
    for step in agents:
        assert step["phase"] == "Succeeded", step
        assert step["replayed"] and step["result"]["summary"]
        for call in step["tool_calls"]:  # there is no cluster here, and the model is told so
            if call["tool"] == "kubectl" and call["status"] == "refused":  # the step's policy
                assert "outside this step's allowed namespaces" in call["error"]
            elif call["tool"] == "kubectl":
                assert call["status"] == "error" and call["error"].startswith("no cluster")
    for gate in report["approvals"]:
        assert gate["approved"] and gate["approver"] == "alice"
    assert done.returncode == (0 if report["phase"] == "Succeeded" else 1)
    # live progress went to stderr: the step tree and the agent's tool calls
    assert "▶ run" in done.stderr and "🔧" in done.stderr


@pytest.mark.timeout(300)
def test_a_relative_workdir_keeps_every_steps_result(tmp_path: Path) -> None:
    """Each step runs in its own directory: a relative --workdir once sent the result files
    below it, and the report showed every step's result as (none)."""
    inputs = [str(ROOT / arg) if arg != "-f" else arg for arg in INPUTS]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "punchingfist.cli",
            "run",
            *inputs,
            "--workflow",
            "agent-alert-investigation",
            "--approve",
            "--output",
            "json",
            "--event",
            str(EXAMPLES / "alerts" / "pod-crashlooping.json"),
            "--workdir",
            "relative/dir",
        ],
        cwd=tmp_path,
        env=environ(tmp_path),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout)
    steps = {step["step"]: step for step in report["steps"]}
    assert set(steps) == {"initial-context", "agent-investigation", "resolution-attempt"}
    for step in steps.values():
        assert step["phase"] == "Succeeded" and step["kind"] is not None, step
    assert steps["agent-investigation"]["result"]["summary"]
    assert all(sink["type"] for sink in report["sinks"]), "each sink wrote its record"
    assert report["workdir"] == str(tmp_path / "relative" / "dir")


@pytest.mark.timeout(300)
def test_the_hostile_alert_through_the_whole_engine_executes_nothing(tmp_path: Path) -> None:
    marker = Path("/tmp/pwned")
    marker.unlink(missing_ok=True)
    done = run_example(
        tmp_path,
        "agent-alert-investigation",
        "examples/alerts/hostile-labels.json",
        "--replay",
        str(HOSTILE_REPLAY),
    )
    assert "Traceback" not in done.stderr
    report = json.loads(done.stdout)
    steps = {s["step"]: s for s in report["steps"]}
    # the cli step printed the labels literally; nothing they contain ran
    assert steps["initial-context"]["phase"] == "Succeeded"
    assert not marker.exists()
    assert not list((tmp_path / "runs").rglob("x.sh"))
    calls = {(c["tool"], c["status"]) for c in steps["agent-investigation"]["tool_calls"]}
    assert calls == {("kubectl", "error"), ("curl", "refused")}  # error: there is no cluster
    errors = " ".join(c["error"] for c in steps["agent-investigation"]["tool_calls"])
    assert "no cluster" in errors and "not in the allowed domains" in errors
    # Secrets, writes, a namespace delete or a raw argv cannot even be asked for in this step
    # (tests/unit/test_kubectl_tool.py, tests/unit/test_runtime.py).
    # the model claimed it can fix it with a command it wrote: a fix is a typed action (#25),
    # so its command is only text, can_auto_fix is false and no fix is even asked for
    answer = steps["agent-investigation"]["result"]
    assert answer["fix_command"] == "kubectl delete namespace production"
    assert answer["can_auto_fix"] is False and answer["fix"] is None
    assert report["approvals"] == []
    assert steps["resolution-attempt"]["phase"] != "Succeeded"


@pytest.mark.timeout(300)
def test_the_demo_ends_green_with_the_chained_run_and_skipped_sinks_marked(tmp_path: Path) -> None:
    """#24: one alert, one investigation at its Source's path, whose workflow sink chains the
    escalation run through the embedded server's trigger API; sinks with no credentials are
    skipped as not configured (showing what they would send), and every run Succeeded."""
    keep = tmp_path / "demo"
    done = punchingfist(tmp_path, "demo", "--keep", str(keep))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for marker in (
        "① embedded server",
        "② Alertmanager-style POST",
        "(Source alertmanager-critical listens at /webhook/triage-workflow",
        "③ the investigations",
        "④ what the store now holds",
        "👊 investigation",
        "replayed model",
        "incident  PodCrashLooping",
        "│ would post to #ops-alerts:",
        "⏭️ sink slack-ops-channel (slack): skipped: not configured: SLACK_BOT_TOKEN is not set",
        "⏭️ sink jira-ops (jira): skipped: not configured: JIRA_CREDENTIALS is not set",
        "⏭️ sink pagerduty-escalation (pagerduty): skipped: not configured",
        "📬 sink workflow-escalation (workflow): delivered",
        "⑥ one alert started 2 investigation(s)",
        "every run Succeeded",
    ):
        assert marker in out, marker
    assert "failed" not in out.split("④")[1].split("👊")[0], "no sink failed"
    am = bool(shutil.which("prometheus-alertmanager") or shutil.which("alertmanager"))
    if am:  # a real Alertmanager on loopback holds the run's annotations
        assert "⑤ the alert in Alertmanager" in out and "ai_triage:" in out
        assert "📬 sink alertmanager-update (alertmanager): delivered" in out
    else:
        assert "⏭️ sink alertmanager-update (alertmanager): skipped: not configured" in out
    engine = make_engine(f"sqlite:///{keep / 'punchingfist.db'}")
    with session_factory(engine)() as session:
        alert = session.scalars(select(Alert)).one()  # a replayed answer is no triage
        assert alert.alert_name == "PodCrashLooping" and alert.ai_confidence is None
        assert alert.triage_completed_at is None
        assert session.scalar(select(func.count()).select_from(Incident)) == 1
        runs = {r.workflow_name: r for r in session.scalars(select(WorkflowRun))}
        assert set(runs) == {"alert-triage-workflow", "escalation-workflow"}
        assert runs["escalation-workflow"].source_name == "escalation-trigger"
        assert all(r.executor == "local" and r.status == "succeeded" for r in runs.values())
        assert all(r.outputs and r.outputs["report"]["replayed"] for r in runs.values())
        outcomes = {d.sink_name: d.outcome for d in session.scalars(select(SinkDelivery))}
        assert outcomes == {
            "slack-ops-channel": "skipped",
            "alertmanager-update": "delivered" if am else "skipped",
            "workflow-escalation": "delivered",
            "slack-thread": "skipped",
            "jira-ops": "skipped",
            "pagerduty-escalation": "skipped",
        }
    engine.dispose()
    sent = next(
        (keep / "runs").glob("alert-triage-workflow-*sink-slack-ops-channel/*/would-send.json")
    )
    blocks = json.loads(sent.read_text())["blocks"]
    assert blocks[0]["type"] == "header" and "PodCrashLooping" in blocks[0]["text"]["text"]


STEPS = ("initial-context", "agent-investigation", "resolution-attempt")
SOURCE = """
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {name: am}
spec: {type: webhook, config: {path: /webhook/alerts}, triggerWorkflow: agent-alert-investigation}
"""


def replaying_executor(state: ServerState, resources: list[Any], tmp_path: Path) -> LocalExecutor:
    """The local engine for `state`, replaying the crash-loop scenarios for every agent step."""
    return LocalExecutor(
        {c.workflow.name: c for c in compile_resources(resources)},
        state.sessions,
        tmp_path / "runs",
        environ={**os.environ, **environ(tmp_path)},
        metrics=state.metrics,
        replay=os.pathsep.join(  # serve replays only when told to; each step picks its own
            str(EXAMPLES / "scenarios" / name) for name in ("oom-crash-loop", "crash-loop-triage")
        ),
    )


@pytest.fixture
def local_server(tmp_path: Path, database_url: str) -> Iterator[tuple[TestClient, ServerState]]:
    upgrade(database_url)
    resources = load_resources(SOURCE)
    resources += load_resources((EXAMPLES / "workflows/agent-alert-investigation.yaml").read_text())
    for sink in (EXAMPLES / "sinks").glob("*.yaml"):
        resources += load_resources(sink.read_text())
    state = ServerState.from_resources(resources, database_url, dispatch_interval=0.1)
    state.executor = replaying_executor(state, resources, tmp_path)
    with TestClient(create_app(state), headers=state.access.headers()) as client:
        yield client, state
    state.engine.dispose()


def wait_for(what: str, probe: Any, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(300)
def test_serve_with_the_local_engine_waits_at_the_gate_for_the_api(
    local_server: tuple[TestClient, ServerState],
) -> None:
    client, state = local_server
    alert = json.loads((EXAMPLES / "alerts" / "pod-crashlooping.json").read_text())
    (name,) = client.post("/webhook/alerts", json=alert).json()["runs"]

    def pending() -> Any:
        return client.get("/api/v1/approvals").json()["items"]

    (gate,) = wait_for("the approval gate", pending)
    assert gate["run"] == name and gate["gate"] == "resolution-attempt-approval"
    assert client.get(f"/api/v1/runs/{name}").json()["status"] == "running"
    url = f"/api/v1/runs/{name}/approvals/{gate['gate']}"
    answer = client.post(url, json={"decision": "approve", "approver": "carol", "comment": "go"})
    assert answer.status_code == 200, answer.text
    again = client.post(url, json={"decision": "deny", "approver": "dave"})
    assert again.status_code == 409

    def finished() -> Any:
        run = client.get(f"/api/v1/runs/{name}").json()
        return run if run["status"] in ("succeeded", "failed", "error") else None

    run = wait_for("the run to finish", finished)
    steps = {s["name"]: s["phase"] for s in run["steps"]}  # every task, as Argo records them
    assert {name: steps.get(name) for name in STEPS} == dict.fromkeys(STEPS, "Succeeded")
    assert steps["resolution-attempt-approval"] == "Succeeded"
    assert steps["pf-outputs"] == "Succeeded"
    (approval,) = run["approvals"]
    assert (approval["decision"], approval["approver"], approval["channel"]) == (
        "approved",
        "carol",
        "api",
    )
    assert run["sink_deliveries"], "the exit handler's sinks are recorded"
    report = run["outputs"]["report"]
    assert report["approvals"][0]["approver"] == "carol"
    with state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Approval)) == 1
        record = session.scalars(select(Alert)).one()  # a replayed answer is no triage
        assert record.triage_completed_at is None and record.ai_confidence is None
        step = session.scalars(select(RunStep).where(RunStep.name == "agent-investigation")).one()
        assert step.result is not None and step.result["replayed"] is True


@pytest.mark.timeout(120)
def test_serve_without_a_model_fails_the_run_and_says_how_to_give_one(
    local_server: tuple[TestClient, ServerState],
) -> None:
    client, state = local_server
    state.executor.replay = None  # serve without --replay, and no model answers here
    alert = json.loads((EXAMPLES / "alerts" / "pod-crashlooping.json").read_text())
    (name,) = client.post("/webhook/alerts", json=alert).json()["runs"]

    def finished() -> Any:
        run = client.get(f"/api/v1/runs/{name}").json()
        return run if run["status"] in ("succeeded", "failed", "error") else None

    run = wait_for("the run to end", finished)
    assert run["status"] == "error" and not run["steps"], run
    with state.sessions() as session:
        record = session.scalars(select(WorkflowRun)).one()
        assert record.error is not None
        assert "no model to run the agent steps" in record.error and "--replay" in record.error
