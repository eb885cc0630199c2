"""Every example Workflow, compiled for real, run end to end by the local engine.

Each pf-runtime task runs as a process (`python -m punchingfist.runtime.main`); agent steps
talk to the fake OpenAI server, which answers with the final turn of a recorded scenario.
Sinks and approval requests run for real too, with no Slack, PagerDuty or Jira to reach: each
ends with a delivery record saying why it failed, and the engine records the node as Failed and
carries on (the sinks' own deliveries are tested against fake SaaS servers in test_sinks).
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from punchingfist.api import Sink, Workflow, load_resources, parse_resource
from punchingfist.cli import main as punchingfist
from punchingfist.compiler import CompiledWorkflow, compile_workflow
from punchingfist.engine import AutoApprover, RunResult, run_workflow, secrets_from_documents
from tests.conftest import EXAMPLES, load_folder
from tests.engine_support import Recorder
from tests.fakes.openai_server import FakeOpenAI, fake_openai

SCENARIO = yaml.safe_load(
    (EXAMPLES.parent / "examples/scenarios/oom-crash-loop/scenario.yaml").read_text()
)
FINAL = SCENARIO["turns"][-1]
"""The scenario's answer: can_auto_fix true, so a conditional fix step is attempted."""
DELIVERIES = {"approval-request", "sink"}
WORKFLOWS = sorted(p.stem for p in (EXAMPLES / "workflows").glob("*.yaml"))


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    with fake_openai([FINAL] * 8) as server:
        yield server


def compiled(name: str, endpoint: str) -> CompiledWorkflow:
    """The example, compiled with the OperatorConfig and Sinks, its LLM pointed at `endpoint`."""
    raw = yaml.safe_load((EXAMPLES / "workflows" / f"{name}.yaml").read_text())
    llm_config = raw["spec"].get("runtime", {}).get("llmConfig")
    if llm_config:
        llm_config["endpoint"] = endpoint
    workflow = parse_resource(raw)
    assert isinstance(workflow, Workflow)
    config_raw = yaml.safe_load((EXAMPLES / "operatorconfigs/punchingfist-config.yaml").read_text())
    for provider in config_raw["spec"]["llm"]["providers"].values():
        provider["endpoint"] = endpoint
    (config,) = load_resources(yaml.safe_dump(config_raw))
    sinks = {r.name: r for r in load_folder("sinks") if isinstance(r, Sink)}
    return compile_workflow(workflow, sinks, config.spec)  # type: ignore[arg-type]


