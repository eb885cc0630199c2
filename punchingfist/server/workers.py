"""Several server processes on one listening socket (`punchingfist serve --workers N`).

One server process stores about as many alerts per second as one core runs its interpreter:
the HTTP handling and the intake writer take turns holding one interpreter lock. With
`--workers N` the command binds the socket, then forks N processes that all accept on it (the
kernel hands each new connection to one of them). Each has its own intake writer and database
connections; the writers' advisory locks (`intake._locks`) make their batches store what one
writer would have stored.

Worker 0 is the primary: only it runs the outbox dispatcher, and so the executor. The others
serve HTTP and store; the runs they queue are picked up by the primary's next outbox poll
(within `ServerState.dispatch_interval`). Metrics are kept per process in files of one
directory (prometheus-client's multiprocess mode) and every `/metrics` answer adds them up.

The parent process only supervises: it forwards SIGTERM and SIGINT to the workers, and starts
a worker again when one dies (killed, or exited after a while); one that exits by itself right
after starting stops them all, and the command exits 1.
It forks before any thread exists, so the workers start from a clean copy.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

MAX_WORKERS = 16
QUICK_DEATH_SECONDS = 5.0
"""A worker that exits (not killed by a signal) sooner than this after its start is not
started again: whatever stopped it (a database, a bug) would stop the next one too."""


def listening_socket(host: str, port: int) -> socket.socket:
    """The socket every worker accepts on (IPv6 when `host` is an IPv6 address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP said outright: asyncio sets TCP_NODELAY only on connections of a socket that
    # says so, and without it each answer waits out the client's delayed ACK (about 40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def supervise(workers: int, run: Callable[[int], None]) -> int:
    """Fork `workers` processes, each calling `run(number)` (0 is the primary), and look after
    them until they are told to stop. Returns the exit status for the command: 0 after a
    requested stop, 1 when a worker died right after starting."""
    children: dict[int, tuple[int, float]] = {}  # pid -> (worker number, started at)
    stopping = False
    status = 0

    def start(number: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the supervisor's code
            code = 1
            try:
                # uvicorn handles both while it serves (a graceful shutdown), then raises the
                # signal again, which ends the worker as it would have ended anyway.
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                run(number)
                code = 0
            except KeyboardInterrupt:
                code = 0
            except BaseException:  # reported, then the process ends
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = (number, time.monotonic())

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            _signal(pid, signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for number in range(workers):
            start(number)
        print(f"punchingfist: {workers} server workers (pids "
              f"{', '.join(str(p) for p in children)}); worker 0 dispatches runs",
              file=sys.stderr)  # fmt: skip
        while children:
            try:
                pid, wait_status = os.wait()
            except ChildProcessError:
                break
            if pid not in children:
                continue
            number, started = children.pop(pid)
            if stopping:
                continue
            how = _exit_description(wait_status)
            quick = time.monotonic() - started < QUICK_DEATH_SECONDS
            if quick and not os.WIFSIGNALED(wait_status):
                print(f"punchingfist: worker {number} (pid {pid}) {how} right after starting; "
                      "stopping the server", file=sys.stderr)  # fmt: skip
                status = 1
                stop(signal.SIGTERM, None)
                continue
            print(f"punchingfist: worker {number} (pid {pid}) {how}; starting it again",
                  file=sys.stderr)  # fmt: skip
            if quick:  # killed again and again (out of memory?): not in a tight loop
                time.sleep(1)
            start(number)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it has ended already
        os.kill(pid, sig)


def _exit_description(wait_status: int) -> str:
    if os.WIFSIGNALED(wait_status):
        return f"was killed by {signal.Signals(os.WTERMSIG(wait_status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(wait_status)}"
