"""Workflow: start another Punching Fist workflow through the server's trigger API.

`POST {endpoint}/api/v1/trigger/{source}` where `source` is an `api` Source whose
`triggerWorkflow` is `workflowName`. The event of the new run is this run's event (so
`.source.data.alert` still reads the alert) plus `outputs` and `escalatedFrom`. The
`Idempotency-Key` is this run and sink, so a retried sink task never starts a second run.
`escalatedFrom.replayed` says whether this run's answer was replayed (no model ran).
A Sink that leaves `endpoint` at its default (`http://punchingfist:8080`, the chart's Service)
leaves it to the environment: `PUNCHINGFIST_URL` when set, else the default when its host
resolves; when it does not, the sink is skipped as not configured. Without `authSecret` the
call carries the step pod's service-account token in the cluster, else `PUNCHINGFIST_TOKEN`.
`triggerCondition` is an expression over `.outputs`, `.steps`, `.source`, ... and the alert's
`alert`, `alertname`, `severity`, `labels` and `status`.
"""

from __future__ import annotations

from typing import Any

from punchingfist.api.sinks import WorkflowSinkConfig
from punchingfist.runtime.context import BadTaskInput
from punchingfist.runtime.sinks.delivery import DeliveryFailed
from punchingfist.runtime.sinks.running import Sent, SinkRun, Skip
from punchingfist.runtime.tools.kubectl import SERVICE_ACCOUNT_TOKEN
from punchingfist.templating import compile_expression

DEFAULT_ENDPOINT = WorkflowSinkConfig.model_fields["endpoint"].default
ENDPOINT_ENV = "PUNCHINGFIST_URL"
TOKEN_ENV = "PUNCHINGFIST_TOKEN"
"""The server's API token, for a Sink without `authSecret` outside the cluster."""
"""Where a Sink that leaves `endpoint` at its default finds the server (set by the demo)."""


def trigger_context(run: SinkRun) -> dict[str, Any]:
    alert = run.findings.alert
    return run.context | {
        "alert": alert,
        "alertname": run.findings.alertname,
        "severity": run.findings.severity,
        "labels": alert.get("labels") or {},
        "status": alert.get("status") or "",
    }


def deliver(run: SinkRun) -> Sent:
    target = str(run.config["workflowName"])
    if target == run.findings.workflow:
        raise BadTaskInput(f"{run.resource}: workflow {target!r} would start itself")
    condition = run.config.get("triggerCondition")
    if isinstance(condition, str) and condition.strip():
        field = "spec.config.triggerCondition"
        expression = compile_expression(condition, resource=run.resource, field=field)
        if not expression.is_true(trigger_context(run)):
            raise Skip(f"triggerCondition {condition.strip()} does not hold")
    source = str(run.config.get("source") or target)
    endpoint = run.endpoint(DEFAULT_ENDPOINT, ENDPOINT_ENV, "Punching Fist server")
    headers = {"Idempotency-Key": f"{run.findings.run}/{run.task.name}"}
    if run.task.secret_env:
        token = run.secret("set `authSecret` on the Sink")
        header = run.config.get("authHeader")
        headers |= {str(header): token} if header else {"Authorization": f"Bearer {token}"}
    elif SERVICE_ACCOUNT_TOKEN.is_file():
        # In the cluster the server checks the pod's own token (TokenReview) and RBAC: the step
        # accounts may `trigger` sources (the chart's punchingfist-step-reporter role).
        headers["Authorization"] = f"Bearer {SERVICE_ACCOUNT_TOKEN.read_text().strip()}"
    elif run.environ.get(TOKEN_ENV, "").strip():
        # Outside the cluster (the demo, `punchingfist run`): the server's API token, as the
        # CLI takes it.
        token = run.environ[TOKEN_ENV].strip()
        run.secrets.append(token)
        headers["Authorization"] = f"Bearer {token}"
    event = {k: v for k, v in run.context["source"]["data"].items() if k != "context"}
    event |= {
        "outputs": run.context["outputs"],
        "escalatedFrom": {
            "workflow": run.findings.workflow,
            "run": run.findings.run,
            "status": run.findings.status,
            "fingerprint": run.findings.fingerprint,
            "replayed": run.findings.replayed,
        },
    }
    http = run.http("Punching Fist trigger API")
    reply = http.request("POST", f"{endpoint}/api/v1/trigger/{source}", json=event, headers=headers)
    answer = reply.json() if isinstance(reply.json(), dict) else {}
    started = str(answer.get("run") or "")
    if not started.startswith(target[:52] + "-"):
        raise DeliveryFailed(
            f"Source {source!r} started {started or 'nothing'}, not a run of workflow {target!r}: "
            "set `spec.config.source` to an api Source whose triggerWorkflow is "
            f"{target!r}",
            status=reply.status,
        )
    created = bool(answer.get("created"))
    return Sent(
        external_id=started,
        detail=f"{'started' if created else 'already started'} {started} via {source}",
        extra={"workflow": target, "created": created},
    )
