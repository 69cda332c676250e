"""``buildyard user`` against a master's util.CommandlineUserManager: add, get, update and
remove round trip on the users tables.

No side-by-side run with the stock ``buildbot user``: Buildbot 4.3.0's client cannot log in
under Python 3 (it hands Twisted's PB login a str password, and the challenge response fails
with "Strings must be encoded before hashing" before anything is sent)."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
from pathlib import Path

import pytest

from buildyard.cli.user import hash_password
from buildyard.master.config.loader import load_master_config
from buildyard.master.db import migrate
from buildyard.master.master import BuildMaster
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import buildyard

pytestmark = pytest.mark.e2e

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['protocols'] = {{}}
c['workers'] = [worker.Worker("w", "p")]
c['builders'] = [util.BuilderConfig(name="b", workernames=["w"], factory=util.BuildFactory())]
c['user_managers'] = [util.CommandlineUserManager(
    username="admin", passwd="s3cret", port="tcp:{port}:interface=127.0.0.1")]
"""


async def _user(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    login = ("--master", f"127.0.0.1:{port}", "--username", "admin", "--passwd", "s3cret")
    return await asyncio.to_thread(buildyard, "user", *login, *args)


async def test_user_add_get_update_remove(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "master.cfg").write_text(CONFIG.format(port=port))
    master = BuildMaster(tmp_path, config=load_master_config(tmp_path))
    await migrate.upgrade(master.db)
    await master.start()
    try:
        users = master.db.users
        added = await _user(port, "--op", "add", "--info", "git=Jane <jane@example.org>,email=j@x")
        assert added.returncode == 0, added.stderr
        [jane] = await users.get_users()
        # the smallest value names the user, as with Buildbot's client
        assert jane.identifier == "Jane <jane@example.org>"
        assert jane.attributes == {"email": "j@x", "git": "Jane <jane@example.org>"}
        assert f"uid: {jane.uid}" in added.stdout and added.stdout.startswith("user(s) added:")

        got = await _user(port, "--op", "get", "--ids", "Jane <jane@example.org>,nobody")
        assert got.returncode == 0
        assert f"uid: {jane.uid}\nidentifier: Jane <jane@example.org>\nbb_username: None" in (
            got.stdout
        )
        assert "\temail: j@x\n" in got.stdout and "no match found" in got.stdout

        updated = await _user(
            port,
            "--op",
            "update",
            "--info",
            "Jane <jane@example.org>:email=jane@example.org",
            "--bb_username",
            "jane",
            "--bb_password",
            "pw",
        )
        assert updated.returncode == 0, updated.stderr
        jane2 = await users.get_user(jane.uid)
        assert jane2 is not None
        assert jane2.attributes["email"] == "jane@example.org" and jane2.bb_username == "jane"
        # the password arrives hashed as Buildbot hashes it: salt, then sha1(password + salt)
        assert jane2.bb_password is not None and jane2.bb_password != "pw"
        salt = jane2.bb_password[:16]
        assert jane2.bb_password[16:] == hashlib.sha1(b"pw" + salt.encode()).hexdigest()

        removed = await _user(port, "--op", "remove", "--ids", "Jane <jane@example.org>")
        assert removed.returncode == 0
        assert removed.stdout.startswith("user(s) removed:\nidentifier: Jane <jane@example.org>")
        assert await users.get_users() == []

        wrong = await asyncio.to_thread(
            buildyard,
            "user",
            "--master",
            f"127.0.0.1:{port}",
            "--username",
            "admin",
            "--passwd",
            "nope",
            "--op",
            "get",
            "--ids",
            "x",
        )
        assert wrong.returncode == 1 and wrong.stderr
    finally:
        await master.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--op", "get", "--ids", "x"], "--master"),
        (["--master", "h:1", "--ids", "x"], "specify an operation"),
        (["--master", "h:1", "--op", "drop", "--ids", "x"], "bad op 'drop'"),
        (["--master", "h:1", "--op", "get", "--ids", "x", "--username", "u"], "password"),
        (["--master", "h:1", "-u", "u", "-p", "p", "--op", "get"], "--ids or --info"),
        (["--master", "h:1", "-u", "u", "-p", "p", "--op", "add", "--info", "pgp=1"], "'pgp'"),
        (["--master", "h:1", "-u", "u", "-p", "p", "--op", "add", "--info", "a:git=1"], "add"),
        (["--master", "h:1", "-u", "u", "-p", "p", "--op", "update", "--info", "git=1"], "ID:"),
        (
            [
                "--master",
                "h:1",
                "-u",
                "u",
                "-p",
                "p",
                "--op",
                "get",
                "--ids",
                "x",
                "--bb_username",
                "j",
                "--bb_password",
                "p",
            ],
            "only work with update",
        ),
    ],
)
def test_user_refuses_bad_usage(args: list[str], message: str) -> None:
    done = buildyard("user", *args)
    assert done.returncode == 2
    assert message in done.stderr


def test_hash_password_is_buildbots_form() -> None:
    stored = hash_password("secret")
    salt, digest = stored[:16], stored[16:]
    assert digest == hashlib.sha1(b"secret" + salt.encode()).hexdigest()
    assert hash_password("secret")[:16] != salt  # a new salt each time
