"""GerritStatusPush on a real master with a real worker, against a real sshd on loopback (Debian's
openssh-server) whose ``command=`` in authorized_keys plays Gerrit's ssh commands: it records
each command it is given and answers ``gerrit version`` as Gerrit does."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import getpass
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import structlog

from buildyard.master.model.results import Results
from buildyard.master.reporters.gerrit import GerritStatusPush
from buildyard.testing.masters import running_master
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import end_popen, eventually

SSHD = "/usr/sbin/sshd"
SHA = "0123456789abcdef0123456789abcdef01234567"

pytestmark = pytest.mark.skipif(
    not (os.path.exists(SSHD) and shutil.which("ssh") and os.geteuid() == 0),
    reason="needs Debian's openssh-server and root to start sshd (.ci/run installs it)",
)

GERRIT = """#!/bin/sh
printf '%s\\n@@\\n' "$SSH_ORIGINAL_COMMAND" >> DIR/commands
case "$SSH_ORIGINAL_COMMAND" in
    "gerrit version") echo "gerrit version 3.9.1" ;;
    *) if [ -e DIR/refuse ]; then echo "fatal: \\"$SHA\\" no such change" >&2; exit 1; fi ;;
esac
"""


@dataclasses.dataclass
class Gerrit:
    port: int
    identity: Path
    known_hosts: Path
    commands: Path
    refuse: Path

    def received(self) -> list[str]:
        """The commands sshd was given, in order (a message may span lines)."""
        if not self.commands.exists():
            return []
        return self.commands.read_text().split("\n@@\n")[:-1]


def _prepare(root: Path) -> Gerrit:
    root.mkdir()
    for key in ("hostkey", "client"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / key)], check=True
        )
    script = root / "gerrit.sh"
    script.write_text(GERRIT.replace("DIR", str(root)))
    script.chmod(0o755)
    client_key = (root / "client.pub").read_text().strip()
    (root / "authorized_keys").write_text(
        f'command="{script}",no-pty,no-port-forwarding,no-agent-forwarding {client_key}\n'
    )
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    return Gerrit(0, root / "client", root / "known_hosts", root / "commands", root / "refuse")


def _start_sshd(root: Path, port: int) -> subprocess.Popen[bytes]:
    command = [SSHD, "-D", "-e", "-f", "/dev/null", "-p", str(port), "-h", str(root / "hostkey")]
    for option in (
        "ListenAddress=127.0.0.1",
        f"AuthorizedKeysFile={root / 'authorized_keys'}",
        "StrictModes=no",
        f"PidFile={root / 'sshd.pid'}",
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


@contextlib.asynccontextmanager
async def gerrit_sshd(root: Path) -> AsyncIterator[Gerrit]:
    """sshd on a free port; started again on another one (at most five times) when another
    process took the port before sshd could bind it (sshd then exits)."""
    gerrit = await asyncio.to_thread(_prepare, root)
    sshd: subprocess.Popen[bytes] | None = None
    for _ in range(5):
        port = free_port()
        sshd = await asyncio.to_thread(_start_sshd, root, port)

        def listening(proc: subprocess.Popen[bytes] = sshd, port: int = port) -> bool:
            if proc.poll() is not None:
                return True  # exited: the port was taken
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        await eventually(listening, within=30)
        if sshd.poll() is None:
            break
        end_popen(sshd)
        sshd = None
    if sshd is None:
        raise RuntimeError((root / "sshd.log").read_text())
    host_key = " ".join((root / "hostkey.pub").read_text().split()[:2])
    gerrit.known_hosts.write_text(f"[127.0.0.1]:{port} {host_key}\n")
    gerrit = dataclasses.replace(gerrit, port=port)
    try:
        yield gerrit
    finally:
        end_popen(sshd)


async def test_gerrit_reviews_over_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with gerrit_sshd(tmp_path / "gerrit") as gerrit:
        # no interactive host key question: the test's known_hosts holds the sshd's key
        monkeypatch.setattr(
            GerritStatusPush,
            "ssh_options",
            ("-o", f"UserKnownHostsFile={gerrit.known_hosts}", "-o", "StrictHostKeyChecking=yes"),
        )
        config = f"""
