"""Executors start queued runs: Argo in a cluster (the local engine comes with embedded mode)."""

from punchingfist.executors.base import Executor, RunSubmission, SubmitError
from punchingfist.executors.dispatching import dispatch_pending

__all__ = ["Executor", "RunSubmission", "SubmitError", "dispatch_pending"]
