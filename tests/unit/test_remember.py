"""`punchingfist.memory.remember`: the evidence a knowledge entry keeps is what the answer cited,
bounded; a replayed or failed answer is no answer."""

from __future__ import annotations

from typing import Any

from punchingfist.memory.remember import EVIDENCE_CHARS, MAX_EVIDENCE, evidence, live_answer
from punchingfist.store import RunStep


def step(evidence_ids: list[str], calls: list[dict[str, Any]], **result: Any) -> RunStep:
    answer = {"summary": "s", "evidence": evidence_ids}
    return RunStep(
        name="agent-investigation",
        kind="agent",
        phase=result.pop("phase", "Succeeded"),
        result={"kind": "agent", "result": answer, **result},
        tool_calls=calls,
    )


def call(n: int, **more: Any) -> dict[str, Any]:
    return {"id": f"call-{n}", "tool": "kubectl", "call": {"verb": "get"}, "status": "ok"} | more


def test_only_the_cited_calls_are_kept_as_short_texts() -> None:
    calls = [call(1), call(2, argv=["kubectl", "logs", "web-1"], status="error", error="gone")]
    assert evidence([step(["call-2", "the pod's events"], calls)]) == [
        "call-2 kubectl: kubectl logs web-1 -> error (gone)",
        "the pod's events",  # an id that names no call is kept as the answer wrote it
    ]
    assert evidence([step([], [call(1)])]) == ['call-1 kubectl: {"verb": "get"} -> ok']


def test_evidence_is_bounded_in_count_and_length() -> None:
    calls = [call(n, argv=["kubectl", "get", "x" * 2000, str(n)]) for n in range(1, 30)]
    kept = evidence([step([], calls)])
    assert len(kept) == MAX_EVIDENCE
    assert all(len(text) == EVIDENCE_CHARS for text in kept)
    assert kept[0].startswith("call-1 kubectl: kubectl get xxx")


def test_replayed_and_failed_answers_are_no_answers() -> None:
    assert live_answer(step([], [])) is not None
    assert live_answer(step([], [], replayed=True)) is None
    assert live_answer(step([], [], phase="Failed")) is None
    assert evidence([step(["call-1"], [call(1)], replayed=True)]) == []
