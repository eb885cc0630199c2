"""What a step's result keeps of its tool outputs (redacted, cut, within the step's budget), and
how `eval export` turns a stored run into a scenario in the cases a real run rarely shows:
nothing confirmed, a human's own root cause, a run judged wrong, no distinctive name, outputs
not kept, a run recorded before outputs were kept. (tests/integration/test_evals_export.py
exports a real run end to end.)"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from punchingfist.evals.export import ExportError, export, scenario_of
from punchingfist.evals.scenarios import Scenario
from punchingfist.runtime.agent.toolbox import (
    KEPT_OUTPUT_CHARS,
    KEPT_STEP_CHARS,
    AuditEntry,
    kept,
)

SECRET = "sk-live-9b1f4e77c0a2"


def entry(n: int, output: str, status: str = "ok") -> AuditEntry:
    return AuditEntry(
        id=f"call-{n}",
        tool="kubectl",
        call={"verb": "describe", "resource": "pod", "name": f"web-{n}"},
        status=status,
        error=None,
        seconds=0.1,
        truncated=False,
        output_chars=len(output),
        turn=1,
        output=output,
    )


def test_kept_outputs_are_redacted_cut_and_within_the_step_budget() -> None:
    basic = base64.b64encode(f"user:{SECRET}".encode()).decode()
    echoed = entry(1, f"401: token {SECRET} refused; Authorization: Basic {basic}")
    big = entry(2, "A" * 3000 + "B" * 3000)
    (first, second) = kept([echoed, big], [SECRET, f"user:{SECRET}", None])
    assert SECRET not in first["output"] and basic not in first["output"]
    assert first["output"] == "401: token *** refused; Authorization: Basic ***"
    assert first["turn"] == 1 and first["output_kept"] is True
    assert len(second["output"]) < KEPT_OUTPUT_CHARS + 100 and "truncated" in second["output"]
    assert second["output"].startswith("A") and second["output"].endswith("B")
    assert second["output_chars"] == 6000, "what the model read is still counted whole"
    many = [entry(n, "x" * (KEPT_OUTPUT_CHARS - 100)) for n in range(1, 15)]
    records = kept([*many, entry(15, "short")], [])
    stored = sum(len(r["output"]) for r in records)
    assert stored <= KEPT_STEP_CHARS
    assert [r["output_kept"] for r in records[:12]] == [True] * 12
    assert [r["output_kept"] for r in records[12:14]] == [False, False]
    assert records[12]["output"] == "" and records[14]["output"] == "short"


def run_view(
    root_cause: str = "ConfigMap cart-cfg-e41d0b is missing",
    calls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A run as GET /api/v1/runs/{name} answers it."""
    recorded = (
        calls
        if calls is not None
        else [
            {
                "id": "call-1",
                "tool": "kubectl",
                "call": {
                    "verb": "describe",
                    "resource": "pod",
                    "name": "cart-5d7c",
                    "namespace": "shop",
                },
                "status": "ok",
                "turn": 1,
                "output": 'Error: configmap "cart-cfg-e41d0b" not found',
                "output_kept": True,
            }
        ]
    )
    return {
        "id": "run-id-1",
        "name": "shop-1a2b3c",
        "workflow_name": "triage",
        "created_at": "2026-12-01T10:00:00",
        "parameters": {
            "event": {
                "alert": {
                    "labels": {"alertname": "KubePodNotReady", "pod": "cart-5d7c"},
                    "annotations": {"summary": "cart-5d7c is not ready"},
                    "fingerprint": "f00",
                }
            }
        },
        "steps": [
            {"name": "look", "kind": "cli", "result": {"step": "look"}},
            {
                "name": "investigate",
                "kind": "agent",
                "result": {
                    "step": "investigate",
                    "thoughts": ["Describe the pod.", "It needs a missing ConfigMap."],
                    "tool_calls": recorded,
                    "spec": {"goal": "Investigate", "tools": ["kubectl"], "maxIterations": 5},
                    "result": {
                        "summary": "cart-5d7c cannot start.",
                        "problem_summary": "CreateContainerConfigError",
                        "root_cause": root_cause,
                        "can_auto_fix": False,
                        "confidence": 0.8,
                        "escalation_notes": "Create it.",
                        "evidence": ["call-1"],
                        "partial": False,
                    },
                },
            },
        ],
    }


