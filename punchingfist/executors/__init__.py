"""Executors start queued runs: Argo in a cluster (`argo`), the local engine in embedded mode
(`local`). Both implement `punchingfist.runs.dispatching.Executor`."""
