"""The controller's catalog feeds the server the Sinks it resolves PagerDuty pages with."""

from __future__ import annotations

from typing import Any

from punchingfist.controller import Catalog
from tests.builders import make_sink


def test_the_catalog_keeps_each_namespaces_sinks_and_tells_the_server() -> None:
    catalog = Catalog()
    seen: list[dict[str, Any]] = []
    catalog.subscribe(lambda found: seen.append(found.sinks("ops")))
    sink = make_sink("pd", "pagerduty", {"routingKeySecret": {"secretRef": "pd"}})
    catalog.put(("ops", "pd"), sink, "Sink")
    catalog.put(("other", "pd"), sink, "Sink")
    assert seen == [{"pd": sink}, {"pd": sink}]
    catalog.put(("ops", "pd"), None, "Sink")  # deleted, or no longer valid
    assert catalog.sinks("ops") == {} and catalog.sinks("other") == {"pd": sink}
    assert seen[-1] == {}
