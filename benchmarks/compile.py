"""Median compile time per example Workflow (target: < 20 ms each).

`cold` clears the template parse cache before every compile (what the controller pays for a
new or changed Workflow); `warm` keeps it (a re-compile of an unchanged one).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from punchingfist.api import OperatorConfig, Sink, Workflow, load_resources
from punchingfist.compiler import compile_workflow
from punchingfist.templating import rendering

ROOT = Path(__file__).resolve().parent.parent / "examples"
RUNS = 30


def main() -> None:
    resources = []
    for folder in ("workflows", "sinks"):
        for path in sorted((ROOT / folder).glob("*.yaml")):
            resources += load_resources(path.read_text(), origin=str(path))
    config_path = ROOT / "operatorconfigs" / "punchingfist-config.yaml"
    config = next(
        r for r in load_resources(config_path.read_text()) if isinstance(r, OperatorConfig)
    )
    sinks = {r.name: r for r in resources if isinstance(r, Sink)}
    workflows = [r for r in resources if isinstance(r, Workflow)]
    print(f"compile time per example, median of {RUNS} runs (target < 20 ms)")
    print(f"{'workflow':<28} {'steps':>5} {'cold ms':>9} {'warm ms':>9}")
    worst = 0.0
    for workflow in workflows:
        cold, warm = [], []
        for _ in range(RUNS):
            rendering._compile.cache_clear()
            start = time.perf_counter()
            compile_workflow(workflow, sinks, config.spec)
            cold.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            compile_workflow(workflow, sinks, config.spec)
            warm.append((time.perf_counter() - start) * 1000)
        median_cold, median_warm = statistics.median(cold), statistics.median(warm)
        worst = max(worst, median_cold)
        steps = len(workflow.spec.steps)
        print(f"{workflow.name:<28} {steps:>5} {median_cold:>9.2f} {median_warm:>9.2f}")
    print(f"slowest median (cold): {worst:.2f} ms -> {'OK' if worst < 20 else 'OVER TARGET'}")


if __name__ == "__main__":
    main()
