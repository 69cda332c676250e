"""A site's own Telegram commands: master.cfg subclasses ``buildbot.reporters.telegram.
TelegramContact`` and sets ``TelegramStatusBot.contactClass``, as Buildbot's manual teaches. On a
real master with a real worker, against the server shaped like the Bot API: the commands are
announced to Telegram and listed by ``/commands`` and ``/help`` (with their usage), they run
(async and plain ones), force a build with the property they give through the master's force
scheduler, obey authz, and a command that fails is answered and logged while the bot goes on.
(Twisted-style commands run side by side with Buildbot in
tests/e2e/test_chat_contact_buildbot.py.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import structlog

from buildyard.master.reporters.telegram import (
    ACCESS_DENIED_MESSAGES,
    TelegramBot,
    TelegramContact,
    TelegramPollingBot,
)
from buildyard.testing.masters import running_master
from tests.master.reporters.site_contacts import BUILDERS, contact
from tests.master.reporters.telegram_api import fake_telegram

TOKEN = "123456:AAH-site-contact"
GROUP = {"id": -1001, "type": "group", "title": "CI"}
ALICE = {"id": 42, "is_bot": False, "first_name": "Alice", "last_name": "Liddell",
         "username": "alice"}  # fmt: skip
BOB = {"id": 7, "is_bot": False, "first_name": "Bob"}


async def test_a_sites_own_telegram_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # master.cfg sets the class attribute (for the process, as in Buildbot): put it back after
    monkeypatch.setattr(TelegramPollingBot, "contactClass", TelegramContact)
    async with fake_telegram(TOKEN) as api:
        monkeypatch.setattr(TelegramBot, "api_url", api.url)
        config = (
            BUILDERS
            + contact("telegram")
            + f"""
c['services'] = [reporters.TelegramBot(
    bot_token={TOKEN!r}, authz={{'zbt': [{ALICE["id"]}]}}, pollTimeout=5, retryDelay=0.2)]
"""
        )
        with structlog.testing.capture_logs() as logs:
            async with running_master(tmp_path, config) as run:
                await api.wait_for(lambda: any(c.method == "getUpdates" for c in api.calls))
                [announced] = [c.body for c in api.calls if c.method == "setMyCommands"]
                commands = {c["command"]: c["description"] for c in announced["commands"]}
                # a command with a docstring by it, one without by its name (as Buildbot's
                # /commands botfather); buildyard also tells Telegram's menu about them
                assert commands["zbt"] == "test a package"
                assert commands["echo"] == "echo"
                assert commands["status"] == "list status of a builder (or all builders)"

                async def ask(text: str, count: int, user: dict[str, object] = ALICE) -> list[str]:
                    mark = len(api.calls)
                    await api.message(text, user=user, chat=GROUP)
                    return [m["text"] for m in await api.wait_sent(count, start=mark)]

                assert await ask("/help zbt", 1) == [
                    "Usage: /zbt _package_ - test a package with tatt"
                ]
                [listing] = await ask("/help", 1)
                assert "\nzbt - test a package\n" in listing
                assert "echo -" not in listing  # no docstring: not in help, as in Buildbot
                [known] = await ask("/commands", 1)
                assert known.startswith("Buildbot commands: /boom, /commands, /echo, /force,")
                assert "/who, /zbt" in known

                # the site's command forces a build through the force scheduler, with the
                # property it gives, owned by the user
                async with run.master.mq.subscribe(("builds", None, "finished")) as finished:
                    assert await ask("/zbt app-editors/vim", 1) == ["zbt app-editors/vim"]
                    async with asyncio.timeout(120):
                        _key, body = await finished.get()
                built = await run.result(int(body["buildid"]))
                assert built.properties["package"] == ("app-editors/vim", "Force Build Form")
                assert built.properties["owner"][0] == "Alice Liddell (@alice) on 'CI'"
                assert built.stdout("show") == "app-editors/vim\n"

                # authz names the site's command like any other
                [denied] = await ask("/zbt sys-apps/less", 1, user=BOB)
                assert denied in ACCESS_DENIED_MESSAGES
                # its UsageError is the answer
                assert await ask("/zbt", 1) == ["Which package do you want to test?"]
                # a plain method's messages, nothing waiting for them, in the order given
                assert await ask("/echo one two three", 3) == ["one", "two", "three"]
                assert await ask("/who", 1) == [
                    "Alice Liddell (@alice) on 'CI' | private=False | chat=-1001 | user=42 | "
                    "bot=yard_bot | zbt online=True"
                ]
                # failing commands are answered and logged; the bot goes on
                assert await ask("/boom", 1) == ["Something bad happened (see logs)"]
                assert await ask("/gone", 1) == ["Something bad happened (see logs)"]
                [hello] = await ask("/hello", 1)
                assert hello
    failed = [e for e in logs if e["event"] == "chat_command_failed"]
    assert [(e["command"], e["error"]) for e in failed] == [
        ("/boom", "RuntimeError: the site's command broke"),
        ("/gone", "ValueError: unknown scheduler: 'no-such-scheduler'"),
    ]
    assert all(e["reporter"] == "TelegramBot" for e in failed)
