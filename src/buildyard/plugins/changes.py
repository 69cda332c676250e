"""``changes``: change sources (pollers, mail, PB); issue 4."""

from __future__ import annotations

from typing import Any

from buildyard.master.changes.gerrit import GerritChangeSource, GerritEventLogPoller
from buildyard.master.changes.gitpoller import GitPoller
from buildyard.master.changes.pb import PBChangeSource
from buildyard.master.changes.pullrequests import (
    BitbucketPullrequestPoller,
    GitHubPullrequestPoller,
)
from buildyard.plugins._namespace import CHANGES, placeholders, unknown_name

__all__ = [
    "BitbucketPullrequestPoller",
    "GerritChangeSource",
    "GerritEventLogPoller",
    "GitHubPullrequestPoller",
    "GitPoller",
    "PBChangeSource",
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

# Every name not imported above is a stand-in until its issue implements it.
globals().update(placeholders("changes", {n: CHANGES for n in _NAMES if n not in globals()}))


def __getattr__(name: str) -> Any:
    raise unknown_name("changes", name, _NAMES)
