"""`punchingfist eval export` round-trips a real run: `punchingfist serve --executor local` (a
real process, a real step process) investigates an alert with a scripted model (the fake
OpenAI server) and a Prometheus on a real socket; its step result keeps what each tool call
answered; the run is exported through the REST API, before and after a human confirms the
root cause; the folder loads, every reference call has a recording, and the exported scenario,
run through the eval harness, passes a model that plays its reference back and fails one that
answers something else."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from punchingfist.errors import PunchingFistError
from punchingfist.evals.export import add_export_arguments, export_command, unmatched
from punchingfist.evals.running import Options, run_scenarios
from punchingfist.evals.scenarios import load
from tests.e2e.controlplane import free_port
from tests.fakes.eval_model import ScriptedEvalModel
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.saas import Answer, FakeService, Request
from tests.integration.test_embedded_runs import ROOT, environ

POD = "ledger-sync-7f3c9a"
"""In the alert: a name an answer may repeat without looking."""
MISSING = "ledger-dsn-e41d0b"
"""Only in Prometheus' answer: the answer can only have it from the tools."""
MEMORY = "container_memory_working_set_bytes"
RESTARTS = "kube_pod_container_status_restarts_total"
ROOT_CAUSE = f"The worker cannot read Secret {MISSING}, which was deleted, so it exits at start."


class FakePrometheus(FakeService):
    """Instant queries: the restarts name the missing Secret in their `reason`; memory is
    flat."""

    def handle(self, request: Request) -> Answer:
        query = request.arguments().get("query", "")
        labels = {"pod": POD, "namespace": "fin"}
        if RESTARTS in query:
            labels |= {"reason": f"CreateContainerConfigError: secret {MISSING} not found"}
            value = "14"
        else:
            value = "52428800"
        series = {"metric": labels, "value": [time.time(), value]}
        return 200, {"status": "success", "data": {"resultType": "vector", "result": [series]}}


TURNS = [
    {
        "thought": "How often did it restart, and is memory the problem?",
        "action": {
            "kind": "tool_calls",
            "calls": [
                {"tool": "promql", "query": f'{RESTARTS}{{pod="{POD}"}}'},
                {"tool": "promql", "query": f'{MEMORY}{{pod="{POD}"}}'},
            ],
        },
    },
    {
        "thought": "Ask the restarts again, to be sure.",
        "action": {
            "kind": "tool_calls",
            "calls": [{"tool": "promql", "query": f'{RESTARTS}{{pod="{POD}"}}'}],
        },
    },
    {
        "thought": f"The restarts say Secret {MISSING} is not found; memory is flat.",
        "action": {
            "kind": "final_answer",
            "summary": f"{POD} restarts because Secret {MISSING} is missing.",
            "problem_summary": "The worker exits at start, 14 restarts.",
            "root_cause": ROOT_CAUSE,
            "can_auto_fix": False,
            "confidence": 0.85,
            "escalation_notes": f"Recreate Secret {MISSING}.",
            "evidence": ["call-1"],
        },
    },
]
RESOURCES = """
apiVersion: punchingfist.io/v1alpha1
kind: Source
metadata: {{name: am}}
spec: {{type: webhook, config: {{path: /webhook/alerts}}, triggerWorkflow: ledger}}
---
apiVersion: punchingfist.io/v1alpha1
kind: Workflow
metadata: {{name: ledger}}
spec:
  runtime:
    llmConfig: {{provider: openai-compatible, model: export-model}}
    environment:
      PROMETHEUS_URL: "{prometheus}"
  steps:
    - name: investigate
      type: agent
      goal: "Investigate {{{{ .source.data.alert.summary }}}}. Find the root cause."
      tools:
        - name: promql
          endpoint: "{{{{ .env.PROMETHEUS_URL }}}}"
      maxIterations: 4
"""


def alert() -> dict[str, Any]:
    labels = {"alertname": "LedgerSyncRestarting", "namespace": "fin", "pod": POD}
    annotations = {"summary": f"Pod fin/{POD} restarts"}
    return {
        "version": "4",
        "groupKey": '{}:{alertname="LedgerSyncRestarting"}',
        "status": "firing",
        "receiver": "pf",
        "groupLabels": {"alertname": "LedgerSyncRestarting"},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "http://alertmanager:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": annotations,
                "startsAt": "2026-12-03T04:00:00Z",
                "fingerprint": "5e1f0c2a9b7d3e41",
            }
        ],
    }


@dataclass
class Server:
    url: str
    token_file: Path
    log: Path

    def call(self, method: str, path: str, **options: Any) -> Any:
        token = self.token_file.read_text().strip()
        with httpx.Client(base_url=self.url, timeout=30) as http:
            response = http.request(
                method, path, headers={"Authorization": f"Bearer {token}"}, **options
            )
        assert response.status_code < 400, response.text
        return response.json()


