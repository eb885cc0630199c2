"""The worker supervisor (`serve --workers N`) without a server: forked functions."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from punchingfist.server.workers import listening_socket, supervise


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = listening_socket("127.0.0.1", 0)
    yield sock
    sock.close()


def test_a_worker_that_exits_right_after_starting_stops_them_all(
    capfd: pytest.CaptureFixture[str], listener: socket.socket
) -> None:
    def run(number: int, channel: socket.socket) -> None:
        if number == 1:
            raise SystemExit(3)
        time.sleep(60)  # stopped by the supervisor's SIGTERM long before

    started = time.monotonic()
    assert supervise(2, run, listener) == 1
    assert time.monotonic() - started < 30
    err = capfd.readouterr().err
    assert "worker 1" in err and "exited with status 1 right after starting" in err


def test_a_killed_worker_is_started_again(tmp_path: Path, listener: socket.socket) -> None:
    def run(number: int, channel: socket.socket) -> None:
        (tmp_path / f"{number}-{os.getpid()}").touch()
        time.sleep(60)

    def starts() -> list[str]:
        return sorted(p.name for p in tmp_path.iterdir())

    def kill_one_then_stop() -> None:
        deadline = time.monotonic() + 20
        while len(starts()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        first = next(name for name in starts() if name.startswith("1-"))
        os.kill(int(first.split("-")[1]), signal.SIGKILL)
        while len(starts()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)  # the supervisor stops its workers

    helper = threading.Thread(target=kill_one_then_stop)
    helper.start()
    assert supervise(2, run, listener) == 0
    helper.join()
    assert [name.split("-")[0] for name in starts()] == ["0", "1", "1"]


def test_connections_are_handed_to_the_workers_in_turn(listener: socket.socket) -> None:
    def run(number: int, channel: socket.socket) -> None:
        while True:  # each connection it is given hears the worker's number
            message, fds, _, _ = socket.recv_fds(channel, 16, 4)
            if not message:
                return
            for fd in fds:
                with socket.socket(fileno=fd) as connection:
                    connection.sendall(str(number).encode())

    heard: list[str] = []

    def connect_then_stop() -> None:
        for _ in range(6):
            with socket.create_connection(listener.getsockname(), timeout=20) as connection:
                heard.append(connection.recv(16).decode())
        os.kill(os.getpid(), signal.SIGTERM)

    helper = threading.Thread(target=connect_then_stop)
    helper.start()
    assert supervise(2, run, listener) == 0
    helper.join()
    assert "".join(heard) == "010101"


def test_the_listening_socket_is_tcp_so_answers_are_not_delayed() -> None:
    sock = listening_socket("127.0.0.1", 0)
    try:
        assert sock.proto == 6  # asyncio sets TCP_NODELAY only on IPPROTO_TCP sockets
    finally:
        sock.close()
