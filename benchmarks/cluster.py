"""Runs on the real single-node cluster (not a test: it prints figures).

Needs the cluster running (`make cluster-up`). Applies a one-step and a five-step Workflow of
no-op `cli` steps, lets the operator compile them, then submits each RUNS times with
`argo submit` and reports:
  - submit -> Succeeded: from `argo submit` returning to the Argo Workflow's phase Succeeded,
    as the operator's run record also sees it;
  - pod overhead per step: an Argo node's wall time (pod created -> outputs reported) less the
    time the step's own command took (its result's `seconds`), i.e. what scheduling, the
    sandbox, the executor's init and wait containers and reporting cost each step.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cluster.support import LiveCluster, ready_template, unique, workflow

RUNS = 5
TIMEOUT = 300.0


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _measure(cluster: LiveCluster, template: str) -> tuple[float, list[float]]:
    """Seconds from submit to Succeeded, and each step pod's overhead."""
    started = time.monotonic()
    run = cluster.submit(template)
    while True:
        phase = cluster.argo_workflow(run).get("status", {}).get("phase")
        if phase in ("Succeeded", "Failed", "Error"):
            break
        if time.monotonic() - started > TIMEOUT:
            raise SystemExit(
                f"{run} did not finish in {TIMEOUT:.0f} s: {cluster.describe_run(run)}"
            )
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    finished: dict[str, Any] = cluster.argo_workflow(run)
    if phase != "Succeeded":
        raise SystemExit(f"{run} ended {phase}: {cluster.describe_run(run)}")
    overheads = []
    for node in finished["status"]["nodes"].values():
        if node.get("type") != "Pod":
            continue
        wall = (_time(node["finishedAt"]) - _time(node["startedAt"])).total_seconds()
        result = next(p for p in node["outputs"]["parameters"] if p["name"] == "result")
        own = float(json.loads(result["value"]).get("seconds") or 0.0)
        overheads.append(wall - own)
    return elapsed, overheads


def main() -> int:
    found = LiveCluster.find()
    if isinstance(found, str):
        print(f"cluster benchmark skipped: {found}")
        return 0
    cluster = found
    one, five = unique("bench-one"), unique("bench-five")
    step = {"type": "cli", "command": "true"}
    cluster.apply(workflow(one, [{"name": "only", **step}]))
    cluster.apply(workflow(five, [{"name": f"s{n}", **step} for n in range(5)]))
    try:
        for name in (one, five):
            ready_template(cluster, name)
        _measure(cluster, one)  # the first run pulls nothing new but warms the node's caches
        totals: dict[str, list[float]] = {one: [], five: []}
        overheads: list[float] = []
        for _ in range(RUNS):
            for name in (one, five):
                elapsed, steps = _measure(cluster, name)
                totals[name].append(elapsed)
                overheads += steps
        print(f"cluster: {RUNS} runs each, on {cluster.layout.kubeconfig}")
        for label, name in (("1 step ", one), ("5 steps", five)):
            values = totals[name]
            print(
                f"  {label}: argo submit -> Succeeded median {statistics.median(values):.1f} s "
                f"(min {min(values):.1f}, max {max(values):.1f})"
            )
        print(
            f"  pod overhead per step: median {statistics.median(overheads):.2f} s "
            f"(min {min(overheads):.2f}, max {max(overheads):.2f}; {len(overheads)} pods)"
        )
    finally:
        cluster.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
