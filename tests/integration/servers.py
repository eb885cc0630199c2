"""Start real servers from Debian packages for tests and benchmarks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.e2e.controlplane import free_port


def pg_binary(name: str) -> str | None:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(found[-1]) if found else shutil.which(name)


class Unavailable(RuntimeError):
    """The server's binaries are not installed."""


@contextmanager
def postgres() -> Iterator[str]:
    """A throw-away PostgreSQL cluster on loopback; yields its SQLAlchemy URL."""
    initdb, pg_ctl = pg_binary("initdb"), pg_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise Unavailable("PostgreSQL server binaries are not installed (package postgresql)")
    base = Path(tempfile.mkdtemp(prefix="pf-postgres-"))
    base.chmod(0o755)  # the postgres user must reach it
    data = base / "data"
    data.mkdir()
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(base, "postgres")
        shutil.chown(data, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run(
        [
            *as_postgres,
            initdb,
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    started = subprocess.run(
        [
            *as_postgres,
            pg_ctl,
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(base / "log"),
            "-w",
            "-t",
            "60",
            "start",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if started.returncode != 0:
        raise RuntimeError(
            f"PostgreSQL did not start: {started.stderr}\n{(base / 'log').read_text()}"
        )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_postgres, pg_ctl, "-D", str(data), "-m", "fast", "stop"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def daemon(argv: list[str], url: str, log_path: Path, what: str) -> Iterator[str]:
    """Run a server until the block ends; yields `url` once `{url}/-/ready` answers."""
    log = log_path.open("wb")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1):
                    break
            except OSError as error:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{what} did not start:\n{log_path.read_text()}") from error
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def webhook_config(url: str, token_file: Path, group_by: list[str]) -> dict[str, Any]:
    """Alertmanager's configuration: every alert to one webhook receiver at `url`, with the
    bearer token in `token_file`, grouped by `group_by`, sent at once and resolved too."""
    return {
        "route": {
            "receiver": "punchingfist",
            "group_by": group_by,
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "punchingfist",
                "webhook_configs": [
                    {
                        "url": url,
                        "send_resolved": True,
                        "http_config": {
                            "authorization": {"type": "Bearer", "credentials_file": str(token_file)}
                        },
                    }
                ],
            }
        ],
    }


@contextmanager
def alertmanager(config: dict[str, Any], directory: Path, host: str = "127.0.0.1") -> Iterator[str]:
    """A real Alertmanager (package prometheus-alertmanager) on `host` (loopback, or a
    cluster's pod bridge for step pods); yields its URL."""
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        raise Unavailable("Alertmanager is not installed (package prometheus-alertmanager)")
    (directory / "am.yml").write_text(json.dumps(config))
    port = free_port()
    argv = [
        binary,
        f"--config.file={directory / 'am.yml'}",
        f"--storage.path={directory / 'am'}",
        f"--web.listen-address={host}:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    with daemon(argv, f"http://{host}:{port}", directory / "am.log", "alertmanager") as url:
        yield url


@contextmanager
def pushgateway(directory: Path) -> Iterator[str]:
    """A real Prometheus Pushgateway (package prometheus-pushgateway); yields its URL."""
    binary = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
    if binary is None:
        raise Unavailable("Pushgateway is not installed (package prometheus-pushgateway)")
    port = free_port()
    argv = [binary, f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
    with daemon(argv, f"http://127.0.0.1:{port}", directory / "pgw.log", "pushgateway") as url:
        yield url


@contextmanager
def uvicorn_app(app: Any) -> Iterator[str]:
    """Serve an ASGI app on a loopback port in a thread; yields its URL."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    while not instance.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        instance.should_exit = True
        thread.join(timeout=10)


def post_chunked(
    url: str,
    path: str,
    headers: dict[str, str],
    *,
    chunk: int = 16 * 1024,
    most: int = 256 * 1024 * 1024,
) -> tuple[int, int]:
    """POST a chunked body of up to `most` bytes, stopping as soon as the server answers.
    Returns (HTTP status, bytes sent): a server that cuts the body at its limit answers long
    before `most` is sent, one that buffers everything answers only after."""
    import select
    import socket
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    lines = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}", "Transfer-Encoding: chunked"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    data = b"x" * chunk
    frame = f"{chunk:x}\r\n".encode() + data + b"\r\n"
    sent = 0
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while sent < most:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += chunk
        else:
            sock.sendall(b"0\r\n\r\n")
        answer = sock.recv(4096).decode(errors="replace")
    return int(answer.split(" ", 2)[1]), sent
