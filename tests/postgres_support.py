"""A real PostgreSQL server for the tests, started by the test session itself.

Debian's ``postgresql`` package is installed when missing (``apt-get update &&
apt-get install -y postgresql``, announced on the terminal, as the browser
tests do for chromium). The cluster is made with ``initdb`` in a temporary
directory, owned by an unprivileged user when the tests run as root
(PostgreSQL refuses to run as root: the ``postgres`` system user the package
creates, else ``nobody``), started on a free port on 127.0.0.1 with trust
authentication for local connections only, and stopped at the end of the
session. Each test gets a database of its own.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

START_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"


def _say(message: str) -> None:
    # Straight to the terminal: pytest captures what fixtures print.
    sys.__stderr__.write(f"\n[postgres fixture] {message}\n")
    sys.__stderr__.flush()


def postgres_bin_dir() -> str | None:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def install_postgres() -> str:
    """The directory of initdb/postgres, installing Debian's package if needed."""
    bin_dir = postgres_bin_dir()
    if bin_dir is not None:
        return bin_dir
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise RuntimeError(
            "PostgreSQL is missing; install it with `apt-get install -y postgresql` (needs root)"
        )
    _say("PostgreSQL is missing: running apt-get update && apt-get install -y postgresql")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    wait_lock = ["-o", "DPkg::Lock::Timeout=300"]
    for command in (
        ["apt-get", *wait_lock, "update"],
        ["apt-get", *wait_lock, "install", "-y", "--no-install-recommends", "postgresql"],
    ):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
            )
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise RuntimeError("apt-get installed postgresql but no initdb was found")
    _say(f"installed PostgreSQL ({bin_dir})")
    return bin_dir


def _run_as() -> list[str]:
    """The prefix that runs a command as an unprivileged user (none if we are one)."""
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        try:
            import pwd

            pwd.getpwnam(user)
        except KeyError:
            continue
        return ["runuser", "-u", user, "--"]
    raise RuntimeError("running as root, and neither a 'postgres' nor a 'nobody' user exists")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _owner_of(prefix: list[str]) -> tuple[int, int] | None:
    if not prefix:
        return None
    import pwd

    entry = pwd.getpwnam(prefix[2])
    return entry.pw_uid, entry.pw_gid


def start_postgres() -> Iterator[PostgresServer]:
    """Generator for a session fixture: yields a running server, then stops it."""
    bin_dir = install_postgres()
    prefix = _run_as()
    root = tempfile.mkdtemp(prefix="subagent-pg-")
    data = os.path.join(root, "data")
    owner = _owner_of(prefix)
    if owner is not None:
        os.chown(root, *owner)
    os.chmod(root, 0o700)
    init = subprocess.run(
        [*prefix, os.path.join(bin_dir, "initdb"), "-D", data, "-U", "postgres", "-A", "trust",
         "-E", "UTF8", "--locale=C", "--no-sync"],
        capture_output=True, text=True, timeout=120,
    )
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed:\n{init.stdout[-2000:]}\n{init.stderr[-2000:]}")
    port = _free_port()
    log = open(os.path.join(root, "server.log"), "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [*prefix, os.path.join(bin_dir, "postgres"), "-D", data, "-p", str(port),
         "-h", "127.0.0.1", "-k", root, "-c", "fsync=off", "-c", "full_page_writes=off",
         "-c", "max_connections=200", "-c", "shared_buffers=32MB"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    info = PostgresServer("127.0.0.1", port, "postgres")
    try:
        _wait_ready(info, server, root)
        yield info
    finally:
        # SIGINT: PostgreSQL's fast shutdown (disconnects clients, then exits).
        try:
            os.killpg(server.pid, signal.SIGINT)
            server.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(server.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            server.wait(timeout=10)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(info: PostgresServer, server: subprocess.Popen[bytes], root: str) -> None:
    import psycopg

    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        if server.poll() is not None:
            with open(os.path.join(root, "server.log"), encoding="utf-8", errors="replace") as f:
                raise RuntimeError(f"postgres exited at start:\n{f.read()[-3000:]}")
        try:
            with psycopg.connect(info.dsn(), connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def create_database(info: PostgresServer) -> str:
    import psycopg

    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(info.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(info: PostgresServer, name: str) -> None:
    import psycopg

    with psycopg.connect(info.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
