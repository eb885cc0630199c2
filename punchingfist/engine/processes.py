"""Run one attempt of a container template as a local process, in its own directory.

The attempt directory is the process's cwd and holds `stdout.log`, `stderr.log` and the result
files: a declared output path (`/tmp/punchingfist/result.json`) maps to the file of the same
name in the attempt directory, which is where `pf-runtime --result-dir` writes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from punchingfist.engine.manifests import Parameter
from punchingfist.engine.phases import ERROR, FAILED, SUCCEEDED

PF_RUNTIME = "pf-runtime"
TAIL_CHARS = 2000
KILL_GRACE_SECONDS = 2.0
TEMPLATE_DEADLINE = "Pod was active on the node longer than the specified deadline"


@dataclass(frozen=True)
class Attempt:
    phase: str
    message: str
    started_at: datetime
    finished_at: datetime
    exit_code: int | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    stdout_tail: str = ""
    stderr_tail: str = ""


def local_argv(argv: Sequence[str], result_dir: Path) -> list[str]:
    """The argv to run here: `pf-runtime KIND` becomes this Python's runtime module."""
    if argv and argv[0] == PF_RUNTIME:
        runtime = [sys.executable, "-m", "punchingfist.runtime.main"]
        return [*runtime, *argv[1:], "--result-dir", str(result_dir)]
    return list(argv)


def output_file(directory: Path, declared: str) -> Path:
    return directory / PurePosixPath(declared).name


async def run_attempt(
    argv: Sequence[str],
    env: Mapping[str, str],
    directory: Path,
    outputs: Sequence[Parameter],
    *,
    deadline: float | None,
    started: Callable[[], None],
) -> Attempt:
    """Start the process, wait (killing it at `deadline` seconds), collect its outputs.

    Cancelling the coroutine (the workflow's deadline) kills the process group and re-raises.
    """
    directory.mkdir(parents=True, exist_ok=True)
    began = datetime.now(UTC)
    with (directory / "stdout.log").open("wb") as out, (directory / "stderr.log").open("wb") as err:
        try:
            process = await asyncio.create_subprocess_exec(
                *local_argv(argv, directory),
                cwd=directory,
                env=dict(env),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        except OSError as error:
            return Attempt(
                ERROR,
                f"cannot start {argv[0]!r}: {error.strerror or error}",
                began,
                datetime.now(UTC),
            )
        started()
        try:
            code: int | None = await asyncio.wait_for(process.wait(), deadline)
            phase = SUCCEEDED if code == 0 else FAILED
            message = "" if code == 0 else f"Error (exit code {code})"
        except TimeoutError:
            await _kill(process)
            code, phase, message = process.returncode, FAILED, TEMPLATE_DEADLINE
        except asyncio.CancelledError:
            await asyncio.shield(_kill(process))
            raise
    values, missing = _collect(directory, outputs)
    if missing and phase == SUCCEEDED:
        phase, message = ERROR, f"output parameter {missing[0]!r}: no file and no default"
    return Attempt(
        phase=phase,
        message=message,
        started_at=began,
        finished_at=datetime.now(UTC),
        exit_code=code,
        outputs=values,
        stdout_tail=_tail(directory / "stdout.log"),
        stderr_tail=_tail(directory / "stderr.log"),
    )


def _collect(directory: Path, outputs: Sequence[Parameter]) -> tuple[dict[str, str], list[str]]:
    values: dict[str, str] = {}
    missing: list[str] = []
    for parameter in outputs:
        assert parameter.path is not None
        path = output_file(directory, parameter.path)
        if path.is_file():
            values[parameter.name] = path.read_text(errors="replace")
        elif parameter.default is not None:
            values[parameter.name] = parameter.default
        else:
            missing.append(parameter.name)
    return values, missing


async def _kill(process: asyncio.subprocess.Process) -> None:
    """SIGTERM the process group, SIGKILL it after a grace period (as the kubelet does)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        try:
            await asyncio.wait_for(process.wait(), KILL_GRACE_SECONDS)
            break
        except TimeoutError:
            continue
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # whatever the leader left behind


def _tail(path: Path) -> str:
    with path.open("rb") as file:
        file.seek(0, os.SEEK_END)
        size = file.tell()
        file.seek(max(0, size - TAIL_CHARS * 2))
        text = file.read().decode(errors="replace")
    return text[-TAIL_CHARS:]
