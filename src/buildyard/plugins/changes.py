"""``changes``: change sources (pollers, mail, PB); issue 4."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from buildyard.plugins._namespace import CHANGES, LazyNames

if TYPE_CHECKING:
    from buildyard.master.changes.gerrit import GerritChangeSource, GerritEventLogPoller
    from buildyard.master.changes.gitpoller import GitPoller
    from buildyard.master.changes.hgpoller import HgPoller
    from buildyard.master.changes.pb import PBChangeSource
    from buildyard.master.changes.pullrequests import (
        BitbucketPullrequestPoller,
        GitHubPullrequestPoller,
    )
    from buildyard.master.changes.svnpoller import SVNPoller

__all__ = [
    "BitbucketPullrequestPoller",
    "GerritChangeSource",
    "GerritEventLogPoller",
    "GitHubPullrequestPoller",
    "GitPoller",
    "HgPoller",
    "PBChangeSource",
    "SVNPoller",
]

# Buildbot 4.3's names in this namespace.
_NAMES = [
    "BitbucketPullrequestPoller",
    "BzrLaunchpadEmailMaildirSource",
    "CVSMaildirSource",
    "GerritChangeSource",
    "GerritEventLogPoller",
    "GitHubPullrequestPoller",
    "GitPoller",
    "HgPoller",
    "MaildirSource",
    "P4Source",
    "PBChangeSource",
    "SVNCommitEmailMaildirSource",
    "SVNPoller",
]

# Each name is resolved when master.cfg first uses it (buildyard.plugins._namespace.LazyNames):
# the implemented ones from these modules, the others as stand-ins until buildyard has them.
_LAZY = LazyNames(
    "changes",
    store=globals(),
    known=_NAMES,
    sources={
        "GerritChangeSource": "buildyard.master.changes.gerrit",
        "GerritEventLogPoller": "buildyard.master.changes.gerrit",
        "GitPoller": "buildyard.master.changes.gitpoller",
        "HgPoller": "buildyard.master.changes.hgpoller",
        "PBChangeSource": "buildyard.master.changes.pb",
        "BitbucketPullrequestPoller": "buildyard.master.changes.pullrequests",
        "GitHubPullrequestPoller": "buildyard.master.changes.pullrequests",
        "SVNPoller": "buildyard.master.changes.svnpoller",
    },
    features=CHANGES,
)


def __getattr__(name: str) -> Any:
    return _LAZY.resolve(name)


def __dir__() -> list[str]:
    return _LAZY.names()
