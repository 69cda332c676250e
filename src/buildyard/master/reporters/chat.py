"""The chat bots' shared layer (Buildbot's ``buildbot.reporters.words``): what ``IRC`` and
``TelegramBot`` have in common.

- :class:`ChatBot`: one per connected bot. It follows the build and worker events once, for
  all its chats, and tells each chat (:class:`ChatChannel`) about those it asked for with
  ``notify``; it keeps the chats' notified events and missing workers in the master's state
  table, so they survive a restart, as Buildbot does.
- :class:`ChatChannel`: a chat room, IRC channel or private conversation; its notified events.
- :class:`Contact`: one user in one chat; it parses the user's messages and runs the commands
  (``help``, ``list``, ``status``, ``last``, ``notify``, ``watch``, ``force``, ``stop``,
  ``shutdown``, ...) with Buildbot's wording, checked against ``authz``.

A command never holds a build up: it runs in the bot's own tasks, and reads and writes through
the data API as the web UI does. A command that fails answers "Something bad happened (see
logs)" and logs the error with the reporter's name; nothing else is disturbed.
"""

from __future__ import annotations

import asyncio
import datetime
import random
import re
import shlex
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

import structlog

import buildyard
from buildyard.common.awaitables import deferred_compatible, resolve, started
from buildyard.master.data.resultspec import FieldFilter, ResultSpec
from buildyard.master.model.results import Results
from buildyard.master.reporters import details
from buildyard.master.reporters.service import BuildbotService, ReporterEnvironment

log = structlog.get_logger(__name__)

__all__ = ["ChatBot", "ChatChannel", "Contact", "UsageError", "dangerousCommand", "expand_authz"]


#: the most changes ``list N changes`` (or ``list all changes``) shows
MAX_LISTED_CHANGES = 100


class UsageError(ValueError):
    """A command used wrongly: its text is the answer (Buildbot's ``words.UsageError``, which
    users' commands raise too)."""

    def __init__(self, string: object = "Invalid usage", *more: object) -> None:
        super().__init__(string, *more)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "Invalid usage"


#: commands that need an explicit grant in ``authz`` (Buildbot's "dangerous" commands)
DANGEROUS = frozenset({"FORCE", "STOP", "SHUTDOWN", "JOIN", "LEAVE"})

_EVENT = re.compile(
    r"^(started|finished|success|warnings|failure|exception|cancelled|problem|recovery|"
    r"worse|better|worker|(success|warnings|failure|exception)To"
    r"(Success|Warnings|Failure|Exception))$"
)

RESULTS_DESCRIPTIONS = {
    Results.SKIPPED: "was skipped",
    Results.SUCCESS: "completed successfully",
    Results.WARNINGS: "completed with warnings",
    Results.FAILURE: "failed",
    Results.EXCEPTION: "stopped with exception",
    Results.RETRY: "has been retried",
    Results.CANCELLED: "was cancelled",
}
RESULTS_SEVERITY = (
    Results.SKIPPED,
    Results.SUCCESS,
    Results.WARNINGS,
    Results.FAILURE,
    Results.CANCELLED,
    Results.EXCEPTION,
)
RESULT_NAMES = {
    Results.SUCCESS: "success",
    Results.WARNINGS: "warnings",
    Results.FAILURE: "failure",
    Results.SKIPPED: "skipped",
    Results.EXCEPTION: "exception",
    Results.RETRY: "retry",
    Results.CANCELLED: "cancelled",
}

# Buildbot's greetings are a list of "hello" in many languages; a few of ours
GREETINGS = ("Hello", "Hi", "Hallo", "Bonjour", "Hola", "Ciao", "Hej", "Salut", "Aloha", "Namaste")

USAGE: dict[str, Any] = {
    "help": "help [_command_ _arg_ [_subarg_ ...]] - Give help for _command_ or one of it's "
    "arguments",
    "list": "list [all|N] builders|workers|changes - list configured builders, workers, or N "
    "recent changes",
    "status": "status [_which_] - list status of a builder (or all builders)",
    "notify": "notify on|off|list [_EVENT_] ... - notify me about build events;  event should be "
    "one or more of: 'started', 'finished', 'failure', 'success', 'exception', 'problem', "
    "'recovery', 'better', or 'worse'",
    "watch": "watch _which_ - announce the completion of an active build",
    "force": "force build [--codebase=CODEBASE] [--branch=branch] [--revision=revision] "
    "[--props=prop1=val1,prop2=val2...] _which_ _reason_ - Force a build",
    "stop": "stop build _which_ _reason_ - Stop a running build",
    "last": "last [_which_] - list last build status for builder _which_",
    "source": "source - the source code for Buildbot",
    "commands": "commands - List available commands",
    "shutdown": {
        None: "shutdown check|start|stop|now - shutdown the buildbot master",
        "check": "shutdown check - check if the buildbot master is running or shutting down",
        "start": "shutdown start - start a clean shutdown",
        "stop": "shutdown cancel - stop the clean shutdown",
        "now": "shutdown now - shutdown immediately without waiting for the builders to finish",
    },
}

# what ``help`` says of each command
DOCS = {
    "hello": "say hello",
    "version": "show buildbot version",
    "list": "list configured builders or workers",
    "status": "list status of a builder (or all builders)",
    "notify": "notify me about build events",
    "watch": "announce the completion of an active build",
    "force": "force a build",
    "stop": "stop a running build",
    "last": "list last build status for a builder",
    "help": "give help for a command or one of it's arguments",
    "source": "the source code for buildbot",
    "commands": "list available commands",
    "shutdown": "shutdown the buildbot master",
}


#: the attribute :func:`dangerousCommand` sets on a site's command
DANGEROUS_MARK = "_buildyard_dangerous"


