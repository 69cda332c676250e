"""``webhooks``: the change hook dialects, by their ``c['www']['change_hook_dialects']`` names
(Buildbot's ``buildbot.webhooks`` entry points). Subclass one for a ``custom_class``."""

from __future__ import annotations

from typing import Any

from buildyard.master.changes.hooks.base import BaseHookHandler
from buildyard.master.changes.hooks.bitbucket import (
    BitbucketCloudEventHandler,
    BitBucketHandler,
    BitbucketServerEventHandler,
)
from buildyard.master.changes.hooks.github import GitHubHandler
from buildyard.master.changes.hooks.gitlab import GitLabHandler
from buildyard.master.changes.hooks.gitorious import GitoriousHandler
from buildyard.master.changes.hooks.poller import PollingHandler
from buildyard.plugins._namespace import unknown_name

__all__ = [
    "base",
    "bitbucket",
    "bitbucketcloud",
    "bitbucketserver",
    "github",
    "gitlab",
    "gitorious",
    "poller",
]

base = BaseHookHandler
bitbucket = BitBucketHandler
bitbucketcloud = BitbucketCloudEventHandler
bitbucketserver = BitbucketServerEventHandler
github = GitHubHandler
gitlab = GitLabHandler
gitorious = GitoriousHandler
poller = PollingHandler


def __getattr__(name: str) -> Any:
    raise unknown_name("webhooks", name, __all__)