def event_parameters(alert: str, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """The run parameters, with `event` exactly as `punchingfist event -f` prints it."""
    capsys.readouterr()
    assert punchingfist(["event", "-f", str(EXAMPLES / "alerts" / alert)]) == 0
    event = capsys.readouterr().out.strip()
    fingerprint = json.loads((EXAMPLES / "alerts" / alert).read_text())["alerts"][0]["fingerprint"]
    return {"event": event, "source": "alertmanager-critical", "fingerprint": fingerprint}


def environ(tmp_path: Path) -> dict[str, str]:
    """A small environment: nothing from the developer's shell reaches the steps."""
    bin_dir = str(Path(sys.executable).parent)
    return {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "KUBECONFIG": str(tmp_path / "no-kubeconfig"),
        "PF_SINK_BUDGET_SECONDS": "1",
    }


def kind_of(result: RunResult, node_id: str) -> str:
    """What a Pod node is, from the compiler's task and step labels."""
    labels = result.nodes[node_id].labels
    task = labels.get("punchingfist.io/task", "")
    if task.startswith("sink-"):
        return "sink"
    if task.endswith("-approval-request"):
        return "approval-request"
    return "step" if task == labels.get("punchingfist.io/step") else "helper"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", WORKFLOWS)
def test_every_example_runs_end_to_end(
    name: str, llm: FakeOpenAI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    compiled_workflow = compiled(name, llm.url)
    recorder = Recorder()
    result = run_workflow(
        compiled_workflow.manifest,
        event_parameters("pod-crashlooping.json", capsys),
        workdir=tmp_path / "runs",
        approver=AutoApprover(True, "alice"),
        observer=recorder,
        secrets=secrets_from_documents(compiled_workflow.objects),
        environ=environ(tmp_path),
    )
    pods = {i: n for i, n in result.nodes.items() if n.type == "Pod"}
    assert pods, "the example ran no process"
    for node_id, node in pods.items():
        kind = kind_of(result, node_id)
        assert node.attempts == 1 and node.workdir is not None, node_id
        if kind in DELIVERIES:
            # Nothing to deliver to: failed after its retry budget, or skipped by its condition.
            skipped = "skipped" in node.stdout_tail
            assert node.phase == ("Succeeded" if skipped else "Failed"), (node_id, node.phase)
            assert "Traceback" not in node.stderr_tail, node_id
        elif kind == "step":
            assert node.phase == "Succeeded", (node_id, node.message, node.stderr_tail)
        else:  # conditions and pf-outputs: they ran, and their phase is their exit code's
            assert node.phase == ("Succeeded" if node.exit_code == 0 else "Failed"), node_id
    for key, value in result.outputs.items():
        assert key.startswith("pf_result_") and json.loads(value)["success"] is True, key
    steps = {
        n.labels["punchingfist.io/step"]
        for n in pods.values()
        if "punchingfist.io/step" in n.labels and n.display_name == n.labels["punchingfist.io/step"]
    }
    assert {f"pf_result_{s.replace('-', '_')}" for s in steps} == set(result.outputs)
    # A failed sink fails the run (exit handler); a failed approval request does not: its gate
    # still waits, and its deadline means denied.
    undelivered = any(kind_of(result, i) == "sink" and n.phase == "Failed" for i, n in pods.items())
    assert result.phase == ("Failed" if undelivered else "Succeeded")
    assert result.nodes[result.name].phase == "Succeeded", "the steps themselves succeeded"
    assert len(llm.requests) == sum(
        json.loads(v).get("kind") == "agent" for v in result.outputs.values()
    )


def test_agent_investigation_flows_through_condition_and_gate(
    llm: FakeOpenAI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    compiled_workflow = compiled("agent-alert-investigation", llm.url)
    parameters = event_parameters("pod-crashlooping.json", capsys)
    recorder = Recorder()
    result = run_workflow(
        compiled_workflow.manifest,
        parameters,
        workdir=tmp_path / "approve",
        approver=AutoApprover(True, "alice"),
        observer=recorder,
        secrets=secrets_from_documents(compiled_workflow.objects),
        environ=environ(tmp_path),
        name="aai-1",
    )
    investigation = json.loads(result.outputs["pf_result_agent_investigation"])
    assert investigation["result"]["root_cause"] == FINAL["action"]["root_cause"]
    assert result.node("resolution-attempt-condition").outputs["condition"] == "true"
    assert result.node("resolution-attempt-approval").outputs["approver"] == "alice"
    assert result.node("resolution-attempt").phase == "Succeeded"
    assert recorder.requests[0].step == "resolution-attempt"
    outputs = json.loads(result.node("pf-outputs", exit_handler=True).outputs["outputs"])
    assert outputs["root_cause"] == FINAL["action"]["root_cause"]
    assert outputs["auto_fixed"] is True
    cli = json.loads(result.outputs["pf_result_initial_context"])
    assert "Alert: PodCrashLooping" in cli["stdout"]
    assert result.info.labels["punchingfist.io/fingerprint"] == parameters["fingerprint"]

    denied = run_workflow(
        compiled_workflow.manifest,
        parameters,
        workdir=tmp_path / "deny",
        approver=AutoApprover(False, "bob"),
        environ=environ(tmp_path),
        secrets=secrets_from_documents(compiled_workflow.objects),
    )
    assert denied.node("resolution-attempt").phase == "Skipped"
    outputs = json.loads(denied.node("pf-outputs", exit_handler=True).outputs["outputs"])
    assert outputs["auto_fixed"] is False, "a skipped step reads as not run"


@pytest.mark.timeout(120)
def test_a_hostile_alert_executes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = Path("/tmp/pwned")
    before = target.stat().st_mtime_ns if target.exists() else None
    answer = copy.deepcopy(FINAL)
    answer["action"]["can_auto_fix"] = False
    with fake_openai([answer] * 4) as server:
        compiled_workflow = compiled("agent-alert-investigation", server.url)
        result = run_workflow(
            compiled_workflow.manifest,
            event_parameters("hostile-labels.json", capsys),
            workdir=tmp_path / "runs",
            approver=AutoApprover(True, "alice"),
            secrets=secrets_from_documents(compiled_workflow.objects),
            environ=environ(tmp_path),
        )
        prompt = json.dumps(server.requests[0]["messages"])
    after = target.stat().st_mtime_ns if target.exists() else None
    assert after == before, "$(touch /tmp/pwned) ran"
    created = [p.name for p in tmp_path.rglob("*")]
    assert "pwned" not in created and "x.sh" not in created
    stdout = json.loads(result.outputs["pf_result_initial_context"])["stdout"]
    assert "$(touch /tmp/pwned)" in stdout and "`id`" in stdout, "labels are printed literally"
    assert "{{ ''.__class__.__mro__[1].__subclasses__() }}" in stdout
    assert "Ignore previous instructions" in prompt, "the model saw the alert as data"
    assert result.node("initial-context").phase == "Succeeded"
    assert result.node("resolution-attempt").phase == "Skipped"
    assert result.nodes[result.name].phase == "Succeeded"
    assert result.phase == "Failed" and "sink" in result.message, "only the sinks failed"
