"""``reporters``: status pushers, notifiers, report generators and message formatters.

Implemented: ``HttpStatusPush``, ``GitHubStatusPush``, ``GitHubCommentPush``,
``GitLabStatusPush``, ``BitbucketStatusPush``, the three Bitbucket Server reporters,
``GerritStatusPush``, ``GerritVerifyStatusPush``, ``ZulipStatusPush``, ``IRC``, ``TelegramBot``,
``PushoverNotifier``,
``PushjetNotifier``, ``MailNotifier``, the report generators and the message formatters. The
other reporters are stand-ins that say so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from buildyard.plugins._namespace import REPORTING, LazyNames

if TYPE_CHECKING:
    from buildyard.master.reporters.bitbucket import BitbucketStatusPush
    from buildyard.master.reporters.bitbucketserver import (
        BitbucketServerCoreAPIStatusPush,
        BitbucketServerPRCommentPush,
        BitbucketServerStatusPush,
    )
    from buildyard.master.reporters.generators import (
        BuildRequestGenerator,
        BuildSetCombinedStatusGenerator,
        BuildSetStatusGenerator,
        BuildStartEndStatusGenerator,
        BuildStatusGenerator,
        WorkerMissingGenerator,
    )
    from buildyard.master.reporters.gerrit import GerritStatusPush
    from buildyard.master.reporters.gerrit_verify_status import GerritVerifyStatusPush
    from buildyard.master.reporters.github import GitHubCommentPush, GitHubStatusPush
    from buildyard.master.reporters.gitlab import GitLabStatusPush
    from buildyard.master.reporters.http import HttpStatusPush
    from buildyard.master.reporters.irc import IRC
    from buildyard.master.reporters.mail import MailNotifier
    from buildyard.master.reporters.message import (
        MessageFormatter,
        MessageFormatterEmpty,
        MessageFormatterFunction,
        MessageFormatterFunctionRaw,
        MessageFormatterMissingWorker,
        MessageFormatterRenderable,
    )
    from buildyard.master.reporters.notifiers import PushjetNotifier, PushoverNotifier
    from buildyard.master.reporters.telegram import TelegramBot
    from buildyard.master.reporters.zulip import ZulipStatusPush

__all__ = [
    "IRC",
    "BitbucketServerCoreAPIStatusPush",
    "BitbucketServerPRCommentPush",
    "BitbucketServerStatusPush",
    "BitbucketStatusPush",
    "BuildRequestGenerator",
    "BuildSetCombinedStatusGenerator",
    "BuildSetStatusGenerator",
    "BuildStartEndStatusGenerator",
    "BuildStatusGenerator",
    "GerritStatusPush",
    "GerritVerifyStatusPush",
    "GitHubCommentPush",
    "GitHubStatusPush",
    "GitLabStatusPush",
    "HttpStatusPush",
    "MailNotifier",
    "MessageFormatter",
    "MessageFormatterEmpty",
    "MessageFormatterFunction",
    "MessageFormatterFunctionRaw",
    "MessageFormatterMissingWorker",
    "MessageFormatterRenderable",
    "PushjetNotifier",
    "PushoverNotifier",
    "TelegramBot",
    "WorkerMissingGenerator",
    "ZulipStatusPush",
]

# Buildbot 4.3's names in this namespace.
_NAMES = [
    "BitbucketServerCoreAPIStatusPush",
    "BitbucketServerPRCommentPush",
    "BitbucketServerStatusPush",
    "BitbucketStatusPush",
    "BuildRequestGenerator",
    "BuildSetCombinedStatusGenerator",
    "BuildSetStatusGenerator",
    "BuildStartEndStatusGenerator",
    "BuildStatusGenerator",
    "GerritStatusPush",
    "GerritVerifyStatusPush",
    "GitHubCommentPush",
    "GitHubStatusPush",
    "GitLabStatusPush",
    "HttpStatusPush",
    "IRC",
    "MailNotifier",
    "MessageFormatter",
    "MessageFormatterEmpty",
    "MessageFormatterFunction",
    "MessageFormatterFunctionRaw",
    "MessageFormatterMissingWorker",
    "MessageFormatterRenderable",
    "PushjetNotifier",
    "PushoverNotifier",
    "TelegramBot",
    "WorkerMissingGenerator",
    "ZulipStatusPush",
]

# Each name is resolved when master.cfg first uses it (buildyard.plugins._namespace.LazyNames):
# the implemented ones from these modules, the others as stand-ins until buildyard has them.
_LAZY = LazyNames(
    "reporters",
    store=globals(),
    known=_NAMES,
    sources={
        "BitbucketStatusPush": "buildyard.master.reporters.bitbucket",
        "BitbucketServerCoreAPIStatusPush": "buildyard.master.reporters.bitbucketserver",
        "BitbucketServerPRCommentPush": "buildyard.master.reporters.bitbucketserver",
        "BitbucketServerStatusPush": "buildyard.master.reporters.bitbucketserver",
        "BuildRequestGenerator": "buildyard.master.reporters.generators",
        "BuildSetCombinedStatusGenerator": "buildyard.master.reporters.generators",
        "BuildSetStatusGenerator": "buildyard.master.reporters.generators",
        "BuildStartEndStatusGenerator": "buildyard.master.reporters.generators",
        "BuildStatusGenerator": "buildyard.master.reporters.generators",
        "WorkerMissingGenerator": "buildyard.master.reporters.generators",
        "GerritStatusPush": "buildyard.master.reporters.gerrit",
        "GerritVerifyStatusPush": "buildyard.master.reporters.gerrit_verify_status",
        "GitHubCommentPush": "buildyard.master.reporters.github",
        "GitHubStatusPush": "buildyard.master.reporters.github",
        "GitLabStatusPush": "buildyard.master.reporters.gitlab",
        "HttpStatusPush": "buildyard.master.reporters.http",
        "IRC": "buildyard.master.reporters.irc",
        "MailNotifier": "buildyard.master.reporters.mail",
        "MessageFormatter": "buildyard.master.reporters.message",
        "MessageFormatterEmpty": "buildyard.master.reporters.message",
        "MessageFormatterFunction": "buildyard.master.reporters.message",
        "MessageFormatterFunctionRaw": "buildyard.master.reporters.message",
        "MessageFormatterMissingWorker": "buildyard.master.reporters.message",
        "MessageFormatterRenderable": "buildyard.master.reporters.message",
        "PushjetNotifier": "buildyard.master.reporters.notifiers",
        "PushoverNotifier": "buildyard.master.reporters.notifiers",
        "TelegramBot": "buildyard.master.reporters.telegram",
        "ZulipStatusPush": "buildyard.master.reporters.zulip",
    },
    features=REPORTING,
)


def __getattr__(name: str) -> Any:
    return _LAZY.resolve(name)


def __dir__() -> list[str]:
    return _LAZY.names()
