"""Declared script tools (e.g. `debug-pod` with `command:`): argv, timeout, output cap."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from punchingfist.runtime.tools.base import ToolResult, refused, run_argv

MAX_ARGS = 20


def run(
    command: Sequence[str], args: Sequence[str], *, timeout: float, env: Mapping[str, str]
) -> ToolResult:
    if len(args) > MAX_ARGS:
        return refused(f"at most {MAX_ARGS} arguments")
    for arg in args:
        if "\x00" in arg or "\n" in arg or len(arg) > 1000:
            return refused("arguments must be single-line strings under 1000 characters")
    return run_argv([*command, *args], timeout=timeout, env=env)
