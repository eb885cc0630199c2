"""The live eval scenarios (examples/evals/live-*) on the running cluster: each fault made real
(punchingfist.evals.live: namespace, manifests, wait conditions), investigated through the
production agent loop with the real kubectl tool, scored, and its namespace deleted.

A scripted model (tests/fakes/eval_model.py) plays each scenario's reference investigation:
the harness must pass it, which proves that the reference's cited kubectl calls, run for real,
show the scenario's evidence tokens. A confidently wrong model must fail every one. A fault
that never happens fails its case with the condition and what was seen; a namespace left over
from a crashed run is replaced."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from punchingfist.evals.live import MANAGED_BY, MANAGED_BY_LABEL, LiveError, prepared
from punchingfist.evals.results import CaseResult
from punchingfist.evals.running import Options, run_scenarios
from punchingfist.evals.scenarios import Scenario, WaitFor, load_all
from tests.cluster.support import LiveCluster
from tests.fakes.eval_model import Behaviour, ScriptedEvalModel

SUITE = Path(__file__).parents[2] / "examples" / "evals"
LIVE = [s for s in load_all([str(SUITE)]) if s.live is not None]


@pytest.fixture
def evals(cluster: LiveCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveCluster]:
    """The cluster's runtime image (python3, sh) for the manifests' ${EVAL_IMAGE}, and the
    cluster's own kubectl first on PATH (the tools and punchingfist.evals.live run `kubectl`)."""
    monkeypatch.setenv("EVAL_IMAGE", cluster.images["RUNTIME"])
    kubectl = Path(cluster.binaries["KUBECTL"]).parent
    monkeypatch.setenv("PATH", f"{kubectl}{os.pathsep}{os.environ['PATH']}")
    yield cluster


def run(
    cluster: LiveCluster, scenarios: list[Scenario], behaviour: Behaviour, logs: Path
) -> dict[str, CaseResult]:
    with ScriptedEvalModel(scenarios, behaviour) as model:
        options = Options(
            endpoint=model.url,
            model=f"scripted-{behaviour}",
            live=True,
            kubeconfig=str(cluster.layout.kubeconfig),
            jobs=2,
            logs=str(logs),
            timeout=300,
        )
        results = run_scenarios(scenarios, options)
    return {r.scenario: r for r in results}


def namespace_gone(cluster: LiveCluster, namespace: str) -> bool:
    found = cluster.kubectl(
        "get", "namespace", namespace, "--ignore-not-found", "-o", "jsonpath={.status.phase}"
    )
    return found.strip() in ("", "Terminating")


def test_the_suite_has_the_live_faults_it_promises() -> None:
    namespaces = {s.live.namespace for s in LIVE if s.live}
    assert len(LIVE) >= 10 and len(namespaces) == len(LIVE), "each has its own namespace"
    assert all(s.name.startswith("live-") and "live" in s.tags for s in LIVE)


def test_the_correct_model_passes_every_live_scenario_with_the_real_tools(
    evals: LiveCluster, tmp_path: Path
) -> None:
    results = run(evals, LIVE, "correct", tmp_path)
    failed = {name: (r.reasons, r.log) for name, r in results.items() if r.status != "passed"}
    assert failed == {}
    for scenario in LIVE:
        result = results[scenario.name]
        assert scenario.live is not None
        # the tools ran for real: every call of the reference answered from the cluster
        assert result.tool_calls and all(c["status"] == "ok" for c in result.tool_calls), (
            scenario.name,
            result.tool_calls,
        )
        transcript = Path(result.log or "").read_text()
        assert f"namespace {scenario.live.namespace} created" in transcript
        assert "the fault is live after" in transcript
        assert f"namespace {scenario.live.namespace} deleted" in transcript
        assert namespace_gone(evals, scenario.live.namespace), scenario.name


def test_the_wrong_model_fails_every_live_scenario_with_its_reasons(
    evals: LiveCluster, tmp_path: Path
) -> None:
    results = run(evals, LIVE, "wrong", tmp_path)
    for scenario in LIVE:
        result = results[scenario.name]
        assert result.status == "failed", scenario.name
        assert result.error is None, (scenario.name, result.reasons)
        facts = [r for r in result.reasons if r.startswith("missing: ")]
        assert len(facts) >= len(scenario.expect.root_cause), (scenario.name, result.reasons)
        assert result.overconfident, scenario.name
        assert result.reasons[-1].startswith("confidently wrong: confidence 0.95"), result.reasons


