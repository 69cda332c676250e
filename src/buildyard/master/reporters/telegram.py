"""``reporters.TelegramBot``: Buildbot's Telegram bot, over the Telegram Bot API.

Requests are ``POST https://api.telegram.org/bot<token>/<method>`` with a JSON body, answered
``{"ok": true, "result": ...}`` or ``{"ok": false, "description": ...}``. The bot asks
``getMe`` for its user name (unless ``bot_username`` is given), tells Telegram its commands
(``setMyCommands``), then polls ``getUpdates`` (long polling, ``timeout`` = ``pollTimeout``,
``offset`` one past the last update seen) and answers with ``sendMessage`` (Markdown, cut at
4096 characters), ``answerCallbackQuery`` for its inline keyboards' buttons, and
``editMessageReplyMarkup`` to take a used keyboard away.

With ``useWebhook=True`` there is no polling: the bot serves ``<buildbotURL>telegram<token>``
on the master's web server and tells Telegram so with ``setWebhook``, as Buildbot does. Beyond
Buildbot, it also gives Telegram a ``secret_token`` (derived from the bot's token) and refuses
requests that do not carry it, and it answers an update that comes twice (Telegram re-sends
those it thinks were not received) only once.

The token is part of every request's address (and of the webhook's): it is never logged (errors
name the method only, and any text echoing the token has it replaced).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import hmac
import io
import json
import random
import shlex
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import aiohttp
import structlog

from buildyard.common.errors import config_error
from buildyard.master.data.resultspec import ResultSpec
from buildyard.master.model.results import Results
from buildyard.master.reporters.chat import (
    USAGE,
    ChatBot,
    ChatChannel,
    Contact,
    UsageError,
)
from buildyard.master.reporters.service import BuildbotService

log = structlog.get_logger(__name__)

__all__ = ["TelegramBot"]

#: the longest text of one message
MAX_MESSAGE = 4096
#: how many times a request is sent before it is given up (polling retries for ever)
SEND_ATTEMPTS = 5
#: how many long button payloads a bot remembers (an older button says it is no longer valid)
BUTTONS_KEPT = 1000

RESULTS_EMOJI = {
    Results.SUCCESS: " ✅",
    Results.WARNINGS: " ⚠️",
    Results.FAILURE: "❗",
    Results.EXCEPTION: " ‼️",
    Results.RETRY: " 🔄",
    Results.CANCELLED: " 🚫",
    Results.SKIPPED: "",
}

ACCESS_DENIED_MESSAGES = (
    "🧙‍♂️ You shall not pass! 👹",
    "😨 Oh NO! You are simply not allowed to this! 😢",
    "⛔ You cannot do this. Better go outside and relax... 🌳",
    "⛔ ACCESS DENIED! This incident has ben reported to NSA, KGB, and George Soros! 🕵",
    "🚫 Unauthorized access detected! Your device will explode in 3... 2... 1... 💣",
    "☢ Radiation level too high! Continuation of the procedure forbidden! 🛑",
)

TELEGRAM_DOCS = {
    "getid": "get user and chat ID",
    "nay": "forget the current command",
}
TELEGRAM_USAGE = {
    "getid": "getid - get user and chat ID that can be put in the master configuration file",
    "nay": "nay - never mind the command we are currently discussing",
}


class TelegramError(RuntimeError):
    """A request Telegram refused or that could not be sent (the token is never in it)."""


class TelegramChannel(ChatChannel):
    def __init__(self, bot: ChatBot, chat_id: Any) -> None:
        info = dict(chat_id) if isinstance(chat_id, Mapping) else {"id": chat_id}
        super().__init__(bot, info["id"])
        self.chat_info = info

    async def list_notified_events(self) -> None:
        if self.notify_events:
            events = "\n".join(sorted(f"🔔 **{e}**" for e in self.notify_events))
            await self.send(f"The following events are being notified:\n{events}")
        else:
            await self.send("🔕 No events are being notified.")


class TelegramContact(Contact):
    channel: TelegramChannel

    def __init__(self, user: Any, channel: ChatChannel) -> None:
        info = dict(user) if isinstance(user, Mapping) else {"id": user, "first_name": str(user)}
        super().__init__(info["id"], channel)
        self.user_info = info
        # a command waiting for the user's next message (``{}`` is where it goes)
        self.template: str | None = None

    @property
    def tg(self) -> TelegramPollingBot:
        bot = self.bot
        assert isinstance(bot, TelegramPollingBot)
        return bot

    @property
    def user_name(self) -> str:
        return str(self.user_info.get("first_name", self.user_id))

    @property
    def user_full_name(self) -> str:
        first = str(self.user_info.get("first_name", ""))
        return f"{first} {self.user_info.get('last_name', '')}".strip()

    @property
    def chat_id(self) -> Any:
        return self.channel.id

    def describeUser(self) -> str:
        user = self.user_full_name
        if "username" in self.user_info:
            user += f" (@{self.user_info['username']})"
        if not self.is_private_chat:
            title = self.channel.chat_info.get("title")
            if title:
                user += f" on '{title}'"
        return user

    def usage(self, command: str) -> Any:
        return TELEGRAM_USAGE.get(command) or USAGE.get(command)

    async def access_denied(
        self, args: str, tmessage: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        await self.send(
            random.choice(ACCESS_DENIED_MESSAGES),
            reply_to_message_id=(tmessage or {}).get("message_id"),
        )

    def button(self, caption: str, payload: str) -> dict[str, Any]:
        """An inline keyboard's button; a payload too long for Telegram's 64 bytes of
        callback data is kept by the bot and sent as a number, as Buildbot does."""
        return {"text": caption, "callback_data": self.tg.button_data(payload)}

    @classmethod
    def described_commands(cls) -> list[tuple[str, str]]:
        """The commands and what each does, for Telegram's menu (``setMyCommands``) and
        ``/commands botfather``: a user's command by its docstring, else its name."""
        described = []
        for command in cls.commands():
            if command != "start":
                doc = TELEGRAM_DOCS.get(command) or cls.describe_command(command) or command
                described.append((command, doc))
        return described

    async def command_START(self, args: str, **kwargs: Any) -> None:
        await self.tg.post(
            "setChatMenuButton", {"chat_id": self.channel.id, "menu_button": {"type": "commands"}}
        )
        await self.command_HELLO(args)
        await self.command_HELP("")

    async def command_NAY(
        self, args: str, tmessage: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        replied = (tmessage or {}).get("reply_to_message")
        if replied and "reply_markup" in replied:
            await self.tg.edit_keyboard(self.channel.id, replied["message_id"])
        if self.is_private_chat:
            await self.send("Never mind...")
        else:
            await self.send(f"Never mind, {self.user_name}...")

    async def command_GETID(self, args: str, **kwargs: Any) -> None:
        if self.is_private_chat:
            await self.send(f"Your ID is `{self.user_id}`.")
        else:
            await self.send(f"{self.user_name}, your ID is `{self.user_id}`.")
            kind = self.channel.chat_info.get("type", "group")
            await self.send(f"This {kind} ID is `{self.channel.id}`.")

    async def command_COMMANDS(self, args: str, **kwargs: Any) -> None:
        if args.lower() == "botfather":
            await self.send("\n".join(f"{c} - {d}" for c, d in self.described_commands()))
        else:
            await super().command_COMMANDS(args)

    async def command_HELP(self, args: str, **kwargs: Any) -> None:
        await super().command_HELP(args)

    def extra_docs(self) -> dict[str, str]:
        return TELEGRAM_DOCS

    async def command_LIST(self, args: str, **kwargs: Any) -> None:
        if args.strip():
            argv = self.split_args(args)
            everything = bool(argv) and argv[0] == "all"
            num = int(argv[0]) if argv and argv[0].isdigit() else 10
            what = argv[1:] if everything or (argv and argv[0].isdigit()) else argv
            # Telegram's lists are Markdown, one item a line (IRC's are one line of words)
            if what in (["builders"], ["workers"]):
                await self.send("\n".join(await self._listing(what[0], everything)))
            elif what == ["changes"]:
                await self._list_changes(everything, num)
            else:
                await super().command_LIST(args)
            return
        keyboard = [
            [
                self.button("👷️ Builders", "/list builders"),
                self.button("👷️ (including old ones)", "/list all builders"),
            ],
            [
                self.button("⚙ Workers", "/list workers"),
                self.button("⚙ (including old ones)", "/list all workers"),
            ],
            [self.button("📄 Changes (last 10)", "/list changes")],
        ]
        await self.send("What do you want to list?", reply_markup={"inline_keyboard": keyboard})

    async def _listing(self, what: str, everything: bool) -> list[str]:
        lines = [f"I found the following **{what}**:"]
        if what == "builders":
            online = await self.bot.online_builderids()
            for b in await self.bot.all_builders():
                if b["builderid"] in online:
                    lines.append(f"`{b['name']}`")
                elif everything:
                    lines.append(f"`{b['name']}` ❌")
            return lines
        for w in await self.bot.get_list(("workers",)):
            if w.get("configured_on"):
                lines.append(f"`{w['name']}`" + ("" if w.get("connected_to") else " ⚠️"))
            elif everything:
                lines.append(f"`{w['name']}` ❌")
        return lines

    async def _list_changes(self, everything: bool, num: int) -> None:
        """A "getting them" notice (deleted once they are read), then the changes, newest
        first; asked for all of more than 50, a question with buttons instead."""
        waiting = await self.send("⏳ Getting your changes...")
        spec = None if everything else ResultSpec(order=("-changeid",), limit=num)
        changes = await self.bot.get_list(("changes",), spec)
        if isinstance(waiting, Mapping) and "message_id" in waiting:
            await self.tg.delete_message(self.channel.id, waiting["message_id"])
        if everything and len(changes) > 50:
            keyboard = [
                [self.button("‼ Yes, flood me with all of them!", f"/list {len(changes)} changes")],
                [self.button("✅ No, just show last 50", "/list 50 changes")],
            ]
            await self.send(
                f"I found {len(changes)} changes. Do you really want me to list them all?",
                reply_markup={"inline_keyboard": keyboard},
            )
            return
        lines = ["I found the following recent **changes**:\n"]
        # newest first, as Buildbot's Telegram bot lists them
        for change in sorted(changes, key=lambda c: -int(c.get("changeid") or 0)):
            when = change.get("when_timestamp")
            if isinstance(when, datetime.datetime):
                when = when.timestamp()
            date = datetime.datetime.fromtimestamp(float(when or 0), datetime.UTC)
            comment = (str(change.get("comments") or "").split("\n"))[0]
            lines.append(
                f"[{comment}]({change.get('revlink')})\n"
                f"_Author_: {change.get('author')}\n"
                f"_Date_: {date.strftime('%Y-%m-%d %H:%M')}\n"
                f"_Repository_: {change.get('repository')}\n"
                f"_Branch_: {change.get('branch')}\n"
                f"_Revision_: {change.get('revision')}\n"
            )
        await self.send("\n".join(lines))

    async def _running_builders(self) -> list[str]:
        names = []
        for b in await self.bot.all_builders():
            if await self.bot.running_builds(b["builderid"]):
                names.append(b["name"])
        return names

    async def command_WATCH(self, args: str, **kwargs: Any) -> None:
        if args.strip():
            await super().command_WATCH(args)
            return
        builders = await self._running_builders()
        if not builders:
            await self.send("There are no currently running builds.")
            return
        keyboard = [[self.button("🔎 " + b, f"/watch {b}")] for b in builders]
        await self.send(
            "Which builder do you want to watch?", reply_markup={"inline_keyboard": keyboard}
        )

    async def command_NOTIFY(self, args: str, **kwargs: Any) -> None:
        if args.strip():
            await super().command_NOTIFY(args)
            return
        events = ("started", "finished", "success", "warnings", "failure", "exception",
                  "cancelled", "problem", "recovery", "worse", "better", "worker")  # fmt: skip
        keyboard = [
            [
                self.button(
                    f"{'🔔' if e in self.channel.notify_events else '🔕'} {e}",
                    f"/notify {'off' if e in self.channel.notify_events else 'on'}-quiet {e}",
                )
                for e in events[i : i + 2]
            ]
            for i in range(0, len(events), 2)
        ] + [[self.button("Hide...", "/notify list")]]
        await self.send(
            "Here are available notifications and their current state. Click to turn them on/off.",
            reply_markup={"inline_keyboard": keyboard},
        )

    async def command_STOP(self, args: str, **kwargs: Any) -> None:
        argv = self.split_args(args)
        if len(argv) >= 3:
            await super().command_STOP(args)
            return
        if argv and argv[0] != "build":
            raise UsageError("Try '/stop' and follow the instructions")
        if len(argv) < 2:
            builders = await self._running_builders()
            if not builders:
                await self.send("No build is running now.")
                return
            keyboard = [[self.button("🚫 " + b, f"/stop build {b}")] for b in builders]
            await self.send("Select builder to stop...", reply_markup={"inline_keyboard": keyboard})
            return
        self.template = f"/stop build {argv[1]} {{}}"
        await self.ask_for_reply(f"give me the reason to stop build on `{argv[1]}`")

    async def command_SHUTDOWN(self, args: str, **kwargs: Any) -> None:
        if args:
            await super().command_SHUTDOWN(args)
            return
        if self.bot.service.master.botmaster.shutting_down:
            first = self.button("🔙 Stop Shutdown", "/shutdown stop")
            text = "Buildbot is currently shutting down.\n\n"
        else:
            first = self.button("↘️ Begin Shutdown", "/shutdown start")
            text = ""
        keyboard = [[first, self.button("‼️ Shutdown Now", "/shutdown now")]]
        await self.send(
            text + "What do you want to do?", reply_markup={"inline_keyboard": keyboard}
        )

    async def ask_for_reply(self, prompt: str, greeting: str = "Ok") -> Any:
        """Ask for the user's next message (``template`` says where it goes), in Buildbot's
        words: in a group, by @name with a forced reply when the user has a name."""
        kwargs: dict[str, Any] = {}
        username = self.user_info.get("username", "")
        if self.is_private_chat:
            text = f"{greeting}, now {prompt}" if greeting else prompt[:1].upper() + prompt[1:]
        elif username:
            text = (
                f"{greeting} @{username}, now {prompt}"
                if greeting
                else f"@{username}, now {prompt}"
            )
            kwargs["reply_markup"] = {"force_reply": True, "selective": True}
        elif greeting:
            text = f"{greeting}, now reply to this message and {prompt}"
        else:
            text = f"Reply to this message and {prompt}"
        text += "..."
        return await self.send(text, **kwargs)

    async def command_FORCE(
        self, args: str, tquery: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        """Buildbot's /force dialog: choose the force scheduler (when there are several), the
        builder, then see and change the scheduler's parameters with buttons, and start the
        build. ``/force build BUILDER REASON`` with IRC's options works too (buildyard)."""
        argv = self.split_args(args)
        schedulers = {s["name"]: s for s in await self.bot.get_list(("forceschedulers",))}
        # IRC's form: "build", then a builder and a reason that is not NAME=VALUE parameters
        if argv[:1] == ["build"] and (
            not schedulers
            or any(a.startswith("--") for a in argv[1:])
            or any("=" not in a for a in argv[2:])
        ):
            await super().command_FORCE(args)
            return
        if not schedulers:
            raise UsageError("no force schedulers configured for use by /force")
        again = "Try '/force' and follow the instructions"
        sched = await self._choose_scheduler(argv, schedulers, again)
        if sched is None:
            return
        scheduler = schedulers[sched]
        task = argv.pop(0) if argv else "config"
        if tquery and task != "config":
            message = tquery.get("message") or {}
            if "message_id" in message:
                await self.tg.edit_keyboard(self.channel.id, message["message_id"])
        if not argv:
            keyboard = [
                [self.button(b, f"/force {sched} {task} {b}")] for b in scheduler["builder_names"]
            ]
            await self.send(
                "Which builder do you want to start?", reply_markup={"inline_keyboard": keyboard}
            )
            return
        what = None
        if task == "ask":
            what = argv.pop(0)
            if not argv:
                raise UsageError(again)
        builder = argv.pop(0)
        if builder not in scheduler["builder_names"]:
            raise UsageError(
                f"{again} (`{builder}` not configured for _{scheduler['label']}_ scheduler)"
            )
        params: dict[str, Any] = {}
        for arg in argv:
            name, eq, value = arg.partition("=")
            if not eq:
                raise UsageError(f"{again} ({arg!r} is not NAME=VALUE)")
            if name in ("builderNames", "builderid", "owner", "username"):
                # the builder is the one chosen, the owner the user: not parameters to type
                raise UsageError(f"{again} ({name} is not a parameter)")
            params[name] = value
        fields = list(_collect_fields(scheduler.get("all_fields") or ()))
        own = ("username", "owner")
        missing = [
            f["fullName"]
            for f in fields
            if f.get("required") and f["fullName"] not in own and f["fullName"] not in params
        ]
        if task == "build" and not missing:
            for f in fields:
                if f.get("type") == "fixed" and f["fullName"] not in own:
                    params[f["fullName"]] = f.get("default")
            await self._force_with(sched, builder, params, again)
            return
        if task in ("build", "config"):
            await self._force_form(sched, builder, params, fields, missing)
        elif task == "ask":
            assert what is not None
            rest = " ".join(shlex.quote(f"{k}={v}") for k, v in params.items() if k != what)
            self.template = f"/force {sched} config {builder} {rest} {what}={{}}"
            await self.ask_for_reply(
                "enter the new value for the " + what.replace("_", " ").lower(), ""
            )
        else:
            raise UsageError(again)

    async def _choose_scheduler(
        self, argv: list[str], schedulers: Mapping[str, Any], again: str
    ) -> str | None:
        """The force scheduler ``argv`` names (taken off it), the only one, or None once the
        user was asked to choose."""
        if not argv:
            if len(schedulers) == 1:
                return next(iter(schedulers))
            keyboard = [
                [self.button(s["label"], f"/force {s['name']}")] for s in schedulers.values()
            ]
            await self.send(
                "Which force scheduler do you want to activate?",
                reply_markup={"inline_keyboard": keyboard},
            )
            return None
        if argv[0] in schedulers:
            return argv.pop(0)
        if len(schedulers) == 1:
            return next(iter(schedulers))
        raise UsageError(f"{again} (no force scheduler {argv[0]})")

    async def _force_form(
        self,
        sched: str,
        builder: str,
        params: Mapping[str, Any],
        fields: list[Mapping[str, Any]],
        missing: list[str],
    ) -> None:
        """The parameters as they are, a button to change each, and one to start the build
        once every required one has a value."""
        text = f"{self.user_full_name}, you are about to start a new build on `{builder}`!"
        args = " ".join(shlex.quote(f"{k}={v}") for k, v in params.items())
        keyboard = []
        shown = [f for f in fields if f.get("type") != "fixed" and f["fullName"] not in
                 ("username", "owner")]  # fmt: skip
        if shown:
            text += "\n\nThe current build parameters are:"
        for field in shown:
            if field.get("type") == "nested":
                text += f"\n{field.get('label')}"
                continue
            name = field["fullName"]
            value = params.get(name, field.get("default"))
            if isinstance(value, str):
                value = value.strip()
            text += f"\n    {field.get('label')} `{value}`"
            caption = ("Change " if value else "Set ") + name.replace("_", " ").title()
            if name in missing:
                caption = "⚠️ " + caption
                text += " ⚠️"
            keyboard.append([self.button(caption, f"/force {sched} ask {name} {builder} {args}")])
        text += "\n\nWhat do you want to do?"
        if missing:
            text += " You must set values for all parameters marked with ⚠️"
        else:
            keyboard.append(
                [self.button("🚀 Start Build", f"/force {sched} build {builder} {args}")]
            )
        await self.send(text, reply_markup={"inline_keyboard": keyboard})

    async def _force_with(
        self, sched: str, builder: str, params: Mapping[str, Any], again: str
    ) -> None:
        scheduler = self.bot.force_scheduler(sched)
        if scheduler is None:
            raise UsageError(f"{again} (There is no force scheduler '{sched}')")
        found = await self.bot.get_builder(name=builder)
        try:
            await scheduler.force(
                owner=self.describe_user(), builderid=found["builderid"], **params
            )
        except (ValueError, TypeError) as exc:
            why = getattr(exc, "errors", None) or str(exc)
            self.bot.log("chat_force_refused", builder=builder, why=str(why))
            raise UsageError(f"{again} ({why})") from exc
        await self.send("Force build successfully requested.")


def _collect_fields(fields: Any) -> Iterator[Mapping[str, Any]]:
    """A force scheduler's fields with a name, nested ones included, in order."""
    for field in fields:
        if field.get("fullName"):
            yield field
        if "fields" in field:
            yield from _collect_fields(field["fields"])


class TelegramPollingBot(ChatBot):
    """The chat layer over the Bot API, polling ``getUpdates``."""

    command_prefix = "/"
    offline_string = "offline ❌"
    idle_string = "idle 💤"
    running_string = "running 🌀:"
    contactClass: type[TelegramContact] = TelegramContact
    channelClass = TelegramChannel

    def __init__(
        self,
        service: TelegramBot,
        *,
        token: str,
        api_url: str,
        chat_ids: Sequence[Any],
        poll_timeout: float,
        retry_delay: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(service, **kwargs)
        self.token = token
        self.base = f"{api_url.rstrip('/')}/bot{token}/"
        self.chat_ids = list(chat_ids)
        self.poll_timeout = poll_timeout
        self.retry_delay = retry_delay
        self.session: aiohttp.ClientSession | None = None
        # long button payloads by number, and their numbers
        self.query_cache: dict[int, str] = {}
        self._button_keys: dict[str, int] = {}
        self._next_button = 1

    @property
    def command_suffix(self) -> str | None:  # type: ignore[override]
        return f"@{self.nickname}" if self.nickname else None

    def _hide(self, text: str) -> str:
        return text.replace(self.token, "<token>") if self.token else text

    def button_data(self, payload: str) -> str | int:
        """``payload`` itself when it fits in a button's callback data, else its number in
        the bot's cache (the latest :data:`BUTTONS_KEPT` are kept)."""
        if len(payload.encode()) < 64:
            return payload
        key = self._button_keys.get(payload)
        if key is None:
            key = self._next_button
            self._next_button += 1
            self._button_keys[payload] = key
            self.query_cache[key] = payload
            while len(self.query_cache) > BUTTONS_KEPT:
                oldest = next(iter(self.query_cache))
                self._button_keys.pop(self.query_cache.pop(oldest), None)
        return key

    # -- requests ------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        payload: Mapping[str, Any] | None = None,
        *,
        wait: float = 30,
        form: aiohttp.FormData | None = None,
    ) -> Any:
        """One request (a JSON body, or ``form`` as multipart); its ``result``, or
        :class:`TelegramError` naming the method."""
        if self.session is None:
            self.session = aiohttp.ClientSession()
        body: dict[str, Any] = {"data": form} if form is not None else {"json": dict(payload or {})}
        try:
            async with self.session.post(
                self.base + method,
                timeout=aiohttp.ClientTimeout(total=wait),
                **body,
            ) as response:
                raw = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            why = self._hide(f"{type(exc).__name__}: {exc}")
            raise TelegramError(f"cannot send Telegram request {method}: {why}") from None
        try:
            answer = json.loads(raw)
        except ValueError:
            raise TelegramError(
                f"Telegram request {method}: [{status}] not JSON: {self._hide(raw[:200])!r}"
            ) from None
        if not isinstance(answer, dict) or not answer.get("ok"):
            description = answer.get("description") if isinstance(answer, dict) else answer
            raise TelegramError(
                f"Telegram request {method} refused: [{status}] {self._hide(str(description))}"
            )
        return answer.get("result", True)

    async def post(self, method: str, payload: Mapping[str, Any] | None = None) -> Any:
        """``request``, tried up to ``SEND_ATTEMPTS`` times ``retry_delay`` apart while it
        cannot be sent; a refusal or a last failure is logged and answers None."""
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                return await self.request(method, payload)
            except TelegramError as exc:
                refused = "refused" in str(exc) or "not JSON" in str(exc)
                if refused or attempt == SEND_ATTEMPTS:
                    log.error("telegram_request_failed", reporter=self.service.name,
                              method=method, error=str(exc))  # fmt: skip
                    return None
                if attempt == 1:
                    log.warning(
                        "telegram_request_retried",
                        reporter=self.service.name,
                        method=method,
                        error=str(exc),
                        retry_in=self.retry_delay,
                    )
                await asyncio.sleep(self.retry_delay)
        return None

    async def send_message(
        self,
        chat: Any,
        message: str,
        parse_mode: str | None = "Markdown",
        reply_to_message_id: Any = None,
        reply_markup: Any = None,
        **kwargs: Any,
    ) -> Any:
        result = None
        message = message.strip()
        while message:
            params: dict[str, Any] = {"chat_id": chat}
            if parse_mode is not None:
                params["parse_mode"] = parse_mode
            if reply_to_message_id is not None:
                params["reply_to_message_id"] = reply_to_message_id
                reply_to_message_id = None  # only the first part answers the message
            if len(message) <= MAX_MESSAGE:
                params["text"], message = message, ""
            else:
                cut = message[:MAX_MESSAGE].rfind("\n")
                cut = cut + 1 if cut != -1 else MAX_MESSAGE
                params["text"], message = message[:cut].rstrip(), message[cut:].lstrip()
            if not message and reply_markup is not None:
                params["reply_markup"] = reply_markup
            params.update(kwargs)
            result = await self.post("sendMessage", params)
        return result

    async def delete_message(self, chat: Any, message_id: Any) -> Any:
        return await self.post("deleteMessage", {"chat_id": chat, "message_id": message_id})

    async def edit_keyboard(self, chat: Any, message_id: Any, keyboard: Any = None) -> Any:
        params: dict[str, Any] = {"chat_id": chat, "message_id": message_id}
        if keyboard is not None:
            params["reply_markup"] = {"inline_keyboard": keyboard}
        return await self.post("editMessageReplyMarkup", params)

    def format_build_status(self, build: Mapping[str, Any], *, short: bool = False) -> str:
        result = Results(build["results"]) if build.get("results") in set(Results) else None
        if result is None:
            return "finished"
        if short:
            return RESULTS_EMOJI[result]
        return super().format_build_status(build) + RESULTS_EMOJI[result]

    # -- chats ---------------------------------------------------------------------------------

    def get_channel(self, chat_id: Any, *, keep: bool = True) -> ChatChannel:
        info = dict(chat_id) if isinstance(chat_id, Mapping) else {"id": chat_id}
        found = self.channels.get(info["id"])
        if found is None:
            found = self.channelClass(self, info)
            if keep:
                self.channels[info["id"]] = found
        else:
            assert isinstance(found, TelegramChannel)
            found.chat_info.update(info)
        return found

    def get_contact(self, user: Any, chat_id: Any) -> Contact:
        uid = user["id"] if isinstance(user, Mapping) else user
        cid = chat_id["id"] if isinstance(chat_id, Mapping) else chat_id
        found = self.contacts.get((cid, uid))
        if found is not None and type(found) is not self.contactClass:
            found = None  # contactClass changed (a reconfiguration): contacts of the new one
        if found is None:
            valid = self.is_valid_user(uid)
            found = self.contactClass(user=user, channel=self.get_channel(chat_id, keep=valid))
            if valid:
                self.contacts[(cid, uid)] = found
        else:
            assert isinstance(found, TelegramContact)
            if isinstance(user, Mapping):
                found.user_info.update(user)
            self.get_channel(chat_id, keep=False)
        return found

    # -- updates -------------------------------------------------------------------------------

    async def process_update(self, update: Mapping[str, Any]) -> None:
        data: dict[str, Any] = {}
        message = update.get("message")
        if message is None:
            query = update.get("callback_query")
            if query is None:
                self.log("telegram_update_ignored", why="no message in the update",
                         update_id=update.get("update_id"))  # fmt: skip
                return
            original = query.get("message") or {}
            text = query.get("data")
            answer: dict[str, Any] = {"callback_query_id": query.get("id")}
            if isinstance(text, int) or (isinstance(text, str) and text.isdigit()):
                text = self.query_cache.get(int(text))
                if text is None:
                    answer["text"] = "Sorry, button is no longer valid!"
                    chat = original.get("chat")
                    if isinstance(chat, Mapping) and "message_id" in original:
                        await self.edit_keyboard(chat.get("id"), original["message_id"])
            await self.post("answerCallbackQuery", answer)
            data["tquery"] = query
            message = {
                "from": query.get("from"),
                "chat": original.get("chat"),
                "text": text,
            }
            if "reply_to_message" in original:
                message["reply_to_message"] = original["reply_to_message"]
        user, chat, text = message.get("from"), message.get("chat"), message.get("text")
        if not isinstance(user, Mapping) or "id" not in user:
            self.log("telegram_update_ignored", why="no user in the message")
            return
        if not isinstance(chat, Mapping) or "id" not in chat:
            self.log("telegram_update_ignored", why="no chat in the message")
            return
        if not text:
            return
        contact = self.get_contact(user, chat)
        assert isinstance(contact, TelegramContact)
        data["tmessage"] = message
        template, contact.template = contact.template, None
        if template and not str(text).startswith(self.command_prefix):
            text = template.format(shlex.quote(str(text)))
        await contact.handle_message(str(text), **data)

    async def sign_on(self) -> None:
        """Ask for the bot's name (until Telegram answers) and announce its commands."""
        while self.nickname is None:
            try:
                me = await self.request("getMe")
                self.nickname = str(me.get("username")) if isinstance(me, dict) else None
            except TelegramError as exc:
                log.error("telegram_request_failed", reporter=self.service.name, method="getMe",
                          error=str(exc), retry_in=self.retry_delay)  # fmt: skip
            if self.nickname is None:
                await asyncio.sleep(self.retry_delay)
        commands = [
            {"command": c, "description": d} for c, d in self.contactClass.described_commands()
        ]
        await self.post("setMyCommands", {"commands": commands})

    async def receive(self) -> None:
        """Take the updates and answer them, until cancelled."""
        await self.poll()

    async def handle_update(self, update: Any) -> int | None:
        """Answer one update; its ``update_id`` (None for something that is not an update)."""
        if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
            self.log("telegram_update_ignored", why="not an update",
                     update=self._hide(repr(update))[:200])  # fmt: skip
            return None
        try:
            await self.process_update(update)
        except Exception as exc:
            self.log_error("telegram_update_failed", exc, update_id=update["update_id"])
        return int(update["update_id"])

    async def poll(self) -> None:
        """Poll ``getUpdates`` (no webhook then) and answer the updates, until cancelled."""
        await self.post("deleteWebhook")
        offset = 0
        failing = False
        while True:
            payload: dict[str, Any] = {"timeout": self.poll_timeout}
            if offset:
                payload["offset"] = offset
            try:
                updates = await self.request("getUpdates", payload, wait=self.poll_timeout + 10)
                if not isinstance(updates, list):
                    raise TelegramError(f"getUpdates answered {type(updates).__name__}, not a list")
            except TelegramError as exc:
                if not failing:  # once per failing spell
                    log.error("telegram_poll_failed", reporter=self.service.name,
                              error=str(exc), retry_in=self.retry_delay)  # fmt: skip
                failing = True
                await asyncio.sleep(self.retry_delay)
                continue
            failing = False
            for update in updates:
                update_id = await self.handle_update(update)
                if update_id is not None:
                    offset = max(offset, update_id + 1)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None


#: Buildbot's name of the class both its Telegram bots (polling, webhook) derive from: a site
#: sets ``TelegramStatusBot.contactClass`` to its own ``TelegramContact`` subclass
TelegramStatusBot = TelegramPollingBot

#: the header in which Telegram sends a webhook's ``secret_token``
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
#: how many answered update ids a webhook bot remembers
RECENT_UPDATES = 1000


class TelegramWebhookBot(TelegramPollingBot):
    """Telegram sends the updates to the master's web server (``useWebhook=True``): the bot
    serves ``<buildbotURL>telegram<token>`` and registers that address with ``setWebhook``
    (with ``certificate``, the public certificate of a self-signed server, uploaded). Updates
    are answered one at a time in the order they came; a full queue holds Telegram's request
    until there is room, so Telegram slows down rather than losing any."""

    def __init__(self, service: TelegramBot, *, certificate: bytes | None, **kwargs: Any) -> None:
        super().__init__(service, **kwargs)
        self.certificate = certificate
        self.updates: asyncio.Queue[Any] = asyncio.Queue(maxsize=1000)
        #: what Telegram must send in :data:`SECRET_HEADER` (1-256 of A-Z a-z 0-9 _ -): made
        #: from the token, so it is the same after a restart (updates Telegram sends before
        #: ``setWebhook`` is done again are taken) and on every master sharing the bot; it is
        #: no weaker for that, as whoever has the token controls the bot anyway
        self.secret_token = hmac.new(
            self.token.encode(), b"buildyard telegram webhook", hashlib.sha256
        ).hexdigest()
        #: the last :data:`RECENT_UPDATES` update ids answered, to answer a re-sent one once
        self.recent: OrderedDict[int, None] = OrderedDict()

    @property
    def path(self) -> str:
        return "telegram" + self.token

    async def receive(self) -> None:
        www = getattr(self.service.master, "www", None)
        webhooks = getattr(www, "webhooks", None)
        if webhooks is None:
            raise TelegramError("useWebhook=True needs the master's web server (c['www'])")
        if getattr(www, "port", None) is None:
            log.error(
                "telegram_webhook_unserved",
                reporter=self.service.name,
                why="useWebhook=True: c['www'] has no port, Telegram cannot reach the bot",
            )
        remove = webhooks.add(
            self.path,
            self.service.name,
            self.updates.put,
            secret_header=(SECRET_HEADER, self.secret_token),
        )
        try:
            await self.set_webhook()
            while True:
                update = await self.updates.get()
                if self.seen_before(update):
                    self.log("telegram_update_ignored", why="already answered",
                             update_id=update["update_id"])  # fmt: skip
                    continue
                await self.handle_update(update)
        finally:
            remove()

    def seen_before(self, update: Any) -> bool:
        """Whether ``update``'s id was among the last ones taken (and remember it if not).
        Telegram's ids grow, but restart at random after a week without updates: a set of the
        recent ones, not the highest, tells a re-sent update."""
        if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
            return False
        update_id = update["update_id"]
        if update_id in self.recent:
            return True
        self.recent[update_id] = None
        if len(self.recent) > RECENT_UPDATES:
            self.recent.popitem(last=False)
        return False

    async def set_webhook(self) -> None:
        """Register the webhook's address (until Telegram accepts it)."""
        base = self.env.buildbot_url
        url = (base if base.endswith("/") else base + "/") + self.path
        while True:
            form = None
            if self.certificate is not None:
                form = aiohttp.FormData()
                form.add_field("url", url)
                form.add_field("secret_token", self.secret_token)
                form.add_field("certificate", self.certificate, filename="certificate")
            body = None if form else {"url": url, "secret_token": self.secret_token}
            try:
                await self.request("setWebhook", body, form=form)
            except TelegramError as exc:
                log.error(
                    "telegram_request_failed",
                    reporter=self.service.name,
                    method="setWebhook",
                    error=str(exc),
                    retry_in=self.retry_delay,
                )
                await asyncio.sleep(self.retry_delay)
                continue
            self.log("telegram_webhook_set", url=self._hide(url),
                     certificate=self.certificate is not None)  # fmt: skip
            return


def _certificate_bytes(certificate: Any) -> bytes | None:
    """``certificate`` as Buildbot takes it: the PEM text (str or bytes) or a file open in
    binary mode."""
    if certificate is None:
        return None
    if isinstance(certificate, str):
        return certificate.encode()
    if isinstance(certificate, bytes | bytearray):
        return bytes(certificate)
    data = certificate.read()
    return data.encode() if isinstance(data, str) else bytes(data)


class TelegramBot(BuildbotService):
    """Buildbot's arguments: ``bot_token`` (may be a secret), ``chat_ids`` (chats told about
    builds from the start), ``authz``, ``bot_username`` (asked from Telegram when not given),
    ``tags``, ``notify_events``, ``showBlameList`` (True), ``useRevisions``, ``useWebhook``
    (False: poll), ``certificate`` (webhook only), ``pollTimeout`` (120 s), ``retryDelay``
    (30 s)."""

    name = "TelegramBot"
    secrets = ("bot_token",)
    #: the Bot API's address; not an argument (as in Buildbot), a class attribute tests point away
    api_url = "https://api.telegram.org"

    def checkConfig(
        self,
        bot_token: Any = None,
        chat_ids: Any = None,
        authz: Any = None,
        bot_username: Any = None,
        tags: Any = None,
        notify_events: Any = None,
        showBlameList: Any = True,
        useRevisions: Any = False,
        useWebhook: Any = False,
        certificate: Any = None,
        pollTimeout: Any = 120,
        retryDelay: Any = 30,
    ) -> None:
        if not isinstance(bot_token, str) and not callable(
            getattr(bot_token, "getRenderingFor", None)
        ):
            config_error("TelegramBot: bot_token must be a string or a secret")
        if chat_ids is not None and not isinstance(chat_ids, list | tuple):
            config_error("TelegramBot: chat_ids must be a list of chat ids")
        if authz is not None:
            if not isinstance(authz, Mapping):
                config_error("TelegramBot: authz must be a dict of command: bool or list of ids")
            else:
                for acl in authz.values():
                    if not isinstance(acl, list | tuple | bool):
                        config_error("TelegramBot: authz values must be bool or a list of user ids")
        if isinstance(certificate, io.TextIOBase):
            config_error("TelegramBot: certificate file must be open in binary mode")
        elif certificate is not None and not useWebhook:
            config_error("TelegramBot: certificate is only used with useWebhook=True")
        elif (
            certificate is not None
            and not isinstance(certificate, str | bytes | bytearray)
            and not callable(getattr(certificate, "read", None))
        ):
            config_error(
                "TelegramBot: certificate must be the certificate's text (str or bytes) or "
                "a file open in binary mode"
            )
        for what, value in (("pollTimeout", pollTimeout), ("retryDelay", retryDelay)):
            if not isinstance(value, int | float) or value < 0:
                config_error(f"TelegramBot: {what} must be a number of seconds, not {value!r}")

    async def reconfigService(
        self,
        bot_token: str,
        chat_ids: Sequence[Any] | None = None,
        authz: Mapping[Any, Any] | None = None,
        bot_username: str | None = None,
        tags: Sequence[str] | None = None,
        notify_events: Any = None,
        showBlameList: bool = True,
        useRevisions: bool = False,
        useWebhook: bool = False,
        certificate: Any = None,
        pollTimeout: float = 120,
        retryDelay: float = 30,
    ) -> None:
        old = getattr(self, "bot", None)
        mode: dict[str, Any] = {}
        kind: type[TelegramPollingBot] = TelegramPollingBot
        if useWebhook:
            kind, mode = TelegramWebhookBot, {"certificate": _certificate_bytes(certificate)}
        self.bot = kind(
            self,
            token=str(bot_token),
            api_url=self.api_url,
            chat_ids=list(chat_ids or ()),
            poll_timeout=pollTimeout,
            retry_delay=retryDelay,
            **mode,
            nickname=bot_username,
            authz=authz,
            tags=tags,
            notify_events=notify_events,
            use_revisions=useRevisions,
            show_blame_list=showBlameList,
        )
        task = getattr(self, "_task", None)
        if task is not None:  # arguments changed: a new bot
            task.cancel()
            if old is not None:
                await old.close()
            self._task = self.bot.spawn(self._run(self.bot), name="telegram")

    def startService(self) -> None:
        self._task = self.bot.spawn(self._run(self.bot), name="telegram")

    async def stopService(self) -> None:
        task = getattr(self, "_task", None)
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
        await self.bot.close()

    async def _run(self, bot: TelegramPollingBot) -> None:
        await bot.sign_on()
        for chat in bot.chat_ids:
            bot.get_channel(chat).add_notification_events(bot.notify_events)
        await bot.load_state()
        events = bot.spawn(bot.follow_events(), name="telegram events")
        try:
            await bot.receive()
        finally:
            events.cancel()