def dangerousCommand(method: Callable[..., Any]) -> Callable[..., Any]:
    """Buildbot's decorator for a site's own ``command_*``: like ``force``, the command needs an
    explicit grant in ``authz`` (its name, or ``'!'``)."""
    if not getattr(method, "__name__", "").startswith("command_"):
        raise ValueError("@dangerousCommand can be used only for commands")
    setattr(method, DANGEROUS_MARK, True)
    return method


def users_command(method: Any) -> bool:
    """Whether ``method`` (a ``command_*``) comes from a user's subclass, not buildyard."""
    function = getattr(method, "__func__", method)
    return not str(getattr(function, "__module__", "") or "").startswith("buildyard.")


def expand_authz(authz: Mapping[Any, Any] | None) -> dict[str, Any]:
    """``authz`` with one upper-case command per key (a key may name several in a tuple)."""
    expanded: dict[str, Any] = {}
    for cmds, value in (authz or {}).items():
        for cmd in cmds if isinstance(cmds, tuple | list) else (cmds,):
            expanded[str(cmd).upper()] = value
    return expanded


def fuzzy_interval(seconds: int) -> str:
    """Buildbot's wording of an interval ("a moment", "12 seconds", "about" rounded above)."""
    if seconds <= 1:
        return "a moment"
    if seconds < 20:
        return f"{seconds} seconds"
    if seconds < 55:
        return f"{round(seconds / 10.0) * 10} seconds"
    minutes = round(seconds / 60.0)
    if minutes == 1:
        return "a minute"
    if minutes < 20:
        return f"{minutes} minutes"
    if minutes < 55:
        return f"{round(minutes / 10.0) * 10} minutes"
    hours = round(minutes / 60.0)
    if hours == 1:
        return "an hour"
    if hours < 24:
        return f"{hours} hours"
    days = (hours + 6) // 24
    if days == 1:
        return "a day"
    if days < 30:
        return f"{days} days"
    months = int((days + 10) / 30.5)
    if months == 1:
        return "a month"
    if months < 12:
        return f"{months} months"
    years = round(days / 365.25)
    return "a year" if years == 1 else f"{years} years"


def _epoch(value: object) -> float | None:
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return None


def _result(build: Mapping[str, Any]) -> Results | None:
    value = build.get("results")
    return Results(value) if value in set(Results) else None


class ChatChannel:
    """One chat: its notified events, the builds it watches, the workers it saw go missing."""

    def __init__(self, bot: ChatBot, chat_id: Any) -> None:
        self.bot = bot
        self.id = chat_id
        self.notify_events: set[str] = set()
        # the messages a contact sends go out one at a time, in the order they were given
        self.sending = asyncio.Lock()
        self.watched: set[int] = set()
        self.missing_workers: set[int] = set()
        # (when, builder, number) of the builds reported lately, to report each once
        self._reported: list[tuple[float, str, int]] = []

    async def send(self, message: str, **kwargs: Any) -> Any:
        return await self.bot.send_message(self.id, message, **kwargs)

    def validate_event(self, event: str) -> None:
        if not _EVENT.match(event):
            raise UsageError(f"Try '{self.bot.command_prefix}notify on|off _EVENT_'.")

    async def list_notified_events(self) -> None:
        if self.notify_events:
            events = ", ".join(sorted(self.notify_events))
            await self.send(f"The following events are being notified: {events}.")
        else:
            await self.send("No events are being notified.")

    def add_notification_events(self, events: Iterable[str]) -> None:
        for event in events:
            self.validate_event(event)
            self.notify_events.add(event)

    def remove_notification_events(self, events: Iterable[str]) -> None:
        for event in events:
            self.validate_event(event)
            self.notify_events.discard(event)

    def notify_for(self, *events: str) -> bool:
        return any(e in self.notify_events for e in events)

    def _first_report(self, builder: str, number: int) -> bool:
        now = time.monotonic()
        self._reported = [r for r in self._reported if r[0] > now - 60]
        if any(b == builder and n == number for _, b, n in self._reported):
            return False
        self._reported.append((now, builder, number))
        return True

    # -- events ------------------------------------------------------------------------------

    async def build_started(self, build: Mapping[str, Any], builder: Mapping[str, Any]) -> None:
        if not self.notify_for("started"):
            return
        name = builder["name"]
        if self.bot.use_revisions:
            revisions = await self.bot.revisions_for_build(build)
            text = f"Build containing revision(s) {','.join(revisions)} on {name} started"
        else:
            url = self.bot.build_url(builder["builderid"], build["number"])
            text = f"Build [#{build['number']}]({url}) of `{name}` started"
        await self.send(text + ".")

    async def build_finished(
        self, build: Mapping[str, Any], builder: Mapping[str, Any], *, watched: bool = False
    ) -> None:
        if not (watched or await self._wants_finished(build)):
            return
        name, number = builder["name"], build["number"]
        if not self._first_report(name, number):
            return
        status = self.bot.format_build_status(build)
        if self.bot.use_revisions:
            revisions = await self.bot.revisions_for_build(build)
            text = f"Build on `{name}` containing revision(s) {','.join(revisions)} {status}"
        else:
            url = self.bot.build_url(builder["builderid"], number)
            text = f"Build [#{number}]({url}) of `{name}` {status}"
        detail = build.get("status_string") or build.get("state_string")
        if _result(build) != Results.SUCCESS and detail is not None:
            text += ": " + str(detail)
        else:
            text += "."
        if self.bot.show_blame_list and _result(build) != Results.SUCCESS:
            blame = await self.bot.blame_list(build)
            if blame:
                text += "  blamelist: " + ", ".join(blame)
        await self.send(text)

    async def _wants_finished(self, build: Mapping[str, Any]) -> bool:
        if self.notify_for("finished"):
            return True
        result = _result(build)
        if result is None:
            return False
        if self.notify_for(RESULT_NAMES[result]):
            return True
        transitions = self.notify_for("better", "worse", "problem", "recovery") or any(
            "To" in e for e in self.notify_events
        )
        if result not in RESULTS_SEVERITY or not transitions:
            return False
        previous = await self.bot.build_by_number(build["builderid"], build["number"] - 1)
        before = _result(previous) if previous else None
        if before is None or before not in RESULTS_SEVERITY:
            return False
        now_sev, before_sev = RESULTS_SEVERITY.index(result), RESULTS_SEVERITY.index(before)
        bad, good = (Results.FAILURE, Results.EXCEPTION), (Results.SUCCESS, Results.WARNINGS)
        return (
            (self.notify_for("better") and now_sev < before_sev)
            or (self.notify_for("worse") and now_sev > before_sev)
            or (self.notify_for("problem") and before in good and result in bad)
            or (self.notify_for("recovery") and before in bad and result in good)
            or self.notify_for(f"{RESULT_NAMES[before]}To{RESULT_NAMES[result].capitalize()}")
        )

    async def worker_missing(self, worker: Mapping[str, Any]) -> None:
        self.missing_workers.add(int(worker["workerid"]))
        if self.notify_for("worker"):
            await self.send(
                f"Worker `{worker.get('name')}` is missing. It was seen last on "
                f"{worker.get('last_connection')}."
            )
        await self.bot.save_state("missing_workers")

    async def worker_connected(self, worker: Mapping[str, Any]) -> None:
        workerid = int(worker["workerid"])
        if workerid not in self.missing_workers:
            return
        self.missing_workers.discard(workerid)
        if self.notify_for("worker"):
            await self.send(f"Worker `{worker.get('name')}` is back online.")
        await self.bot.save_state("missing_workers")


