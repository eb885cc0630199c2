"""Several server processes on one port (`punchingfist serve --workers N`).

One server process stores about as many alerts per second as one core runs its interpreter:
the HTTP handling and the intake writer take turns holding one interpreter lock. With
`--workers N` the command binds the socket and forks N processes. Each has its own intake
writer and database connections; the writers' advisory locks (`intake._locks`) make their
batches store what one writer would have stored.

The parent process accepts the connections and hands them to the workers in turn (the
accepted socket travels over a Unix socket pair, `SCM_RIGHTS`). Left to the kernel, workers
accepting on a shared socket get connections unevenly: Alertmanager sends on a few kept-alive
connections, and one worker holding most of them leaves another idle (docs/operations.md,
'Performance decisions'). Taken in turn, N workers each get every Nth connection.

Worker 0 is the primary: only it runs the outbox dispatcher, and so the executor. The others
serve HTTP and store; the runs they queue are picked up by the primary's next outbox poll
(within `ServerState.dispatch_interval`). Metrics are kept per process in files of one
directory (prometheus-client's multiprocess mode) and every `/metrics` answer adds them up.

The parent also supervises: on SIGTERM or SIGINT it stops accepting and stops the workers
(each finishes what it is answering); a worker that dies (killed, or exited after a while) is
started again; one that exits by itself right after starting stops them all, and the command
exits 1. A worker whose parent is gone finishes its connections and exits. The parent forks
before any thread exists, so the workers start from a clean copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import uvicorn

MAX_WORKERS = 16
QUICK_DEATH_SECONDS = 5.0
"""A worker that exits (not killed by a signal) sooner than this after its start is not
started again: whatever stopped it (a database, a bug) would stop the next one too."""
HAND_OFF_SECONDS = 2.0
"""How long the parent waits for a worker to take a connection before offering it to the
next one (a worker that stopped reading its socket pair)."""
log = logging.getLogger("punchingfist.server.workers")


def listening_socket(host: str, port: int) -> socket.socket:
    """The socket the parent accepts on (IPv6 when `host` is an IPv6 address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP said outright: asyncio sets TCP_NODELAY only on connections of a socket that
    # says so, and without it each answer waits out the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


Run = Callable[[int, socket.socket], None]
"""A worker's life: its number (0 is the primary) and its end of the socket pair on which
accepted connections arrive (`HandedConnectionsServer`)."""


@dataclass
class _Worker:
    number: int
    started: float
    channel: socket.socket
    """The parent's end of the worker's socket pair."""


def supervise(workers: int, run: Run, listener: socket.socket) -> int:
    """Fork `workers` processes, each calling `run(number, channel)`, hand them the
    connections `listener` accepts in turn, and look after them until they are told to stop.
    Returns the exit status for the command: 0 after a requested stop, 1 when a worker died
    right after starting."""
    return _Supervisor(workers, run, listener).serve()


class _Supervisor:
    def __init__(self, workers: int, run: Run, listener: socket.socket) -> None:
        self.workers, self.run, self.listener = workers, run, listener
        self.children: dict[int, _Worker] = {}
        self.stopping = False
        self.status = 0
        self.turn = 0
        self.selector = selectors.DefaultSelector()
        self.wake_read, self.wake_write = socket.socketpair()

    def serve(self) -> int:
        previous = {s: signal.signal(s, self.stop) for s in (signal.SIGTERM, signal.SIGINT)}
        previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        for end in (self.wake_read, self.wake_write, self.listener):
            end.setblocking(False)
        previous_wakeup = signal.set_wakeup_fd(self.wake_write.fileno())
        try:
            host, port = self.listener.getsockname()[:2]
            for number in range(self.workers):
                self.start(number)
            print(
                f"punchingfist: {self.workers} server workers on {_url(host, port)} (pids "
                f"{', '.join(str(p) for p in self.children)}); worker 0 dispatches runs",
                file=sys.stderr,
            )
            self.selector.register(self.listener, selectors.EVENT_READ)
            self.selector.register(self.wake_read, selectors.EVENT_READ)
            while self.children:
                for key, _ in self.selector.select(timeout=1.0):
                    if key.fileobj is self.listener:
                        self.accept()
                    else:
                        with contextlib.suppress(BlockingIOError):
                            self.wake_read.recv(4096)
                self.reap()
                if self.stopping and self.listener.fileno() != -1:
                    self.selector.unregister(self.listener)
                    self.listener.close()  # new connections are refused from now on
        finally:
            signal.set_wakeup_fd(previous_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.selector.close()
            self.wake_read.close()
            self.wake_write.close()
            for worker in self.children.values():
                worker.channel.close()
        return self.status

    def start(self, number: int) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the supervisor's code
            ours.close()
            self._leave_to_worker()
            _run_worker(self.run, number, theirs)
        theirs.close()
        ours.settimeout(HAND_OFF_SECONDS)
        self.children[pid] = _Worker(number, time.monotonic(), ours)

    def _leave_to_worker(self) -> None:
        """In a new worker: close what is the supervisor's (the listening socket, so that
        connections are refused once the parent is gone, and the other workers' pairs, so that
        they see the parent go) and put the signals back as they were."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        # uvicorn handles both while it serves (a graceful shutdown), then raises the signal
        # again, which ends the worker as it would have ended anyway.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self.selector.close()
        for end in (self.listener, self.wake_read, self.wake_write):
            end.close()
        for worker in self.children.values():
            worker.channel.close()

    def accept(self) -> None:
        while not self.stopping:
            try:
                connection, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # out of file descriptors, say: the backlog keeps them
                print(f"punchingfist: accepting a connection failed: {error}", file=sys.stderr)
                return
            with connection:
                self.hand_off(connection)

    def hand_off(self, connection: socket.socket) -> None:
        """Give the connection to the next worker in turn; one that does not take it passes
        it on. If none takes it, it is closed (the client sends again)."""
        workers = sorted(self.children.values(), key=lambda worker: worker.number)
        for offset in range(len(workers)):
            worker = workers[(self.turn + offset) % len(workers)]
            try:
                socket.send_fds(worker.channel, [b"c"], [connection.fileno()])
            except OSError:  # gone, or not reading: its restart or the next worker
                continue
            self.turn = (self.turn + offset + 1) % len(workers)
            return

    def reap(self) -> None:
        while self.children:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            worker = self.children.pop(pid, None)
            if worker is None:
                continue
            worker.channel.close()
            if self.stopping:
                continue
            how = _exit_description(wait_status)
            quick = time.monotonic() - worker.started < QUICK_DEATH_SECONDS
            if quick and not os.WIFSIGNALED(wait_status):
                print(
                    f"punchingfist: worker {worker.number} (pid {pid}) {how} right after "
                    "starting; stopping the server",
                    file=sys.stderr,
                )
                self.status = 1
                self.stop(signal.SIGTERM, None)
                continue
            print(
                f"punchingfist: worker {worker.number} (pid {pid}) {how}; starting it again",
                file=sys.stderr,
            )
            if quick:  # killed again and again (out of memory?): not in a tight loop
                time.sleep(1)
            self.start(worker.number)

    def stop(self, signum: int, frame: Any) -> None:
        self.stopping = True
        for pid in list(self.children):
            _signal(pid, signal.SIGTERM)


def _run_worker(run: Run, number: int, channel: socket.socket) -> None:
    code = 1
    try:
        run(number, channel)
        code = 0
    except KeyboardInterrupt:
        code = 0
    except BaseException:  # reported, then the process ends
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class HandedConnectionsServer(uvicorn.Server):
    """uvicorn serving the connections its supervisor accepted and handed over `channel`,
    with no listening socket of its own. Everything else (lifespan, graceful shutdown of the
    open connections, signals) is uvicorn's own. When the supervisor is gone (the pair's
    other end closed), the server shuts down as on SIGTERM."""

    def __init__(self, config: uvicorn.Config, channel: socket.socket) -> None:
        super().__init__(config)
        self.channel = channel

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])
        loop = asyncio.get_running_loop()
        protocol_class: Any = self.config.http_protocol_class  # uvicorn's own, as it builds it
        protocol = functools.partial(
            protocol_class,
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )
        self.channel.setblocking(False)
        loop.add_reader(self.channel.fileno(), self._receive, loop, protocol)

    def _receive(self, loop: asyncio.AbstractEventLoop, protocol: Any) -> None:
        try:
            message, fds, _, _ = socket.recv_fds(self.channel, 16, 16)
        except (BlockingIOError, InterruptedError):
            return
        if not message and not fds:  # the supervisor is gone: no more connections come
            loop.remove_reader(self.channel.fileno())
            self.should_exit = True
            return
        for fd in fds:
            connection = socket.socket(fileno=fd)
            task = loop.create_task(loop.connect_accepted_socket(protocol, connection))
            task.add_done_callback(_report_failed_connection)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        with contextlib.suppress(ValueError, OSError):  # closed already
            asyncio.get_running_loop().remove_reader(self.channel.fileno())
        self.channel.close()
        await super().shutdown(sockets=sockets)


def _report_failed_connection(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("a handed-over connection could not be served: %s", task.exception())


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it has ended already
        os.kill(pid, sig)


def _exit_description(wait_status: int) -> str:
    if os.WIFSIGNALED(wait_status):
        return f"was killed by {signal.Signals(os.WTERMSIG(wait_status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(wait_status)}"
