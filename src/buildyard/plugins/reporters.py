"""``reporters``: status pushers, notifiers, report generators and message formatters.

Implemented: ``HttpStatusPush``, ``GitHubStatusPush``, ``GitHubCommentPush``,
``GitLabStatusPush``, ``BitbucketStatusPush``, the three Bitbucket Server reporters,
``GerritStatusPush``, ``GerritVerifyStatusPush``, ``ZulipStatusPush``, ``IRC``, ``TelegramBot``,
``PushoverNotifier``,
``PushjetNotifier``, ``MailNotifier``, the report generators and the message formatters. The
other reporters are stand-ins that say so.
"""

from __future__ import annotations

from typing import Any

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
from buildyard.plugins._namespace import REPORTING, placeholders, unknown_name

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

# Every name not imported above is a stand-in until buildyard implements it.
globals().update(placeholders("reporters", {n: REPORTING for n in _NAMES if n not in globals()}))


def __getattr__(name: str) -> Any:
    raise unknown_name("reporters", name, _NAMES)
