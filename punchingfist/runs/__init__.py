"""The life of a run: queueing, dispatching to an executor, and recording what it did.

Modules (imported directly, e.g. `from punchingfist.runs.dispatching import Executor`):

- `metrics`: the Prometheus metrics runs and intake count into.
- `dispatching`: the `Executor` protocol and the outbox that submits queued runs to one.
"""
