"""steps.GitCommit, GitTag, GitPush, GitHub, GitLab and GitDiffInfo through real builds on both
workers, against repositories made with git; GitDiffInfo's data is compared with what Buildbot
4.3's own conversion (run in the stock Buildbot environment) makes of the same diff."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from buildyard.master.model.results import Results
from buildyard.testing.masters import running_master
from buildyard.testing.stock import buildbot_venv
from buildyard.testing.workers import KINDS
from tests.master.steps.test_git import commit, git, make_repo, stamp, succeeded

pytestmark = pytest.mark.parametrize("kind", KINDS)

HEADER = """\
from buildyard.plugins import steps
UP = {up!r}
IDENTITY = {{'user.name': 'CI Bot', 'user.email': 'ci@example.org'}}
c['builders'] = []


def builder(name, *steps_):
    c['builders'].append(util.BuilderConfig(
        name=name, workernames=['w1'], factory=util.BuildFactory(list(steps_))))

"""


def bare_upstream(tmp_path: Path) -> tuple[Path, Path, str]:
    """A work repository (main: a.txt) and a bare clone of it to build from and push to."""
    work = tmp_path / "work"
    first = make_repo(work, {"a.txt": "one\n"})
    up = tmp_path / "up.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(up))
    return work, up, first


async def test_commit_tag_and_push(tmp_path: Path, kind: str) -> None:
    _, up, first = bare_upstream(tmp_path)
    body = (
        HEADER.format(up=str(up))
        + """
