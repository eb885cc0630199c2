"""The optional post-checks of a remediation (#25) against real servers: the alert resolved in
a real Alertmanager, a PromQL condition on a real Prometheus (Debian packages)."""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from punchingfist.api.workflows import AlertResolvedCheck, PromqlCheck, RemediationCheck
from punchingfist.runtime.remediation import checks
from tests.integration import servers


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    config = {"route": {"receiver": "none"}, "receivers": [{"name": "none"}]}
    try:
        with servers.alertmanager(config, tmp_path) as url:
            yield url
    except servers.Unavailable as error:
        pytest.skip(str(error))


def _post(url: str, alertname: str, *, resolved: bool) -> None:
    now = datetime.now(UTC)
    alert = {
        "labels": {"alertname": alertname},
        "startsAt": (now - timedelta(minutes=1)).isoformat(),
    }
    if resolved:
        alert["endsAt"] = now.isoformat()
    request = urllib.request.Request(
        f"{url}/api/v2/alerts",
        data=json.dumps([alert]).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_an_alert_that_still_fires_fails_the_check_and_a_resolved_one_passes(
    alertmanager: str,
) -> None:
    name = f"Remediation{uuid.uuid4().hex[:6]}"
    _post(alertmanager, name, resolved=False)
    firing = checks.Report()
    checks.alert_resolved(alertmanager, name, "2s", firing)
    assert not firing.passed and firing.lines == [f"✘ alert {name} still fires after 2s"]

    _post(alertmanager, name, resolved=True)
    resolved = checks.Report()
    checks.alert_resolved(alertmanager, name, "30s", resolved)
    assert resolved.passed and resolved.lines == [f"✔ alert {name} is resolved in Alertmanager"]


def test_the_declared_checks_read_their_urls_from_the_workflow_environment(
    alertmanager: str, prometheus: str
) -> None:
    name = f"Remediation{uuid.uuid4().hex[:6]}"
    check = RemediationCheck(
        alert_resolved=AlertResolvedCheck(within="5s"),
        promql=PromqlCheck(query='up{job="self"}', expect="== 1"),
    )
    report = checks.Report()
    environ = {"ALERTMANAGER_URL": alertmanager, "PROMETHEUS_URL": prometheus}
    checks.declared(check, environ, name, 'up{job="self"}', report)
    assert report.passed, report.lines
    missing = checks.Report()
    checks.declared(check, {}, name, 'up{job="self"}', missing)
    assert missing.lines == [
        "✘ alertResolved cannot be checked without ALERTMANAGER_URL in runtime.environment",
        "✘ promql cannot be checked without PROMETHEUS_URL",
    ]


@pytest.mark.parametrize(
    ("query", "expect", "passes"),
    [
        ('up{job="self"}', "== 1", True),
        ('up{job="self"}', "== 0", False),
        ('up{job="nothing-scrapes-this"}', "empty", True),
        ('up{job="self"}', "empty", False),
        ("vector(3)", "< 5", True),
    ],
)
def test_promql_conditions_on_a_real_prometheus(
    prometheus: str, query: str, expect: str, passes: bool
) -> None:
    report = checks.Report()
    checks.promql(prometheus, query, expect, report)
    assert report.passed is passes, report.lines


def test_an_unreachable_prometheus_fails_the_check() -> None:
    report = checks.Report()
    checks.promql("http://127.0.0.1:9", "vector(1)", "== 1", report)
    assert not report.passed and "Prometheus query failed" in report.lines[0]
