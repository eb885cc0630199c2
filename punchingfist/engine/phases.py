"""Node and run phases, named as Argo names them."""

from __future__ import annotations

PENDING = "Pending"
RUNNING = "Running"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
SKIPPED = "Skipped"
ERROR = "Error"
OMITTED = "Omitted"

DONE = frozenset({SUCCEEDED, FAILED, SKIPPED, ERROR, OMITTED})
"""A node in one of these phases is fulfilled: its dependents may be considered."""
UNSUCCESSFUL = frozenset({FAILED, ERROR})
