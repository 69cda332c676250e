"""The dialects buildyard has (Buildbot 4.3's ``buildbot.webhooks``), their options, and the
checks of ``c['www']['change_hook_dialects']`` and ``c['www']['change_hook_auth']``."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

from buildyard.master.changes.hooks import bitbucket, github, gitlab, gitorious, poller
from buildyard.master.changes.hooks.base import BaseHookHandler

#: dialect name -> (handler class, the options it takes)
DIALECTS: dict[str, tuple[type[Any], frozenset[str]]] = {
    "base": (BaseHookHandler, frozenset()),
    "bitbucket": (bitbucket.BitBucketHandler, bitbucket.OPTIONS),
    "bitbucketcloud": (bitbucket.BitbucketCloudEventHandler, bitbucket.CLOUD_OPTIONS),
    "bitbucketserver": (bitbucket.BitbucketServerEventHandler, bitbucket.CLOUD_OPTIONS),
    "github": (github.GitHubHandler, github.OPTIONS),
    "gitlab": (gitlab.GitLabHandler, gitlab.OPTIONS),
    "gitorious": (gitorious.GitoriousHandler, gitorious.OPTIONS),
    "poller": (poller.PollingHandler, poller.OPTIONS),
}


def handler_class(dialect: str, options: Any) -> type[Any]:
    """The class that serves ``dialect``: its ``custom_class`` option, else buildyard's."""
    if isinstance(options, Mapping) and "custom_class" in options:
        return options["custom_class"]  # type: ignore[no-any-return]
    return DIALECTS[dialect][0]


def check_dialects(
    dialects: object, report: Callable[[str], None], warn: Callable[[str], None]
) -> None:
    """Report (through ``report``) every mistake in a ``change_hook_dialects`` value, and
    ``warn`` of what works otherwise than it reads."""
    if not isinstance(dialects, Mapping):
        report(
            "c['www']['change_hook_dialects'] must be a dictionary of dialect names, not "
            f"{type(dialects).__name__}"
        )
        return
    for name, options in dialects.items():
        where = f"c['www']['change_hook_dialects'][{name!r}]"
        custom = isinstance(options, Mapping) and "custom_class" in options
        if not isinstance(name, str) or not name:
            report(f"c['www']['change_hook_dialects'] keys must be dialect names, not {name!r}")
            continue
        if custom:
            klass = options["custom_class"]
            if not isinstance(klass, type) or not callable(getattr(klass, "getChanges", None)):
                report(f"{where}['custom_class'] must be a class with a getChanges method")
            continue
        if name not in DIALECTS:
            close = difflib.get_close_matches(name, DIALECTS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            report(
                f"{where}: buildyard has no change hook dialect {name!r} (it has "
                f"{', '.join(sorted(DIALECTS))}; give your own handler with 'custom_class'){hint}"
            )
            continue
        if options is True or options is None:
            continue
        if options is False:
            warn(
                f"{where} is False, which does not turn the dialect off: it is served (as in "
                "Buildbot); remove the key to turn it off"
            )
            continue
        if not isinstance(options, Mapping):
            report(f"{where} must be True or a dictionary of options, not {options!r}")
            continue
        known = DIALECTS[name][1]
        for key in options:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                takes = ", ".join(sorted(known)) or "none"
                report(f"{where}: unknown option {key!r} (it takes: {takes}){hint}")
        if name == "github":
            _check_github(options, where, report)
        if name == "poller" and "allowed" in options:
            allowed = options["allowed"]
            names = allowed if isinstance(allowed, list | tuple) else [None]
            if not all(isinstance(a, str) for a in names):
                report(f"{where}['allowed'] must be a list of change source names")


def _check_github(options: Mapping[str, Any], where: str, report: Callable[[str], None]) -> None:
    if options.get("strict") and not options.get("secret"):
        report(f"{where}: 'strict' is requested while no 'secret' is provided")
    klass = options.get("class")
    if klass is not None and not (
        isinstance(klass, type) and callable(getattr(klass, "process", None))
    ):
        report(f"{where}['class'] must be a subclass of GitHubEventHandler, not {klass!r}")
    skips = options.get("skips")
    if skips is not None and (
        not isinstance(skips, list | tuple) or not all(isinstance(s, str) for s in skips)
    ):
        report(f"{where}['skips'] must be a list of regular expressions")
    for key in ("github_property_whitelist",):
        value = options.get(key)
        if value is not None and not isinstance(value, list | tuple):
            report(f"{where}[{key!r}] must be a list of fnmatch patterns")


def check_auth(checkers: object, report: Callable[[str], None]) -> None:
    """``change_hook_auth``: a list of credential checkers (objects with
    ``check(username, password)``, what ``strcred.makeChecker`` gives)."""
    if checkers is None:
        return
    if not isinstance(checkers, list | tuple) or not checkers:
        report(
            "c['www']['change_hook_auth'] must be a non-empty list of credential checkers "
            "(strcred.makeChecker('file:changehook.passwd'), ...)"
        )
        return
    for checker in checkers:
        if not callable(getattr(checker, "check", None)):
            report(
                f"c['www']['change_hook_auth'] contains {checker!r}, which buildyard cannot use: "
                "a checker from twisted.cred.strcred.makeChecker ('file:', 'memory:') or "
                "twisted.cred.checkers (InMemoryUsernamePasswordDatabaseDontUse, FilePasswordDB)"
            )
