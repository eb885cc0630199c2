"""Secrets out of text a service echoed: before a sink's record, a tool's result (the model's
next prompt) or a step's log can hold them.

A careless server or auth proxy quotes the credential it was sent in its error ("token X is not
valid"), as it got it: plain, as HTTP Basic sends it (base64), or the password alone of a
`user:password`. Each form is replaced by `***`.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable

MIN_SECRET = 4
"""Shorter values are not secrets worth the noise of replacing them everywhere."""


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with each secret replaced by `***` in every form a service may echo."""
    for value in secrets:
        if not value or len(value) < MIN_SECRET:
            continue
        encoded = base64.b64encode(value.encode()).decode()
        for form in (encoded, value, value.partition(":")[2]):
            if len(form) >= MIN_SECRET:
                text = text.replace(form, "***")
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that redacts `secrets` from every record it passes (a library that
    logs the error text a server sent, e.g. instructor's retry warnings)."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
