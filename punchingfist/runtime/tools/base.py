"""What every agent tool returns, and how its output is kept small enough for a prompt."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ok", "error", "refused", "timeout"]
CHARS_PER_TOKEN = 4
DEFAULT_OUTPUT_TOKENS = 2000


@dataclass(frozen=True)
class ToolResult:
    """The outcome of one tool call: never an exception, always something the model can read."""

    status: Status
    output: str = ""
    error: str | None = None
    truncated: bool = False
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def for_model(self) -> str:
        lines = [f"status: {self.status}"]
        if self.error:
            lines.append(f"error: {self.error}")
        if self.output:
            lines.append(self.output)
        elif self.status == "ok":
            lines.append("(no output)")
        return "\n".join(lines)


def refused(reason: str) -> ToolResult:
    return ToolResult(status="refused", error=reason)


def cap(text: str, max_tokens: int = DEFAULT_OUTPUT_TOKENS) -> tuple[str, bool]:
    """Keep the head and the tail of `text` within about `max_tokens`, with a visible marker."""
    limit = max_tokens * CHARS_PER_TOKEN
    if len(text) <= limit:
        return text, False
    head = text[: limit * 2 // 3]
    tail = text[-(limit // 3) :]
    hidden = len(text) - len(head) - len(tail)
    marker = f"\n[... truncated: {hidden} characters not shown ...]\n"
    return head + marker + tail, True


def run_argv(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    max_tokens: int = DEFAULT_OUTPUT_TOKENS,
) -> ToolResult:
    """Run a program (no shell), kill its process group on timeout, cap its output."""
    started = time.monotonic()
    try:
        process = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    except OSError as error:
        return ToolResult(status="error", error=f"cannot run {argv[0]}: {error.strerror}")
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        text, truncated = cap(stdout.decode(errors="replace"), max_tokens)
        return ToolResult(
            status="timeout",
            output=text,
            error=f"gave no answer within {timeout:g} s and was stopped",
            truncated=truncated,
            seconds=round(time.monotonic() - started, 3),
        )
    out = stdout.decode(errors="replace")
    err = stderr.decode(errors="replace").strip()
    text, truncated = cap(out, max_tokens)
    seconds = round(time.monotonic() - started, 3)
    if process.returncode != 0:
        # The last lines say what went wrong; the rest is usually retry noise.
        message = "\n".join(err.splitlines()[-3:]) or f"exited with code {process.returncode}"
        capped, _ = cap(message, max_tokens // 4)
        return ToolResult(
            status="error",
            output=text,
            error=capped,
            truncated=truncated,
            seconds=seconds,
            details={"exit_code": process.returncode},
        )
    return ToolResult(
        status="ok", output=text, truncated=truncated, seconds=seconds, details={"exit_code": 0}
    )
