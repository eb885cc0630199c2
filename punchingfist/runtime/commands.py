"""Run a `cli` step: the rendered command, with template values as environment variables (D3).

Each `{{ ... }}` of the command is rendered on its own and handed to the shell as an
environment variable; the script text itself gets only a reference to that variable, quoted for
the place it stands in:

    echo "Alert: {{ .source.data.alert.alertname }}"   ->  echo "Alert: ${PF_VALUE_1}"
    echo {{ .x }}                                       ->  echo "${PF_VALUE_1}"
    echo '{{ .x }}'                                     ->  echo ''"${PF_VALUE_1}"''

so a label such as `$(touch /tmp/x)` is printed, never run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

from punchingfist.errors import TemplateSyntaxError
from punchingfist.templating import compile_template

_BLOCK = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
TAIL_BYTES = 64 * 1024


@dataclass(frozen=True)
class Script:
    """A command with its template values moved out into environment variables."""

    text: str
    values: dict[str, str]


def prepare(command: str, context: Mapping[str, Any]) -> Script:
    """Replace every `{{ }}` of `command` with a quoted variable reference and render its value."""
    out: list[str] = []
    values: dict[str, str] = {}
    position = 0
    state = _QuoteState()
    for match in _BLOCK.finditer(command):
        state.feed(command[position : match.start()])
        out.append(command[position : match.start()])
        position = match.end()
        block = match.group(0)
        if block.startswith("{#"):
            continue
        if block.startswith("{%"):
            raise TemplateSyntaxError(
                "cli commands take `{{ }}` values only; use shell `if`/`for` over the values"
            )
        name = f"PF_VALUE_{len(values) + 1}"
        values[name] = compile_template(block).render(context)
        out.append(state.reference(name))
    out.append(command[position:])
    return Script(text="".join(out), values=values)


class _QuoteState:
    """Tracks whether the shell text read so far leaves us in single, double or no quotes."""

    def __init__(self) -> None:
        self.quote: str | None = None
        self.escaped = False

    def feed(self, text: str) -> None:
        for char in text:
            if self.escaped:
                self.escaped = False
            elif char == "\\" and self.quote != "'":
                self.escaped = True
            elif self.quote is None and char in "'\"":
                self.quote = char
            elif char == self.quote:
                self.quote = None

    def reference(self, name: str) -> str:
        if self.quote == '"':
            return "${" + name + "}"
        if self.quote == "'":
            return "'\"${" + name + "}\"'"
        return '"${' + name + '}"'


@dataclass(frozen=True)
class Completed:
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float


def run(script: Script, *, timeout: float | None, environ: Mapping[str, str]) -> Completed:
    """Run the script with bash (sh when bash is missing), streaming its output as it comes."""
    bash = shutil.which("bash")
    argv = [bash, "-o", "pipefail", "-c", script.text] if bash else ["/bin/sh", "-c", script.text]
    env = {**environ, **script.values}
    started = time.monotonic()
    process = subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert process.stdout is not None and process.stderr is not None
    out_tail: deque[bytes] = deque()
    err_tail: deque[bytes] = deque()
    readers = [
        threading.Thread(target=_pump, args=(process.stdout, sys.stdout, out_tail), daemon=True),
        threading.Thread(target=_pump, args=(process.stderr, sys.stderr, err_tail), daemon=True),
    ]
    for reader in readers:
        reader.start()
    timed_out = False
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    for reader in readers:
        reader.join(timeout=5)
    return Completed(
        exit_code=process.returncode,
        stdout=_text(out_tail),
        stderr=_text(err_tail),
        timed_out=timed_out,
        seconds=round(time.monotonic() - started, 3),
    )


def _pump(source: IO[bytes], sink: IO[str], tail: deque[bytes]) -> None:
    size = 0
    for line in iter(source.readline, b""):
        sink.write(line.decode(errors="replace"))
        sink.flush()
        tail.append(line)
        size += len(line)
        while size > TAIL_BYTES and len(tail) > 1:
            size -= len(tail.popleft())


def _text(tail: deque[bytes]) -> str:
    return b"".join(tail).decode(errors="replace")[-TAIL_BYTES:]
