"""Local engine overhead: the time a run adds to its processes (target: < 20 ms per task).

A chain of N `/bin/true` tasks runs them one after another; a fan-out runs N at once. The
overhead per task is the run's time minus the time the same processes take when started
directly, divided by N.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from punchingfist.engine import AutoApprover, run_workflow

TASKS = 20
RUNS = 5


def manifest(chain: bool) -> dict[str, Any]:
    tasks: list[dict[str, Any]] = []
    for index in range(TASKS):
        task: dict[str, Any] = {"name": f"t{index}", "template": "true"}
        if chain and index:
            task["depends"] = f"t{index - 1}"
        tasks.append(task)
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": {"name": "bench"},
        "spec": {
            "entrypoint": "main",
            "templates": [
                {"name": "main", "dag": {"tasks": tasks}},
                {"name": "true", "container": {"image": "-", "command": ["/bin/true"]}},
            ],
        },
    }


def seconds(function: Any) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    direct = statistics.median(
        seconds(lambda: [subprocess.run(["/bin/true"], check=True) for _ in range(TASKS)])
        for _ in range(RUNS)
    )
    print(f"engine overhead per task, {TASKS} tasks, median of {RUNS} runs (target < 20 ms)")
    print(f"{'shape':<10} {'run ms':>9} {'per task ms':>12}")
    worst = 0.0
    with tempfile.TemporaryDirectory() as workdir:
        for shape, chain in (("chain", True), ("fan-out", False)):
            doc = manifest(chain)
            runs = []
            for index in range(RUNS):
                start = time.perf_counter()
                run_workflow(
                    doc, workdir=Path(workdir) / f"{shape}{index}", approver=AutoApprover(False)
                )
                runs.append(time.perf_counter() - start)
            total = statistics.median(runs)
            per_task = max(0.0, total - (direct if chain else direct / TASKS)) / TASKS * 1000
            worst = max(worst, per_task)
            print(f"{shape:<10} {total * 1000:>9.1f} {per_task:>12.2f}")
    print(f"worst overhead: {worst:.2f} ms per task -> {'OK' if worst < 20 else 'OVER TARGET'}")


if __name__ == "__main__":
    main()
