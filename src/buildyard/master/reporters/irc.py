"""``reporters.IRC``: Buildbot's IRC bot, with its own small asyncio IRC client.

The client speaks the part of RFC 1459/2812 a bot needs: registration (``PASS``, ``NICK``,
``USER``, optionally SASL PLAIN), ``PING``/``PONG``, ``JOIN`` (with channel keys), ``PART``,
``PRIVMSG``/``NOTICE`` (CTCP ``ACTION`` for ``/me``), ``NAMES`` (to know the channel
operators), nick collisions (``433``: a ``_`` is appended) and ``QUIT``. No IRC library is
used: the maintained asyncio ones bring much more than this needs, and the protocol's lines are
simple to read and write.

Connection: when the connection is lost the bot connects again after ``lostDelay`` seconds;
when connecting fails, after ``failedDelay`` seconds, doubled on each failure in a row up to
eight times ``failedDelay`` (Buildbot waits the same delay each time). A server that stops
answering is noticed by the bot's own ``PING`` every minute. A line the bot cannot read is
logged with the reporter's name and skipped.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from buildyard.common.errors import config_error
from buildyard.master.model.results import Results
from buildyard.master.reporters.chat import (
    USAGE,
    ChatBot,
    ChatChannel,
    Contact,
)
from buildyard.master.reporters.service import BuildbotService

log = structlog.get_logger(__name__)

__all__ = ["IRC"]

CHANNEL_PREFIXES = "&#!+"
#: the longest message text in one line (IRC lines are at most 512 bytes with the command)
MAX_TEXT = 400
PING_EVERY = 60.0

_COLORS = (
    "WHITE",
    "BLACK",
    "NAVY_BLUE",
    "GREEN",
    "RED",
    "BROWN",
    "PURPLE",
    "OLIVE",
    "YELLOW",
    "LIME_GREEN",
    "TEAL",
    "AQUA_LIGHT",
    "ROYAL_BLUE",
    "PINK",
    "DARK_GRAY",
    "LIGHT_GRAY",
)
RESULT_COLORS = {
    Results.SUCCESS: "GREEN",
    Results.WARNINGS: "YELLOW",
    Results.FAILURE: "RED",
    Results.SKIPPED: "ROYAL_BLUE",
    Results.EXCEPTION: "PURPLE",
    Results.RETRY: "AQUA_LIGHT",
    Results.CANCELLED: "PINK",
}
SHORT_DESCRIPTIONS = {
    Results.SUCCESS: ", Success",
    Results.WARNINGS: ", Warnings",
    Results.FAILURE: ", Failure",
    Results.SKIPPED: ", Skipped",
    Results.EXCEPTION: ", Exception",
    Results.RETRY: ", Retry",
    Results.CANCELLED: ", Cancelled",
}

IRC_USAGE = {
    "join": "join #channel - join a channel #channel",
    "leave": "leave #channel - leave a channel #channel",
    "mute": "mute - suppress all messages until a corresponding 'unmute' is issued",
    "unmute": "unmute - disable a previous 'mute'",
}
IRC_DOCS = {
    "dance": "dance, dance academy...",
    "join": "join a channel",
    "leave": "leave a channel",
}


class LineError(ValueError):
    """A line from the server that is not an IRC message."""


def parse_line(line: str) -> tuple[str, str, list[str]]:
    """``(prefix, command, params)`` of one IRC line (without its CR LF)."""
    prefix = ""
    rest = line
    if rest.startswith("@"):  # IRCv3 message tags: not used
        _, _, rest = rest.partition(" ")
    if rest.startswith(":"):
        prefix, _, rest = rest[1:].partition(" ")
    trailing = None
    if " :" in rest:
        rest, trailing = rest.split(" :", 1)
    elif rest.startswith(":"):
        rest, trailing = "", rest[1:]
    params = rest.split()
    if not params:
        raise LineError(f"no command in {line[:100]!r}")
    command = params.pop(0).upper()
    if not (command.isalpha() or (command.isdigit() and len(command) == 3)):
        raise LineError(f"bad command {command[:20]!r} in {line[:100]!r}")
    if trailing is not None:
        params.append(trailing)
    return prefix, command, params


def _nick(prefix: str) -> str:
    return prefix.split("!", 1)[0]


class IRCChannel(ChatChannel):
    def __init__(self, bot: ChatBot, chat_id: Any) -> None:
        super().__init__(bot, chat_id)
        self.muted = False

    async def send(self, message: str, **kwargs: Any) -> Any:
        if not self.muted:
            await self.bot.send_message(self.id, message, **kwargs)

    async def act(self, action: str) -> None:
        if not self.muted:
            bot = self.bot
            assert isinstance(bot, IrcBot)
            bot.describe(self.id, action)


class IRCContact(Contact):
    channel: IRCChannel

    @property
    def irc(self) -> IrcBot:
        bot = self.bot
        assert isinstance(bot, IrcBot)
        return bot

    def usage(self, command: str) -> Any:
        return IRC_USAGE.get(command) or USAGE.get(command)

    def extra_docs(self) -> dict[str, str]:
        return IRC_DOCS

    async def handle_action(self, action: str) -> None:
        """``/me <verb>s <bot nick>``: the bot answers in kind."""
        if not action.endswith("s " + (self.irc.nickname or "")):
            return
        verb = action.split()[-2]
        if verb == "kicks":
            response = f"{verb} back"
        elif verb == "threatens":
            response = f"hosts a red wedding for {self.user_id}"
        else:
            response = f"{verb} {self.user_id} too"
        await self.channel.act(response)

    async def op_required(self, command: str) -> bool:
        if self.is_private_chat or self.user_id in (self.bot.authz.get(command.upper()) or ()):
            return False
        ops = await self.irc.channel_ops(self.channel.id)
        return self.user_id not in ops

    async def command_JOIN(self, args: str, **kwargs: Any) -> None:
        for channel in self.split_args(args):
            self.irc.join(channel)

    async def command_LEAVE(self, args: str, **kwargs: Any) -> None:
        for channel in self.split_args(args):
            self.irc.leave(channel)

    async def command_MUTE(self, args: str, **kwargs: Any) -> None:
        if await self.op_required("mute"):
            await self.send(
                "Only channel operators or explicitly allowed users "
                f"can mute me here, {self.user_id}... Blah, blah, blah..."
            )
            return
        await self.send("Shutting up for now.")
        self.channel.muted = True

    async def command_UNMUTE(self, args: str, **kwargs: Any) -> None:
        if not self.channel.muted:
            await self.send(
                "No one had told me to be quiet, but it's the thought that counts, right?"
            )
            return
        if await self.op_required("mute"):
            return
        self.channel.muted = False
        await self.send("I'm baaaaaaaaaaack!")

    async def command_NOTIFY(self, args: str, **kwargs: Any) -> None:
        if not self.is_private_chat:
            argv = self.split_args(args)
            if argv and argv[0] in ("on", "off") and await self.op_required("notify"):
                await self.send(
                    "Only channel operators can change notified events for this "
                    f"channel. And you, {self.user_id}, are neither!"
                )
                return
        await super().command_NOTIFY(args, **kwargs)

    async def command_DANCE(self, args: str, **kwargs: Any) -> None:
        async def dance() -> None:
            last = 0.0
            for at, move in ((1.0, "<(^.^<)"), (2.0, "<(^.^)>"), (3.0, "(>^.^)>"),
                             (3.5, "(7^.^)7"), (5.0, "(>^.^<)")):  # fmt: skip
                await asyncio.sleep(at - last)
                last = at
                await self.send(move)

        _ = self.irc.spawn(dance(), name="dance")

    async def command_DESTROY(self, args: str, **kwargs: Any) -> None:
        if (self.irc.nickname or "") not in args:
            await self.channel.act("readies phasers")
        else:
            await self.send(f"Better destroy yourself, {self.user_id}!")

    async def command_HUSTLE(self, args: str, **kwargs: Any) -> None:
        await self.channel.act("does the hustle")


class IrcBot(ChatBot):
    """The chat layer on one IRC connection at a time (the connection is replaced when lost)."""

    contactClass: type[IRCContact] = IRCContact
    channelClass = IRCChannel

    def __init__(
        self,
        service: IRC,
        *,
        nickname: str,
        password: str | None,
        join_channels: Sequence[Any],
        pm_to_nicks: Sequence[str],
        notice_on_channel: bool,
        use_colors: bool,
        use_sasl: bool,
        **kwargs: Any,
    ) -> None:
        super().__init__(service, nickname=nickname, **kwargs)
        self.irc_service = service
        self.wanted_nick = nickname
        self.nickname = nickname
        self.password = password
        self.join_channels = list(join_channels)
        self.pm_to_nicks = list(pm_to_nicks)
        self.notice_on_channel = notice_on_channel
        self.use_colors = use_colors
        self.use_sasl = use_sasl
        self.writer: asyncio.StreamWriter | None = None
        self.signed_on = asyncio.Event()
        self._names: dict[str, tuple[list[asyncio.Future[list[str]]], list[str]]] = {}
        self.joined: set[str] = set()

    # -- output --------------------------------------------------------------------------------

    def send_line(self, line: str) -> None:
        writer = self.writer
        if writer is None or writer.is_closing():
            self.log("irc_line_dropped", why="not connected", command=line.split(" ", 1)[0])
            return
        line = line.replace("\r", " ").replace("\n", " ")
        writer.write(line.encode("utf-8", "replace")[:510] + b"\r\n")

    def _say(self, command: str, target: str, message: str) -> None:
        for text in message.splitlines() or [""]:
            if not text:
                continue
            data = text.encode("utf-8")
            while data:
                cut = len(data[:MAX_TEXT].decode("utf-8", "ignore").encode("utf-8"))
                self.send_line(f"{command} {target} :{data[:cut].decode('utf-8')}")
                data = data[cut:]

    async def send_message(self, chat: Any, message: str, **kwargs: Any) -> None:
        chat = str(chat)
        if chat[:1] in CHANNEL_PREFIXES and self.notice_on_channel:
            self._say("NOTICE", chat, message)
        else:
            self._say("PRIVMSG", chat, message)
        writer = self.writer
        if writer is not None and not writer.is_closing():
            with contextlib.suppress(ConnectionError):
                await writer.drain()

    def describe(self, target: str, action: str) -> None:
        self.send_line(f"PRIVMSG {target} :\x01ACTION {action}\x01")

    def join(self, channel: str, key: str | None = None) -> None:
        self.send_line(f"JOIN {channel} {key}" if key else f"JOIN {channel}")

    def leave(self, channel: str) -> None:
        self.send_line(f"PART {channel}")

    async def channel_ops(self, channel: str) -> list[str]:
        """The nicks marked operator (``@``, ``&``, ``~``, ``%``) in ``NAMES channel``."""
        channel = channel.lower()
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._names.setdefault(channel, ([], []))[0].append(future)
        self.send_line(f"NAMES {channel}")
        async with asyncio.timeout(30):
            names = await future
        return [n[1:].lower() for n in names if n[:1] in "@&~%"]

    def format_build_status(self, build: Mapping[str, Any], *, short: bool = False) -> str:
        result = Results(build["results"]) if build.get("results") in set(Results) else None
        if result is None:
            return "finished"
        text = SHORT_DESCRIPTIONS[result] if short else super().format_build_status(build)
        if self.use_colors:
            return f"\x03{_COLORS.index(RESULT_COLORS[result])}{text}\x0f"
        return text

    def get_contact(self, user: Any, chat_id: Any = None) -> Contact:
        user = str(user).lower()
        return super().get_contact(user, str(chat_id or user).lower())

    # -- input ---------------------------------------------------------------------------------

    def register(self) -> None:
        if self.use_sasl and self.password is not None:
            self.send_line("CAP REQ :sasl")
        elif self.password is not None:
            self.send_line(f"PASS {self.password}")
        self.send_line(f"NICK {self.nickname}")
        self.send_line(f"USER {self.nickname} 0 * :{self.nickname}")
        if self.use_sasl and self.password is not None:
            self.send_line("AUTHENTICATE PLAIN")

    async def handle_line(self, line: str) -> None:
        prefix, command, params = parse_line(line)
        if command == "PING":
            self.send_line("PONG :" + (params[-1] if params else ""))
        elif command == "AUTHENTICATE":
            me = (self.nickname or "").encode()
            code = base64.b64encode(me + b"\0" + me + b"\0" + (self.password or "").encode())
            self.send_line("AUTHENTICATE " + code.decode())
            self.send_line("CAP END")
        elif command == "001":
            if params:
                self.nickname = params[0]
            await self.on_signed_on()
        elif command == "433":  # nick in use
            self.nickname = (self.nickname or "buildbot") + "_"
            self.send_line(f"NICK {self.nickname}")
        elif command == "JOIN" and params:
            channel = params[0].lower()
            if _nick(prefix).lower() == (self.nickname or "").lower():
                self.joined.add(channel)
                self.log("irc_joined", channel=channel)
                self.get_channel(channel).add_notification_events(self.notify_events)
        elif command == "PART" and params:
            channel, who = params[0].lower(), _nick(prefix).lower()
            if who == (self.nickname or "").lower():
                self.joined.discard(channel)
                self.log("irc_left", channel=channel)
            self.contacts.pop((channel, who), None)
        elif command == "KICK" and len(params) >= 2:
            channel, kicked = params[0].lower(), params[1].lower()
            if kicked == (self.nickname or "").lower():
                self.joined.discard(channel)
                self.log("irc_kicked", channel=channel, by=_nick(prefix), why=params[-1])
            self.contacts.pop((channel, kicked), None)
        elif command == "QUIT":
            who = _nick(prefix).lower()
            for key in [k for k in self.contacts if k[1] == who]:
                del self.contacts[key]
        elif command == "353" and len(params) >= 4:  # NAMES reply
            waiting = self._names.get(params[2].lower())
            if waiting is not None:
                waiting[1].extend(params[3].split())
        elif command == "366" and len(params) >= 2:  # end of NAMES
            futures, names = self._names.pop(params[1].lower(), ([], []))
            for future in futures:
                if not future.done():
                    future.set_result(names)
        elif command == "PRIVMSG" and len(params) >= 2:
            await self.on_privmsg(_nick(prefix), params[0], params[1])
        elif command in ("ERROR", "465", "464", "471", "473", "474", "475"):
            self.log("irc_server_refused", command=command, message=" ".join(params)[:300])

    async def on_signed_on(self) -> None:
        self.signed_on.set()
        self.log("irc_signed_on", nick=self.nickname)
        if self.password and not self.use_sasl:
            self.send_line(f"PRIVMSG NickServ :IDENTIFY {self.password}")
        for c in self.join_channels:
            if isinstance(c, Mapping):
                self.join(str(c.get("channel")), c.get("password"))
            else:
                self.join(str(c))
        for nick in self.pm_to_nicks:
            self.get_contact(nick).channel.add_notification_events(self.notify_events)

    async def on_privmsg(self, user: str, target: str, message: str) -> None:
        if message.startswith("\x01ACTION ") and message.endswith("\x01"):
            if target[:1] in CHANNEL_PREFIXES and (self.nickname or "") in message:
                contact = self.get_contact(user, target)
                assert isinstance(contact, IRCContact)
                _ = self.spawn(contact.handle_action(message[8:-1]), name="irc action")
            return
        if message.startswith("\x01"):  # other CTCP requests: not answered
            return
        # a command runs in a task of its own: it may wait for the server's answers (NAMES)
        if target.lower() == (self.nickname or "").lower():
            contact = self.get_contact(user)
            _ = self.spawn(contact.handle_message(message), name="irc command")
            return
        for sep in (":", ","):
            mention = f"{self.nickname}{sep}"
            if message.startswith(mention):
                contact = self.get_contact(user, target)
                _ = self.spawn(contact.handle_message(message[len(mention) :]), name="irc command")
                return


#: Buildbot's name of the IRC bot's class: a site sets ``IrcStatusBot.contactClass`` to its
#: own ``IRCContact`` subclass
IrcStatusBot = IrcBot


class IRC(BuildbotService):
    """Buildbot's arguments: ``host``, ``nick``, ``channels`` (names, or dicts with
    ``channel`` and ``password``), ``pm_to_nicks``, ``port`` (6667), ``allowForce`` and
    ``allowShutdown`` (deprecated forms of ``authz``), ``tags``, ``password`` (for the server's
    ``PASS`` and NickServ, or SASL; may be a secret), ``notify_events``, ``showBlameList``
    (True), ``useRevisions``, ``useSSL``, ``useSASL``, ``lostDelay``, ``failedDelay``,
    ``useColors`` (True), ``noticeOnChannel``, ``authz``."""

    name = "IRC"
    secrets = ("password",)

    def checkConfig(
        self,
        host: Any = None,
        nick: Any = None,
        channels: Any = None,
        pm_to_nicks: Any = None,
        port: Any = 6667,
        allowForce: Any = None,
        tags: Any = None,
        password: Any = None,
        notify_events: Any = None,
        showBlameList: Any = True,
        useRevisions: Any = False,
        useSSL: Any = False,
        useSASL: Any = False,
        lostDelay: Any = None,
        failedDelay: Any = None,
        useColors: Any = True,
        allowShutdown: Any = None,
        noticeOnChannel: Any = False,
        authz: Any = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            config_error(f"IRC: {','.join(kwargs)} are deprecated")
        if not isinstance(host, str) or not host:
            config_error("IRC: host must be a host name")
        if not isinstance(nick, str) or not nick:
            config_error("IRC: nick must be a string")
        if not isinstance(channels, list | tuple):
            config_error("IRC: channels must be a list of channel names or dicts")
        else:
            for c in channels:
                name = c.get("channel") if isinstance(c, Mapping) else c
                if not isinstance(name, str) or not name:
                    config_error(f"IRC: channel {c!r} has no channel name")
        if not isinstance(port, int):
            config_error(f"IRC: port must be an integer, not {port!r}")
        for what, value in (("allowForce", allowForce), ("allowShutdown", allowShutdown)):
            if value is not None:
                if authz is not None:
                    config_error(f"IRC: if you specify authz, you must not use {what} anymore")
                if value not in (True, False):
                    config_error(f"IRC: {what} must be boolean, not {value!r}")
                log.warning("irc_deprecated_argument", argument=what, use="authz")
        if noticeOnChannel not in (True, False):
            config_error(f"IRC: noticeOnChannel must be boolean, not {noticeOnChannel!r}")
        if authz is not None:
            if not isinstance(authz, Mapping):
                config_error("IRC: authz must be a dict of command: bool or list of nicks")
            else:
                for acl in authz.values():
                    if not isinstance(acl, list | tuple | bool):
                        config_error("IRC: authz values must be bool or a list of nicks")
        for what, delay in (("lostDelay", lostDelay), ("failedDelay", failedDelay)):
            if delay is not None and (not isinstance(delay, int | float) or delay < 0):
                config_error(f"IRC: {what} must be a number of seconds, not {delay!r}")

    def reconfigService(
        self,
        host: str,
        nick: str,
        channels: Sequence[Any],
        pm_to_nicks: Sequence[str] | None = None,
        port: int = 6667,
        allowForce: bool | None = None,
        tags: Sequence[str] | None = None,
        password: str | None = None,
        notify_events: Any = None,
        showBlameList: bool = True,
        useRevisions: bool = False,
        useSSL: bool = False,
        useSASL: bool = False,
        lostDelay: float | None = None,
        failedDelay: float | None = None,
        useColors: bool = True,
        allowShutdown: bool | None = None,
        noticeOnChannel: bool = False,
        authz: Mapping[Any, Any] | None = None,
    ) -> None:
        self.host, self.port, self.nick = host, port, nick
        self.use_ssl = bool(useSSL)
        self.lost_delay = float(lostDelay) if lostDelay is not None else random.randint(1, 5)
        self.failed_delay = (
            float(failedDelay) if failedDelay is not None else random.randint(45, 60)
        )
        full_authz: dict[Any, Any] = dict(authz or {})
        if allowForce is not None:
            full_authz[("force", "stop")] = allowForce
        if allowShutdown is not None:
            full_authz["shutdown"] = allowShutdown
        previous: IrcBot | None = getattr(self, "bot", None)
        self.bot = IrcBot(
            self,
            nickname=nick,
            password=password,
            join_channels=list(channels),
            pm_to_nicks=list(pm_to_nicks or ()),
            notice_on_channel=bool(noticeOnChannel),
            use_colors=bool(useColors),
            use_sasl=bool(useSASL),
            authz=full_authz,
            tags=tags,
            notify_events=notify_events,
            use_revisions=useRevisions,
            show_blame_list=showBlameList,
        )
        old = getattr(self, "_connection", None)
        if old is not None:  # arguments changed: a new bot, a new connection
            if previous is not None:
                previous.send_line("QUIT :buildmaster reconfigured: bot disconnecting")
            old.cancel()
            self._connection = self.bot.spawn(self._run(), name="irc connection")

    def startService(self) -> None:
        self._connection = self.bot.spawn(self._run(), name="irc connection")

    async def stopService(self) -> None:
        bot = getattr(self, "bot", None)
        if bot is not None and bot.writer is not None and not bot.writer.is_closing():
            with contextlib.suppress(Exception):
                bot.send_line("QUIT :buildmaster reconfigured: bot disconnecting")
                async with asyncio.timeout(2):
                    await bot.writer.drain()

    # -- the connection ------------------------------------------------------------------------

    async def _run(self) -> None:
        bot = self.bot
        await bot.load_state()
        events = bot.spawn(bot.follow_events(), name="irc events")
        failures = 0
        try:
            while True:
                try:
                    context = ssl.create_default_context() if self.use_ssl else None
                    async with asyncio.timeout(60):
                        reader, writer = await asyncio.open_connection(
                            self.host, self.port, ssl=context
                        )
                except (OSError, TimeoutError) as exc:
                    delay = self.failed_delay * min(2**failures, 8)
                    failures += 1
                    log.warning(
                        "irc_connect_failed",
                        reporter=self.name,
                        server=f"{self.host}:{self.port}",
                        error=f"{type(exc).__name__}: {exc}",
                        retry_in=delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                log.info("irc_connected", reporter=self.name, server=f"{self.host}:{self.port}")
                try:
                    why = await self._session(bot, reader, writer)
                except Exception as exc:  # a bug here must not stop the master
                    log.error("irc_session_failed", reporter=self.name, exc_info=exc)
                    why = f"{type(exc).__name__}: {exc}"
                if bot.signed_on.is_set():
                    failures = 0
                bot.signed_on.clear()
                log.warning(
                    "irc_connection_lost",
                    reporter=self.name,
                    server=f"{self.host}:{self.port}",
                    why=why,
                    retry_in=self.lost_delay,
                )
                await asyncio.sleep(self.lost_delay)
        finally:
            events.cancel()

    async def _session(
        self, bot: IrcBot, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> str:
        bot.writer = writer
        bot.nickname = bot.wanted_nick
        bot.joined.clear()
        pinger = bot.spawn(self._keep_alive(bot), name="irc ping")
        try:
            bot.register()
            while True:
                try:
                    async with asyncio.timeout(PING_EVERY * 2.5):
                        raw = await reader.readline()
                except TimeoutError:
                    return "the server stopped answering"
                except (ConnectionError, ValueError) as exc:  # ValueError: a line too long
                    return f"{type(exc).__name__}: {exc}"
                if not raw:
                    return "closed by the server"
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line:
                    continue
                try:
                    await bot.handle_line(line)
                except Exception as exc:
                    log.warning(
                        "irc_line_unreadable",
                        reporter=self.name,
                        line=line[:200],
                        error=f"{type(exc).__name__}: {exc}",
                    )
        finally:
            pinger.cancel()
            bot.writer = None
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _keep_alive(self, bot: IrcBot) -> None:
        while True:
            await asyncio.sleep(PING_EVERY)
            bot.send_line(f"PING {bot.nickname}")