def test_punchingfist_eval_live_runs_them_from_the_command_line(
    evals: LiveCluster, tmp_path: Path
) -> None:
    """`punchingfist eval examples/evals --live --tag live ... -o json`, as a user runs it."""
    command = Path(sys.executable).parent / "punchingfist"
    with ScriptedEvalModel(LIVE, "correct") as model:
        done = subprocess.run(
            [
                str(command),
                "eval",
                str(SUITE),
                "--live",
                "--tag",
                "live",
                "--kubeconfig",
                str(evals.layout.kubeconfig),
                "--llm-endpoint",
                model.url,
                "--llm-model",
                "scripted-correct",
                "--logs",
                str(tmp_path / "logs"),
                "-o",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    outcomes = {r["scenario"]: (r["status"], r["reasons"]) for r in report["results"]}
    assert outcomes == {s.name: ("passed", []) for s in LIVE}
    assert report["options"]["live"] is True
    assert report["summary"]["pass_rate"] == 1.0
    assert f"passed {len(LIVE)} of {len(LIVE)}" in done.stderr


def _variant(scenario: Scenario, namespace: str, wait: list[WaitFor], timeout: int) -> Scenario:
    changed = copy.deepcopy(scenario)
    assert changed.live is not None
    changed.live.namespace, changed.live.wait, changed.live.timeout_seconds = (
        namespace,
        wait,
        timeout,
    )
    return changed


def test_a_fault_that_never_happens_fails_its_case_naming_the_condition_and_what_it_saw(
    evals: LiveCluster, tmp_path: Path
) -> None:
    readiness = next(s for s in LIVE if s.name == "live-readiness-failing")
    never = _variant(
        readiness, "live-never-1d4c7e", [WaitFor(selector="app=catalog", reason=["OOMKilled"])], 8
    )
    result = run(evals, [never], "correct", tmp_path)[never.name]
    assert result.status == "failed"
    (reason,) = result.reasons
    assert reason.startswith("could not run: LiveError: live-readiness-failing: the fault did")
    assert "within live.timeout_seconds (8 s) in namespace live-never-1d4c7e" in reason
    assert "wait[0] (pods app=catalog with reason OOMKilled): no pod has reason OOMKilled" in reason
    assert "pods seen: catalog-" in reason
    assert namespace_gone(evals, "live-never-1d4c7e")


def test_a_namespace_left_over_from_a_crashed_run_is_replaced(evals: LiveCluster) -> None:
    scenario = next(s for s in LIVE if s.name == "live-missing-configmap")
    namespace = "live-left-5f0a2b"
    evals.kubectl("create", "namespace", namespace)
    evals.kubectl("label", "namespace", namespace, f"{MANAGED_BY_LABEL}={MANAGED_BY}")
    evals.kubectl("create", "configmap", "stale-5f0a2b", "-n", namespace)
    lines: list[str] = []
    changed = _variant(scenario, namespace, scenario.live.wait if scenario.live else [], 120)
    with prepared(changed, str(evals.layout.kubeconfig), lines.append) as environ:
        assert environ == {"KUBECONFIG": str(evals.layout.kubeconfig)}
        left = evals.kubectl("get", "configmaps", "-n", namespace, "-o", "name")
        assert "stale-5f0a2b" not in left
    assert any("left over from an earlier run" in line for line in lines), lines
    assert namespace_gone(evals, namespace)


def test_a_namespace_an_eval_did_not_make_is_never_touched(evals: LiveCluster) -> None:
    scenario = next(s for s in LIVE if s.name == "live-missing-configmap")
    namespace = "live-theirs-7b1e04"
    evals.kubectl("create", "namespace", namespace)
    evals.created_elsewhere.append(("namespace", namespace, namespace))
    evals.kubectl("create", "configmap", "theirs-7b1e04", "-n", namespace)
    changed = _variant(scenario, namespace, scenario.live.wait if scenario.live else [], 120)
    with (
        pytest.raises(LiveError, match=f"namespace {namespace} exists and was not made by"),
        prepared(changed, str(evals.layout.kubeconfig), print),
    ):
        pytest.fail("the scenario must not run in someone else's namespace")
    phase = evals.kubectl("get", "namespace", namespace, "-o", "jsonpath={.status.phase}")
    assert phase == "Active"
    assert "theirs-7b1e04" in evals.kubectl("get", "configmaps", "-n", namespace, "-o", "name")
    assert not evals.kubectl("get", "deployments", "-n", namespace, "-o", "name").strip()
