"""What every sink shares: the time budget, HTTP with retries inside it, secrets, the record.

A sink talks to one service. Temporary trouble (HTTP 429, 5xx, a refused or silent connection)
is retried with exponential backoff, honouring `Retry-After`, for as long as the sink's time
budget lasts; a permanent refusal (any other 4xx) is reported at once. Secrets are redacted from
every message and never printed.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import httpx

from punchingfist.api.runspec import StepResult
from punchingfist.errors import PunchingFistError
from punchingfist.runtime.context import BadTaskInput
from punchingfist.runtime.redaction import redact

BUDGET_ENV = "PF_SINK_BUDGET_SECONDS"
DEFAULT_BUDGET = 60.0
REQUEST_TIMEOUT = 10.0
MAX_ATTEMPTS = 5
FIRST_BACKOFF = 0.5
_TEMPORARY = frozenset({429, 500, 502, 503, 504})

Outcome = Literal["delivered", "skipped", "failed"]


class MissingSecret(BadTaskInput):
    """A sink needs a credential that did not arrive in its environment."""


class DeliveryFailed(PunchingFistError):
    """The service refused the delivery or could not be reached within the time budget."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class Budget:
    """The time a sink may spend, from its start (`PF_SINK_BUDGET_SECONDS`, default 60 s)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Budget:
        raw = environ.get(BUDGET_ENV, "")
        try:
            seconds = float(raw) if raw else DEFAULT_BUDGET
        except ValueError as error:
            raise BadTaskInput(f"{BUDGET_ENV}={raw!r} is not a number of seconds") from error
        return cls(max(seconds, 0.1))

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())


def secret(environ: Mapping[str, str], variable: str | None, fix: str) -> str:
    """The credential in `variable`, or a MissingSecret error that says how to provide it."""
    value = environ.get(variable or "", "").strip()
    if not value:
        name = variable or "the credential"
        raise MissingSecret(f"{name} is not set: {fix}")
    return value


def say(message: str) -> None:
    print(message)
    sys.stdout.flush()


@dataclass
class Reply:
    status: int
    headers: httpx.Headers
    text: str

    def json(self) -> Any:
        try:
            return json.loads(self.text) if self.text else None
        except ValueError:
            return None


@dataclass
class Http:
    """An HTTP client for one service that retries temporary failures inside the budget."""

    service: str
    budget: Budget
    secrets: Sequence[str] = ()
    attempts: int = 0
    last_status: int | None = None
    _client: httpx.Client = field(default_factory=lambda: httpx.Client(follow_redirects=False))

    def request(
        self, method: str, url: str, *, accept: Collection[int] = (), **kwargs: Any
    ) -> Reply:
        """Send until a non-temporary answer arrives; raise DeliveryFailed for errors
        (statuses in `accept` are answers the caller handles)."""
        tries = 0
        while True:
            tries += 1
            self.attempts += 1
            timeout = min(REQUEST_TIMEOUT, self.budget.remaining())
            if timeout <= 0.05:
                raise self._failed(
                    f"gave up: the time budget of {self.budget.seconds:g} s is spent"
                )
            try:
                response = self._client.request(method, url, timeout=timeout, **kwargs)
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as error:
                raise self._failed(f"{url!r} is not an http(s) URL ({error})") from None
            except httpx.TimeoutException:
                problem, wait = f"no answer within {timeout:.1f} s", _backoff(tries)
            except httpx.TransportError as error:
                problem, wait = f"cannot connect ({type(error).__name__})", _backoff(tries)
            else:
                self.last_status = response.status_code
                reply = Reply(response.status_code, response.headers, response.text)
                if response.status_code not in _TEMPORARY and response.status_code < 500:
                    if response.status_code >= 400 and response.status_code not in accept:
                        raise self._failed(
                            f"refused the request: HTTP {response.status_code}: "
                            + _excerpt(reply.text)
                        )
                    return reply
                problem = f"HTTP {response.status_code}"
                wait = retry_after(response.headers) or _backoff(tries)
            self._retry_or_fail(problem, wait, tries)

    def _retry_or_fail(self, problem: str, wait: float, tries: int) -> None:
        if tries >= MAX_ATTEMPTS:
            raise self._failed(f"{problem} after {tries} attempts")
        if wait >= self.budget.remaining():
            raise self._failed(
                f"{problem}; retrying in {wait:.1f} s would exceed the time budget "
                f"({self.budget.remaining():.1f} s left)"
            )
        say(f"  {self.service}: {problem}, retrying in {wait:.1f} s")
        time.sleep(wait)

    def _failed(self, message: str) -> DeliveryFailed:
        return DeliveryFailed(
            redact(f"{self.service}: {message}", self.secrets), status=self.last_status
        )

    def close(self) -> None:
        self._client.close()


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds form), if present and sane."""
    raw = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return max(0.0, float(raw)) if raw else None
    except ValueError:
        return None


def _backoff(tries: int) -> float:
    return float(FIRST_BACKOFF * 2 ** (tries - 1))


def _excerpt(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


@dataclass
class Delivery:
    """What happened to one sink: printed, and written as the sink task's result.json."""

    sink: str
    type: str
    outcome: Outcome
    http_status: int | None = None
    external_id: str | None = None
    link: str | None = None
    attempts: int = 0
    seconds: float = 0.0
    detail: str = ""
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    preview: dict[str, Any] | None = None
    """What a sink that is not configured would have sent (kept beside the record)."""

    def as_result(self) -> dict[str, Any]:
        record = asdict(self)
        record.pop("preview")
        phase = {"delivered": "Succeeded", "skipped": "Skipped", "failed": "Failed"}[self.outcome]
        result = StepResult(
            step=self.sink,
            kind="sink",
            success=self.outcome != "failed",
            phase=phase,
            result={k: v for k, v in record.items() if k != "extra"} | self.extra,
            error=self.error,
            **{k: v for k, v in record.items() if k not in ("extra", "error", "seconds")},
            seconds=self.seconds,
        )
        return result.model_dump(mode="json")

    def line(self) -> str:
        icon = {"delivered": "📬", "skipped": "⏭️", "failed": "❌"}[self.outcome]
        skipped = self.outcome == "skipped" and self.detail
        parts = [f"{icon} sink {self.sink} ({self.type}): {self.outcome}"]
        if skipped:  # the reason on the first line: it is the one a live view shows
            parts[0] += f": {self.detail}"
        if self.http_status is not None:
            parts.append(f"HTTP {self.http_status}")
        if self.external_id:
            parts.append(f"id {self.external_id}")
        if self.link:
            parts.append(self.link)
        if self.attempts:
            parts.append(f"{self.attempts} attempt{'s' if self.attempts != 1 else ''}")
        text = " | ".join(parts)
        if self.detail and not skipped:
            text += f"\n   {self.detail}"
        if self.error:
            text += f"\n   error: {self.error}"
        return text
