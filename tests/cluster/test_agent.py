"""The agent step in a pod on the real node (#20, its first part): the model is the tests'
OpenAI-compatible fake, listening on the pod bridge; the kubectl calls it asks for run for real,
as the investigator ServiceAccount, against a pod that really crash-loops. The model receives
the crashed container's token from the real `kubectl logs --previous` and its exit code from
the real `kubectl describe`, not from a recording; the run, its tool calls and tokens are in the
operator's store, and `argo logs` shows the agent's turns."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from hack.cluster.layout import NODE_IP
from tests.cluster.support import NAMESPACE, LiveCluster, ready_template, unique, workflow
from tests.fakes.openai_server import FakeOpenAI


def _restarted(cluster: LiveCluster, pod: str) -> bool:
    found = cluster.get("pod", pod, "-n", NAMESPACE)
    statuses = (found.get("status") or {}).get("containerStatuses") or []
    return any(s.get("restartCount", 0) >= 1 for s in statuses)


@pytest.mark.timeout(360)
def test_the_agent_in_a_pod_reads_a_crash_looping_pod_through_real_kubectl(
    cluster: LiveCluster,
) -> None:
    token = f"crash-token-{uuid.uuid4().hex}"
    pod, name, key = unique("crashing"), unique("agent"), f"sk-{uuid.uuid4().hex}"
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod, "namespace": NAMESPACE, "labels": {"app": pod}},
            "spec": {
                "restartPolicy": "Always",
                "containers": [
                    {
                        "name": "app",
                        "image": cluster.images["RUNTIME"],
                        "command": ["sh", "-c", f"echo {token}; exit 3"],
                        "terminationMessagePolicy": "FallbackToLogsOnError",
                    }
                ],
            },
        }
    )
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}}
    cluster.apply({**secret, "stringData": {"api-key": key}})
    logs = {"tool": "kubectl", "verb": "logs", "name": pod, "namespace": NAMESPACE}
    describe = {"tool": "kubectl", "verb": "describe", "resource": "pod", "name": pod}
    turns: list[dict[str, Any]] = [
        {
            "thought": "Read what the crashed container printed, and the pod's restarts.",
            "action": {
                "kind": "tool_calls",
                "calls": [{**logs, "previous": True}, {**describe, "namespace": NAMESPACE}],
            },
        },
        {
            "thought": "It exits right after printing its token.",
            "action": {
                "kind": "final_answer",
                "summary": f"{pod} exits with code 3 right after it starts.",
                "problem_summary": f"{pod} is crash looping.",
                "root_cause": "The container's command exits with code 3.",
                "can_auto_fix": False,
                "confidence": 0.8,
                "escalation_notes": "Fix the command.",
                "severity_assessment": "warning",
                "recommendations": ["Fix the container's command"],
                "evidence": ["call-1", "call-2"],
            },
        },
    ]
    cluster.wait(lambda: _restarted(cluster, pod), f"pod {pod} to crash and restart", 120)

    with FakeOpenAI(turns, host=NODE_IP) as llm:
        llm_config = {
            "provider": "openai-compatible",
            "endpoint": llm.url,
            "model": "fake-model",
            "apiKeySecret": {"secretRef": name, "key": "api-key"},
        }
        step = {
            "name": "investigate",
            "type": "agent",
            "goal": "Why does the pod crash?",
            "tools": ["kubectl"],
            "maxIterations": 3,
            "policy": {"safety": {"allowedNamespaces": [NAMESPACE]}},
        }
        cluster.apply(workflow(name, [step], llmConfig=llm_config))
        ready_template(cluster, name)
        event = json.dumps({"alert": {"alertname": "PodCrashLooping", "labels": {"pod": pod}}})
        run = cluster.submit(name, f"event={event}", "source=manual")
        finished = cluster.finished(run)
        described = cluster.describe_run(run)
        assert finished["status"]["phase"] == "Succeeded", described

    # The model saw the real tool output: `kubectl logs --previous` printed the crashed
    # container's token, and `kubectl describe` shows its last state, its exit code and
    # (FallbackToLogsOnError) the token again.
    assert len(llm.requests) == 2, llm.requests
    results = llm.requests[1]["messages"][-1]["content"]
    logged, described_pod = results.split("[call-2]", 1)
    assert token in logged.split("[call-1]", 1)[1], results[-3000:]
    assert token in described_pod, results[-3000:]
    assert "Exit Code:    3" in described_pod and "Restart Count:" in described_pod
    sent = {{k.lower(): v for k, v in h.items()}.get("authorization") for h in llm.headers}
    assert sent == {f"Bearer {key}"}

    record = cluster.run_record(run, lambda r: r["status"] == "succeeded")
    (investigate,) = [s for s in record["steps"] if s["name"] == "investigate"]
    assert investigate["kind"] == "agent"
    calls = investigate["tool_calls"]
    assert [c["status"] for c in calls] == ["ok", "ok"], calls
    assert calls[0]["argv"][:2] == ["kubectl", "logs"] and "--previous" in calls[0]["argv"]
    assert investigate["prompt_tokens"] > 0 and record["tokens_total"] > 0
    assert investigate["result"]["result"]["root_cause"].startswith("The container's command")
    assert key not in json.dumps(record)

    # What a user reads in the Argo UI: the agent's thoughts and tool calls, in words.
    shown = cluster.argo("logs", run)
    assert "Read what the crashed container printed" in shown, shown[-3000:]
    assert "kubectl logs" in shown
