"""A step pod that cannot start stops its run after the grace period, and the reason is kept:
the decision on Argo Workflow objects shaped as Argo writes them, and the Watchdog's timers."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from punchingfist.controller.stalls import Stall, Watchdog, stalled

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
PULL = 'ImagePullBackOff: Back-off pulling image "localhost:5000/x:v1": ErrImagePull: not found'


def node(
    name: str, phase: str, message: str = "", ago: float = 0, now: datetime = NOW, **extra: Any
) -> dict[str, Any]:
    started = (now - timedelta(seconds=ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "displayName": name,
        "name": f"run.{name}",
        "type": "Pod",
        "phase": phase,
        "message": message,
        "startedAt": started,
        **extra,
    }


def run(*nodes: tuple[str, dict[str, Any]], phase: str = "Running", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "run", "namespace": "ops"},
        "spec": spec,
        "status": {"phase": phase, "nodes": dict(nodes)},
    }


def test_a_pull_failure_past_the_grace_stops_the_run_and_says_why() -> None:
    stall = stalled(run(("a", node("look", "Pending", PULL, ago=200))), NOW, grace=180)
    assert stall is not None and stall.strategy == "Stop"
    assert stall.reason.startswith("step 'look' could not start for 200 s: ImagePullBackOff")
    assert "localhost:5000/x:v1" in stall.reason


def test_before_the_grace_it_asks_to_look_again_when_it_is_due() -> None:
    workflow = run(
        ("a", node("look", "Pending", PULL, ago=30)),
        ("b", node("other", "Pending", "CreateContainerConfigError: no secret", ago=170)),
    )
    assert stalled(workflow, NOW, grace=180) == Stall(recheck=10.0)


def test_pods_that_are_only_slow_are_left_alone() -> None:
    for message in ("", "ContainerCreating", "PodInitializing"):
        assert stalled(run(("a", node("look", "Pending", message, ago=900))), NOW, 180) is None
    assert stalled(run(("a", node("look", "Running", ago=900))), NOW, 180) is None
    finished = run(("a", node("look", "Pending", PULL, ago=900)), phase="Failed")
    assert stalled(finished, NOW, 180) is None


def test_an_invalid_image_name_stops_at_once() -> None:
    bad = node("look", "Pending", "InvalidImageName: couldn't parse image name", ago=1)
    stall = stalled(run(("a", bad)), NOW, grace=180)
    assert stall is not None and stall.strategy == "Stop"


def test_a_stuck_exit_handler_terminates_a_stopped_run() -> None:
    handler = {
        "displayName": "exit-handler",
        "name": "run.onExit",
        "type": "DAG",
        "phase": "Running",
        "children": ["s"],
    }
    sink = node("sink-slack", "Pending", PULL, ago=200)
    stopped = run(
        ("h", handler), ("s", sink), ("a", node("look", "Pending", PULL, ago=400)), shutdown="Stop"
    )
    stall = stalled(stopped, NOW, grace=180)
    assert stall is not None and stall.strategy == "Terminate"
    assert "sink-slack" in stall.reason
    terminated = run(("s", sink), shutdown="Terminate")
    assert stalled(terminated, NOW, grace=180) is None


def test_the_watchdog_stops_runs_and_checks_again_when_a_deadline_comes() -> None:
    stopped: list[tuple[str, str, str]] = []
    current = {"workflow": run(("a", node("look", "Pending", PULL, now=datetime.now(UTC))))}
    again = threading.Event()

    def get(name: str, namespace: str) -> dict[str, Any]:
        again.set()
        return run(("a", node("look", "Pending", PULL, now=datetime.now(UTC), ago=60)))

    def stop(name: str, namespace: str, *, strategy: str, reason: str) -> None:
        stopped.append((f"{namespace}/{name}", strategy, reason))

    watchdog = Watchdog(get, stop, grace=1)
    try:
        assert watchdog.check(current["workflow"]) is not None  # not due: a timer is set
        assert not stopped
        assert again.wait(10), "the watchdog did not look again"
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while not stopped and datetime.now(UTC) < deadline:
            again.wait(0.05)
        assert [(who, how) for who, how, _ in stopped] == [("ops/run", "Stop")]
    finally:
        watchdog.close()
