"""The feedback buttons of a run's Slack report (#22) and the resolution modal: what Slack gets."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from punchingfist.runtime.sinks.findings import Findings, gather
from punchingfist.runtime.sinks.slack import (
    FEEDBACK_BLOCK,
    RESOLVE_ACTION,
    RIGHT_ACTION,
    WRONG_ACTION,
    result_blocks,
)
from punchingfist.server.feedback import NOTE, RESOLVE_VIEW, ROOT_CAUSE, ours, resolve_view
from tests.fakes.saas import blocks_valid
from tests.sink_support import crashloop_event


def findings(run: str = "agent-alert-investigation-x7k2p") -> Findings:
    context = {"source": {"data": crashloop_event()}, "workflow": {"name": "wf", "run": run}}
    return gather(context, {})


def feedback(blocks: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((b for b in blocks if b.get("block_id") == FEEDBACK_BLOCK), None)


def test_the_report_ends_with_right_wrong_and_resolved_by_buttons_naming_the_run() -> None:
    blocks = result_blocks(findings(), None, "")
    assert blocks_valid(blocks) and blocks[-1] is feedback(blocks)
    buttons = blocks[-1]["elements"]
    assert [(b["text"]["text"], b["action_id"]) for b in buttons] == [
        ("✅ right", RIGHT_ACTION),
        ("❌ wrong", WRONG_ACTION),
        ("Resolved by…", RESOLVE_ACTION),
    ]
    assert {json.dumps(json.loads(b["value"])) for b in buttons} == {
        json.dumps({"run": "agent-alert-investigation-x7k2p"})
    }


def test_a_replayed_answer_cannot_be_judged_and_a_report_without_run_has_no_buttons() -> None:
    replayed = feedback(result_blocks(replace(findings(), replayed=True), None, ""))
    assert replayed is not None
    assert [b["action_id"] for b in replayed["elements"]] == [RESOLVE_ACTION]
    assert feedback(result_blocks(findings(run=""), None, "")) is None


def test_the_modal_asks_for_a_root_cause_and_an_optional_note() -> None:
    view = resolve_view("run-1", "PodCrashLooping in shop")
    assert view["callback_id"] == RESOLVE_VIEW and json.loads(view["private_metadata"]) == {
        "run": "run-1"
    }
    inputs = {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}
    assert set(inputs) == {ROOT_CAUSE, NOTE}
    assert not inputs[ROOT_CAUSE]["optional"] and inputs[NOTE]["optional"]
    assert len(view["title"]["text"]) <= 24  # Slack's limit for a modal title


def test_only_the_reports_buttons_and_the_modal_are_feedback() -> None:
    assert ours({"type": "block_actions", "actions": [{"action_id": RIGHT_ACTION}]})
    assert ours({"type": "view_submission", "view": {"callback_id": RESOLVE_VIEW}})
    for other in (
        {"type": "block_actions", "actions": [{"action_id": "pf_approve"}]},
        {"type": "view_submission", "view": {"callback_id": "other"}},
        {"actions": []},
        {"actions": "x"},
        [],
        "payload",
        None,
    ):
        assert not ours(other), other
