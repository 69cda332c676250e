"""steps.Gerrit through real builds: it checks out the Gerrit change's ref (from the
``event.patchSet.ref`` or ``gerrit_change`` property) of a real repository that has Gerrit's
``refs/changes/...`` refs, and is the plain Git step for any other source stamp."""

from __future__ import annotations

from pathlib import Path

from buildyard.master.model.results import Results
from buildyard.master.model.sourcestamps import SourceStampSpec
from buildyard.master.steps.source.gerrit import change_ref
from buildyard.testing.masters import running_master
from tests.master.steps.test_git import commit, git, make_repo

PROJECT = "octo/hello"


def _stamp(repo: Path, project: str = PROJECT) -> list[SourceStampSpec]:
    return [
        {
            "branch": "main",
            "revision": None,
            "repository": str(repo),
            "project": project,
            "codebase": "",
        }
    ]


async def test_gerrit_step_checks_out_the_change(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    main = make_repo(repo, {"a.txt": "main\n"})
    git(repo, "checkout", "-q", "-b", "change")
    patchset = commit(repo, {"a.txt": "patch set 2\n"}, "Fix the frobnicator")
    git(repo, "update-ref", "refs/changes/45/12345/2", patchset)
    git(repo, "checkout", "-q", "main")
    git(repo, "branch", "-q", "-D", "change")
    config = f"""
c['builders'] = [util.BuilderConfig(name='gerrit', workernames=['w1'], factory=util.BuildFactory([
    steps.Gerrit(repourl={str(repo)!r}, mode='full', method='clobber'),
    steps.ShellCommand(name='show', command=['cat', 'a.txt']),
]))]
"""
    async with running_master(tmp_path, config) as run:
        by_ref = await run.build(
            "gerrit",
            properties={
                "event.change.project": PROJECT,
                "event.patchSet.ref": change_ref(12345, 2),
            },
            sourcestamps=_stamp(repo),
        )
        by_number = await run.build(
            "gerrit",
            properties={"event.change.project": PROJECT, "gerrit_change": "12345/2"},
            sourcestamps=_stamp(repo),
        )
        # the stamp is of another project: the event's ref is not this repository's
        other = await run.build(
            "gerrit",
            properties={
                "event.change.project": PROJECT,
                "event.patchSet.ref": change_ref(12345, 2),
            },
            sourcestamps=_stamp(repo, "other/project"),
        )
        plain = await run.build("gerrit", sourcestamps=_stamp(repo))
    results = [r.build.results for r in (by_ref, by_number, other, plain)]
    assert results == [Results.SUCCESS] * 4
    for result in (by_ref, by_number):
        assert result.stdout("show") == "patch set 2\n"
        assert result.properties["got_revision"][0] == patchset
        assert result.properties["gerrit_branch"] == ("refs/changes/45/12345/2", "Gerrit")
    for result in (other, plain):
        assert result.stdout("show") == "main\n"
        assert result.properties["got_revision"][0] == main
        assert "gerrit_branch" not in result.properties


def test_change_refs_follow_gerrit() -> None:
    assert change_ref(12345, 2) == "refs/changes/45/12345/2"
    # Gerrit pads the last two digits with a zero (Buildbot 4.3 pads a one-digit change with a
    # space, a ref Gerrit does not have)
    assert change_ref(5, 1) == "refs/changes/05/5/1"
    assert change_ref(100, 3) == "refs/changes/00/100/3"
