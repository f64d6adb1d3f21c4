"""Test helper: a throwaway PostgreSQL server on 127.0.0.1, owned by the test that starts it.

    with running_postgres() as server:
        env = server.dagster_env()          # DAGSTER_PG_HOST/PORT/DB/USERNAME/PASSWORD for deploy/dagster.yaml
        server.stop(); server.start()        # a restart on the same data folder

``initdb`` runs in a fresh temporary folder (password authentication, a random password), ``postgres`` listens on
127.0.0.1 only, on a free port, with its socket inside that folder; the server is stopped by its pid and the folder
removed on exit. PostgreSQL refuses to run as root, so when the tests run as root (CI) the server runs as the
``postgres`` user that Debian's package creates. The binaries come from PATH or Debian's
``/usr/lib/postgresql/<version>/bin`` (``.ci/install-postgres`` installs them); without them the tests skip, or
fail when ``EMBED_FT_REQUIRE_POSTGRES=1`` (set by ``.ci/run``).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import pytest

REQUIRE_ENV = "EMBED_FT_REQUIRE_POSTGRES"
SERVER_USER = "postgres"  # Debian's package creates it; used only when the tests run as root
DB_USER = "embed_ft"
DB_NAME = "dagster"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def postgres_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``postgres``: PATH first, else Debian's newest version."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: (len(p.parts[-3]), p.parts[-3]))
    return versions[-1].parent if versions else None


def require_postgres() -> Path:
    """The bin folder, or skip (fail in CI, where ``.ci/install-postgres`` must have installed it)."""
    bindir = postgres_bindir()
    if bindir is None:
        reason = "PostgreSQL is not installed (initdb not found): run .ci/install-postgres"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return bindir


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    bindir: Path
    root: Path
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    port: int = 0
    process: subprocess.Popen | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.root / "postgres.log"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def _run_as(self) -> dict:
        """``subprocess`` arguments that drop root for PostgreSQL's binaries (which refuse to run as root)."""
        if os.geteuid() != 0:
            return {}
        entry = pwd.getpwnam(SERVER_USER)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def init(self) -> None:
        drop = self._run_as()
        if drop:
            os.chown(self.root, drop["user"], drop["group"])
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if drop:
            os.chown(pwfile, drop["user"], drop["group"])
        subprocess.run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                DB_USER,
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
            **drop,
        )
        pwfile.unlink()

    def start(self) -> None:
        """Start ``postgres`` on a free 127.0.0.1 port (a new one after a restart) and wait until it answers."""
        for _attempt in range(3):
            self.port = free_port()
            with open(self.log_path, "a", encoding="utf-8") as log:  # the child keeps its own descriptor
                self.process = subprocess.Popen(
                    [
                        str(self.bindir / "postgres"),
                        "-D",
                        str(self.data_dir),
                        "-p",
                        str(self.port),
                        "-c",
                        "listen_addresses=127.0.0.1",
                        "-c",
                        f"unix_socket_directories={self.root}",
                        "-c",
                        "fsync=off",
                        "-c",
                        "max_connections=200",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    **self._run_as(),
                )
            if self._wait_ready():
                return
            self.stop()
        raise RuntimeError(f"PostgreSQL did not start; its log:\n{self.log_path.read_text()[-3000:]}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False  # e.g. the port was taken between choosing and binding it
            try:
                psycopg2.connect(**self.connect_args("postgres")).close()
                return True
            except psycopg2.OperationalError:
                time.sleep(0.2)
        return False

    def connect_args(self, dbname: str = DB_NAME) -> dict:
        return {"host": "127.0.0.1", "port": self.port, "user": DB_USER, "password": self.password, "dbname": dbname}

    def create_database(self, name: str = DB_NAME) -> None:
        conn = psycopg2.connect(**self.connect_args("postgres"))
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()

    def dagster_env(self) -> dict[str, str]:
        """The variables deploy/dagster.yaml reads."""
        return {
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_DB": DB_NAME,
            "DAGSTER_PG_USERNAME": DB_USER,
            "DAGSTER_PG_PASSWORD": self.password,
        }

    def stop(self) -> None:
        """Fast shutdown (SIGINT) of the postmaster by its pid; SIGKILL if it does not stop in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_S)


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A fresh server holding an empty database ``dagster``; stopped and deleted on exit."""
    bindir = require_postgres()
    # Not under pytest's tmp_path: its parents are private to the user running the tests (root in CI).
    root = Path(tempfile.mkdtemp(prefix="embed-ft-pg-"))
    server = PostgresServer(bindir=bindir, root=root)
    try:
        server.init()
        server.start()
        server.create_database()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
