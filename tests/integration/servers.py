"""Start real servers from Debian packages for tests and benchmarks."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
    subprocess.run([*as_postgres, initdb, "-D", str(data), "-A", "trust", "-U", "postgres",
                    "--no-sync", "-E", "UTF8"], check=True, capture_output=True)  # fmt: skip
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    started = subprocess.run(
        [*as_postgres, pg_ctl, "-D", str(data), "-o", options, "-l", str(base / "log"),
         "-w", "-t", "60", "start"], capture_output=True, text=True, check=False,
    )  # fmt: skip
    if started.returncode != 0:
        raise RuntimeError(
            f"PostgreSQL did not start: {started.stderr}\n{(base / 'log').read_text()}"
        )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_postgres, pg_ctl, "-D", str(data), "-m", "fast", "stop"],
                       capture_output=True, check=False)  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)