class Contact:
    """One user in one chat; ``user_id`` equal to the chat's id is a private chat.

    Users extend a bot by subclassing its contact class (``TelegramContact``, ``IRCContact``)
    and setting the bot class's ``contactClass``, as in Buildbot: a method ``command_FOO``
    (plain, ``async def``, or Twisted-style returning a Deferred) is the command ``foo``; its
    docstring is what ``help`` lists and its ``usage`` attribute what ``help foo`` answers.
    Such code uses Buildbot's names: ``send``, ``splitArgs``, ``describeUser``, ``master``,
    ``bot``, ``channel``, ``user_id``, ``is_private_chat``."""

    def __init__(self, user: Any, channel: ChatChannel) -> None:
        self.user_id = user
        self.channel = channel
        # a user's commands are answered in the order they came
        self.turn = asyncio.Lock()

    @property
    def bot(self) -> ChatBot:
        return self.channel.bot

    @property
    def master(self) -> Any:
        """The master object (``self.master.scheduler_manager.namedServices``, ...)."""
        return self.bot.master

    @property
    def is_private_chat(self) -> bool:
        return bool(self.user_id == self.channel.id)

    def describeUser(self) -> str:
        """Who the user is, in words (a force's owner, the logs)."""
        if self.is_private_chat:
            return str(self.user_id)
        return f"{self.user_id} on {self.channel.id}"

    def describe_user(self) -> str:
        return self.describeUser()

    def send(self, message: str, **kwargs: Any) -> Any:
        """Send ``message`` to the chat. It starts going out at once, after the messages given
        before it, whether or not the caller waits; the result is awaitable (a Deferred that
        ``@inlineCallbacks`` code can yield, under the ``buildyard[twisted]`` extra) and gives
        what the chat answered (Telegram's message), or None when it could not be sent (the
        failure is logged)."""
        return self.bot.start_sending(self.channel, message, kwargs)

    async def access_denied(self, args: str, **kwargs: Any) -> None:
        await self.send(f"Thou shall not pass, {self.user_id}!!!")

    # -- dispatch ------------------------------------------------------------------------------

    @classmethod
    def commands(cls) -> list[str]:
        return sorted(k[8:].lower() for k in dir(cls) if k.startswith("command_"))

    @classmethod
    def build_commands(cls) -> list[str]:
        """Buildbot's name of :meth:`commands`."""
        return cls.commands()

    @staticmethod
    def overrideCommand(method: Callable[..., Any]) -> Callable[..., Any]:
        """Buildbot's decorator for a subclass's own version of a command of ours: it keeps
        our ``help`` line and usage."""
        name = method.__name__.removeprefix("command_").lower()
        if name in DOCS:
            method.__doc__ = DOCS[name]
        if name in USAGE:
            method.usage = USAGE[name]  # type: ignore[attr-defined]
        return method

    def allowed(self, command: str) -> bool:
        authz = self.bot.authz
        acl = authz.get(command)
        if acl is None:
            method = getattr(type(self), "command_" + command, None)
            dangerous = command in DANGEROUS or bool(getattr(method, DANGEROUS_MARK, False))
            acl = authz.get("!", False) if dangerous else authz.get("", True)
            acl = authz.get("*", acl)
        if isinstance(acl, list | tuple):
            return self.user_id in acl
        if acl in (True, False, None):
            return bool(acl)
        return bool(self.user_id == acl)

    def getCommandMethod(self, command: str) -> Callable[..., Any] | None:
        """The method that answers ``command`` (``access_denied`` when authz refuses the
        user), or None for no such command."""
        command = command.upper()
        method = getattr(self, "command_" + command, None)
        if method is None:
            return None
        if not self.allowed(command):
            return self.access_denied
        return method  # type: ignore[no-any-return]

    def find_command(self, command: str) -> Callable[..., Any] | None:
        return self.getCommandMethod(command)

    @classmethod
    def describe_command(cls, command: str) -> str | None:
        """What ``help`` says of ``command``: a user's command's docstring, else ours."""
        method = getattr(cls, "command_" + command.upper(), None)
        if method is not None and users_command(method):
            doc = (getattr(method, "__doc__", None) or "").strip()
            return doc or None
        return DOCS.get(command)

    async def handle_message(self, message: str, **kwargs: Any) -> Any:
        async with self.turn:
            return await self._handle_message(message, **kwargs)

    async def _handle_message(self, message: str, **kwargs: Any) -> Any:
        message = message.lstrip()
        if not message:
            return None
        cmd, _, args = message.partition(" ")
        suffix = self.bot.command_suffix
        if suffix and cmd.endswith(suffix):
            cmd = cmd[: -len(suffix)]
        prefix = self.bot.command_prefix
        self.bot.log("chat_command_received", command=cmd, user=self.describe_user())
        method = self.getCommandMethod(cmd[len(prefix) :]) if cmd.startswith(prefix) else None
        if method is None:
            if message.endswith("!"):
                await self.send("What you say!")
                return None
            if not cmd.startswith(prefix):
                if self.is_private_chat:
                    await self.send("Say what?")
                return None
            self.bot.log("chat_command_unknown", command=cmd, user=self.describe_user())
            await self.send(f"I don't get this '{cmd}'...")
            method = self.command_COMMANDS
        try:
            # a command may be plain, async, or Twisted-style (a Deferred): users' are any
            return await resolve(method(args.strip(), **kwargs))
        except UsageError as exc:
            await self.send(str(exc))
        except Exception as exc:
            self.bot.log_error("chat_command_failed", exc, command=cmd, user=self.describe_user())
            await self.send("Something bad happened (see logs)")
        return None

    def splitArgs(self, args: str) -> list[str]:
        """``args`` split as a shell would (quotes kept together); a UsageError when that
        cannot be done (an unclosed quote)."""
        try:
            return shlex.split(args)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc

    def split_args(self, args: str) -> list[str]:
        return self.splitArgs(args)

    def usage(self, command: str) -> Any:
        return USAGE.get(command)

    # -- commands ------------------------------------------------------------------------------

    async def command_HELLO(self, args: str, **kwargs: Any) -> None:
        await self.send(random.choice(GREETINGS))

    async def command_VERSION(self, args: str, **kwargs: Any) -> None:
        # buildyard names itself: it is not Buildbot
        await self.send(f"This is buildyard-{buildyard.__version__} at your service")

    async def command_SOURCE(self, args: str, **kwargs: Any) -> None:
        await self.send("My source can be found at https://pypi.org/project/buildyard/")

    async def command_COMMANDS(self, args: str, **kwargs: Any) -> None:
        prefix = self.bot.command_prefix
        await self.send("Buildbot commands: " + ", ".join(prefix + c for c in self.commands()))

    async def command_HELP(self, args: str, **kwargs: Any) -> None:
        argv = self.split_args(args)
        if not argv:
            extra = self.extra_docs()
            docs = {c: self.describe_command(c) for c in self.commands() if c not in extra}
            lines = [f"{c} - {d}" for c, d in docs.items() if d]
            lines += [f"{c} - {d}" for c, d in extra.items()]
            if lines:
                await self.send("\n".join(lines))
            return
        command = argv[0].removeprefix(self.bot.command_prefix)
        method = getattr(self, "command_" + command.upper(), None)
        if method is None:
            raise UsageError(f"There is no such command '{argv[0]}'.")
        # a command's own ``usage`` (users' commands have one), else our tables
        doc = getattr(method, "usage", None)
        if doc is None:
            doc = self.usage(command.lower())
        if isinstance(doc, dict):
            key: Any = None if len(argv) == 1 else argv[1] if len(argv) == 2 else tuple(argv[1:])
            doc = doc.get(key)
        elif callable(doc):  # Buildbot's: called with the arguments after the command
            try:
                doc = doc(*argv[1:])
            except (TypeError, ValueError):
                doc = None
        if doc:
            await self.send(f"Usage: {self.bot.command_prefix}{doc}")
        else:
            await self.send("No usage info for " + " ".join(f"'{a}'" for a in argv))

    def extra_docs(self) -> dict[str, str]:
        """``help`` lines of the bot's own commands (sorted after the shared ones)."""
        return {}

    async def command_LIST(self, args: str, **kwargs: Any) -> None:
        argv = self.split_args(args)
        everything, num = False, 10
        if argv and argv[0].isascii() and argv[0].isdigit():
            token = argv.pop(0)
            # (a number of thousands of digits is not read: it is over the cap anyway)
            num = int(token) if len(token) <= 9 else MAX_LISTED_CHANGES + 1
        elif argv and argv[0] == "all":
            everything = True
            argv.pop(0)
        if not argv:
            raise UsageError(
                f"Try '{self.bot.command_prefix}list [all|N] builders|workers|changes'."
            )
        what = argv[0]
        if what == "builders":
            online = await self.bot.online_builderids()
            words = ["I found the following builders:"]
            for b in await self.bot.all_builders():
                if b["builderid"] in online:
                    words.append(b["name"])
                elif everything:
                    words += [b["name"], "[offline]"]
            await self.send(" ".join(words))
        elif what == "workers":
            words = ["I found the following workers:"]
            for w in await self.bot.get_list(("workers",)):
                if w.get("configured_on"):
                    words.append(w["name"])
                    if not w.get("connected_to"):
                        words.append("[disconnected]")
                elif everything:
                    words += [w["name"], "[offline]"]
            await self.send(" ".join(words))
        elif what == "changes":
            if everything:
                await self.send(
                    "Do you really want me to list all changes? It can be thousands!\n"
                    "If you want to be flooded, specify the maximum number of changes to show.\n"
                    f"Right now, I will show up to {MAX_LISTED_CHANGES} recent changes."
                )
                num = MAX_LISTED_CHANGES
            elif num > MAX_LISTED_CHANGES:
                # whatever a chat user asks, one answer reads a bounded number of changes
                await self.send(
                    f"That is more than I list at once: I will show up to "
                    f"{MAX_LISTED_CHANGES} recent changes."
                )
                num = MAX_LISTED_CHANGES
            spec = ResultSpec(order=("-changeid",), limit=num)
            parts = ["I found the following recent changes:"]
            for change in reversed(await self.bot.get_list(("changes",), spec)):
                when = _epoch(change.get("when_timestamp")) or 0
                date = datetime.datetime.fromtimestamp(when, datetime.UTC)
                comment = (str(change.get("comments") or "").splitlines() or [""])[0]
                parts.append(
                    f"{comment})\n"
                    f"Author: {change.get('author')}\n"
                    f"Date: {date.strftime('%Y-%m-%d %H:%M')}\n"
                    f"Repository: {change.get('repository')}\n"
                    f"Branch: {change.get('branch')}\n"
                    f"Revision: {change.get('revision')}\n"
                )
            await self.send("\n\n".join(parts))
        else:
            raise UsageError(
                f"Try '{self.bot.command_prefix}list [all|N] builders|workers|changes'."
            )

    async def command_STATUS(self, args: str, **kwargs: Any) -> None:
        argv = self.split_args(args)
        if len(argv) > 1:
            raise UsageError(f"Try '{self.bot.command_prefix}status _builder_'.")
        which = argv[0] if argv else ""
        lines = []
        if which in ("", "all"):
            online = await self.bot.online_builderids()
            for b in await self.bot.all_builders():
                if which == "all" or b["builderid"] in online:
                    lines.append(await self.bot.build_status(b["name"], short=True))
        else:
            lines.append(await self.bot.build_status(which))
        if lines:
            await self.send("\n".join(lines))

    async def command_LAST(self, args: str, **kwargs: Any) -> None:
        argv = self.split_args(args)
        if len(argv) > 1:
            raise UsageError(f"Try '{self.bot.command_prefix}last _builder_'.")
        if not argv or argv[0] == "all":
            builders = await self.bot.all_builders()
            if not argv:
                online = await self.bot.online_builderids()
                builders = [b for b in builders if b["builderid"] in online]
        else:
            builders = [await self.bot.get_builder(name=argv[0])]
        lines = []
        for b in builders:
            last = await self.bot.last_completed_build(b["builderid"])
            if not last:
                status = "no builds run since last restart"
            else:
                status = (
                    f"last build {self.bot.format_build_status(last)} ({self.bot.ago(last)} ago)"
                )
                if _result(last) != Results.SUCCESS:
                    status += f": {last.get('state_string')}"
            lines.append(f"`{b['name']}`: {status}")
        if lines:
            await self.send("\n".join(lines))

    async def command_NOTIFY(self, args: str, **kwargs: Any) -> None:
        argv = self.split_args(args)
        again = f"Try '{self.bot.command_prefix}notify on|off|list [_EVENT_]'."
        if not argv:
            raise UsageError(again)
        action, events = argv[0], argv[1:]
        if action in ("on", "on-quiet"):
            self.channel.add_notification_events(events or ("started", "finished"))
        elif action in ("off", "off-quiet"):
            if events:
                self.channel.remove_notification_events(events)
            else:
                self.channel.notify_events.clear()
        elif action != "list":
            raise UsageError(again)
        if action in ("on", "off", "list"):
            await self.channel.list_notified_events()
        if action != "list":
            await self.bot.save_state("notify_events")

    async def command_WATCH(self, args: str, **kwargs: Any) -> None:
        argv = self.split_args(args)
        if len(argv) != 1:
            raise UsageError(f"Try '{self.bot.command_prefix}watch _builder_'.")
        which = argv[0]
        builder = await self.bot.get_builder(name=which)
        builds = await self.bot.running_builds(builder["builderid"])
        if not builds:
            await self.send("There are no currently running builds.")
            return
        for build in builds:
            self.channel.watched.add(int(build["buildid"]))
            if self.bot.use_revisions:
                revisions = await self.bot.revisions_for_build(build)
                await self.send(
                    f"Watching build on `{which}` containing revision(s) "
                    f"{','.join(revisions)} until it finishes..."
                )
            else:
                url = self.bot.build_url(builder["builderid"], build["number"])
                await self.send(
                    f"Watching build [#{build['number']}]({url}) of `{which}` until it finishes..."
                )

    async def command_FORCE(self, args: str, **kwargs: Any) -> None:
        again = f"Try '{self.bot.command_prefix}{USAGE['force']}'"
        argv = self.split_args(args)
        if not argv or argv.pop(0) != "build":
            raise UsageError(again)
        opts = _force_options(argv, again)
        if opts["builder"] is None:
            raise UsageError("you must provide a Builder, " + again)
        builder = await self.bot.get_builder(name=opts["builder"])
        validation = self.bot.validation()
        for what in ("branch", "revision"):
            value = opts[what]
            check = validation.get(what)
            if value and check is not None and not check.match(value):
                self.bot.log("chat_force_refused", why=f"bad {what}", value=value)
                await self.send(f"Sorry, bad {what} '{value}'")
                return
        owner = self.describe_user()
        properties: dict[str, Any] = {}
        for item in (opts["props"] or "").split(",") if opts["props"] else ():
            pname, _, pvalue = item.partition("=")
            good_name = validation.get("property_name")
            good_value = validation.get("property_value")
            if (good_name is not None and not good_name.match(pname)) or (
                good_value is not None and not good_value.match(pvalue)
            ):
                self.bot.log("chat_force_refused", why="bad property", name=pname)
                await self.send(f"Sorry, bad property name='{pname}', value='{pvalue}'")
                return
            properties[pname] = (pvalue, "Force Build Chat")
        properties["reason"] = (opts["reason"], "Force Build Chat")
        properties["owner"] = (owner, "Force Build Chat")
        updates = self.bot.service.master.data.updates
        try:
            await updates.add_buildset(
                scheduler="status.words",
                sourcestamps=[
                    {
                        "codebase": opts["codebase"],
                        "branch": opts["branch"],
                        "revision": opts["revision"],
                        "project": opts["project"],
                        "repository": "",
                    }
                ],
                reason=f"forced: by {owner}: {opts['reason']}",
                properties=properties,
                builderids=[builder["builderid"]],
                waited_for=False,
            )
        except Exception as exc:
            self.bot.log_error("chat_force_failed", exc, builder=opts["builder"])
            await self.send(f"I can't: {exc}")
        else:
            await self.send("Force build successfully requested.")

    async def command_STOP(self, args: str, **kwargs: Any) -> None:
        argv = self.split_args(args)
        if len(argv) < 3 or argv[0] != "build":
            raise UsageError(f"Try '{self.bot.command_prefix}stop build _which_ _reason_'.")
        which, reason = argv[1], " ".join(argv[2:])
        builder = await self.bot.get_builder(name=which)
        builds = await self.bot.running_builds(builder["builderid"])
        if not builds:
            await self.send("Sorry, no build is currently running.")
            return
        for build in builds:
            brd = self.bot.service.master.botmaster.brd
            await brd.stop_build(
                int(build["buildid"]), f"stopped: by {self.describe_user()}: {reason}"
            )
            if self.bot.use_revisions:
                revisions = await self.bot.revisions_for_build(build)
                await self.send(f"Build containing revision(s) {','.join(revisions)} interrupted")
            else:
                url = self.bot.build_url(builder["builderid"], build["number"])
                await self.send(f"Build [#{build['number']}]({url}) of `{which}` interrupted.")

    async def command_SHUTDOWN(self, args: str, **kwargs: Any) -> None:
        """Buildbot's: ``check`` whether a clean shutdown is under way, ``start`` one (no new
        build; the master stops once the running builds have ended), ``stop`` it (builds start
        again), or stop the master ``now`` (running builds end as retries)."""
        if args not in ("check", "start", "stop", "now"):
            raise UsageError(f"Try '{self.bot.command_prefix}shutdown check|start|stop|now'.")
        master = self.bot.service.master
        botmaster = master.botmaster
        user = self.describe_user()
        if args == "check":
            state = "shutting down" if botmaster.shutting_down else "running"
            await self.send(f"Status: buildbot is {state}.")
        elif args == "start":
            if botmaster.shutting_down:
                await self.send("Shutdown already started.")
            else:
                await self.send("Starting clean shutdown.")
                self.bot.log("chat_shutdown", action=args, user=user)
                botmaster.clean_shutdown()
        elif args == "stop":
            if not botmaster.shutting_down:
                await self.send("There is no ongoing shutdown to stop.")
            else:
                await self.send("Stopping clean shutdown.")
                self.bot.log("chat_shutdown", action=args, user=user)
                botmaster.cancel_clean_shutdown()
        else:
            await self.send("Stopping buildbot.")
            self.bot.log("chat_shutdown", action=args, user=user)
            master.request_stop(f"'shutdown now' from {user} on {self.bot.service.name}")


