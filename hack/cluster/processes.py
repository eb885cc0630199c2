"""The cluster's processes: started detached with their output in a log file, found again by
pid after `up` has exited, stopped by pid; and waits that poll with a deadline and, when
something does not come up, say which component and show its log's tail.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

TAIL_LINES = 40


class NotUp(RuntimeError):
    """A component did not start or did not become ready in time (the message says which)."""


@dataclass(frozen=True)
class Process:
    """A process `up` started: enough to find it again, check it and stop it."""

    name: str
    pid: int
    log: str
    executable: str
    """argv[0]: a pid reused by another program is not ours."""

    def alive(self) -> bool:
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
            command = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            return False
        state = stat.rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            return False
        # An empty command line: the exec of a large binary is still loading it.
        return not command or os.fsdecode(command) == self.executable

    def tail(self, lines: int = TAIL_LINES) -> str:
        try:
            text = Path(self.log).read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM, then SIGKILL when it has not exited after `timeout` seconds."""
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            _reap(self.pid)
            time.sleep(0.1)
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            while self.alive():
                _reap(self.pid)
                time.sleep(0.05)
        _reap(self.pid)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _reap(pid: int) -> None:
    """Collect our own exited child (a process `up` started in this run) so it stops existing."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def start(
    name: str,
    argv: Sequence[str | os.PathLike[str]],
    logs: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Process:
    """Start `argv` in a session of its own (it outlives `up`), output appended to the log."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    command = [os.fspath(a) for a in argv]
    with log.open("ab") as handle:
        handle.write(f"\n=== {time.strftime('%F %T')} {' '.join(command)}\n".encode())
        handle.flush()
        child = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
    return Process(name, child.pid, str(log), command[0])


def wait_for(
    check: Callable[[], bool],
    what: str,
    timeout: float,
    *,
    watch: Sequence[Process] = (),
    interval: float = 0.5,
) -> None:
    """Poll `check` until it is true. Raises NotUp naming `what` with the log tails of
    `watch` when one of them exits or the deadline passes (OSError and NotUp from `check`
    count as not yet; the last one is in the message)."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        for process in watch:
            if not process.alive():
                raise NotUp(f"{process.name} exited while {what}:\n{_tails([process])}")
        try:
            if check():
                return
        except (OSError, NotUp) as error:  # not listening, or kubectl says not yet
            last = f"\nlast answer: {error}"
        if time.monotonic() > deadline:
            raise NotUp(f"{what}: not done after {timeout:.0f} s{last}\n{_tails(watch)}")
        time.sleep(interval)


def _tails(processes: Sequence[Process]) -> str:
    return "\n".join(f"--- {p.name} ({p.log}) ---\n{p.tail()}" for p in processes)


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    what: str,
    timeout: float = 300,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run a command to completion; its output, or NotUp with the command's own words."""
    command = [os.fspath(a) for a in argv]
    try:
        done = subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )
    except subprocess.TimeoutExpired as error:
        raise NotUp(f"{what}: `{' '.join(command)}` took longer than {timeout:.0f} s") from error
    if done.returncode != 0:
        output = (done.stderr.strip() or done.stdout.strip())[-3000:]
        raise NotUp(f"{what}: `{' '.join(command[:4])} ...` failed ({done.returncode}):\n{output}")
    return done.stdout
