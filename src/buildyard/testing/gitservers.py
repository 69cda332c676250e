"""Private git servers on loopback for tests: sshd with a key, smart HTTP with Basic auth.

:func:`ssh_git_server` runs Debian's ``/usr/sbin/sshd`` on 127.0.0.1 with a host key of its own
and one authorized client key, forced to ``git-shell`` (the key can fetch and push, nothing
else). :func:`http_git_server` serves ``git http-backend`` through aiohttp on 127.0.0.1 and
answers 401 to any request without the right user and password.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import getpass
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from aiohttp import web

from buildyard.testing.postgres import free_port
from buildyard.testing.processes import end_popen, wait_for

__all__ = ["SSHD", "HttpGitServer", "SshGitServer", "http_git_server", "ssh_git_server"]

SSHD = Path("/usr/sbin/sshd")


@dataclasses.dataclass(frozen=True)
class SshGitServer:
    port: int
    # the client's private key (OpenSSH format) and the server's public host key line
    client_key: str
    host_key: str
    # a key the server does not know, and its public half ("ssh-ed25519 AAAA...")
    other_key: str
    other_public: str
    log: Path

    def url(self, repo: Path) -> str:
        return f"ssh://{getpass.getuser()}@127.0.0.1:{self.port}{repo}"


def _keygen(path: Path, comment: str) -> tuple[str, str]:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path.read_text(), path.with_suffix(".pub").read_text().strip()


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            return False
        # sshd speaks first: a banner means it is serving
        try:
            return s.recv(4).startswith(b"SSH-")
        except OSError:
            return False


@contextlib.contextmanager
def ssh_git_server(directory: Path) -> Iterator[SshGitServer]:
    """sshd on a free loopback port; its files in ``directory``; ended (by pid) on exit."""
    directory.mkdir(parents=True)
    _, host_public = _keygen(directory / "host_key", "host")
    client_private, client_public = _keygen(directory / "client_key", "client")
    other_private, other_public = _keygen(directory / "other_key", "other")
    restrictions = 'command="git-shell -c \\"$SSH_ORIGINAL_COMMAND\\"",restrict'
    keys = directory / "authorized_keys"
    keys.write_text(f"{restrictions} {client_public}\n")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = directory / "sshd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(SSHD),
                "-D",
                "-e",
                "-f",
                "/dev/null",
                "-p",
                str(port),
                "-h",
                str(directory / "host_key"),
                "-o",
                "ListenAddress=127.0.0.1",
                "-o",
                f"AuthorizedKeysFile={keys}",
                "-o",
                "StrictModes=no",
                "-o",
                f"PidFile={directory / 'sshd.pid'}",
                "-o",
                "PasswordAuthentication=no",
                "-o",
                "KbdInteractiveAuthentication=no",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        if not wait_for(lambda: proc.poll() is None and _accepts(port), timeout=60):
            raise RuntimeError(f"sshd did not start: {log.read_text()}")
        host_type, host_blob = host_public.split()[:2]
        yield SshGitServer(
            port=port,
            client_key=client_private,
            host_key=f"{host_type} {host_blob}",
            other_key=other_private,
            other_public=" ".join(other_public.split()[:2]),
            log=log,
        )
    finally:
        end_popen(proc)


@dataclasses.dataclass(frozen=True)
class HttpGitServer:
    port: int
    user: str
    password: str
    # requests answered 401 and served, for tests to see that authentication happened
    refused: list[str]
    served: list[str]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


async def _cgi(request: web.Request, root: Path, user: str) -> web.StreamResponse:
    body = await request.read()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_PROJECT_ROOT": str(root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "REQUEST_METHOD": request.method,
        "PATH_INFO": request.path,
        "QUERY_STRING": request.query_string,
        "CONTENT_TYPE": request.headers.get("Content-Type", ""),
        "CONTENT_LENGTH": str(len(body)),
        "REMOTE_USER": user,
        "REMOTE_ADDR": "127.0.0.1",
    }
    for header, variable in (
        ("Content-Encoding", "HTTP_CONTENT_ENCODING"),
        ("Git-Protocol", "GIT_PROTOCOL"),
    ):
        if header in request.headers:
            env[variable] = request.headers[header]
    process = await asyncio.create_subprocess_exec(
        shutil.which("git") or "git",
        "http-backend",
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await process.communicate(body)
    head, _, content = out.partition(b"\r\n\r\n")
    if not _:
        head, _, content = out.partition(b"\n\n")
    status = 200
    headers: dict[str, str] = {}
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.split()[0])
        elif name:
            headers[name.strip()] = value.strip()
    return web.Response(status=status, body=content, headers=headers)


@contextlib.asynccontextmanager
async def http_git_server(root: Path, user: str, password: str) -> AsyncIterator[HttpGitServer]:
    """``git http-backend`` for the repositories under ``root``, at ``http://127.0.0.1:PORT/``,
    behind Basic authentication as ``user``/``password``."""
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    refused: list[str] = []
    served: list[str] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != expected:
            refused.append(request.path_qs)
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="git"'})
        served.append(request.path_qs)
        return await _cgi(request, root, user)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield HttpGitServer(port=port, user=user, password=password, refused=refused, served=served)
    finally:
        await runner.cleanup()
