"""The chat bots' shared rules, without a server: who may run which command (authz as
Buildbot reads it), the force command's options, Buildbot's wording of intervals, and how a
long Telegram message is cut."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from buildyard.master.reporters.chat import (
    ChatBot,
    Contact,
    UsageError,
    _force_options,
    dangerousCommand,
    expand_authz,
    fuzzy_interval,
)
from buildyard.master.reporters.service import BuildbotService
from buildyard.master.reporters.telegram import TelegramBot, TelegramPollingBot


def _bot(authz: dict[Any, Any] | None) -> ChatBot:
    return ChatBot(BuildbotService(name="chat"), nickname="bby", authz=authz)


def _may(bot: ChatBot, user: str, command: str) -> bool:
    return bot.get_contact(user, "#ci").allowed(command.upper())


def test_authz_as_buildbot_reads_it() -> None:
    assert expand_authz({("force", "stop"): ["a"], "shutdown": False}) == {
        "FORCE": ["a"],
        "STOP": ["a"],
        "SHUTDOWN": False,
    }
    # nothing said: the harmless commands are open, the dangerous ones closed
    bot = _bot(None)
    assert _may(bot, "x", "status") and not _may(bot, "x", "force")
    # a list of users, '' for the commands not named, '!' for the dangerous ones
    bot = _bot({"force": ["alice"], "": False, "!": ["root"]})
    assert _may(bot, "alice", "force") and not _may(bot, "bob", "force")
    assert not _may(bot, "alice", "status")
    assert _may(bot, "root", "stop") and not _may(bot, "alice", "stop")
    # '*' overrides every command not named
    bot = _bot({"*": True, "status": False})
    assert _may(bot, "x", "shutdown") and not _may(bot, "x", "status")


def test_force_options() -> None:
    assert _force_options(["--branch=dev", "--props=a=1,b=2", "ok", "fix", "it"], "again") == {
        "builder": "ok",
        "codebase": "",
        "branch": "dev",
        "revision": "HEAD",
        "project": "",
        "reason": "fix it",
        "props": "a=1,b=2",
    }
    assert _force_options(["--revision", "abc", "ok"], "again")["revision"] == "abc"
    with pytest.raises(UsageError, match="unknown option --colour"):
        _force_options(["--colour=red", "ok"], "again")
    with pytest.raises(UsageError, match="--builder provided in two ways"):
        _force_options(["--builder=a", "b"], "again")


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (1, "a moment"),
        (12, "12 seconds"),
        (34, "30 seconds"),
        (70, "a minute"),
        (600, "10 minutes"),
        (3600, "an hour"),
        (86400, "a day"),
        (400 * 86400, "a year"),
    ],
)
def test_fuzzy_interval(seconds: int, words: str) -> None:
    assert fuzzy_interval(seconds) == words


async def test_a_long_telegram_message_is_cut_on_line_ends() -> None:
    bot = TelegramPollingBot(
        TelegramBot(bot_token="t"),
        token="t",
        api_url="http://127.0.0.1:9",
        chat_ids=[],
        poll_timeout=1,
        retry_delay=0,
        nickname="b",
    )
    sent: list[dict[str, Any]] = []

    async def post(method: str, payload: Any = None) -> Any:
        sent.append(payload)
        return {"message_id": len(sent)}

    bot.post = post  # type: ignore[method-assign]
    lines = [f"line {i:04d} " + "x" * 90 for i in range(100)]  # 100 lines of 100 characters
    await bot.send_message(5, "\n".join(lines), reply_to_message_id=9, reply_markup={"k": 1})
    # 40 lines (of 101 characters with their line end) fit in 4096
    assert [len(p["text"]) for p in sent] == [40 * 101 - 1, 40 * 101 - 1, 20 * 101 - 1]
    assert "\n".join(p["text"] for p in sent) == "\n".join(lines)
    # only the first part answers the message; the buttons come with the last
    assert [("reply_to_message_id" in p, "reply_markup" in p) for p in sent] == [
        (True, False),
        (False, False),
        (False, True),
    ]


class _ListingBot(ChatBot):
    """A bot whose data answers no changes, recording the result specs it was asked for and
    the messages it sent."""

    def __init__(self) -> None:
        super().__init__(BuildbotService(name="chat"), nickname="bby", authz=None)
        self.specs: list[Any] = []
        self.sent: list[str] = []

    async def get_list(self, path: tuple[Any, ...], spec: Any = None) -> list[Any]:
        assert path == ("changes",)
        self.specs.append(spec)
        return []

    async def send_message(self, chat: Any, message: str, **kwargs: Any) -> Any:
        self.sent.append(message)

    def spawn(self, coro: Any, *, name: str) -> asyncio.Task[Any]:
        # no service runs this bot: its sends are tasks of the test (each one is awaited)
        return asyncio.ensure_future(coro)


@pytest.mark.parametrize(
    ("args", "limit", "capped"),
    [
        ("changes", 10, False),
        ("7 changes", 7, False),
        ("100 changes", 100, False),
        ("101 changes", 100, True),
        ("100000000000 changes", 100, True),
        ("9" * 5000 + " changes", 100, True),
    ],
)
async def test_list_changes_reads_at_most_100(args: str, limit: int, capped: bool) -> None:
    bot = _ListingBot()
    await bot.get_contact("ann", "#ci").command_LIST(args)
    [spec] = bot.specs
    assert spec.limit == limit
    told = [m for m in bot.sent if "I will show up to 100 recent changes" in m]
    assert len(told) == (1 if capped else 0)


def test_contacts_are_made_of_the_bots_contact_class_and_remade_when_it_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class SiteContact(Contact):
        def command_ZBT(self, args: str, **kwargs: Any) -> None:  # noqa: N802 - a command
            """test a package"""

    bot = _bot(None)
    before = bot.get_contact("ann", "#ci")
    assert type(before) is Contact and before is bot.get_contact("ann", "#ci")
    # a site's class on the bot class (as Buildbot's manual does it), e.g. after a reconfig
    monkeypatch.setattr(ChatBot, "contactClass", SiteContact)
    after = bot.get_contact("ann", "#ci")
    assert type(after) is SiteContact and after is bot.get_contact("ann", "#ci")
    assert "zbt" in after.commands() and after.describe_command("zbt") == "test a package"
    assert after.getCommandMethod("zbt") == after.command_ZBT


def test_usage_error_reads_like_buildbots() -> None:
    assert str(UsageError()) == "Invalid usage"
    assert str(UsageError("Try 'zbt _package_'")) == "Try 'zbt _package_'"


class _RecordingBot(ChatBot):
    """A bot that records what it sends (no service runs it: its sends are the test's tasks)."""

    def __init__(self) -> None:
        super().__init__(BuildbotService(name="chat"), nickname="bby", authz=None)
        self.sent: list[str] = []

    async def send_message(self, chat: Any, message: str, **kwargs: Any) -> Any:
        await asyncio.sleep(0)  # the sends of a command that does not wait overlap
        self.sent.append(message)
        return {"text": message}

    def spawn(self, coro: Any, *, name: str) -> asyncio.Task[Any]:
        return asyncio.ensure_future(coro)


async def test_twisted_style_commands_without_twisted_run_on_the_stand_ins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the buildyard[twisted] extra, master.cfg's ``twisted.internet.defer`` is
    buildyard's stand-in: a site's ``@defer.inlineCallbacks`` command still runs, its yields
    waited for, its messages in order, its errors answered."""
    from buildyard.compat import twisted_style as defer

    class SiteContact(Contact):
        @defer.inlineCallbacks
        def command_ZBT(self, args: str, **kwargs: Any) -> Any:  # noqa: N802 - a command
            try:
                package = self.splitArgs(args)[0]
                sent = yield self.send(f"zbt {package}")
                self.send(f"sent: {sent['text']}")  # not waited for: still goes out, in order
                yield defer.succeed(None)
            except IndexError:
                self.send("Which package do you want to force test?")

        command_ZBT.usage = {  # type: ignore[attr-defined]
            None: "zbt _package_ - test a package",
            "--all": "zbt --all - every package",
        }

        def command_BAD(self, args: str, **kwargs: Any) -> Any:  # noqa: N802 - a command
            return defer.fail(RuntimeError("broken"))

        @Contact.overrideCommand
        async def command_HELLO(self, args: str, **kwargs: Any) -> None:  # noqa: N802
            await self.send("hi from the site")

    monkeypatch.setattr(ChatBot, "contactClass", SiteContact)
    bot = _RecordingBot()
    contact = bot.get_contact("ann", "#ci")
    for message in ("zbt app-editors/vim", "zbt", "bad", "hello", "help zbt", "help zbt --all"):
        await contact.handle_message(message)
    await asyncio.gather(*(t for t in asyncio.all_tasks() if t is not asyncio.current_task()))
    assert bot.sent == [
        "zbt app-editors/vim",
        "sent: zbt app-editors/vim",
        "Which package do you want to force test?",
        "Something bad happened (see logs)",
        "hi from the site",
        "Usage: zbt _package_ - test a package",
        "Usage: zbt --all - every package",
    ]
    # the replaced command keeps buildyard's help line and usage
    assert contact.describe_command("hello") == "say hello"


def test_a_sites_dangerous_command_needs_an_explicit_grant(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class SiteContact(Contact):
        @dangerousCommand
        def command_WIPE(self, args: str, **kwargs: Any) -> None:  # noqa: N802 - a command
            """wipe the caches"""

        def command_PEEK(self, args: str, **kwargs: Any) -> None:  # noqa: N802 - a command
            """look at the caches"""

    monkeypatch.setattr(ChatBot, "contactClass", SiteContact)
    # like force: closed unless authz grants it (by name or with '!'); the others stay open
    assert not _may(_bot(None), "x", "wipe") and _may(_bot(None), "x", "peek")
    assert _may(_bot({"!": ["root"]}), "root", "wipe")
    assert _may(_bot({"wipe": True}), "x", "wipe")
    with pytest.raises(ValueError, match="only for commands"):
        dangerousCommand(lambda: None)
