"""``reporters``: status pushers, notifiers, report generators and message formatters (not
implemented yet: each is a stand-in)."""

from __future__ import annotations

from typing import Any

from buildyard.plugins._namespace import REPORTING, placeholders, unknown_name

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
