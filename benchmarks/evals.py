"""The eval harness's own cost (not a test: it prints figures).

The offline suite of examples/evals through `punchingfist.evals.running` (the production agent
loop, openai + instructor over real HTTP) against the scripted model of tests/fakes, which
answers at once: what is measured is the harness — compiling each step, the loop, recorded
tools, scoring, worker processes — not a model. Printed per `--jobs`: cases per second, wall
time per case p50/p95, and the harness's time per model turn. Worker processes cost a start
(importing the package) each: with an instant model one job is fastest; with a real one, whose
turns take seconds, parallel cases are the win.
A live model's latency (seconds per turn) dwarfs these figures; they bound how fast CI can run
a suite of hundreds of cases with a scripted model.

    python benchmarks/evals.py [--jobs 1,2] [--repeat N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from punchingfist.evals.results import percentile
from punchingfist.evals.running import Options, run_scenarios
from punchingfist.evals.scenarios import load_all
from tests.fakes.eval_model import ScriptedEvalModel

SUITE = Path(__file__).resolve().parent.parent / "examples" / "evals"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="1,2", help="comma-separated --jobs values")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    scenarios = [s for s in load_all([str(SUITE)]) if s.offline]
    print(f"eval harness: {len(scenarios)} offline scenarios x {args.repeat}, scripted model")
    for jobs in (int(j) for j in args.jobs.split(",")):
        with ScriptedEvalModel(scenarios, "correct") as model:
            options = Options(endpoint=model.url, model="scripted", jobs=jobs, repeat=args.repeat)
            started = time.monotonic()
            results = run_scenarios(scenarios, options)
            wall = time.monotonic() - started
        passed = sum(r.status == "passed" for r in results)
        seconds = [r.seconds for r in results]
        turns = sum(r.turns for r in results)
        print(
            f"  jobs {jobs}: {len(results) / wall:.1f} cases/s ({wall:.1f} s for {len(results)}, "
            f"{passed} passed), per case p50 {percentile(seconds, 0.5):.3f} s "
            f"p95 {percentile(seconds, 0.95):.3f} s, {sum(seconds) / turns * 1000:.0f} ms per "
            "model turn in the harness"
        )


if __name__ == "__main__":
    main()
