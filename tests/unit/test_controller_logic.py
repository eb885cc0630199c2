"""The controller's decisions without a cluster: conditions, hashes, admission verdicts."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from punchingfist.controller import status as st
from punchingfist.controller.admission import Rejected, review_plain, review_sink, review_workflow
from punchingfist.controller.reconciling import Inputs, inputs_hash, sink_names, validate_resource

WORKFLOW = yaml.safe_load("""
apiVersion: punchingfist.io/v1alpha1
kind: Workflow
metadata: {name: w, namespace: ops, generation: 2}
spec:
  steps: [{name: look, type: cli, command: "echo {{ .source.data.alert.alertname }}"}]
  outputs: [{name: summary, value: "{{ .steps.look.result }}"}]
  sinks: [notify, {name: page, condition: "{{ .outputs.summary }}"}]
""")


def sink(name: str, **config: Any) -> dict[str, Any]:
    return {
        "apiVersion": "punchingfist.io/v1alpha1",
        "kind": "Sink",
        "metadata": {"name": name, "namespace": "ops", "generation": 1},
        "spec": {"type": "webhook", "config": {"url": "https://example.com/hook", **config}},
    }


def test_transition_time_moves_only_when_the_status_changes() -> None:
    ready = st.Condition("Ready", "True", "TemplateApplied", "up to date")
    first = st.merge([], [ready], generation=1, at="2026-01-01T00:00:00Z")
    again = st.merge(
        first,
        [st.Condition("Ready", "True", "TemplateApplied", "still")],
        generation=2,
        at="2026-01-02T00:00:00Z",
    )
    assert again[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert again[0]["message"] == "still" and again[0]["observedGeneration"] == 2
    failed = st.merge(
        again,
        [st.Condition("Ready", "False", "CompileFailed", "bad")],
        generation=3,
        at="2026-01-03T00:00:00Z",
    )
    assert failed[0]["lastTransitionTime"] == "2026-01-03T00:00:00Z"


def test_conditions_of_other_writers_are_kept_and_long_messages_cut() -> None:
    theirs = {"type": "Audited", "status": "True"}
    merged = st.merge(
        [theirs], [st.Condition("Ready", "False", "X", "m" * 10_000)], generation=None
    )
    assert theirs in merged
    assert len(merged[0]["message"]) <= st.MAX_MESSAGE and merged[0]["message"].endswith("cut)")


def test_the_inputs_hash_follows_the_named_sinks_only() -> None:
    base = Inputs(workflow=WORKFLOW, sinks={"notify": sink("notify"), "page": sink("page")})
    other = Inputs(workflow=WORKFLOW, sinks={**base.sinks, "unrelated": sink("unrelated")})
    assert inputs_hash(base) == inputs_hash(other)
    edited = Inputs(workflow=WORKFLOW, sinks={**base.sinks, "page": sink("page", method="PUT")})
    assert inputs_hash(base) != inputs_hash(edited)
    assert sink_names(WORKFLOW) == ["notify", "page"]


def test_admission_accepts_a_sink_that_does_not_exist_yet() -> None:
    assert review_workflow(WORKFLOW, {}, None) == []


def test_admission_refuses_an_unknown_output_in_a_sink_condition() -> None:
    broken = yaml.safe_load(yaml.safe_dump(WORKFLOW))
    broken["spec"]["sinks"][1]["condition"] = "{{ .outputs.missing }}"
    with pytest.raises(
        Rejected, match=r"spec\.sinks\[1\]\.condition: there is no output 'missing'"
    ):
        review_workflow(broken, {}, None)


def test_a_sink_edit_is_refused_only_for_what_it_breaks() -> None:
    users = {"w": WORKFLOW}
    good = sink("page", template="{{ .outputs.summary }}")
    assert review_sink(good, users, {}, None) == []
    bad = sink("page", template="{{ .outputs.nothing }}")
    with pytest.raises(Rejected, match=r"there is no output 'nothing'.*Workflow/w uses this Sink"):
        review_sink(bad, users, {}, None)
    with pytest.raises(Rejected, match=r"Sink/page: spec\.config\.template"):
        review_sink(sink("page", template="{{ .outputs.summary "), {}, {}, None)


def test_a_source_with_a_relative_path_is_refused_and_an_invalid_one_is_not_ready() -> None:
    source = {
        "apiVersion": "punchingfist.io/v1alpha1",
        "kind": "Source",
        "metadata": {"name": "s", "generation": 4},
        "spec": {"type": "webhook", "config": {"path": "alerts"}, "triggerWorkflow": "w"},
    }
    with pytest.raises(Rejected, match=r"spec\.config\.path: 'alerts' must be an absolute"):
        review_plain(source)
    outcome = validate_resource(source)
    assert outcome.status is not None and outcome.status["observedGeneration"] == 4
    assert st.condition(outcome.status, "Ready")["reason"] == "InvalidSpec"  # type: ignore[index]
    assert [e.reason for e in outcome.events] == ["InvalidSpec"]
    again = validate_resource({**source, "status": outcome.status})
    assert again.events == []  # the same verdict is not announced twice
