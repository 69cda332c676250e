"""``webhooks``: the change hook dialects, by their ``c['www']['change_hook_dialects']`` names
(Buildbot's ``buildbot.webhooks`` entry points). Subclass one for a ``custom_class``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from buildyard.plugins._namespace import LazyNames

if TYPE_CHECKING:
    from buildyard.master.changes.hooks.base import BaseHookHandler as base
    from buildyard.master.changes.hooks.bitbucket import (
        BitbucketCloudEventHandler as bitbucketcloud,
    )
    from buildyard.master.changes.hooks.bitbucket import (
        BitBucketHandler as bitbucket,
    )
    from buildyard.master.changes.hooks.bitbucket import (
        BitbucketServerEventHandler as bitbucketserver,
    )
    from buildyard.master.changes.hooks.github import GitHubHandler as github
    from buildyard.master.changes.hooks.gitlab import GitLabHandler as gitlab
    from buildyard.master.changes.hooks.gitorious import GitoriousHandler as gitorious
    from buildyard.master.changes.hooks.poller import PollingHandler as poller

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

# Each dialect's class is imported when it is first used (buildyard.plugins._namespace).
_LAZY = LazyNames(
    "webhooks",
    store=globals(),
    known=__all__,
    sources={
        "base": "buildyard.master.changes.hooks.base:BaseHookHandler",
        "bitbucket": "buildyard.master.changes.hooks.bitbucket:BitBucketHandler",
        "bitbucketcloud": "buildyard.master.changes.hooks.bitbucket:BitbucketCloudEventHandler",
        "bitbucketserver": "buildyard.master.changes.hooks.bitbucket:BitbucketServerEventHandler",
        "github": "buildyard.master.changes.hooks.github:GitHubHandler",
        "gitlab": "buildyard.master.changes.hooks.gitlab:GitLabHandler",
        "gitorious": "buildyard.master.changes.hooks.gitorious:GitoriousHandler",
        "poller": "buildyard.master.changes.hooks.poller:PollingHandler",
    },
    features="change hooks",
)


def __getattr__(name: str) -> Any:
    return _LAZY.resolve(name)


def __dir__() -> list[str]:
    return _LAZY.names()
