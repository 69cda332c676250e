"""A private repository end to end: the GitPoller and the Git step of a master (real sshd, key
as a secret from a SecretInAFile provider) turn a new commit into a build that checks it out."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from buildyard.master.model.results import Results
from buildyard.testing.gitservers import SSHD, ssh_git_server
from buildyard.testing.masters import running_master
from buildyard.testing.processes import eventually
from tests.master.steps.test_git import commit, got, make_repo
from tests.master.steps.test_git_auth import files_containing, key_body, write_secrets


@pytest.mark.skipif(not SSHD.exists(), reason="needs Debian's openssh-server (.ci/run installs it)")
async def test_poller_and_step_on_a_private_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    make_repo(repo, {"a.txt": "one\n"})
    with ssh_git_server(tmp_path / "sshd") as server:
        write_secrets(tmp_path / "secrets", {"gitkey": server.client_key})
        body = "\n".join(
            [
                f"c['secretsProviders'] = [secrets.SecretInAFile({str(tmp_path / 'secrets')!r})]",
                f"URL, HOST = {server.url(repo)!r}, {server.host_key!r}",
                "KEY = util.Secret('gitkey')",
                "c['change_source'] = [changes.GitPoller(URL, branches=['main'],"
                " pollInterval=3600, pollAtLaunch=True, sshPrivateKey=KEY, sshHostKey=HOST)]",
                "c['schedulers'] = [schedulers.SingleBranchScheduler(name='s',"
                " builderNames=['b'], change_filter=util.ChangeFilter(branch='main'))]",
                "f = util.BuildFactory()",
                "f.addStep(steps.Git(repourl=URL, sshPrivateKey=KEY, sshHostKey=HOST))",
                "c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], factory=f)]",
                "",
            ]
        )
        async with running_master(tmp_path, body) as running:
            master = running.master
            updates = master.data.updates
            objectid = await updates.get_object_id(server.url(repo), "GitPoller")

            async def first_poll_done() -> bool:
                return bool(await updates.get_state(objectid, "lastRev", {}))

            # the first poll only records the head
            await eventually(first_poll_done, within=60)
            new = commit(repo, {"a.txt": "two\n"}, "second")
            async with master.mq.subscribe(("buildsets", None, "complete")) as completed:
                [poller] = [s for s in master.change_svc if hasattr(s, "force")]
                poller.force()
                async with asyncio.timeout(120):
                    await completed.get()
            [build] = await master.db.builds.get_builds()
            result = await running.result(build.id)
            assert result.build.results == Results.SUCCESS, result.logs
            assert got(result) == new
            [change] = await master.db.changes.get_changes()
            assert change.revision == new
    assert (running.worker_dir / "b" / "build" / "a.txt").read_text() == "two\n"
    assert files_containing(tmp_path, key_body(server.client_key)) == []
    assert not list((running.basedir / "gitpoller-work").glob(".buildyard-auth-*"))


@pytest.mark.skipif(not SSHD.exists(), reason="needs Debian's openssh-server (.ci/run installs it)")
async def test_commit_and_push_to_a_private_repository(tmp_path: Path) -> None:
    """steps.GitPush with the ssh key as a secret: the build's commit reaches the repository
    over ssh, and the key is nowhere on the worker afterwards."""
    work = tmp_path / "work"
    first = make_repo(work, {"a.txt": "one\n"})
    up = tmp_path / "up.git"
    await asyncio.to_thread(
        subprocess.run, ["git", "clone", "-q", "--bare", str(work), str(up)], check=True
    )
    with ssh_git_server(tmp_path / "sshd") as server:
        write_secrets(tmp_path / "secrets", {"gitkey": server.client_key})
        body = "\n".join(
            [
                f"c['secretsProviders'] = [secrets.SecretInAFile({str(tmp_path / 'secrets')!r})]",
                f"URL, HOST = {server.url(up)!r}, {server.host_key!r}",
                "KEY = util.Secret('gitkey')",
                "ID = {'user.name': 'CI Bot', 'user.email': 'ci@example.org'}",
                "f = util.BuildFactory()",
                "f.addStep(steps.Git(repourl=URL, branch='main', sshPrivateKey=KEY,"
                " sshHostKey=HOST))",
                "f.addStep(steps.StringDownload('built\\n', workerdest='out.txt'))",
                "f.addStep(steps.GitCommit(paths=['out.txt'], messages=['Built'], config=ID))",
                "f.addStep(steps.GitPush(repourl=URL, branch='main', sshPrivateKey=KEY,"
                " sshHostKey=HOST))",
                "c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], factory=f)]",
                "",
            ]
        )
        async with running_master(tmp_path, body) as running:
            result = await running.build("b")
            assert result.build.results == Results.SUCCESS, result.logs
    listing = await asyncio.to_thread(
        subprocess.run,
        ["git", "log", "--format=%H %s", "main"],
        cwd=up,
        check=True,
        capture_output=True,
        text=True,
    )
    git_log = listing.stdout.split("\n")
    assert git_log[0].endswith(" Built") and git_log[1] == f"{first} first"
    assert "core.sshCommand=" in result.logs[("gitpush", "stdio")]
    assert files_containing(tmp_path, key_body(server.client_key)) == []
