"""A live scenario's wait conditions (punchingfist.evals.live), read from pod and event JSON as
`kubectl get -o json` prints it, and its manifests' `${EVAL_...}` placeholders. Making a fault
real on a cluster is tested in tests/cluster/test_evals_live.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from punchingfist.evals.live import LiveError, describe, manifest_text, pod_reasons, unmet
from punchingfist.evals.scenarios import WaitFor, load_all

EXAMPLES = Path(__file__).parents[2] / "examples" / "evals"


def pod(
    name: str = "web-7f3c9a-x2k4q",
    phase: str = "Running",
    state: dict[str, Any] | None = None,
    last: dict[str, Any] | None = None,
    restarts: int = 0,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    container = {"name": "app", "state": state or {"running": {}}, "restartCount": restarts}
    if last is not None:
        container["lastState"] = last
    status: dict[str, Any] = {"phase": phase, "containerStatuses": [container]}
    if conditions is not None:
        status["conditions"] = conditions
    return {"metadata": {"name": name}, "status": status}


def event(reason: str) -> dict[str, Any]:
    return {"reason": reason, "message": "..."}


OOM_LAST = {"terminated": {"reason": "OOMKilled", "exitCode": 137}}
BACKOFF = {"waiting": {"reason": "CrashLoopBackOff"}}


def test_a_reason_is_found_in_the_waiting_terminated_and_last_terminated_states() -> None:
    assert pod_reasons(pod(state=BACKOFF)) == {"CrashLoopBackOff"}
    assert pod_reasons(pod(state={"terminated": {"reason": "Error"}})) == {"Error"}
    assert pod_reasons(pod(state=BACKOFF, last=OOM_LAST)) == {"CrashLoopBackOff", "OOMKilled"}
    # a last state is only ever terminated: a stray waiting reason there is not a reason
    assert pod_reasons(pod(last={"waiting": {"reason": "ContainerCreating"}})) == set()
    unschedulable = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]
    assert pod_reasons(pod(phase="Pending", conditions=unschedulable)) == {"Unschedulable"}


def test_a_reason_holds_when_one_pod_has_it_and_otherwise_says_what_each_pod_shows() -> None:
    condition = WaitFor(selector="tier=media", reason=["OOMKilled"])
    healthy, killed = pod("api-1"), pod("thumb-2", state=BACKOFF, last=OOM_LAST, restarts=2)
    assert unmet(condition, [healthy, killed], []) is None
    why = unmet(condition, [healthy, pod("thumb-2", state=BACKOFF, restarts=2)], [])
    assert why is not None
    assert "no pod has reason OOMKilled" in why
    assert "api-1 Running (no reasons; restarts 0)" in why
    assert "thumb-2 Running (CrashLoopBackOff; restarts 2)" in why


def test_restarts_phase_and_reason_must_all_hold_on_the_same_pod() -> None:
    condition = WaitFor(selector="app=ledger", reason=["CrashLoopBackOff"], restarts=2)
    assert unmet(condition, [pod(state=BACKOFF, restarts=2)], []) is None
    assert unmet(condition, [pod(state=BACKOFF, restarts=1)], []) is not None
    # one pod restarted twice, another crash-looping once: neither has both
    split = [pod("a", restarts=2), pod("b", state=BACKOFF, restarts=1)]
    assert unmet(condition, split, []) is not None
    pending = WaitFor(selector="app=x", phase="Pending")
    assert unmet(pending, [pod(phase="Pending")], []) is None
    assert "pods seen: web-7f3c9a-x2k4q Running" in (unmet(pending, [pod()], []) or "")


def test_an_event_condition_lists_the_reasons_it_saw_and_a_selector_needs_pods() -> None:
    condition = WaitFor(selector="app=uploader", phase="Pending", event="FailedScheduling")
    both = unmet(condition, [], [event("Scheduled"), event("Pulled")])
    assert both == (
        "no event with reason FailedScheduling (events seen: Pulled, Scheduled); "
        "no pods match app=uploader"
    )
    assert unmet(condition, [pod(phase="Pending")], [event("FailedScheduling")]) is None
    # an event alone needs no pods: the ReplicaSet could not create any (a quota)
    quota = WaitFor(event="FailedCreate")
    assert unmet(quota, [], [event("FailedCreate")]) is None
    assert unmet(quota, [], []) == "no event with reason FailedCreate (events seen: none)"


def test_a_condition_in_words() -> None:
    condition = WaitFor(selector="app=a", reason=["ErrImagePull", "ImagePullBackOff"], restarts=1)
    assert (
        describe(condition)
        == "pods app=a with reason ErrImagePull or ImagePullBackOff, 1+ restarts"
    )
    assert describe(WaitFor(event="FailedCreate")) == "event FailedCreate"
    assert describe(WaitFor(selector="app=a", phase="Running", event="Unhealthy")) == (
        "pods app=a with phase Running and event Unhealthy"
    )


def test_placeholders_are_replaced_from_the_environment_and_a_missing_one_is_named(
    tmp_path: Path,
) -> None:
    manifest = tmp_path / "deployment.yaml"
    manifest.write_text(
        "image: ${EVAL_IMAGE}\ncommand: [sh, -c, 'echo ${HOME} $(POD_NAME) $EVAL_IMAGE']\n"
    )
    text = manifest_text(tmp_path, "deployment.yaml", {"EVAL_IMAGE": "registry:5000/py:3"})
    # only ${EVAL_...} is ours: the shell's and Kubernetes' own references stay as written
    assert (
        text
        == "image: registry:5000/py:3\ncommand: [sh, -c, 'echo ${HOME} $(POD_NAME) $EVAL_IMAGE']\n"
    )
    with pytest.raises(LiveError, match=r"deployment.yaml uses \$\{EVAL_IMAGE\}: set it"):
        manifest_text(tmp_path, "deployment.yaml", {"HOME": "/root"})


def test_every_live_example_loads_and_needs_no_placeholder_but_eval_image() -> None:
    live = [s for s in load_all([str(EXAMPLES)]) if s.live is not None]
    assert len(live) >= 10, [s.name for s in live]
    environ = {"EVAL_IMAGE": "registry.example/python:3"}
    for scenario in live:
        assert scenario.live is not None
        assert "live" in scenario.tags, scenario.name
        for manifest in scenario.live.manifests:
            assert "${" not in manifest_text(Path(scenario.path), manifest, environ), manifest
        assert scenario.live.wait, f"{scenario.name}: a live fault is waited for"
        assert scenario.reference, f"{scenario.name}: has a reference investigation"
        assert scenario.offline, f"{scenario.name}: recorded from the cluster, runs offline too"
