"""GitPoller on private repositories: a real sshd with the key as a secret, and git's smart HTTP
behind Basic auth with auth_credentials and git_credentials."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import structlog

from buildyard.master.changes.base import ChangeSourceContext
from buildyard.master.db.connector import Database
from buildyard.master.secrets import providers
from buildyard.plugins import util
from buildyard.testing.gitservers import SSHD, http_git_server, ssh_git_server
from tests.master.changes.conftest import Upstream
from tests.master.changes.test_gitpoller import changes, last_rev, make_poller


def with_secrets(
    ctx: ChangeSourceContext, directory: Path, values: dict[str, str]
) -> ChangeSourceContext:
    directory.mkdir(mode=0o700)
    for name, value in values.items():
        (directory / name).write_text(value)
        (directory / name).chmod(0o600)
    provider = providers.SecretInAFile(str(directory))

    async def lookup(name: str) -> str | None:
        return await providers.lookup([provider], name)

    return dataclasses.replace(ctx, secret=lookup)


def left_behind(root: Path, text: str) -> list[Path]:
    """Files under ``root`` holding ``text``, and credential directories still there."""
    found = [p for p in root.rglob(".buildyard-auth-*")]
    for path in root.rglob("*"):
        if path.is_file() and text.encode() in path.read_bytes():
            found.append(path)
    return found


@pytest.mark.skipif(not SSHD.exists(), reason="needs Debian's openssh-server (.ci/run installs it)")
async def test_ssh_key_as_secret(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream, tmp_path: Path
) -> None:
    first = upstream.commit("initial")
    with ssh_git_server(tmp_path / "sshd") as server:
        ctx = with_secrets(
            ctx, tmp_path / "secrets", {"gitkey": server.client_key, "other": server.other_key}
        )
        url = server.url(upstream.path)
        poller = make_poller(
            ctx, url, sshPrivateKey=util.Secret("gitkey"), sshHostKey=server.host_key
        )
        await poller.poll()
        assert poller.statistics()["failed_polls"] == 0
        assert await last_rev(ctx, url) == {"refs/heads/main": first}
        second = upstream.commit("second")
        await poller.poll()
        assert poller.statistics()["failed_polls"] == 0
        [change] = await changes(database)
        assert (change.revision, change.branch, change.repository) == (second, "main", url)

        wrong = make_poller(
            ctx,
            url,
            name="wrong",
            sshPrivateKey=util.Secret("other"),
            sshHostKey=server.host_key,
        )
        with structlog.testing.capture_logs() as logs:
            await wrong.poll()
        [failure] = [e for e in logs if e["event"] == "gitpoller_poll_failed"]
        assert "Permission denied (publickey)" in failure["error"]
        assert wrong.statistics()["failed_polls"] == 1
    for key in (server.client_key, server.other_key):
        line = key.splitlines()[2]
        assert left_behind(ctx.basedir, line) == []
        assert all(line not in str(entry) for entry in logs)


async def test_http_auth_credentials_and_git_credentials(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream, tmp_path: Path
) -> None:
    root = tmp_path / "served"
    root.mkdir()
    upstream.commit("initial")
    upstream.git("clone", "-q", "--bare", str(upstream.path), str(root / "private.git"))
    password = "pw-7c2d90aa41e3"
    ctx = with_secrets(ctx, tmp_path / "secrets", {"httppass": password})
    async with http_git_server(root, "alice", password) as server:
        url = server.url("private.git")
        by_pair = make_poller(
            ctx, url, name="pair", auth_credentials=("alice", util.Secret("httppass"))
        )
        by_options = make_poller(
            ctx,
            url,
            name="options",
            git_credentials=util.GitCredentialOptions(
                credentials=[
                    util.GitCredentialInputRenderer(
                        url=url, username="alice", password=util.Secret("httppass")
                    )
                ]
            ),
        )
        unauthenticated = make_poller(ctx, url, name="none")
        for poller in (by_pair, by_options):
            await poller.poll()
            assert poller.statistics()["failed_polls"] == 0
        assert server.refused and server.served
        second = upstream.commit("second")
        upstream.git("push", "-q", str(root / "private.git"), "main")
        for poller in (by_pair, by_options):
            await poller.poll()
            assert poller.statistics()["failed_polls"] == 0
        assert [c.revision for c in await changes(database)] == [second, second]
        with structlog.testing.capture_logs() as logs:
            await unauthenticated.poll()
        [failure] = [e for e in logs if e["event"] == "gitpoller_poll_failed"]
        assert "could not read Username" in failure["error"]
    assert left_behind(ctx.basedir, password) == []


async def test_a_missing_secret_fails_the_poll_with_its_name(
    ctx: ChangeSourceContext, database: Database, upstream: Upstream, tmp_path: Path
) -> None:
    upstream.commit("initial")
    ctx = with_secrets(ctx, tmp_path / "secrets", {})
    url = f"file://{upstream.url}"
    poller = make_poller(ctx, url, auth_credentials=("alice", util.Secret("nowhere")))
    with structlog.testing.capture_logs() as logs:
        await poller.poll()
    [failure] = [e for e in logs if e["event"] == "gitpoller_poll_failed"]
    assert "secret 'nowhere' is not found" in failure["error"]
    assert poller.statistics()["failed_polls"] == 1
    assert await last_rev(ctx, url) is None
