"""The executor interface: submit one run, idempotently by its name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from punchingfist.errors import PunchingFistError


class SubmitError(PunchingFistError):
    """A run could not be submitted. `temporary` errors are retried with backoff."""

    def __init__(self, message: str, *, temporary: bool = True) -> None:
        self.temporary = temporary
        super().__init__(message)


@dataclass(frozen=True)
class RunSubmission:
    name: str
    namespace: str
    workflow: str
    parameters: dict[str, Any]
    """`event` (a mapping), `source`, `fingerprint`: the compiled template's parameters."""


class Executor(Protocol):
    name: str

    def submit(self, run: RunSubmission) -> None:
        """Start the run; a run that already exists under that name counts as started."""
