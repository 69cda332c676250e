"""A Gerrit's ssh side on loopback for tests: Debian's real ``/usr/sbin/sshd`` whose
authorized key is forced to a small program playing Gerrit's ssh commands.

- ``gerrit stream-events``: each connection prints the lines appended to :attr:`GerritSshd.feed`
  after it connected (as Gerrit streams the events that happen while a client listens), and
  ends when the test calls :meth:`GerritSshd.drop` (the connection is lost) or the server stops;
- ``gerrit query ...``: prints :attr:`GerritSshd.query_answer`'s content;
- ``gerrit version``: ``gerrit version 3.9.1``;
- every command is recorded (:meth:`GerritSshd.commands`), every stream connection counted
  (:meth:`GerritSshd.connections`).

Clients need the server's host key: :attr:`GerritSshd.ssh_wrapper` is a directory with an
``ssh`` that adds ``UserKnownHostsFile`` and ``StrictHostKeyChecking=yes`` and runs the real one;
put it first on ``PATH`` (any process that runs ``ssh`` from ``PATH`` then trusts this server).

The port: sshd is given a free port and, should another process take it first (sshd then exits
with "Address already in use"), started again on another one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from buildyard.testing.postgres import free_port
from buildyard.testing.processes import end_popen

__all__ = ["SSHD", "GerritSshd", "gerrit_sshd", "sshd_available"]

SSHD = Path("/usr/sbin/sshd")
#: how long one stream connection lasts at most
STREAM_LIMIT = 300

GERRIT = """\
import os, sys, time
DIR = {dir!r}
command = os.environ.get("SSH_ORIGINAL_COMMAND", "")
with open(os.path.join(DIR, "commands"), "a") as out:
    out.write(command + "\\n")
if command == "gerrit version":
    print("gerrit version 3.9.1")
elif command.startswith("gerrit query "):
    with open(os.path.join(DIR, "query.json")) as answer:
        sys.stdout.write(answer.read())
elif command == "gerrit stream-events":
    feed = os.path.join(DIR, "feed")
    offset = os.path.getsize(feed)
    parent = os.getppid()
    with open(os.path.join(DIR, "connections"), "a") as out:
        out.write(str(os.getpid()) + "\\n")
    deadline = time.monotonic() + {limit}
    pending = b""
    while time.monotonic() < deadline and os.getppid() == parent:
        if os.path.exists(os.path.join(DIR, "stopped")):
            break
        try:
            os.remove(os.path.join(DIR, "drop"))
            print("connection dropped by the test", file=sys.stderr)
            sys.exit(0)
        except FileNotFoundError:
            pass
        with open(feed, "rb") as source:
            source.seek(offset)
            chunk = source.read()
        offset += len(chunk)
        pending += chunk
        if b"\\n" in pending:
            complete, _, pending = pending.rpartition(b"\\n")
            try:
                sys.stdout.buffer.write(complete + b"\\n")
                sys.stdout.buffer.flush()
            except BrokenPipeError:
                break
        time.sleep(0.05)
else:
    print("fatal: unknown command " + command, file=sys.stderr)
    sys.exit(1)
"""


def sshd_available() -> bool:
    """Whether sshd can be started here (Debian's openssh-server installed, and root)."""
    return SSHD.exists() and shutil.which("ssh") is not None and os.geteuid() == 0


@dataclasses.dataclass(frozen=True)
class GerritSshd:
    port: int
    root: Path
    # the client's private key file, and one the server does not know
    identity: Path
    other_identity: Path
    known_hosts: Path
    ssh_wrapper: Path
    feed: Path
    query_answer: Path
    log: Path
    user: str = dataclasses.field(default_factory=getpass.getuser)

    def send(self, *events: Mapping[str, Any] | str) -> None:
        """Append events (dicts, as JSON) or raw lines to what the streams print."""
        lines = [e if isinstance(e, str) else json.dumps(e) for e in events]
        with self.feed.open("a") as out:
            out.write("".join(line + "\n" for line in lines))

    def drop(self) -> None:
        """End the stream connection (the next one to look: there is one at a time)."""
        (self.root / "drop").touch()

    def dropped(self) -> bool:
        return not (self.root / "drop").exists()

    def connections(self) -> int:
        path = self.root / "connections"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def streams_running(self) -> int:
        """How many of this server's stream programs run (they end once their ssh client
        is gone)."""
        script = str(self.root / "gerrit.py").encode()
        count = 0
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if script in (entry / "cmdline").read_bytes():
                        count += 1
        return count

    def commands(self) -> list[str]:
        path = self.root / "commands"
        return path.read_text().splitlines() if path.exists() else []

    def answer_queries(self, answer: Iterable[Mapping[str, Any]]) -> None:
        """What ``gerrit query`` prints: one JSON object a line."""
        self.query_answer.write_text("".join(json.dumps(a) + "\n" for a in answer))


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )


def _serving(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        try:
            s.connect(("127.0.0.1", port))
            return s.recv(4).startswith(b"SSH-")
        except OSError:
            return False


def _start(root: Path, port: int) -> subprocess.Popen[bytes]:
    command = [str(SSHD), "-D", "-e", "-f", "/dev/null", "-p", str(port)]
    command += ["-h", str(root / "hostkey")]
    for option in (
        "ListenAddress=127.0.0.1",
        f"AuthorizedKeysFile={root / 'authorized_keys'}",
        "StrictModes=no",
        f"PidFile={root / 'sshd.pid'}",
        "PasswordAuthentication=no",
        "KbdInteractiveAuthentication=no",
    ):
        command += ["-o", option]
    with (root / "sshd.log").open("ab") as out:
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


@contextlib.contextmanager
def gerrit_sshd(root: Path) -> Iterator[GerritSshd]:
    """The server, its files under ``root`` (created); stopped, by pid, on exit."""
    root.mkdir(parents=True)
    for key in ("hostkey", "client", "other"):
        _keygen(root / key)
    script = root / "gerrit.py"
    script.write_text(GERRIT.format(dir=str(root), limit=STREAM_LIMIT))
    (root / "feed").write_text("")
    (root / "query.json").write_text("")
    client = (root / "client.pub").read_text().strip()
    forced = f'command="{sys.executable} {script}",restrict'
    (root / "authorized_keys").write_text(f"{forced} {client}\n")
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    proc: subprocess.Popen[bytes] | None = None
    port = 0
    for _ in range(5):  # bounded: another process may take the free port before sshd binds it
        port = free_port()
        proc = _start(root, port)
        deadline = time.monotonic() + 30
        while proc.poll() is None and not _serving(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None and _serving(port):
            break
        end_popen(proc)
        proc = None
    if proc is None:
        raise RuntimeError(f"sshd did not start: {(root / 'sshd.log').read_text()}")
    host_key = " ".join((root / "hostkey.pub").read_text().split()[:2])
    known_hosts = root / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_key}\n")
    wrapper = root / "bin"
    wrapper.mkdir()
    real_ssh = shutil.which("ssh")
    (wrapper / "ssh").write_text(
        "#!/bin/sh\n"
        f'exec {real_ssh} -o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes "$@"\n'
    )
    (wrapper / "ssh").chmod(0o755)
    try:
        yield GerritSshd(
            port=port,
            root=root,
            identity=root / "client",
            other_identity=root / "other",
            known_hosts=known_hosts,
            ssh_wrapper=wrapper,
            feed=root / "feed",
            query_answer=root / "query.json",
            log=root / "sshd.log",
        )
    finally:
        (root / "stopped").touch()  # every stream still printing ends
        end_popen(proc)
