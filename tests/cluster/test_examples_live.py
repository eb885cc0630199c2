"""Every example Workflow runs to completion on the node (#20), twice: started by a real alert
at a webhook Source, and by `argo submit --from workflowtemplate/<name> -p event=...` with the
event `punchingfist event` makes of the example alert.

Each example is applied as shipped but renamed, with its Sinks pointed at this machine: the
model behind `llm-service` answers every agent turn with a final answer; Slack is the fake
(`SLACK_API_URL` in the Workflow's environment), PagerDuty and Jira are fakes (the Sinks'
`endpoint`, Jira's credentials in a Secret), Alertmanager is Debian's behind the Service
`alertmanager`, and the escalation chain reaches the renamed `escalation-workflow` through an
`api` Source. The approval gate of `tiered-investigation` is denied with `punchingfist approve
--deny`, straight against the cluster, as a user without the server's API would.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack.cluster.layout import NODE_IP
from tests.cluster.support import (
    NAMESPACE,
    LiveCluster,
    host_service,
    port_of,
    ready_template,
)
from tests.conftest import EXAMPLES, unavailable
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.saas import FakeJira, FakePagerDuty, FakeSlack
from tests.integration import servers

ALERT = EXAMPLES / "alerts" / "pod-crashlooping.json"
CHANNELS = {"C1234567890": "ops", "C0PSALERTS": "ops-alerts", "C0ALERTS01": "alerts"}
ANSWER = {
    "thought": "The container is OOM-killed at its limit.",
    "action": {
        "kind": "final_answer",
        "summary": "my-app is OOM-killed",
        "problem_summary": "my-app is OOM-killed",
        "root_cause": "Its memory limit is too low.",
        "can_auto_fix": False,
        "confidence": 0.8,
        "escalation_notes": "Raise the memory limit.",
        "severity_assessment": "critical",
        "recommendations": ["Raise the memory limit"],
        "evidence": [],
    },
}
GATED = {"tiered-investigation"}


def _load(kind: str, name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / kind / f"{name}.yaml").read_text())
    return copy.deepcopy(document)


def _sinks(suffix: str, urls: dict[str, str], escalation: str) -> dict[str, dict[str, Any]]:
    """Every example Sink, renamed with `suffix`, its endpoints on this machine."""
    made = {}
    for path in sorted((EXAMPLES / "sinks").glob("*.yaml")):
        sink = _load("sinks", path.stem)
        config = sink["spec"]["config"]
        kind = sink["spec"]["type"]
        if kind == "pagerduty":
            config["endpoint"] = urls["pagerduty"]
        elif kind == "jira":
            config["endpoint"] = urls["jira"]
            config["credentialsSecret"] = {"secretRef": f"jira-{suffix}", "key": "credentials"}
        elif kind == "workflow":
            config["workflowName"], config["source"] = escalation, f"{escalation}-api"
        sink["metadata"] = {"name": f"{path.stem}-{suffix}", "namespace": NAMESPACE}
        made[path.stem] = sink
    return made


def _workflow(name: str, suffix: str, slack: str) -> dict[str, Any]:
    """The example Workflow `name`, renamed, its Sinks the renamed copies."""
    document = _load("workflows", name)
    document["metadata"] = {"name": f"{name}-{suffix}", "namespace": NAMESPACE}
    runtime = document["spec"].setdefault("runtime", {})
    runtime.setdefault("environment", {})["SLACK_API_URL"] = f"{slack}/api/"
    document["spec"]["sinks"] = [
        {**sink, "name": f"{sink['name']}-{suffix}"}
        if isinstance(sink, dict)
        else f"{sink}-{suffix}"  # the short form: a list of names
        for sink in document["spec"].get("sinks", [])
    ]
    return document


def _alert(alertname: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(ALERT.read_text())
    # Its own Alertmanager group: the incident it opens is its own (other tests' alerts of the
    # example's group would otherwise join it and keep it open).
    payload["groupKey"] = f'{{}}:{{alertname="{alertname}", test="{uuid.uuid4().hex[:8]}"}}'
    for alert in payload["alerts"]:
        alert["labels"]["alertname"] = alertname
        alert["fingerprint"] = uuid.uuid4().hex[:16]
        alert["startsAt"] = datetime.now(UTC).isoformat()
    return payload


def _event(tmp_path: Path, payload: dict[str, Any]) -> str:
    """What `punchingfist event -f alert.json` prints: the run's `event` parameter."""
    path = tmp_path / f"{uuid.uuid4().hex}.json"
    path.write_text(json.dumps(payload))
    done = subprocess.run(
        [sys.executable, "-m", "punchingfist.cli", "event", "-f", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def _deny(cluster: LiveCluster, run: str) -> str:
    """`punchingfist approve RUN --deny`, against the cluster with the admin kubeconfig."""
    cluster.wait(
        lambda: any(
            n.get("type") == "Suspend" and n.get("phase") == "Running"
            for n in ((cluster.argo_workflow(run).get("status") or {}).get("nodes") or {}).values()
        ),
        f"{run} to wait at its gate",
        300,
        lambda: cluster.describe_run(run),
    )
    argv = [sys.executable, "-m", "punchingfist.cli", "approve", run, "--deny"]
    argv += ["-n", NAMESPACE, "--kubeconfig", str(cluster.layout.kubeconfig)]
    argv += ["--comment", "not during the test"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout + done.stderr


def _failed_sinks(cluster: LiveCluster, run: str) -> list[Any]:
    """What the operator recorded of the run's sinks that did not deliver."""
    record = cluster.run_record(run, lambda r: r["status"] != "running", timeout=60)
    return [
        (d["sink_name"], d["outcome"], (d.get("detail") or {}).get("error"))
        for d in record["sink_deliveries"]
        if d["outcome"] not in ("delivered", "skipped")
    ]


@pytest.mark.timeout(900)
def test_every_example_workflow_runs_from_an_alert_and_from_argo_submit(
    cluster: LiveCluster, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:6]
    names = sorted(p.stem for p in (EXAMPLES / "workflows").glob("*.yaml"))
    escalation = f"escalation-workflow-{suffix}"
    with ExitStack() as stack:
        llm = stack.enter_context(FakeOpenAI([], host=NODE_IP, default=ANSWER))
        slack = stack.enter_context(FakeSlack("xoxb-secret", CHANNELS, host=NODE_IP))
        pagerduty = stack.enter_context(FakePagerDuty("service-key", host=NODE_IP))
        jira = stack.enter_context(FakeJira("bot@example.com", "jira-token", host=NODE_IP))
        try:
            alertmanager = stack.enter_context(
                servers.alertmanager(
                    {"route": {"receiver": "none"}, "receivers": [{"name": "none"}]},
                    tmp_path,
                    NODE_IP,
                )
            )
        except servers.Unavailable as error:
            unavailable(str(error), "cluster")
        host_service(cluster, "llm-service", 8080, port_of(llm.url))
        host_service(cluster, "alertmanager", 9093, port_of(alertmanager))
        cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"jira-{suffix}"},
                "stringData": {"credentials": "bot@example.com:jira-token"},
            }
        )
        urls = {"pagerduty": pagerduty.url, "jira": jira.url}
        for sink in _sinks(suffix, urls, escalation).values():
            cluster.apply(sink)
        source = {"apiVersion": "punchingfist.io/v1alpha1", "kind": "Source"}
        cluster.apply(
            {
                **source,
                "metadata": {"name": f"{escalation}-api"},
                "spec": {"type": "api", "triggerWorkflow": escalation},
            }
        )
        for name in names:
            copied = f"{name}-{suffix}"
            cluster.apply(_workflow(name, suffix, slack.url))
            spec = {
                "type": "webhook",
                "config": {"path": f"/webhook/{copied}"},
                "triggerWorkflow": copied,
            }
            cluster.apply({**source, "metadata": {"name": copied}, "spec": spec})
        for name in names:
            ready_template(cluster, f"{name}-{suffix}", timeout=120)

        runs: dict[str, str] = {}
        for name in names:
            copied = f"{name}-{suffix}"
            event = _event(tmp_path, _alert(f"{name}-submitted"))
            runs[f"{name} (argo submit)"] = cluster.submit(
                copied, f"event={event}", "source=manual"
            )
            (run,) = cluster.notify(f"/webhook/{copied}", _alert(f"{name}-alerted"))["runs"]
            cluster.created.append(("workflows.argoproj.io", run))
            runs[f"{name} (alert)"] = run

        said = {}
        for label, run in runs.items():
            if label.split(" ")[0] in GATED:
                said[label] = _deny(cluster, run)
        finished = {label: cluster.finished(run, timeout=600) for label, run in runs.items()}
        problems = {
            label: [cluster.describe_run(runs[label]), _failed_sinks(cluster, runs[label])]
            for label, workflow in finished.items()
            if workflow["status"]["phase"] != "Succeeded"
        }
        assert not problems, json.dumps(problems, indent=1)

    for label, run in runs.items():
        record = cluster.run_record(run, lambda r: r["status"] == "succeeded", timeout=120)
        failed = [
            d for d in record["sink_deliveries"] if d["outcome"] not in ("delivered", "skipped")
        ]
        assert not failed, (label, failed)
        agents = [s for s in record["steps"] if s["kind"] == "agent" and s["phase"] == "Succeeded"]
        assert agents, (label, record["steps"])
    assert all("denied" in text.lower() for text in said.values()), said
    # The sinks reached the fakes and the real Alertmanager from the step pods.
    assert slack.messages and pagerduty.events and jira.issues, (pagerduty.events, jira.issues)
    escalated = cluster.get(
        "workflows.argoproj.io", "-n", NAMESPACE, "-l", f"punchingfist.io/source={escalation}-api"
    )["items"]
    for item in escalated:
        cluster.created.append(("workflows.argoproj.io", item["metadata"]["name"]))
    assert escalated, "the escalation chain started no run"
