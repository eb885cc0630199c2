"""Sinks (D6): where a finished run's result goes, one module per sink type.

`deliver(spec, environ)` runs the sink task of `pf-runtime sink`; `request_approval` posts an
approval gate's request for `pf-runtime approval-request`. Both return a `Delivery` record.
"""

from collections.abc import Mapping

from punchingfist.api.runspec import TaskSpec
from punchingfist.runtime.sinks import (
    alertmanager,
    jira,
    pagerduty,
    prometheus,
    slack,
    webhook,
    workflow,
)
from punchingfist.runtime.sinks.approval import request_approval
from punchingfist.runtime.sinks.delivery import Delivery
from punchingfist.runtime.sinks.running import Deliver, run_sink

SINK_TYPES: dict[str, Deliver] = {
    "slack": slack.deliver,
    "alertmanager": alertmanager.deliver,
    "pagerduty": pagerduty.deliver,
    "jira": jira.deliver,
    "prometheus": prometheus.deliver,
    "workflow": workflow.deliver,
    "webhook": webhook.deliver,
}


def deliver(spec: TaskSpec, environ: Mapping[str, str]) -> Delivery:
    """Run the sink task `spec` (condition, delivery with retries) and return its record."""
    return run_sink(spec, environ, SINK_TYPES)


__all__ = ["SINK_TYPES", "Delivery", "deliver", "request_approval"]
