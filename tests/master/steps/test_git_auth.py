"""steps.Git with credentials, through real builds on both workers: a private repository
behind a real sshd (key given as a secret) and behind git's smart HTTP with Basic auth."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from buildyard.master.model.results import Results
from buildyard.testing.gitservers import SSHD, http_git_server, ssh_git_server
from buildyard.testing.masters import BuildResult, running_master
from buildyard.testing.processes import eventually
from buildyard.testing.workers import STOCK_PB
from tests.master.steps.test_git import commit, git, got, make_repo

# The stock worker over msgpack_experimental_v7 writes every message it gets, file contents
# and stdin included, into its twistd.log (its debug switch is always on), so a key sent to it
# would be left there: the stock worker is run with its default protocol, PB, which does not.
pytestmark = pytest.mark.parametrize("kind", ["buildyard", STOCK_PB])


def write_secrets(directory: Path, secrets: dict[str, str]) -> None:
    directory.mkdir(mode=0o700)
    for name, value in secrets.items():
        path = directory / name
        path.write_text(value)
        path.chmod(0o600)


def everything_stored(result: BuildResult) -> str:
    """What the build left in the database: logs, properties, state strings, step names."""
    parts = [*result.logs.values(), repr(result.properties), str(result.build.state_string)]
    parts += [f"{s.name} {s.state_string} {s.urls}" for s in result.steps]
    return "\n".join(parts)


def files_containing(tmp_path: Path, text: str) -> list[Path]:
    """The files of the worker (its directory and its log) and of the master (its database
    included; not master.cfg, where a test may write a password) that hold ``text``."""
    paths = [tmp_path / "worker.log"]
    for root in (tmp_path / "worker", tmp_path / "master"):
        paths += [p for p in root.rglob("*") if p.name != "master.cfg"]
    return [
        path
        for path in paths
        if path.is_file() and not path.is_symlink() and text.encode() in path.read_bytes()
    ]


def auth_dirs(worker_dir: Path) -> list[Path]:
    return [p for p in worker_dir.rglob("*.buildbot") if p.is_dir()]


def key_body(key: str) -> str:
    """A line from the middle of a private key: what a leak would show."""
    return key.splitlines()[2]


@pytest.mark.skipif(not SSHD.exists(), reason="needs Debian's openssh-server (.ci/run installs it)")
async def test_ssh_key_as_secret_builds_a_private_repository(tmp_path: Path, kind: str) -> None:
    repo = tmp_path / "repo"
    first = make_repo(repo, {"a.txt": "one\n"})
    with ssh_git_server(tmp_path / "sshd") as server:
        # an ``ssh`` on the PATH of one builder that records the key file's mode and owner, then
        # runs the real ssh
        bindir = tmp_path / "bin"
        bindir.mkdir()
        modes = tmp_path / "key-modes"
        (bindir / "ssh").write_text(
            "#!/bin/sh\n"
            'prev=""; for a in "$@"; do [ "$prev" = "-i" ] && key="$a"; prev="$a"; done\n'
            f'stat -c "%a %u $key" "$key" >> {modes}\n'
            'exec /usr/bin/ssh "$@"\n'
        )
        (bindir / "ssh").chmod(0o755)
        write_secrets(
            tmp_path / "secrets",
            {"gitkey": server.client_key, "otherkey": server.other_key},
        )
        url = server.url(repo)
        host_key = server.host_key
        body = "\n".join(
            [
                "from buildyard.master.steps.source.git import Git",
                f"c['secretsProviders'] = [secrets.SecretInAFile({str(tmp_path / 'secrets')!r})]",
                f"URL, HOST = {url!r}, {host_key!r}",
                "c['builders'] = []",
                "def add(name, step):",
                "    f = util.BuildFactory()",
                "    f.addStep(step)",
                "    c['builders'].append(util.BuilderConfig(name=name, workernames=['w1'],"
                " factory=f))",
                f"PATH = {f'{bindir}:' + os.environ['PATH']!r}",
                "add('ssh', Git(repourl=URL, sshPrivateKey=util.Secret('gitkey'),"
                " sshHostKey=HOST, env={'PATH': PATH}))",
                "add('known', Git(repourl=URL, mode='full', method='clobber',"
                " sshPrivateKey=util.Secret('gitkey'),"
                " sshKnownHosts=util.Interpolate('[127.0.0.1]:%(kw:port)s %(kw:key)s',"
                f" port={server.port}, key=HOST)))",
                "add('wrongkey', Git(repourl=URL, sshPrivateKey=util.Secret('otherkey'),"
                " sshHostKey=HOST))",
                # the server's key is not the one given: ssh refuses to talk to it
                "add('wronghost', Git(repourl=URL, sshPrivateKey=util.Secret('gitkey'),"
                f" sshHostKey={server.other_public!r}))",
                "",
            ]
        )
        async with running_master(tmp_path, body, worker=kind) as running:
            work = running.worker_dir
            result = await running.build("ssh")
            assert result.build.results == Results.SUCCESS, result.logs
            assert got(result) == first
            assert (work / "ssh" / "build" / "a.txt").read_text() == "one\n"
            stdio = result.logs[("git", "stdio")]
            # the key went through a file beside the work directory, as Buildbot puts it
            auth_dir = work / ".ssh.build.buildbot"
            assert f'-i "{auth_dir}/ssh-key"' in stdio
            assert f'UserKnownHostsFile={auth_dir}/ssh-known-hosts"' in stdio
            # readable by the worker's user only
            assert modes.read_text().splitlines() == [f"400 {os.getuid()} {auth_dir}/ssh-key"]

            second = commit(repo, {"a.txt": "two\n"}, "second")
            again = await running.build("ssh")
            assert again.build.results == Results.SUCCESS, again.logs
            assert got(again) == second
            assert " fetch -f " in again.logs[("git", "stdio")]

            known = await running.build("known")
            assert known.build.results == Results.SUCCESS, known.logs
            assert got(known) == second

            wrongkey = await running.build("wrongkey")
            wronghost = await running.build("wronghost")
            for failed in (wrongkey, wronghost):
                assert failed.build.results == Results.FAILURE
                assert failed.step("git").state_string == "update (failure)"
            assert "Permission denied (publickey)" in wrongkey.logs[("git", "stdio")]
            assert "Host key verification failed" in wronghost.logs[("git", "stdio")]

        results = (result, again, known, wrongkey, wronghost)
        for key in (server.client_key, server.other_key):
            for built in results:
                assert key_body(key) not in everything_stored(built)
            # nothing left on the worker: no key file, no directory for it
            assert files_containing(tmp_path, key_body(key)) == []
        assert auth_dirs(work) == []


async def test_http_credentials_auth_and_git_credentials(tmp_path: Path, kind: str) -> None:
    repo = tmp_path / "repo"
    first = make_repo(repo, {"a.txt": "one\n"})
    root = tmp_path / "served"
    root.mkdir()
    git(root, "clone", "-q", "--bare", str(repo), "private.git")
    password = "pw-3f9c1e77a2b4"
    write_secrets(tmp_path / "secrets", {"httppass": password})
    async with http_git_server(root, "alice", password) as server:
        url = server.url("private.git")
        body = "\n".join(
            [
                "from buildyard.master.steps.source.git import Git",
                f"c['secretsProviders'] = [secrets.SecretInAFile({str(tmp_path / 'secrets')!r})]",
                f"URL = {url!r}",
                "c['builders'] = []",
                "def add(name, step):",
                "    f = util.BuildFactory()",
                "    f.addStep(step)",
                "    c['builders'].append(util.BuilderConfig(name=name, workernames=['w1'],"
                " factory=f))",
                "add('auth', Git(repourl=URL,"
                " auth_credentials=('alice', util.Secret('httppass'))))",
                "add('creds', Git(repourl=URL, mode='full', method='clobber',"
                " git_credentials=util.GitCredentialOptions(credentials=["
                "util.GitCredentialInputRenderer(username='alice',"
                " password=util.Secret('httppass'), url=URL)], use_http_path=True)))",
                "add('wrong', Git(repourl=URL, env={'GIT_TERMINAL_PROMPT': '0'},"
                " auth_credentials=('alice', 'not-the-password')))",
                "",
            ]
        )
        async with running_master(tmp_path, body, worker=kind) as running:
            work = running.worker_dir
            auth = await running.build("auth")
            assert auth.build.results == Results.SUCCESS, auth.logs
            assert got(auth) == first
            second = commit(repo, {"a.txt": "two\n"}, "second")
            git(repo, "push", "-q", str(root / "private.git"), "main")
            again = await running.build("auth")
            assert again.build.results == Results.SUCCESS, again.logs
            assert got(again) == second
            assert "credential.helper=store" in again.logs[("git", "stdio")]
            creds = await running.build("creds")
            assert creds.build.results == Results.SUCCESS, creds.logs
            assert got(creds) == second
            assert (work / "creds" / "build" / "a.txt").read_text() == "two\n"
            assert "credential.useHttpPath=true" in creds.logs[("git", "stdio")]
            # git asked without credentials first, and the server refused it
            assert server.refused
            assert server.served
            wrong = await running.build("wrong")
            assert wrong.build.results == Results.FAILURE
            assert "Authentication failed" in wrong.logs[("git", "stdio")]

    for built in (auth, again, creds, wrong):
        assert password not in everything_stored(built)
        assert "not-the-password" not in everything_stored(built)
    assert files_containing(tmp_path, password) == []
    assert files_containing(tmp_path, "not-the-password") == []
    assert auth_dirs(work) == []


async def test_a_stopped_build_leaves_no_key_behind(tmp_path: Path, kind: str) -> None:
    # an ``ssh`` that says it started, then waits for the test (at most 60 s) before giving up
    bindir = tmp_path / "bin"
    bindir.mkdir()
    started, go = tmp_path / "started", tmp_path / "go"
    (bindir / "ssh").write_text(
        "#!/bin/sh\n"
        f"touch {started}\n"
        f"i=0; while [ ! -e {go} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n"
        "exit 255\n"
    )
    (bindir / "ssh").chmod(0o755)
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LWtleS1ib2R5LTQyOTE3\n-----END"
    write_secrets(tmp_path / "secrets", {"gitkey": key + " OPENSSH PRIVATE KEY-----\n"})
    body = "\n".join(
        [
            "from buildyard.master.steps.source.git import Git",
            f"c['secretsProviders'] = [secrets.SecretInAFile({str(tmp_path / 'secrets')!r})]",
            f"PATH = {f'{bindir}:' + os.environ['PATH']!r}",
            "f = util.BuildFactory()",
            "f.addStep(Git(repourl='ssh://git@127.0.0.1:9/repo.git',"
            " sshPrivateKey=util.Secret('gitkey'), env={'PATH': PATH}))",
            "c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], factory=f)]",
            "",
        ]
    )
    async with running_master(tmp_path, body, worker=kind) as running:
        master = running.master
        updates = master.data.updates
        builderid = await updates.find_builder_id("b")
        async with master.mq.subscribe(("buildsets", None, "complete")) as completed:
            _, brids = await updates.add_buildset(
                scheduler="test",
                sourcestamps=[
                    {
                        "branch": None,
                        "revision": None,
                        "repository": "",
                        "project": "",
                        "codebase": "",
                    }
                ],
                reason="test",
                properties={},
                builderids=[builderid],
            )
            buildid = await running.started_build(brids[builderid])
            await eventually(started.exists, within=60)
            # the clone is under way: the key is on the worker
            auth_dir = running.worker_dir / ".b.build.buildbot"
            assert (auth_dir / "ssh-key").exists()
            assert await master.botmaster.brd.stop_build(buildid, "enough")
            async with asyncio.timeout(120):
                await completed.get()
        go.touch()
        result = await running.result(buildid)
    assert result.build.results == Results.CANCELLED
    assert not auth_dir.exists()
    assert files_containing(tmp_path, "c2VjcmV0LWtleS1ib2R5LTQyOTE3") == []
