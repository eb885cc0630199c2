"""Runs on the real node: a Workflow applied with kubectl is compiled by the operator's pod, an
ad-hoc `argo submit` runs its steps in pods of the runtime image, and what they printed comes
back as Argo outputs, in `argo logs` and in the operator's run record. Steps run as the
investigator: they read another pod's log and may not delete it."""

from __future__ import annotations

import json
import uuid

from tests.cluster.support import NAMESPACE, LiveCluster, ready_template, unique, workflow


def _result(node: dict[str, object]) -> dict[str, object]:
    outputs = node.get("outputs") or {}
    (parameter,) = [p for p in outputs.get("parameters", []) if p["name"] == "result"]  # type: ignore[union-attr]
    return dict(json.loads(parameter["value"]))


def test_a_cli_step_runs_in_a_pod_and_its_output_comes_back(cluster: LiveCluster) -> None:
    token = uuid.uuid4().hex
    name = unique("echo")
    command = f'echo "{{\\"token\\": \\"{token}\\", \\"alert\\": \\"$ALERT\\"}}"'
    cluster.apply(
        workflow(
            name,
            [
                {
                    "name": "say",
                    "type": "cli",
                    "command": f"ALERT={{{{ .source.data.alert.alertname }}}}; {command}",
                }
            ],
        )
    )
    template = ready_template(cluster, name)
    assert template["spec"]["serviceAccountName"] == "punchingfist-investigator"
    assert template["spec"]["templates"][1]["container"]["image"] == cluster.images["RUNTIME"]

    event = json.dumps({"alert": {"alertname": "PodCrashLooping"}})
    run = cluster.submit(name, f"event={event}", "source=manual")
    finished = cluster.finished(run)
    assert finished["status"]["phase"] == "Succeeded", cluster.describe_run(run)

    # Argo's outputs: the step's result parameter, and the global output every step exports.
    result = _result(cluster.step_node(finished, "say"))
    assert result["success"] is True
    assert result["result"] == {"token": token, "alert": "PodCrashLooping"}
    outputs = {p["name"]: p["value"] for p in finished["status"]["outputs"]["parameters"]}
    assert token in outputs["pf_result_say"]

    assert token in cluster.argo("logs", run)

    record = cluster.run_record(run, lambda r: r["status"] == "succeeded")
    assert record["workflow_name"] == name
    (step,) = [s for s in record["steps"] if s["name"] == "say"]
    assert step["phase"] == "Succeeded"
    assert step["result"]["result"]["token"] == token


def test_steps_run_as_the_investigator_read_logs_and_cannot_delete(cluster: LiveCluster) -> None:
    token = uuid.uuid4().hex
    target = unique("target")
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": target, "namespace": NAMESPACE},
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "main",
                        "image": cluster.images["RUNTIME"],
                        "command": ["sh", "-c", f"echo token {token}; exec sleep 600"],
                    }
                ],
            },
        }
    )
    cluster.wait_condition("Ready", f"pod/{target}", "-n", NAMESPACE)

    name = unique("rbac")
    cluster.apply(
        workflow(
            name,
            [
                {"name": "read", "type": "cli", "command": f"kubectl logs {target}"},
                {
                    "name": "delete",
                    "type": "cli",
                    "command": f"kubectl delete pod {target} --wait=false 2>&1 || echo REFUSED",
                },
                {
                    "name": "whoami",
                    "type": "cli",
                    "command": "kubectl auth whoami -o jsonpath='{.status.userInfo.username}'",
                },
            ],
        )
    )
    ready_template(cluster, name)
    run = cluster.submit(name)
    finished = cluster.finished(run)
    assert finished["status"]["phase"] == "Succeeded", cluster.describe_run(run)

    assert f"token {token}" in str(_result(cluster.step_node(finished, "read"))["result"])
    refused = str(_result(cluster.step_node(finished, "delete"))["result"])
    assert "forbidden" in refused and "REFUSED" in refused, refused
    assert _result(cluster.step_node(finished, "whoami"))["result"] == (
        f"system:serviceaccount:{NAMESPACE}:punchingfist-investigator"
    )
    pod = cluster.get("pod", target, "-n", NAMESPACE)
    assert pod["status"]["phase"] == "Running" and "deletionTimestamp" not in pod["metadata"]