def _force_options(argv: list[str], again: str) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "builder": None,
        "codebase": "",
        "branch": "master",
        "revision": "HEAD",
        "project": "",
        "reason": None,
        "props": None,
    }
    positional: list[str] = []
    words = list(argv)
    while words:
        word = words.pop(0)
        if not word.startswith("--"):
            positional.append(word)
            continue
        name, eq, value = word[2:].partition("=")
        if name == "properties":
            name = "props"
        if name not in opts:
            raise UsageError(f"unknown option --{name}; {again}")
        if not eq:
            if not words:
                raise UsageError(f"option --{name} needs a value; {again}")
            value = words.pop(0)
        if name in ("builder", "reason") and opts[name] is not None:
            raise UsageError(f"--{name} provided in two ways")
        opts[name] = value
    if positional:
        if opts["builder"] is not None:
            raise UsageError("--builder provided in two ways")
        opts["builder"] = positional.pop(0)
    if positional:
        if opts["reason"] is not None:
            raise UsageError("--reason provided in two ways")
        opts["reason"] = " ".join(positional)
    return opts


class ChatBot:
    """A connected bot: its chats and contacts, the events it follows, and the data it reads.

    ``service`` is the reporter (``IRC``, ``TelegramBot``) that runs it: its name is in every
    log line, and the bot's tasks are the service's."""

    command_prefix = ""
    command_suffix: str | None = None
    offline_string = "offline"
    idle_string = "idle"
    running_string = "running:"
    #: the class of the bot's contacts, and of its chats: as in Buildbot, a site sets its own
    #: subclass on the bot class (``TelegramStatusBot.contactClass = MyContact``) to add commands
    contactClass: type[Contact] = Contact
    channelClass: type[ChatChannel] = ChatChannel

    def __init__(
        self,
        service: BuildbotService,
        *,
        nickname: str | None,
        authz: Mapping[Any, Any] | None = None,
        tags: Iterable[str] | None = None,
        notify_events: Iterable[str] | None = None,
        use_revisions: bool = False,
        show_blame_list: bool = False,
    ) -> None:
        self.service = service
        self.nickname = nickname
        self.authz = expand_authz(authz)
        self.tags = list(tags) if tags is not None else None
        self.notify_events = list(notify_events or ())
        self.use_revisions = bool(use_revisions)
        self.show_blame_list = bool(show_blame_list)
        self.channels: dict[Any, ChatChannel] = {}
        self.contacts: dict[tuple[Any, Any], Contact] = {}

    @property
    def master(self) -> Any:
        """The master object, as users' contacts reach it (``self.master``)."""
        return self.service.master

    @property
    def commandPrefix(self) -> str:
        return self.command_prefix

    @property
    def commandSuffix(self) -> str | None:
        return self.command_suffix

    @property
    def env(self) -> ReporterEnvironment:
        env = self.service._env
        assert env is not None, "the bot's service is not running"
        return env

    # -- logs ----------------------------------------------------------------------------------

    def log(self, event: str, **fields: Any) -> None:
        log.info(event, reporter=self.service.name, **fields)

    def log_error(self, event: str, exc: BaseException, **fields: Any) -> None:
        log.error(
            event,
            reporter=self.service.name,
            error=f"{type(exc).__name__}: {exc}",
            exc_info=exc,
            **fields,
        )

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Run ``coro`` as a task of the service, whose result is the coroutine's; a failure is
        logged (the result is then None), never the master's."""

        async def guarded() -> Any:
            try:
                return await coro
            except Exception as exc:
                self.log_error("chat_task_failed", exc, task=name)
                return None

        return self.service.spawn(guarded(), name=name)

    def start_sending(self, channel: ChatChannel, message: str, kwargs: Mapping[str, Any]) -> Any:
        """Send ``message`` to ``channel`` in a task of its own, after the messages given
        before it (see :meth:`Contact.send`)."""

        async def sending() -> Any:
            async with channel.sending:
                return await channel.send(message, **kwargs)

        return started(self.spawn(sending(), name="chat send"))

    # -- chats and contacts --------------------------------------------------------------------

    def is_valid_user(self, user: Any) -> bool:
        for acl in self.authz.values():
            if acl is True or (isinstance(acl, list | tuple) and user in acl) or user == acl:
                return True
        return "" not in self.authz

    def get_channel(self, chat_id: Any, *, keep: bool = True) -> ChatChannel:
        found = self.channels.get(chat_id)
        if found is None:
            found = self.channelClass(self, chat_id)
            if keep:
                self.channels[chat_id] = found
        return found

    def get_contact(self, user: Any, chat_id: Any) -> Contact:
        found = self.contacts.get((chat_id, user))
        if found is not None and type(found) is not self.contactClass:
            found = None  # contactClass changed (a reconfiguration): contacts of the new one
        if found is None:
            valid = self.is_valid_user(user)
            found = self.contactClass(user=user, channel=self.get_channel(chat_id, keep=valid))
            if valid:
                self.contacts[(chat_id, user)] = found
        return found

    async def send_message(self, chat: Any, message: str, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement send_message")

    # -- state across restarts -----------------------------------------------------------------

    async def _object_id(self) -> int | None:
        env = self.service._env
        if env is None or env.state is None:
            return None
        return await env.state.get_object_id(
            str(self.nickname), f"buildyard.reporters.{type(self.service).__name__}"
        )

    async def save_state(self, attr: str) -> None:
        try:
            objectid = await self._object_id()
            if objectid is None:
                return
            data = [
                [c.id, sorted(getattr(c, attr))] for c in self.channels.values() if getattr(c, attr)
            ]
            assert self.env.state is not None
            await self.env.state.set_state(objectid, attr, data)
        except Exception as exc:
            self.log_error("chat_state_not_saved", exc, state=attr)

    async def load_state(self) -> None:
        try:
            objectid = await self._object_id()
            if objectid is None:
                return
            assert self.env.state is not None
            notify = await self.env.state.get_state(objectid, "notify_events", []) or []
            missing = await self.env.state.get_state(objectid, "missing_workers", []) or []
        except Exception as exc:
            self.log_error("chat_state_not_loaded", exc)
            return
        for chat, events in notify:
            try:
                self.get_channel(chat).add_notification_events(events)
            except Exception as exc:
                self.log_error("chat_state_not_loaded", exc, chat=chat)
        for chat, workers in missing:
            self.get_channel(chat).missing_workers.update(int(w) for w in workers)

    # -- events --------------------------------------------------------------------------------

    async def follow_events(self) -> None:
        """Tell the chats about builds and workers until cancelled (run as a service task)."""
        mq = self.env.mq
        async with mq.subscribe(
            ("builds", None, "new"),
            ("builds", None, "finished"),
            ("workers", None, "missing"),
            ("workers", None, "connected"),
        ) as events:
            async for key, body in events:
                try:
                    await self.on_event(key, body)
                except Exception as exc:
                    self.log_error("chat_event_failed", exc, mq_event="/".join(key))

    async def on_event(self, key: tuple[str, ...], body: Mapping[str, Any]) -> None:
        if key[0] == "workers":
            for channel in list(self.channels.values()):
                if key[2] == "missing":
                    await channel.worker_missing(body)
                else:
                    await channel.worker_connected(body)
            return
        if not any(c.notify_events or c.watched for c in self.channels.values()):
            return
        builder = await self.get_builder(builderid=int(body["builderid"]))
        if self.tags is not None and not any(t in self.tags for t in builder.get("tags") or ()):
            self.log(
                "chat_build_not_notified",
                builder=builder["name"],
                why="tags",
                builder_tags=builder.get("tags"),
                tags=self.tags,
            )
            return
        for channel in list(self.channels.values()):
            try:
                if key[2] == "new":
                    await channel.build_started(body, builder)
                else:
                    buildid = int(body["buildid"])
                    watched = buildid in channel.watched
                    channel.watched.discard(buildid)
                    await channel.build_finished(body, builder, watched=watched)
            except Exception as exc:
                self.log_error(
                    "chat_notify_failed", exc, chat=channel.id, buildid=body.get("buildid")
                )

    # -- reading -------------------------------------------------------------------------------

    # -- Buildbot's names, for users' contacts (Twisted-style code can yield them too) ----------

    @deferred_compatible
    async def getBuilder(self, buildername: str | None = None, builderid: int | None = None) -> Any:
        """The builder named ``buildername`` (or numbered ``builderid``), as the data API gives
        it; a UsageError naming it when there is none."""
        return await self.get_builder(name=buildername, builderid=builderid)

    @deferred_compatible
    async def getAllBuilders(self) -> list[Any]:
        return await self.all_builders()

    @deferred_compatible
    async def getOnlineBuilders(self) -> list[int]:
        """The ids of the builders that a connected worker is configured for."""
        return sorted(await self.online_builderids())

    async def get_list(self, path: tuple[Any, ...], spec: ResultSpec | None = None) -> list[Any]:
        return await details.get_list(self.env.data, path, spec)

    def build_url(self, builderid: int, number: int) -> str:
        return details.url_for_build(self.env, builderid, number)

    def force_scheduler(self, name: str) -> Any:
        """The running force scheduler ``name`` (one with ``force``), else None."""
        manager = getattr(self.service.master, "scheduler_manager", None)
        for svc in manager or ():
            if getattr(svc, "name", None) == name and callable(getattr(svc, "force", None)):
                return svc
        return None

    def validation(self) -> Mapping[str, Any]:
        config = getattr(self.service.master, "config", None)
        return getattr(config, "validation", None) or {}

    async def get_builder(self, *, name: str | None = None, builderid: int | None = None) -> Any:
        if name:
            spec = ResultSpec(filters=(FieldFilter(field="name", op="eq", values=(name,)),))
            found = await self.get_list(("builders",), spec)
            builder = found[0] if found else None
        elif builderid:
            builder = await details.get_item(self.env.data, ("builders", builderid))
        else:
            raise UsageError("no builder specified")
        if builder is None:
            raise UsageError(f"no such builder '{name if name else f'number {builderid}'}'")
        return builder

    async def all_builders(self) -> list[Any]:
        return await self.get_list(("builders",))

    async def online_builderids(self) -> set[int]:
        online: set[int] = set()
        for worker in await self.get_list(("workers",)):
            if worker.get("connected_to"):
                online.update(b["builderid"] for b in worker.get("configured_on") or ())
        return online

    async def running_builds(self, builderid: int) -> list[Any]:
        spec = ResultSpec(
            filters=(
                FieldFilter(field="builderid", op="eq", values=(builderid,)),
                FieldFilter(field="complete", op="eq", values=(False,)),
            ),
            order=("number",),
        )
        return await self.get_list(("builds",), spec)

    async def last_completed_build(self, builderid: int) -> Any:
        spec = ResultSpec(
            filters=(
                FieldFilter(field="builderid", op="eq", values=(builderid,)),
                FieldFilter(field="complete", op="eq", values=(True,)),
            ),
            order=("-number",),
            limit=1,
        )
        found = await self.get_list(("builds",), spec)
        return found[0] if found else None

    async def build_by_number(self, builderid: int, number: int) -> Any:
        return await details.get_item(self.env.data, ("builders", builderid, "builds", number))

    def ago(self, build: Mapping[str, Any]) -> str:
        when = _epoch(build.get("complete_at"))
        return fuzzy_interval(int(time.time() - when)) if when is not None else "??"

    async def build_status(self, which: str, *, short: bool = False) -> str:
        text = f"`{which}`: "
        builder = await self.get_builder(name=which)
        builderid = builder["builderid"]
        running = await self.running_builds(builderid)
        if running:
            parts = []
            for build in running:
                spec = ResultSpec(
                    filters=(FieldFilter(field="complete", op="eq", values=(False,)),),
                    order=("number",),
                    limit=1,
                )
                steps = await self.get_list(("builds", build["buildid"], "steps"), spec)
                step = f"({steps[-1]['state_string']})" if steps else "(no current step)"
                url = self.build_url(builderid, build["number"])
                parts.append(f"build [#{build['number']}]({url}) {step}")
            return text + self.running_string + " " + ", ".join(parts)
        if builderid not in await self.online_builderids():
            return text + self.offline_string
        text += self.idle_string
        last = await self.last_completed_build(builderid)
        if last:
            status = self.format_build_status(last, short=short)
            if not short:
                status = ", " + status
                if _result(last) != Results.SUCCESS and last.get("status_string"):
                    status += ": " + str(last["status_string"])
            text += f"  last build {self.ago(last)} ago{status}"
        return text

    async def revisions_for_build(self, build: Mapping[str, Any]) -> list[str]:
        """The revisions the build was built from (Buildbot 4.3 answers "TODO" here)."""
        request = await details.get_item(
            self.env.data, ("buildrequests", build.get("buildrequestid"))
        )
        if not request:
            return []
        buildset = await details.get_item(self.env.data, ("buildsets", request["buildsetid"]))
        stamps = (buildset or {}).get("sourcestamps") or []
        return [str(s.get("revision")) for s in stamps if s.get("revision")] or ["(none)"]

    async def blame_list(self, build: Mapping[str, Any]) -> list[str]:
        return sorted(set(await details.responsible_users_for_build(self.env, build["buildid"])))

    def format_build_status(self, build: Mapping[str, Any], *, short: bool = False) -> str:
        result = _result(build)
        return RESULTS_DESCRIPTIONS.get(result, "finished") if result is not None else "finished"


#: Buildbot's names (``buildbot.reporters.words``)
StatusBot = ChatBot
Channel = ChatChannel
