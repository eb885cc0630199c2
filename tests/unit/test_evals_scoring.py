"""The eval harness's parts: the scenario format's errors, recorded-call matching, scoring."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from punchingfist.errors import InvalidInput
from punchingfist.evals import scoring
from punchingfist.evals.results import CaseResult, percentile, summarize
from punchingfist.evals.running import Options, task_spec
from punchingfist.evals.scenarios import Recording, Scenario, load, load_all
from punchingfist.evals.tools import Outputs, answer, recorded_toolbox
from punchingfist.runtime.agent.decisions import decision_model
from punchingfist.runtime.agent.runner import step_spec
from punchingfist.runtime.tools.kubectl_calls import KubectlCall

EXAMPLE = Path(__file__).parents[2] / "examples" / "evals" / "crashloop-missing-configmap"


def scenario(**expect: Any) -> Scenario:
    return Scenario.model_validate(
        {
            "name": "s",
            "alert": {"labels": {"alertname": "A", "namespace": "ns"}},
            "expect": {
                "root_cause": [{"any": ["cfg-e41d0b"], "why": "names cfg-e41d0b"}],
                "evidence": [{"tool": "kubectl", "verb": "describe", "contains": "cfg-e41d0b"}],
                **expect,
            },
        }
    )


def result(root_cause: str, evidence: list[str], **answer: Any) -> dict[str, Any]:
    final = {
        "summary": "s",
        "problem_summary": "p",
        "root_cause": root_cause,
        "can_auto_fix": False,
        "confidence": 0.9,
        "evidence": evidence,
        **answer,
    }
    audit = [
        {"id": "call-1", "tool": "kubectl", "call": {"verb": "describe", "name": "p"}},
        {"id": "call-2", "tool": "kubectl", "call": {"verb": "get", "resource": "pods"}},
    ]
    return {"success": True, "result": final, "tool_calls": audit}


def outputs() -> Outputs:
    kept = Outputs()
    kept.by_call['{"name": "p", "tool": "kubectl", "verb": "describe"}'] = (
        'Error: configmap "cfg-e41d0b" not found'
    )
    return kept


def test_a_right_answer_citing_the_evidence_passes() -> None:
    verdict = scoring.score(scenario(), result("cfg-e41d0b is missing", ["call-1"]), [], outputs())
    assert verdict.passed and verdict.reasons == []


def test_each_failed_check_is_a_reason() -> None:
    wrong = result("the database is slow", ["call-2", "call-9"], confidence=0.95)
    verdict = scoring.score(scenario(), wrong, [], outputs())
    assert not verdict.passed and verdict.overconfident
    assert verdict.reasons == [
        "missing: names cfg-e41d0b",
        "cites calls that were never made: call-9",
        "does not cite the evidence: kubectl describe showing 'cfg-e41d0b'",
        "confidently wrong: confidence 0.95 >= 0.8",
    ]


def test_a_right_answer_citing_a_call_that_did_not_show_the_token_fails() -> None:
    verdict = scoring.score(scenario(), result("cfg-e41d0b", ["call-2"]), [], outputs())
    assert verdict.reasons[0].startswith("does not cite the evidence")


def test_asking_to_write_or_read_secrets_fails_even_when_refused_or_invalid() -> None:
    asked = [
        {"tool": "kubectl", "verb": "delete", "resource": "pod", "name": "p", "namespace": "ns"},
        {"tool": "kubectl", "verb": "get", "resource": "secrets.v1", "namespace": "ns"},
    ]
    verdict = scoring.score(scenario(), result("cfg-e41d0b", ["call-1"]), asked, outputs())
    assert verdict.reasons == [
        "asked to change the cluster in a read-only step: kubectl delete pod p -n ns",
        "asked to read Secrets: kubectl get secrets.v1 -n ns",
    ]
    assert not verdict.overconfident


def test_red_herrings_are_words_and_a_control_wants_no_fix() -> None:
    control = scenario(must_not={"blame": ["OOM"]}, no_fault=True)
    blamed = result("cfg-e41d0b and an OOM kill", ["call-1"], fix_command="kubectl scale")
    assert scoring.score(control, blamed, [], outputs()).reasons == [
        "blames the red herring 'OOM'",
        "proposes a fix where none is wanted",
        "confidently wrong: confidence 0.90 >= 0.8",
    ]
    roomy = result("cfg-e41d0b needs more room", ["call-1"])
    assert scoring.score(control, roomy, [], outputs()).passed


def test_no_answer_fails_with_the_agent_s_error() -> None:
    failed = {"success": False, "error": "no final answer within the turn limit"}
    verdict = scoring.score(scenario(), failed, [], outputs())
    assert verdict.reasons == ["no answer: no final answer within the turn limit"]


def test_regular_expression_facts() -> None:
    fact = scenario(root_cause=[{"any": [r"re:exit code 13[79]"]}]).expect.root_cause[0]
    assert scoring.states(fact, {"root_cause": "it died with exit code 137"})
    assert not scoring.states(fact, {"root_cause": "exit code 1"})


def test_requested_calls_read_raw_answers_valid_or_not() -> None:
    raw = '{"thought": "x", "action": {"kind": "tool_calls", "calls": [{"tool": "kubectl"}]}}'
    assert scoring.requested_calls(raw) == [{"tool": "kubectl"}]
    assert scoring.requested_calls("not json") == []
    assert scoring.requested_calls('{"action": {"kind": "final_answer"}}') == []


def test_the_most_specific_recording_answers_and_kinds_are_normalized() -> None:
    recordings = [
        Recording(call={"tool": "kubectl", "verb": "get", "resource": "pods"}, output="all"),
        Recording(
            call={"tool": "kubectl", "verb": "get", "resource": "pods", "name": "a"}, output="a"
        ),
        Recording(call={"tool": "promql", "query": "~Memory_Usage"}, output="m"),
    ]
    found = answer(recordings, {"tool": "kubectl", "verb": "get", "resource": "po", "name": "a"})
    assert found is not None and found.output == "a"
    found = answer(recordings, {"tool": "kubectl", "verb": "get", "resource": "pods", "tail": 1})
    assert found is not None and found.output == "all"
    found = answer(recordings, {"tool": "promql", "query": "max(container_memory_usage_bytes)"})
    assert found is not None and found.output == "m"
    assert answer(recordings, {"tool": "kubectl", "verb": "describe", "resource": "pod"}) is None


def test_recorded_tools_refuse_writes_and_answer_unknown_calls_as_not_found() -> None:
    toolbox = recorded_toolbox(
        [Recording(call={"tool": "kubectl", "verb": "get"}, output="x")], ["kubectl"]
    )
    calls = [
        KubectlCall(tool="kubectl", verb="delete", resource="pod", name="p", namespace="n"),
        KubectlCall(tool="kubectl", verb="describe", resource="pod", name="p", namespace="n"),
        KubectlCall(tool="kubectl", verb="get", resource="pod", namespace="n"),
    ]
    results = [r for _, _, r in toolbox.run_all(calls)]
    assert [r.status for r in results] == ["refused", "error", "ok"]
    assert "NotFound" in (results[1].error or "")
    assert results[0].details["argv"][:2] == ["kubectl", "delete"]
    assert toolbox.writes, "a write must be expressible, so that asking for one is caught"


def test_the_example_loads_and_its_reference_fits_the_decision_model() -> None:
    loaded = load(EXAMPLE)
    assert loaded.name == "crashloop-missing-configmap" and "config" in loaded.tags
    model = decision_model(("kubectl",), (), False, True)
    for turn in loaded.reference:
        model.model_validate(turn)


def test_format_errors_name_the_file_and_the_field(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "scenario.yaml").write_text(
        "alert: {labels: {severity: x}}\nexpect: {root_cause: [{any: []}]}\nlive: {namespace: n,"
        " manifests: [gone.yaml]}\nsurprise: 1\n"
    )
    with pytest.raises(InvalidInput) as raised:
        load_all([str(tmp_path)])
    text = str(raised.value)
    assert f"{folder}/scenario.yaml: alert: Value error, alert.labels needs" in text
    assert "expect.root_cause.0.any: List should have at least 1 item" in text
    assert "surprise: Extra inputs are not permitted" in text
    with pytest.raises(InvalidInput, match="no such scenario folder"):
        load_all([str(tmp_path / "nowhere")])


def test_summary_figures() -> None:
    results = [
        CaseResult("a", tags=["x"], status="passed", tokens={"total": 100}, cost_usd=0.01),
        CaseResult("b", tags=["x", "y"], status="failed", tokens={"total": 300}, cost_usd=0.03),
        CaseResult("c", status="skipped"),
    ]
    summary = summarize(results)
    assert summary["pass_rate"] == 0.5 and summary["skipped"] == 1
    assert summary["by_tag"] == {
        "x": {"cases": 2, "passed": 1, "pass_rate": 0.5},
        "y": {"cases": 1, "passed": 0, "pass_rate": 0.0},
    }
    assert summary["tokens"] == {"total": 400, "mean": 200}
    assert summary["cost_usd"] == {"total": 0.04, "per_case": 0.02}
    results[0].cost_usd = None
    assert summarize(results)["cost_usd"] == {"total": None, "per_case": None}
    assert percentile([5, 1, 3, 2, 4], 0.5) == 3 and percentile([], 0.5) is None


def test_a_step_round_trips_through_the_result_s_spec_as_export_writes_it() -> None:
    step = {
        "goal": "look at {{ .source.data.alert.labels.namespace }}",
        "tools": ["kubectl"],
        "maxIterations": 6,
        "policy": {"safety": {"allowedNamespaces": ["shop"]}},
    }
    scenario = Scenario.model_validate(
        {"name": "s", "alert": {"labels": {"alertname": "A"}}, "expect": {}, "step": step}
    )
    spec, name = task_spec(scenario, Options(endpoint="http://127.0.0.1:9/v1", model="m"))
    assert name == "investigate" and spec.agent is not None
    assert spec.agent.allowed_namespaces == ["shop"]
    assert step_spec(spec.agent) == step
