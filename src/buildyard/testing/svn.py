"""Real Subversion repositories for tests: ``svnadmin create``, a working copy to commit from,
and ``svnserve`` on loopback for username/password access."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from buildyard.testing.postgres import free_port

# svn as tests drive it: its own configuration directory, no prompts, plain messages
SVN_ENV = {**os.environ, "LC_ALL": "C.UTF-8"}


def svn_available() -> bool:
    return all(shutil.which(tool) for tool in ("svn", "svnadmin", "svnserve"))


class SvnRepo:
    """A repository at ``path`` (``url`` is its file:// URL) and a working copy of its root in
    ``wc``, from which :meth:`commit` commits."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.config_dir = path.parent / f"{path.name}-svn-config"
        self.config_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["svnadmin", "create", str(path)], check=True, capture_output=True)
        self.url = path.resolve().as_uri()
        self.wc = path.parent / f"{path.name}-wc"
        self.svn("checkout", "-q", self.url, str(self.wc), cwd=path.parent)

    def svn(self, *args: str, cwd: Path | None = None) -> str:
        done = subprocess.run(
            ["svn", "--non-interactive", "--config-dir", str(self.config_dir), *args],
            cwd=cwd or self.wc,
            env=SVN_ENV,
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return done.stdout

    def commit(
        self,
        message: str,
        files: Mapping[str, str | None] | None = None,
        *,
        author: str = "ann",
        dirs: tuple[str, ...] = (),
    ) -> str:
        """Make ``dirs``, write ``files`` (path: content; None deletes) in the working copy
        of the root, commit as ``author``; the new revision, as a string."""
        for name in dirs:
            (self.wc / name).mkdir(parents=True, exist_ok=True)
        for name, content in (files or {}).items():
            target = self.wc / name
            if content is None:
                self.svn("delete", "-q", name)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        self.svn("add", "-q", "--force", "--parents", ".")
        self.svn("commit", "-q", "-m", message, "--username", author)
        return self.head()

    def copy(self, source: str, target: str, message: str, *, author: str = "ann") -> str:
        """``svn copy`` inside the repository (a branch or tag), as one revision."""
        self.svn(
            "copy", "-q", "--parents", "-m", message, "--username", author,
            f"{self.url}/{source}", f"{self.url}/{target}",
        )  # fmt: skip
        self.svn("update", "-q")
        return self.head()

    def remove(self, path: str, message: str, *, author: str = "ann") -> str:
        self.svn("delete", "-q", "-m", message, "--username", author, f"{self.url}/{path}")
        self.svn("update", "-q")
        return self.head()

    def head(self) -> str:
        out = self.svn("info", "--show-item", "revision", self.url)
        return out.strip()


class SvnServe:
    """``svnserve`` on 127.0.0.1 serving the repositories under ``root``, with users and
    passwords (and no anonymous access); end it with :meth:`stop`."""

    def __init__(self, root: Path, users: Mapping[str, str]) -> None:
        self.root = root
        self.port = free_port()
        conf = root / "svnserve.conf"
        passwd = root / "passwd"
        passwd.write_text("[users]\n" + "".join(f"{u} = {p}\n" for u, p in users.items()))
        conf.write_text(
            "[general]\nanon-access = none\nauth-access = write\n"
            f"password-db = {passwd}\nrealm = buildyard-tests\n"
        )
        self.process = subprocess.Popen(
            [
                "svnserve", "--foreground", "--daemon", "--listen-host", "127.0.0.1",
                "--listen-port", str(self.port), "--root", str(root), "--config-file", str(conf),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        self._wait_listening()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"svnserve ended with {self.process.returncode}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("svnserve did not listen within 20 s")

    def url(self, name: str) -> str:
        return f"svn://127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