checkout = steps.Git(repourl=UP, branch='main', mode='full', method='clobber')
builder('release',
    checkout,
    steps.StringDownload('generated\\n', workerdest='gen.txt'),
    steps.GitCommit(paths=['gen.txt'], messages=['Generated', 'by the build'], config=IDENTITY),
    steps.GitTag(tagName=util.Interpolate('v%(prop:buildnumber)s'), annotated=True,
                 messages=['Release', util.Interpolate('build %(prop:buildnumber)s')],
                 config=IDENTITY),
    steps.GitPush(repourl=UP, branch='main'),
    steps.GitPush(repourl=UP, branch=util.Interpolate('v%(prop:buildnumber)s'),
                  name='push tag'),
)
builder('ignore-empty',
    checkout,
    steps.GitCommit(paths=['a.txt'], messages=['nothing'], emptyCommits='ignore',
                    config=IDENTITY),
)
builder('disallow-empty',
    checkout,
    steps.GitCommit(paths=['a.txt'], messages=['nothing'], config=IDENTITY),
)
builder('allow-empty',
    checkout,
    steps.GitCommit(paths=['a.txt'], messages=['empty'], emptyCommits='create-empty-commit',
                    no_verify=True, config=IDENTITY),
    steps.GitPush(repourl=UP, branch='main'),
)
builder('detached',
    steps.Git(repourl=UP, mode='full', method='clobber'),
    steps.GitCommit(paths=['a.txt'], messages=['x'], config=IDENTITY),
)
builder('dash-path',
    checkout,
    steps.StringDownload('odd\\n', workerdest='--dry-run'),
    steps.GitCommit(paths=['--dry-run'], messages=['a file named --dry-run'], config=IDENTITY),
    steps.GitPush(repourl=UP, branch='main'),
)
builder('dash-tag', checkout, steps.GitTag(tagName='--list', config=IDENTITY))
builder('dash-branch', checkout, steps.GitPush(repourl=UP, branch=PWN))
builder('dash-remote', checkout, steps.GitPush(repourl=PWN, branch='main'))
"""
    )
    pwned = tmp_path / "PWNED"
    body = body.replace("UP = ", f"PWN = {f'--receive-pack=touch {pwned};'!r}\nUP = ", 1)
    async with running_master(tmp_path, body, worker=kind) as running:
        result = succeeded(await running.build("release"))
        number = result.build.number
        head = git(up, "rev-parse", "main")
        assert git(up, "rev-parse", "main~1") == first
        assert git(up, "log", "-1", "--format=%B", "main").strip() == "Generated\n\nby the build"
        assert git(up, "log", "-1", "--format=%an <%ae>", "main") == "CI Bot <ci@example.org>"
        assert git(up, "show", "main:gen.txt") == "generated"
        # an annotated tag of the new commit, with its two messages
        assert git(up, "cat-file", "-t", f"v{number}") == "tag"
        assert git(up, "rev-parse", f"v{number}^{{commit}}") == head
        assert git(up, "tag", "-l", "-n9", f"v{number}").split(None, 1)[1].split() == [
            "Release",
            "build",
            str(number),
        ]
        stdio = result.logs[("gitcommit", "stdio")]
        # (each git command with the step's config: git -c user.name=... <command>)
        assert "user.email=ci@example.org symbolic-ref HEAD" in stdio
        # (Buildbot runs 'git add <paths>'; a path starting with '-' would be an option there)
        assert "user.email=ci@example.org add -- gen.txt" in stdio
        assert "user.email=ci@example.org commit -m Generated -m" in stdio
        assert f"git push {up} main" in result.logs[("gitpush", "stdio")]

        # nothing to commit: 'ignore' succeeds without a commit, 'disallow' fails
        succeeded(await running.build("ignore-empty"))
        assert git(up, "rev-parse", "main") == head
        refused = await running.build("disallow-empty")
        assert refused.build.results == Results.FAILURE
        assert "nothing" in refused.logs[("gitcommit", "stdio")]
        result = succeeded(await running.build("allow-empty"))
        assert git(up, "rev-parse", "main~1") == head
        assert git(up, "log", "-1", "--format=%s", "main") == "empty"
        assert "--allow-empty --no-verify" in result.logs[("gitcommit", "stdio")]

        # a checkout of a revision: no branch to commit to
        detached = await running.build("detached", sourcestamps=stamp(revision=first))
        assert detached.build.results == Results.FAILURE
        assert "You are in detached HEAD" in detached.logs[("gitcommit", "stdio")]

        # a path starting with '-' is a path
        succeeded(await running.build("dash-path"))
        assert git(up, "show", "main:--dry-run") == "odd"
        # a tag, branch or remote starting with '-' fails the step, which names it; git
        # never sees it (Buildbot passes it on, and git takes it as an option)
        for builder, step, what in (
            ("dash-tag", "gittag", "tagName '--list'"),
            ("dash-branch", "gitpush", "branch '--receive-pack=touch"),
            ("dash-remote", "gitpush", "repourl '--receive-pack=touch"),
        ):
            refused = await running.build(builder)
            assert refused.build.results == Results.FAILURE
            stdio = refused.logs[(step, "stdio")]
            assert what in stdio
            assert "starts with '-', which git would take as an option" in stdio
        assert not pwned.exists()


async def test_github_merge_ref_and_gitlab_merge_request(tmp_path: Path, kind: str) -> None:
    work, up, first = bare_upstream(tmp_path)
    # a pull request: its head, and the merge GitHub computed (refs/pull/7/...)
    git(work, "checkout", "-q", "-b", "feature")
    head = commit(work, {"feature.txt": "f\n"}, "feature")
    git(work, "checkout", "-q", "main")
    git(work, "merge", "-q", "--no-ff", "-m", "Merge pull request #7", "feature")
    merge = git(work, "rev-parse", "HEAD")
    git(work, "push", "-q", str(up), f"{head}:refs/pull/7/head", f"{merge}:refs/pull/7/merge")
    # a fork with a merge request's source branch
    fork = tmp_path / "fork.git"
    git(tmp_path, "clone", "-q", "--bare", str(up), str(fork))
    git(work, "checkout", "-q", "-b", "mr-source", first)
    proposed = commit(work, {"mr.txt": "mr\n"}, "proposed")
    git(work, "push", "-q", str(fork), "mr-source")

    body = (
        HEADER.format(up=str(up))
        + """