c['buildbotURL'] = 'http://ci.example/'
c['builders'] = [
    util.BuilderConfig(name='ok', workernames=['w1'],
                       factory=util.BuildFactory([steps.ShellCommand(command=['true'])])),
    util.BuilderConfig(name='bad', workernames=['w1'],
                       factory=util.BuildFactory([steps.ShellCommand(command=['false'])])),
]
c['services'] = [
    reporters.GerritStatusPush('127.0.0.1', {getpass.getuser()!r}, port={gerrit.port},
                               identity_file={str(gerrit.identity)!r}, notify='OWNER'),
]
"""
        change = {
            "event.change.id": "I0123",
            "event.change.project": "octo/hello",
            "event.patchSet.revision": SHA,
        }
        async with running_master(tmp_path, config) as run:
            result = await run.build("ok", properties=change)
            await eventually(lambda: len(gerrit.received()) >= 2, within=60)
            # a build of no Gerrit change is not reviewed
            plain = await run.build("ok")
            gerrit.refuse.touch()
            with structlog.testing.capture_logs() as logs:
                bad = await run.build("bad", properties=change)

                def refused() -> bool:
                    return any(e["event"] == "reporter_push_refused" for e in logs)

                await eventually(refused, within=60)
    assert (result.build.results, plain.build.results, bad.build.results) == (
        Results.SUCCESS,
        Results.SUCCESS,
        Results.FAILURE,
    )
    version, review, second = gerrit.received()  # the version is asked once, then cached
    assert version == "gerrit version"
    url = f"http://ci.example/#/builders/{result.build.builderid}/builds/{result.build.number}"
    prefix = "gerrit review --project octo/hello --tag autogenerated:buildbot --notify OWNER "
    assert review.startswith(prefix + "--message 'ok: succeeded (")
    assert review.endswith(f") {url}' --label Verified=1 {SHA}")
    assert second.startswith(prefix + "--message 'bad: failed (")
    assert second.endswith(f"' --label Verified=-1 {SHA}")
    [line] = [e for e in logs if e["event"] == "reporter_push_refused"]
    assert line["reporter"] == "GerritStatusPush"
    assert line["buildid"] == bad.build.id
    assert line["exit_code"] == 1
    assert "no such change" in line["answer"]


async def test_gerrit_generators_and_callbacks_from_buildbot_reporters_gerrit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with gerrit_sshd(tmp_path / "gerrit") as gerrit:
        monkeypatch.setattr(
            GerritStatusPush,
            "ssh_options",
            ("-o", f"UserKnownHostsFile={gerrit.known_hosts}", "-o", "StrictHostKeyChecking=yes"),
        )
        config = f"""
from buildbot.reporters.gerrit import (
    GerritBuildEndStatusGenerator, GerritBuildStartStatusGenerator, defaultReviewCB,
    makeReviewResult,
)

def started(builder_name, build, arg):
    return makeReviewResult(arg + ' ' + builder_name)

c['builders'] = [
    util.BuilderConfig(name='ok', workernames=['w1'],
                       factory=util.BuildFactory([steps.ShellCommand(command=['true'])])),
]
c['services'] = [
    reporters.GerritStatusPush('127.0.0.1', {getpass.getuser()!r}, port={gerrit.port},
                               identity_file={str(gerrit.identity)!r}, generators=[
        GerritBuildStartStatusGenerator(callback=started, callback_arg='Building'),
        GerritBuildEndStatusGenerator(callback=defaultReviewCB),
    ]),
]
"""
        change = {
            "event.change.id": "I0123",
            "event.change.project": "octo/hello",
            "got_revision": SHA,  # no event.patchSet.revision: the next one Buildbot reads
        }
        async with running_master(tmp_path, config) as run:
            result = await run.build("ok", properties=change)
            await eventually(lambda: len(gerrit.received()) >= 3, within=60)
    assert result.build.results == Results.SUCCESS
    version, start, end = gerrit.received()
    assert version == "gerrit version"
    prefix = "gerrit review --project octo/hello --tag autogenerated:buildbot "
    # a review with no labels sends none
    assert start == prefix + f"--message 'Building ok' {SHA}"
    assert end.startswith(prefix + "--message '")
    assert "SUCCESS" in end
    assert end.endswith(f"' --label Verified=1 {SHA}")
