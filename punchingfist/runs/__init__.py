"""The life of a run: queueing, dispatching to an executor, and recording what it did.

Modules (imported directly, e.g. `from punchingfist.runs.dispatching import Executor`):

- `metrics`: the Prometheus metrics runs and intake count into.
- `dispatching`: the `Executor` protocol and the outbox that submits queued runs to one.
- `queueing`: run names, and the run row and outbox entry that queue a run (`queue_run`).
- `rules`: intake's rules as pure functions (matching, dedup, correlation, severity, limits).
- `intake`: Alertmanager notifications stored in batches: alerts, incidents, queued runs.
- `batching`: the intake writer: group commit of the notifications that arrive together.
- `recording`: the one writer of what runs did (runs, steps, deliveries, approvals, the
  alert's lifecycle), from a `RunObservation` whatever the executor.
- `report`: a finished local run's investigation as data and as text for a terminal.
"""