builder('github', steps.GitHub(repourl=UP, mode='full', method='clobber'))
builder('gitlab', steps.GitLab(repourl=UP, mode='full', method='clobber'))
"""
    )
    async with running_master(tmp_path, body, worker=kind) as running:
        # a merge ref: what it names now, not the change's (head) revision
        result = succeeded(
            await running.build(
                "github", sourcestamps=stamp(branch="refs/pull/7/merge", revision=head)
            )
        )
        assert result.properties["got_revision"][0] == merge
        # any other branch: the revision, as steps.Git does
        result = succeeded(
            await running.build("github", sourcestamps=stamp(branch="refs/pull/7/head"))
        )
        assert result.properties["got_revision"][0] == head
        result = succeeded(
            await running.build(
                "github", sourcestamps=stamp(branch="refs/pull/7/head", revision=first)
            )
        )
        assert result.properties["got_revision"][0] == first

        # a merge request (the GitLab hook's properties): the source branch of the fork
        properties = {
            "target_branch": "main",
            "source_branch": "mr-source",
            "source_git_ssh_url": str(fork),
            "target_git_ssh_url": str(up),
        }
        result = succeeded(
            await running.build(
                "gitlab",
                properties=properties,
                sourcestamps=stamp(branch="main", revision=merge),
            )
        )
        assert result.properties["got_revision"][0] == proposed
        assert f"clone --branch mr-source {fork} ." in result.logs[("git", "stdio")]
        # not a merge request: the stamp's branch and revision
        result = succeeded(
            await running.build("gitlab", sourcestamps=stamp(branch="main", revision=first))
        )
        assert result.properties["got_revision"][0] == first


STOCK_CONVERSION = """
import json, sys
from unidiff import PatchSet
from buildbot.steps.gitdiffinfo import GitDiffInfo
step = GitDiffInfo.__new__(GitDiffInfo)
print(json.dumps(step._convert_patchset(PatchSet(sys.stdin.read(), metadata_only=True))))
"""


async def test_git_diff_info(tmp_path: Path, kind: str) -> None:
    work, up, _ = bare_upstream(tmp_path)
    git(work, "checkout", "-q", "-b", "topic")
    base = commit(work, {"b.txt": "1\n2\n3\n4\n5\n", "gone.txt": "bye\n"}, "base")
    git(work, "checkout", "-q", "main")
    git(work, "merge", "-q", "topic")
    commit(work, {"c.txt": "on main\n"}, "more on main")
    git(work, "push", "-q", str(up), "main")
    git(work, "checkout", "-q", "topic")
    git(work, "rm", "-q", "gone.txt")
    (work / "bin.dat").write_bytes(bytes(range(256)))
    commit(work, {"b.txt": "1\nTWO\n3\n4\nFIVE\n", "new.txt": "x\n"}, "topic work")
    # a pure rename, and a file removed
    (work / "moved").mkdir()
    git(work, "mv", "a.txt", "moved/a.txt")
    git(work, "commit", "-q", "-m", "move")
    git(work, "push", "-q", str(up), "topic")

    body = (
        HEADER.format(up=str(up))
        + """
builder('diffinfo',
    steps.Git(repourl=UP, branch='topic', mode='full', method='clobber'),
    steps.GitDiffInfo(compareToRef='origin/main', dataName='diff'),
)
"""
    )
    async with running_master(tmp_path, body, worker=kind) as running:
        result = succeeded(await running.build("diffinfo"))
        assert result.properties["diffinfo-merge-base-commit"] == (base, "GitDiffInfo")
        stored = await running.master.db.builds.get_build_data(result.build.id, "diff")
        assert stored is not None and stored.source == "GitDiffInfo"
        assert stored.value is not None
        ours = json.loads(stored.value)
        diff = result.stdout("GitDiffInfo", "stdio-diff")
    names = {(f["source_file"], f["target_file"]) for f in ours}
    assert names == {
        ("/dev/null", "bin.dat"),
        ("/dev/null", "new.txt"),
        ("gone.txt", "/dev/null"),
        ("b.txt", "b.txt"),
        ("a.txt", "moved/a.txt"),
    }
    changed = next(f for f in ours if f["target_file"] == "b.txt")
    assert changed["hunks"] == [
        {"ss": 2, "sl": 1, "ts": 2, "tl": 1},
        {"ss": 5, "sl": 1, "ts": 5, "tl": 1},
    ]
    binary = next(f for f in ours if f["target_file"] == "bin.dat")
    assert binary["is_binary"] is True
    # what Buildbot 4.3 stores for the same diff
    theirs = await asyncio.to_thread(
        subprocess.run,
        [str(buildbot_venv() / "bin" / "python"), "-c", STOCK_CONVERSION],
        input=diff + "\n",
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert ours == json.loads(theirs.stdout)
