"""Intake's rules without a database: matching, dedup, correlation, severity, run names and
the runs a notification starts (`runs.rules`, `runs.queueing`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from punchingfist.api import Source, load_resources
from punchingfist.runs import rules
from punchingfist.runs.queueing import alert_run_name, trigger_run_name

STARTS = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def webhook(name: str, config: str = "{}", workflow: str = "investigate-alert") -> Source:
    (found,) = load_resources(
        "apiVersion: punchingfist.io/v1alpha1\nkind: Source\n"
        f"metadata: {{name: {name}}}\n"
        f"spec: {{type: webhook, config: {config}, triggerWorkflow: {workflow}}}\n"
    )
    assert isinstance(found, Source)
    return found


def test_a_source_takes_an_alert_whose_filtered_labels_all_have_an_accepted_value() -> None:
    source = webhook("prod", "{filters: {env: [prod, staging], team: [pay]}}")
    assert rules.matches(source, {"env": "staging", "team": "pay", "other": "x"})
    assert not rules.matches(source, {"env": "staging"})  # team missing
    assert not rules.matches(source, {"env": "dev", "team": "pay"})
    assert rules.matches(webhook("all"), {})  # no filters: every alert


def test_the_smallest_max_alerts_of_the_sources_refuses_a_larger_notification() -> None:
    sources = [webhook("a", "{maxAlerts: 5}"), webhook("b", "{maxAlerts: 3}")]
    assert rules.over_alert_limit(sources, 3) is None
    assert rules.over_alert_limit(sources, 4) == (3, "b")
    assert rules.over_alert_limit([], 10**6) is None


def test_the_same_fingerprint_and_start_is_one_alert() -> None:
    naive = datetime(2026, 11, 26, 10, 0)  # as SQLite gives it back
    assert rules.dedup_key("fp", naive) == rules.dedup_key("fp", STARTS)
    plus_one = timezone(timedelta(hours=1))
    assert rules.dedup_key("fp", STARTS.astimezone(plus_one)) == rules.dedup_key("fp", STARTS)
    assert rules.dedup_key("fp", STARTS + timedelta(seconds=1)) != rules.dedup_key("fp", STARTS)
    assert rules.dedup_key("other", STARTS) != rules.dedup_key("fp", STARTS)


@pytest.mark.parametrize(
    ("stored", "incoming", "outcome"),
    [
        ("received", "firing", "updated"),
        ("received", "resolved", "resolved"),
        ("resolved", "resolved", "updated"),  # a resolution sent again counts once
        ("suppressed", "resolved", "resolved"),
        ("resolved", "firing", "updated"),
    ],
)
def test_an_alert_seen_again_is_updated_or_resolved(
    stored: str, incoming: str, outcome: str
) -> None:
    assert rules.repeat_outcome(stored, incoming) == outcome


def test_severity_is_one_of_the_ranked_ones_and_an_incident_takes_the_worst() -> None:
    assert rules.severity({"severity": "critical"}) == "critical"
    assert rules.severity({"severity": "page-me"}) == "warning"
    assert rules.severity({}) == "warning"
    assert rules.worse("warning", "critical") == "critical"
    assert rules.worse("critical", "info") == "critical"
    assert rules.worse("warning", "warning") == "warning"
    assert rules.worse("info", "warning") == "warning"
    assert rules.worse("sev1", "info") == "sev1"  # an unknown one counts as info
    assert rules.worse("sev1", "warning") == "warning"
    assert rules.worse(None, "info") is None


def test_the_incident_title_is_the_alertname_and_its_place() -> None:
    assert rules.incident_title({"alertname": "Down", "namespace": "pay"}) == "Down in pay"
    assert rules.incident_title({"alertname": "Down", "service": "api"}) == "Down in api"
    assert rules.incident_title({"alertname": "Down", "namespace": "", "service": "api"}) == (
        "Down in api"
    )
    assert rules.incident_title({}) == "unnamed"
    assert len(rules.incident_title({"alertname": "x" * 300})) == 255


def test_a_new_alert_joins_its_group_else_its_title_within_the_window() -> None:
    assert rules.correlate("group", "title") == ("group", 0.9)
    assert rules.correlate(None, "title") == ("title", 0.6)
    assert rules.correlate(None, None)[0] is None
    now = STARTS + timedelta(hours=2)
    assert rules.in_window(now - rules.CORRELATION_WINDOW, now)
    assert not rules.in_window(now - rules.CORRELATION_WINDOW - timedelta(seconds=1), now)
    assert rules.in_window(datetime(2026, 11, 26, 11, 30), now)  # naive: UTC


def test_a_new_alert_is_related_to_its_incident_and_a_duplicate_of_its_earlier_firing() -> None:
    assert rules.relations(None, None, 0.9) == []  # it opened its incident
    assert rules.relations("first", None, 0.6) == [("first", "related", 0.6)]
    assert rules.relations(None, "earlier", 0.9) == [("earlier", "duplicate", 1.0)]
    assert rules.relations("first", "earlier", 0.9) == [
        ("first", "related", 0.9),
        ("earlier", "duplicate", 1.0),
    ]
    # The incident's first alert is its earlier firing: a duplicate, not also related.
    assert rules.relations("same", "same", 0.9) == [("same", "duplicate", 1.0)]


def test_run_names_are_deterministic_and_stay_what_they_were() -> None:
    """The names queued runs had before stay theirs (a retry after an upgrade finds its run)."""
    alerts = webhook("alerts")
    assert alert_run_name(alerts, "3f9c2a", STARTS) == "investigate-alert-d0d43e4636"
    assert alert_run_name(alerts, "3f9c2a", STARTS + timedelta(seconds=1)) != (
        "investigate-alert-d0d43e4636"
    )
    long = webhook("alerts", workflow="w" * 70)
    assert alert_run_name(long, "3f9c2a", STARTS) == "w" * 52 + "-d0d43e4636"
    assert trigger_run_name(webhook("deploys"), "deploy-42") == "investigate-alert-fbd0e2f8ed"
    assert trigger_run_name(webhook("other"), "deploy-42") != "investigate-alert-fbd0e2f8ed"


def test_a_source_starts_at_most_its_runs_per_notification_and_never_one_twice() -> None:
    two, many = webhook("two", "{maxRunsPerNotification: 2}"), webhook("many")
    alerts = [
        ("n1", [("r1", two), ("m1", many)]),
        ("n1", [("r2", two)]),
        ("n1", [("r3", two)]),  # over the limit of `two`, which is all it matched
        ("n1", [("r4", two), ("m4", many)]),  # over for `two` only: not suppressed
        ("n2", [("r5", two)]),  # another notification: its own count
        ("n2", [("taken", two), ("r5", many)]),  # queued before, or earlier in this batch
    ]
    plans = rules.plan_runs(alerts, taken={"taken"})
    assert [[name for name, _ in plan.start] for plan in plans] == [
        ["r1", "m1"],
        ["r2"],
        [],
        ["m4"],
        ["r5"],
        [],
    ]
    assert [plan.suppressed for plan in plans] == [False, False, True, False, False, False]
    note = rules.suppressed_note(1, [two])
    assert "1 new alerts" in note and "'two' at most 2" in note