def wait_for(what: str, probe: Callable[[], Any], log: Path, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (OSError, httpx.HTTPError):
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; server log:\n{log.read_text()[-3000:]}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Server, FakeOpenAI]]:
    with FakePrometheus() as prometheus, FakeOpenAI(TURNS) as llm:
        folder = tmp_path / "resources"
        folder.mkdir()
        (folder / "all.yaml").write_text(RESOURCES.format(prometheus=prometheus.url))
        (tmp_path / "db").mkdir()
        port = free_port()
        log = tmp_path / "server.log"
        command = [sys.executable, "-m", "punchingfist.cli", "serve", "-f", str(folder)]
        command += ["--executor", "local", "--port", str(port), "--workdir", str(tmp_path / "runs")]
        command += ["--database-url", f"sqlite:///{tmp_path / 'db' / 'punchingfist.db'}"]
        command += ["--llm-endpoint", llm.url, "--llm-model", "export-model"]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=environ(tmp_path),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        running = Server(f"http://127.0.0.1:{port}", tmp_path / "db" / "api-token", log)
        try:
            wait_for("the server", lambda: httpx.get(running.url + "/healthz").is_success, log)
            yield running, llm
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def exported(server: Server, run: str, directory: Path, *more: str) -> Path:
    parser = argparse.ArgumentParser()
    add_export_arguments(parser)
    given = ["-o", str(directory), "--server", server.url, "--token-file", str(server.token_file)]
    args = parser.parse_args([run, *given, *more])
    assert export_command(args) == 0
    return directory / run


@pytest.mark.timeout(300)
def test_a_real_run_exports_to_a_scenario_that_replays_and_scores(
    server: tuple[Server, FakeOpenAI], tmp_path: Path
) -> None:
    api, llm = server
    (name,) = api.call("POST", "/webhook/alerts", json=alert())["runs"]

    def finished() -> Any:
        run = api.call("GET", f"/api/v1/runs/{name}")
        return run if run["status"] in ("succeeded", "failed", "error") else None

    run = wait_for("the run", finished, api.log)
    assert run["status"] == "succeeded", run
    (step,) = [s for s in run["steps"] if s["name"] == "investigate"]
    calls = step["tool_calls"]
    # the step's result keeps what each call answered, and the turn that asked for it
    assert [(c["id"], c["turn"], c["status"]) for c in calls] == [
        ("call-1", 1, "ok"),
        ("call-2", 1, "ok"),
        ("call-3", 2, "refused"),
    ]
    assert MISSING in calls[0]["output"] and calls[0]["output_kept"]
    assert "5.24288e+07" in calls[1]["output"] and MISSING not in calls[1]["output"]
    assert step["result"]["spec"]["tools"] == ["promql"]

    # before a human says anything: the run's own answer, to review
    first = exported(api, name, tmp_path / "unconfirmed")
    text = (first / "scenario.yaml").read_text()
    assert text.startswith(f"# Exported by `punchingfist eval export` from run {name}.\n")
    assert "# REVIEW before relying on it: no human confirmed this root cause" in text
    draft = load(first)
    assert draft.tags == ["exported", "needs-review"]
    assert "not confirmed by a human" in draft.description

    # a human confirms the root cause when resolving the incident
    resolution = {"root_cause": ROOT_CAUSE, "verdict": "right", "by": "alice"}
    api.call("POST", f"/api/v1/incidents/{run['incident_id']}/resolve", json=resolution)
    folder = exported(api, name, tmp_path / "suite")
    scenario = load(folder)
    assert scenario.name == name and scenario.tags == ["exported"]
    assert "confirmed by alice" in scenario.description and "REVIEW" not in scenario.description
    assert scenario.alert["labels"]["alertname"] == "LedgerSyncRestarting"
    assert scenario.step is not None and scenario.step["goal"].startswith("Investigate {{")
    assert scenario.step["tools"] == ["promql"] and scenario.step["maxIterations"] == 4
    # one recording per distinct call (the repeat was refused, and is refused again)
    assert [r.call for r in scenario.recordings] == [
        {"tool": "promql", "query": f'{RESTARTS}{{pod="{POD}"}}'},
        {"tool": "promql", "query": f'{MEMORY}{{pod="{POD}"}}'},
    ]
    assert MISSING in scenario.recordings[0].output
    assert [t["action"]["kind"] for t in scenario.reference] == [
        "tool_calls",
        "tool_calls",
        "final_answer",
    ]
    assert [t["thought"] for t in scenario.reference] == [t["thought"] for t in TURNS]
    assert scenario.reference[-1]["action"]["root_cause"] == ROOT_CAUSE
    assert unmatched(scenario) == []
    # the name only Prometheus showed is the fact (the pod's name is in the alert: not one)
    assert [f.any for f in scenario.expect.root_cause] == [[MISSING]]
    assert [(e.tool, e.contains) for e in scenario.expect.evidence] == [("promql", MISSING)]
    assert scenario.expect.judge == [ROOT_CAUSE] and not scenario.needs_judge

    # through the eval harness: the reference passes, another answer fails
    with ScriptedEvalModel([scenario], "correct") as model:
        (passed,) = run_scenarios([scenario], Options(endpoint=model.url, model="correct"))
    assert passed.status == "passed", passed.reasons
    with ScriptedEvalModel([scenario], "wrong") as model:
        (failed,) = run_scenarios([scenario], Options(endpoint=model.url, model="wrong"))
    assert failed.status == "failed"
    assert any(MISSING in reason for reason in failed.reasons), failed.reasons

    # an existing folder is kept unless --force; an unknown run is the server's 404
    with pytest.raises(PunchingFistError, match="exists: give --force"):
        exported(api, name, tmp_path / "suite")
    assert exported(api, name, tmp_path / "suite", "--force") == folder
    with pytest.raises(PunchingFistError, match=r"refused \(404\)"):
        exported(api, "no-such-run", tmp_path / "suite")
    assert yaml.safe_load((folder / "scenario.yaml").read_text())["reference"]
    assert len(llm.requests) == 3