def scenario(data: dict[str, Any]) -> Scenario:
    return Scenario.model_validate(yaml.safe_load(yaml.safe_dump(data)))


def test_an_unconfirmed_answer_is_exported_for_review() -> None:
    data, review = scenario_of(run_view(), [])
    assert review == "no human confirmed this root cause"
    exported = scenario(data)
    assert exported.tags == ["exported", "needs-review"]
    assert "the run's own answer, not confirmed by a human" in exported.description
    assert [f.any for f in exported.expect.root_cause] == [["cart-cfg-e41d0b"]]
    assert "cart-5d7c" not in str(exported.expect.root_cause), "the alert names it: no fact"
    assert exported.reference[-1]["action"]["kind"] == "final_answer"
    assert "partial" not in exported.reference[-1]["action"], "not a FinalAnswer field"
    wrong = [{"run_id": "run-id-1", "verdict": "wrong", "confirmed": False}]
    data, _ = scenario_of(run_view(), wrong)
    assert "(a human judged it WRONG)" in data["description"]


def test_a_humans_root_cause_wins_and_a_differing_answer_is_flagged() -> None:
    knowledge = [
        {"run_id": "run-id-1", "confirmed": False, "root_cause": "ConfigMap cart-cfg-e41d0b"},
        {
            "run_id": None,
            "confirmed": True,
            "confirmed_by": "bob",
            "root_cause": "Deploy cart-7e2f1a removed configmap cart-cfg-e41d0b",
        },
    ]
    run = run_view(calls=None)
    run["steps"][1]["result"]["tool_calls"][0]["output"] += "\nrevision 3: cart-7e2f1a"
    data, review = scenario_of(run, knowledge)
    exported = scenario(data)
    assert "a human's, confirmed by bob" in exported.description
    assert [f.any for f in exported.expect.root_cause] == [["cart-7e2f1a"], ["cart-cfg-e41d0b"]]
    assert review is not None and "does not name cart-7e2f1a" in review
    assert exported.expect.judge == ["Deploy cart-7e2f1a removed configmap cart-cfg-e41d0b"]


def test_no_distinctive_name_needs_the_judge_and_dropped_outputs_are_named() -> None:
    calls = run_view()["steps"][1]["result"]["tool_calls"]
    calls[0] |= {"output": "", "output_kept": False}
    data, review = scenario_of(run_view("A missing ConfigMap", calls), [])
    exported = scenario(data)
    assert exported.needs_judge and exported.expect.root_cause == []
    assert review is not None and "no fact is checked without the judge" in review
    assert "the outputs of call-1 were not kept" in review


def test_runs_that_cannot_be_exported_say_why(tmp_path: Path) -> None:
    old = run_view()
    for call in old["steps"][1]["result"]["tool_calls"]:
        del call["output"], call["output_kept"]
    with pytest.raises(ExportError, match="recorded before tool outputs were kept"):
        scenario_of(old, [])
    with pytest.raises(ExportError, match="no agent step 'fix'"):
        scenario_of(run_view(), [], step="fix")
    unanswered = run_view()
    unanswered["steps"][1]["result"]["result"] = None
    with pytest.raises(ExportError, match="no root cause to expect"):
        scenario_of(unanswered, [])
    views = {"/api/v1/runs/shop-1a2b3c": run_view() | {"incident_id": None}}
    folder = export("shop-1a2b3c", views.__getitem__, tmp_path)
    assert (folder / "scenario.yaml").read_text().startswith("# Exported by")
