"""`punchingfist eval`: investigation quality measured on scenario folders.

    scenarios  the folder format (scenario.yaml): the alert, the step under test, recorded tool
               outputs (offline) or manifests that break a real workload (live), what a correct
               answer must contain and what it must never do
    tools      recorded tools: a model's call answered from the scenario's recordings
    scoring    deterministic checks of one answer, then the optional LLM judge (judge.py)
    running    one scenario through the production agent loop; many, in parallel, with progress
    results    a run's results and their summary (pass rate by tag, tokens, cost, latency)

See docs/evals.md.
"""
