"""Faults on the real node end with a run record that names the reason, and nothing is left
Running: an image that cannot be pulled (the operator stops the run after the chart's
stepStartTimeout, 30 s in this cluster), a step killed past its memory limit, and Argo's
controller restarted while a step runs."""

from __future__ import annotations

import time

from hack.cluster import layout
from tests.cluster.support import NAMESPACE, LiveCluster, ready_template, unique, workflow


def _pods_left(cluster: LiveCluster, run: str) -> list[str]:
    pods = cluster.get("pods", "-n", NAMESPACE, "-l", f"workflows.argoproj.io/workflow={run}")
    return [
        f"{p['metadata']['name']}: {p['status'].get('phase')}"
        for p in pods["items"]
        if p["status"].get("phase") in ("Pending", "Running")
        and "deletionTimestamp" not in p["metadata"]
    ]


def test_a_step_whose_image_cannot_be_pulled_stops_its_run(cluster: LiveCluster) -> None:
    name = unique("no-image")
    image = f"{layout.REGISTRY}/punchingfist/no-such-image:{name}"
    cluster.apply(
        workflow(name, [{"name": "never", "type": "cli", "command": "echo hi"}], image=image)
    )
    ready_template(cluster, name)
    run = cluster.submit(name)
    finished = cluster.finished(run, timeout=180)
    assert finished["status"]["phase"] == "Failed", cluster.describe_run(run)
    stopped = finished["metadata"]["annotations"]["punchingfist.io/stopped-because"]
    assert "step 'never' could not start" in stopped and image in stopped, stopped
    assert finished["spec"]["shutdown"] == "Stop"

    record = cluster.run_record(run, lambda r: r["status"] == "failed")
    assert "could not start" in record["error"] and image in record["error"], record["error"]
    assert any(reason in record["error"] for reason in ("ErrImagePull", "ImagePullBackOff"))
    (step,) = [s for s in record["steps"] if s["name"] == "never"]
    assert step["phase"] == "Failed" and image in step["error"], step
    cluster.wait(
        lambda: not _pods_left(cluster, run),
        "the run's pods to go",
        60,
        lambda: str(_pods_left(cluster, run)),
    )


def test_a_step_killed_past_its_memory_limit_says_so(cluster: LiveCluster) -> None:
    name = unique("oom")
    allocate = "python3 -c 'b = bytearray(512 * 1024 * 1024); print(len(b))'"
    cluster.apply(
        workflow(
            name,
            [
                {
                    "name": "hungry",
                    "type": "cli",
                    "command": allocate,
                    "resources": {"limits": {"memory": "96Mi"}},
                }
            ],
        )
    )
    template = ready_template(cluster, name)
    (container,) = [t["container"] for t in template["spec"]["templates"] if t["name"] == "hungry"]
    assert container["resources"] == {"limits": {"memory": "96Mi"}}
    run = cluster.submit(name)
    finished = cluster.finished(run)
    assert finished["status"]["phase"] == "Failed", cluster.describe_run(run)
    record = cluster.run_record(run, lambda r: r["status"] == "failed")
    assert "step 'hungry'" in record["error"] and "OOMKilled" in record["error"], record["error"]
    (step,) = [s for s in record["steps"] if s["name"] == "hungry"]
    assert "OOMKilled" in step["error"], step
    assert not _pods_left(cluster, run)


def test_a_run_outlives_a_restart_of_argos_controller(cluster: LiveCluster) -> None:
    name = unique("restart")
    cluster.apply(
        workflow(
            name,
            [
                {"name": "slow", "type": "cli", "command": "sleep 20; echo '{\"slept\": 20}'"},
                {"name": "after", "type": "cli", "command": "echo after"},
            ],
        )
    )
    ready_template(cluster, name)
    run = cluster.submit(name)

    def running() -> bool:
        nodes = cluster.argo_workflow(run).get("status", {}).get("nodes", {}).values()
        return any(n.get("displayName") == "slow" and n.get("phase") == "Running" for n in nodes)

    cluster.wait(running, "step 'slow' to run", 120, lambda: cluster.describe_run(run))
    selector = "app=workflow-controller"
    (old,) = cluster.get("pods", "-n", layout.ARGO_NAMESPACE, "-l", selector)["items"]
    cluster.kubectl(
        "delete",
        "pod",
        old["metadata"]["name"],
        "-n",
        layout.ARGO_NAMESPACE,
        "--wait=true",
        timeout=120,
    )
    restarted = time.monotonic()
    cluster.kubectl(
        "rollout",
        "status",
        "deployment/workflow-controller",
        "-n",
        layout.ARGO_NAMESPACE,
        "--timeout=180s",
        timeout=200,
    )

    finished = cluster.finished(run, timeout=240)
    assert finished["status"]["phase"] == "Succeeded", cluster.describe_run(run)
    record = cluster.run_record(run, lambda r: r["status"] == "succeeded")
    assert {s["name"]: s["phase"] for s in record["steps"]} == {
        "slow": "Succeeded",
        "after": "Succeeded",
    }
    assert record["steps"][0]["result"] is not None
    assert not _pods_left(cluster, run)
    assert time.monotonic() - restarted < 240
