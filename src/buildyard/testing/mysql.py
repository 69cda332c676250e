"""A throwaway MariaDB (MySQL) server from the machine's binaries, in a temp dir, on 127.0.0.1.

Used by the tests that copy a Buildbot database off MySQL (``buildyard copy-db``). The server
has its own data directory made by ``mariadb-install-db`` and runs with ``--skip-grant-tables``
(any user name connects, with every right: it listens on the loopback only, for one test
session). MariaDB refuses to run as root; when we are root the server runs as the ``mysql``
user, which owns the temp dir. One server serves a session; each test takes a fresh database
from :meth:`MysqlServer.create_database`. The server process is ended by its pid.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from buildyard.testing.postgres import free_port

_START_TIMEOUT = 90.0
_STOP_TIMEOUT = 60.0


class MysqlUnavailable(RuntimeError):
    pass


def find_binaries() -> tuple[Path, Path, Path, Path]:
    """mariadb-install-db, the server (mariadbd or mysqld), mariadb-admin and the client."""
    found = []
    for names in (
        ("mariadb-install-db", "mysql_install_db"),
        ("mariadbd", "mysqld"),
        ("mariadb-admin", "mysqladmin"),
        ("mariadb", "mysql"),
    ):
        path = None
        for name in names:
            path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
            if path:
                break
        if not path:
            raise MysqlUnavailable(
                f"no MariaDB/MySQL server binaries ({' or '.join(names)} not found); install "
                "Debian's 'mariadb-server' package"
            )
        found.append(Path(path))
    return found[0], found[1], found[2], found[3]


class MysqlServer:
    def __init__(self) -> None:
        self.install_db, self.server, self.admin, self.client = find_binaries()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="buildyard-mysql-"))
        self.socket = self.dir / "mysqld.sock"
        self._as_root = os.geteuid() == 0
        self._names = itertools.count(1)
        self.process: subprocess.Popen[bytes] | None = None

    def _ids(self) -> tuple[int | None, int | None, list[int] | None]:
        """The user, group and extra groups the server runs as (None: ours)."""
        if not self._as_root:
            return None, None, None
        try:
            entry = pwd.getpwnam("mysql")
        except KeyError as exc:
            raise MysqlUnavailable("running as root, and there is no 'mysql' user") from exc
        return entry.pw_uid, entry.pw_gid, []

    def start(self) -> None:
        data = self.dir / "data"
        uid, gid, groups = self._ids()
        if self._as_root:
            os.chmod(self.dir, 0o755)
            shutil.chown(self.dir, user="mysql", group="mysql")
        subprocess.run(
            [
                str(self.install_db),
                "--no-defaults",
                f"--datadir={data}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                *(["--user=mysql"] if self._as_root else []),
            ],
            check=True,
            capture_output=True,
            timeout=180,
            user=uid,
            group=gid,
            extra_groups=groups,
        )
        log = open(self.dir / "server.log", "wb")  # noqa: SIM115 - the server's, kept open
        try:
            self.process = subprocess.Popen(
                [
                    str(self.server),
                    "--no-defaults",
                    f"--datadir={data}",
                    f"--socket={self.socket}",
                    f"--pid-file={self.dir / 'mysqld.pid'}",
                    f"--port={self.port}",
                    "--bind-address=127.0.0.1",
                    "--skip-grant-tables",
                    "--skip-name-resolve",
                    "--innodb-flush-log-at-trx-commit=0",
                    "--innodb-buffer-pool-size=32M",
                    "--character-set-server=utf8mb4",
                    "--collation-server=utf8mb4_unicode_ci",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                user=uid,
                group=gid,
                extra_groups=groups,
            )
        finally:
            log.close()
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise MysqlUnavailable(
                    f"the MariaDB server exited ({self.process.returncode}): "
                    + (self.dir / "server.log").read_text(errors="replace")[-2000:]
                )
            ping = subprocess.run(
                [*self._admin_args(), "ping"],
                check=False,
                capture_output=True,
                text=True,
                timeout=30,
            )
            if ping.returncode == 0:
                return
            if time.monotonic() > deadline:
                self.stop()
                raise MysqlUnavailable(f"the MariaDB server did not answer: {ping.stderr}")
            time.sleep(0.2)

    def _admin_args(self) -> list[str]:
        return [
            str(self.admin),
            "--no-defaults",
            "--protocol=tcp",
            "-h",
            "127.0.0.1",
            "-P",
            str(self.port),
            "-u",
            "root",
        ]

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=_STOP_TIMEOUT)
        shutil.rmtree(self.dir, ignore_errors=True)

    def sql(self, statement: str, database: str | None = None) -> str:
        """Run one statement with the command-line client; its tab-separated output."""
        done = subprocess.run(
            [
                str(self.client),
                "--no-defaults",
                "--protocol=tcp",
                "-h",
                "127.0.0.1",
                "-P",
                str(self.port),
                "-u",
                "root",
                "--batch",
                "--skip-column-names",
                "-e",
                statement,
                *([database] if database else []),
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return done.stdout

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database (utf8mb4); returns its URL in Buildbot's db_url spelling."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        self.sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        return f"mysql://root@127.0.0.1:{self.port}/{name}"
