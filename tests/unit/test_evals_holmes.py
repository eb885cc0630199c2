"""HolmesGPT eval cases (test_case.yaml and mock files) read as scenarios: found by discover,
loaded through scenarios.load, their mocks mapped onto our typed calls, their free-text
expectations given to the judge, and skipped, never passed, without one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from punchingfist.errors import InvalidInput
from punchingfist.evals import holmes
from punchingfist.evals.running import Case, Options, run_case
from punchingfist.evals.scenarios import Scenario, discover, load, load_all
from punchingfist.evals.tools import answer

CASES = Path(__file__).parents[1] / "fixtures" / "evals" / "holmes"


def case(name: str) -> Scenario:
    return load(CASES / name)


def recorded(scenario: Scenario) -> dict[str, dict[str, object]]:
    """The recordings by their tool and verb (or query)."""
    return {
        f"{r.call['tool']} {r.call.get('verb') or r.call.get('query')}": r.model_dump()
        for r in scenario.recordings
    }


def test_discover_and_load_find_holmes_cases_beside_scenarios() -> None:
    found = discover([str(CASES)])
    assert [p.name for p in found] == [
        "01_ledger_sync_crashloop",
        "02_checkout_oom_prometheus",
        "03_inventory_old_format_and_unsupported",
    ]
    assert [s.name for s in load_all([str(CASES)])] == [p.name for p in found]
    mixed = load_all([str(CASES), "examples/evals/crashloop-missing-configmap"])
    assert len(mixed) == 4 and not mixed[-1].needs_judge
    by_file = load(CASES / "01_ledger_sync_crashloop" / "test_case.yaml")
    assert by_file.name == "01_ledger_sync_crashloop" and by_file.prompt


def test_the_question_becomes_the_prompt_of_a_made_up_alert() -> None:
    scenario = case("01_ledger_sync_crashloop")
    question = "Why does the ledger-sync worker in namespace fin-7c1 keep restarting?"
    assert scenario.prompt == question
    assert scenario.alert["labels"] == {
        "alertname": "HolmesAsk",
        "case": "01_ledger_sync_crashloop",
    }
    assert scenario.alert["annotations"]["summary"] == question
    assert scenario.tags == ["holmesgpt", "easy", "kubernetes", "crashloop"]
    assert "before_test, after_test" in scenario.description


def test_expected_output_goes_to_the_judge_and_nothing_passes_without_it() -> None:
    scenario = case("01_ledger_sync_crashloop")
    assert scenario.needs_judge and scenario.expect.root_cause == []
    assert scenario.expect.judge_elements() == [
        "The container exits because the environment variable LEDGER_DSN_7Q2X is not set",
        "The pod ledger-sync-5f9c2d-q7w4k is in CrashLoopBackOff",
    ]
    single = case("02_checkout_oom_prometheus")  # one string, not a list
    assert single.expect.judge == [
        "The container checkout-api-84d7c6-z2m9p is OOMKilled: it uses about 140Mi at peak "
        "and its memory limit is 96Mi"
    ]
    options = Options(endpoint="http://127.0.0.1:9/v1", model="never-called")
    result = run_case(Case(scenario, 1), options)
    assert result.status == "skipped"
    assert result.reasons == ["its expected output is free text: it needs --judge-model"]


def test_kubectl_mocks_become_typed_kubectl_recordings() -> None:
    scenario = case("01_ledger_sync_crashloop")
    pod = {"name": "ledger-sync-5f9c2d-q7w4k", "namespace": "fin-7c1"}
    assert [r.call for r in scenario.recordings] == [
        {"tool": "kubectl", "verb": "logs", **pod},
        {"tool": "kubectl", "verb": "describe", "resource": "pod", **pod},
        {"tool": "kubectl", "verb": "events", **pod},
    ]
    describe = scenario.recordings[1]
    assert describe.output.startswith("Name:             ledger-sync-5f9c2d-q7w4k")
    assert describe.output.endswith("Back-off restarting failed container worker")
    assert "stdout:" not in describe.output and "stderr:" not in describe.output
    assert "LEDGER_DSN_7Q2X is not set" in scenario.recordings[0].output
    # the model's call, as it writes it, is answered by the mock
    asked = {"tool": "kubectl", "verb": "describe", "resource": "pods", **pod, "output": "wide"}
    assert answer(scenario.recordings, asked) == describe
    assert answer(scenario.recordings, {**asked, "name": "other-pod"}) is None


def test_prometheus_queries_become_promql_recordings_whatever_their_range() -> None:
    scenario = case("02_checkout_oom_prometheus")
    calls = recorded(scenario)
    peak = (
        'max_over_time(container_memory_working_set_bytes{namespace="shop-e2", '
        'pod="checkout-api-84d7c6-z2m9p"}[5m])'
    )
    assert calls[f"promql {peak}"]["call"] == {"tool": "promql", "query": peak}
    assert '"146800640"' in str(calls[f"promql {peak}"]["output"])
    ranged = {"tool": "promql", "query": peak, "range_minutes": 60, "step_seconds": 60}
    found = answer(scenario.recordings, ranged)
    assert found is not None and "146800640" in found.output
    restarts = 'kube_pod_container_status_restarts_total{namespace="shop-e2"}'
    assert calls[f"promql {restarts}"]["call"] == {"tool": "promql", "query": restarts}
    assert scenario.description.startswith("The checkout API is killed for memory")


def test_old_format_errors_wildcards_and_unsupported_tools() -> None:
    scenario = case("03_inventory_old_format_and_unsupported")
    calls = recorded(scenario)
    listing = calls["kubectl get"]  # the older format: output from the second line
    assert listing["call"] == {
        "tool": "kubectl",
        "verb": "get",
        "resource": "deployment",
        "namespace": "stock-9d",
    }
    assert str(listing["output"]).startswith("NAME            READY")
    failed = calls["kubectl describe"]
    assert failed["status"] == "error"
    assert (
        failed["error"]
        == 'Error from server (NotFound): deployments.apps "inv-api-3b8e1f" not found'
    )
    logs = calls["kubectl logs"]  # pod_name "*": any pod of the namespace
    assert logs["call"] == {"tool": "kubectl", "verb": "logs", "namespace": "stock-9d"}
    assert answer(
        scenario.recordings,
        {"tool": "kubectl", "verb": "logs", "name": "x", "namespace": "stock-9d"},
    )
    assert len(scenario.recordings) == 3, "the lineage mock and NOTES.txt are no recordings"
    assert "Unsupported tools" in scenario.description
    assert "kubectl_lineage_children" in scenario.description
    assert "skip, skip_reason" in scenario.description


def mock(folder: Path, tool: str, params: dict[str, object], body: str = "out") -> Path:
    file = folder / f"{tool}.txt"
    header = {"toolset_name": "t", "tool_name": tool, "match_params": params}
    file.write_text(json.dumps(header) + "\n" + json.dumps({"status": "success"}) + "\n" + body)
    return file


@pytest.mark.parametrize(
    ("tool", "params", "call"),
    [
        (
            "kubectl_previous_logs",
            {"name": "api-1", "namespace": "n"},
            {
                "tool": "kubectl",
                "verb": "logs",
                "name": "api-1",
                "namespace": "n",
                "previous": True,
            },
        ),
        (
            "kubectl_get_by_name",
            {"kind": "service", "name": "web", "namespace": "n"},
            {
                "tool": "kubectl",
                "verb": "get",
                "resource": "service",
                "name": "web",
                "namespace": "n",
            },
        ),
        ("kubectl_top_pods", {}, {"tool": "kubectl", "verb": "top", "resource": "pods"}),
        (
            "kubectl_find_resource",
            {"kind": "pod", "keyword": "web"},
            {"tool": "kubectl", "verb": "get", "resource": "pod"},
        ),
        (
            "fetch_webpage",
            {"url": "https://runbooks.example/x"},
            {"tool": "curl", "url": "https://runbooks.example/x"},
        ),
        (
            "execute_prometheus_instant_query",
            {"query": "up", "description": "d"},
            {"tool": "promql", "query": "up"},
        ),
    ],
)
def test_each_tool_maps_to_the_call_that_asks_the_same(
    tool: str, params: dict[str, object], call: dict[str, object], tmp_path: Path
) -> None:
    found = holmes.mock_recording(mock(tmp_path, tool, params))
    assert found is not None
    assert found[0] == tool and found[1] == {"call": call, "output": "out"}


def test_broken_cases_say_which_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "test_case.yaml").write_text("expected_output: [x]\n")
    with pytest.raises(InvalidInput, match="user_prompt: the question to ask is required"):
        load(tmp_path)
    (tmp_path / "test_case.yaml").write_text("user_prompt: why?\nexpected_output: []\n")
    with pytest.raises(InvalidInput, match="expected_output: what a correct answer says"):
        load(tmp_path)
    (tmp_path / "test_case.yaml").write_text("user_prompt: why?\nexpected_output: x\n")
    mock(tmp_path, "kubectl_describe", {"kind": "pod"}).write_text(
        json.dumps({"tool_name": "kubectl_describe", "match_params": ["kind"]}) + "\n"
    )
    with pytest.raises(InvalidInput, match=r"kubectl_describe.txt: match_params: a mapping"):
        load(tmp_path)
