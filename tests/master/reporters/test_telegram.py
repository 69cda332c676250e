"""reporters.TelegramBot on a real master with a real worker, against a server shaped like the
Telegram Bot API: build notices reach the configured chat, users' commands (typed, or buttons of
the bot's keyboards) get Buildbot's answers, authz refuses who it should, and neither the token
nor a garbage answer from Telegram disturbs anything else."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog

from buildyard.common.errors import ConfigErrors
from buildyard.master.config.loader import load_master_config
from buildyard.master.model.results import Results
from buildyard.master.reporters.telegram import ACCESS_DENIED_MESSAGES
from buildyard.testing.masters import HEADER, running_master
from buildyard.testing.postgres import free_port
from tests.master.reporters.telegram_api import fake_telegram

TOKEN = "123456:AAH-secret-Token_xyz"
GROUP = {"id": -1001, "type": "group", "title": "CI"}
ALICE = {"id": 42, "is_bot": False, "first_name": "Alice", "last_name": "Liddell",
         "username": "alice"}  # fmt: skip
BOB = {"id": 7, "is_bot": False, "first_name": "Bob"}

BUILDERS = """
c['buildbotURL'] = 'http://ci.example/'
c['builders'] = [
    util.BuilderConfig(name='ok', workernames=['w1'],
                       factory=util.BuildFactory([steps.ShellCommand(command=['true'])])),
    util.BuilderConfig(name='bad', workernames=['w1'],
                       factory=util.BuildFactory([steps.ShellCommand(command=['false'])])),
]
"""


def _url(text: str) -> str:
    return re.sub(r"/#/builders/\d+/builds/", "/#/builders/B/builds/", text)


async def test_telegram_bot_reports_builds_and_answers_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "tg").write_text(TOKEN)
    secrets_dir.chmod(0o700)
    (secrets_dir / "tg").chmod(0o600)
    async with fake_telegram(TOKEN) as api:
        from buildyard.master.reporters.telegram import TelegramBot

        monkeypatch.setattr(TelegramBot, "api_url", api.url)
        config = (
            BUILDERS
            + f"""
c['secretsProviders'] = [secrets.SecretInAFile(dirname={str(secrets_dir)!r})]
c['services'] = [reporters.TelegramBot(
    bot_token=util.Secret('tg'), chat_ids=[{GROUP["id"]}],
    notify_events=['started', 'finished'], authz={{'force': [{ALICE["id"]}]}},
    pollTimeout=5, retryDelay=0.2)]
"""
        )
        with structlog.testing.capture_logs() as logs:
            async with running_master(tmp_path, config) as run:
                # the bot asks its name, announces its commands, and polls
                await api.wait_for(lambda: any(c.method == "getUpdates" for c in api.calls))
                methods = [c.method for c in api.calls]
                assert methods[:4] == ["getMe", "setMyCommands", "deleteWebhook", "getUpdates"]
                commands = {c["command"]: c["description"] for c in api.calls[1].body["commands"]}
                assert commands["status"] == "list status of a builder (or all builders)"
                assert "start" not in commands and "getid" in commands

                mark = len(api.calls)
                ok = await run.build("ok")
                assert ok.build.results == Results.SUCCESS
                started, finished = await api.wait_sent(2, start=mark)
                assert {started["chat_id"], finished["chat_id"]} == {GROUP["id"]}
                assert started["parse_mode"] == "Markdown"
                assert _url(started["text"]) == (
                    "Build [#1](http://ci.example/#/builders/B/builds/1) of `ok` started."
                )
                assert _url(finished["text"]) == (
                    "Build [#1](http://ci.example/#/builders/B/builds/1) of `ok` completed "
                    "successfully ✅."
                )

                # commands, addressed to this bot by name in a group
                mark = len(api.calls)
                await api.message("/status@yard_bot", user=ALICE, chat=GROUP)
                [status] = await api.wait_sent(1, start=mark)
                assert re.fullmatch(
                    r"`ok`: idle 💤  last build (a moment|\d+ seconds) ago ✅\n`bad`: idle 💤",
                    status["text"],
                ), status["text"]

                mark = len(api.calls)
                await api.message("/notify on failure", user=ALICE, chat=GROUP)
                [listed] = await api.wait_sent(1, start=mark)
                assert listed["text"] == (
                    "The following events are being notified:\n"
                    "🔔 **failure**\n🔔 **finished**\n🔔 **started**"
                )

                # bob may not force: he is told so, in answer to his message
                mark = len(api.calls)
                await api.message("/force build ok please", user=BOB, chat=GROUP)
                [denied] = await api.wait_sent(1, start=mark)
                assert denied["text"] in ACCESS_DENIED_MESSAGES
                assert isinstance(denied["reply_to_message_id"], int)

                mark = len(api.calls)
                await api.message("/force build bad because I can", user=ALICE, chat=GROUP)
                answers = await api.wait_sent(3, start=mark)
                assert answers[0]["text"] == "Force build successfully requested."
                assert _url(answers[2]["text"]) == (
                    "Build [#1](http://ci.example/#/builders/B/builds/1) of `bad` failed❗: "
                    "failed 'false' (failure)  blamelist: Alice Liddell (@alice) on 'CI'"
                )

                # a keyboard's button comes back as a callback query
                mark = len(api.calls)
                await api.message("/list", user=ALICE, chat=GROUP)
                [menu] = await api.wait_sent(1, start=mark)
                assert menu["text"] == "What do you want to list?"
                buttons = [b for row in menu["reply_markup"]["inline_keyboard"] for b in row]
                [builders_button] = [b for b in buttons if b["text"] == "👷️ Builders"]
                mark = len(api.calls)
                await api.push(
                    {
                        "callback_query": {
                            "id": "q1",
                            "from": ALICE,
                            "data": builders_button["callback_data"],
                            "message": {"message_id": 9, "chat": GROUP},
                        }
                    }
                )
                [listing] = await api.wait_sent(1, start=mark)
                assert listing["text"] == "I found the following **builders**:\n`ok`\n`bad`"
                answered = [c.body for c in api.calls[mark:] if c.method == "answerCallbackQuery"]
                assert answered == [{"callback_query_id": "q1"}]

                # an unknown command, and an update that is not a message
                mark = len(api.calls)
                await api.push({"edited_message": {"text": "hm"}})
                await api.message("/frobnicate", user=ALICE, chat=GROUP)
                unknown, known = await api.wait_sent(2, start=mark)
                assert unknown["text"] == "I don't get this '/frobnicate'..."
                assert known["text"] == (
                    "Buildbot commands: /commands, /force, /getid, /hello, /help, /last, /list, "
                    "/nay, /notify, /shutdown, /source, /start, /status, /stop, /version, /watch"
                )
                # offsets move past each update: none is answered twice
                offsets = [c.body.get("offset") for c in api.calls if c.method == "getUpdates"]
                seen = [o for o in offsets if o is not None]
                assert seen == sorted(seen)
                texts = [m["text"] for m in api.sent()]
                assert texts.count("What do you want to list?") == 1
                assert texts.count("Force build successfully requested.") == 1
    assert TOKEN not in repr(logs)
    assert TOKEN.split(":")[1] not in repr(logs)
    ignored = [e for e in logs if e["event"] == "telegram_update_ignored"]
    assert ignored and ignored[0]["reporter"] == "TelegramBot"
    assert [e for e in logs if e["log_level"] == "error"] == []


async def test_garbage_and_refusals_from_telegram_are_logged_and_polling_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with fake_telegram(TOKEN) as api:
        from buildyard.master.reporters.telegram import TelegramBot

        monkeypatch.setattr(TelegramBot, "api_url", api.url)
        api.poll_answers = [
            (200, "<html>not json"),
            (502, '{"ok": false, "description": "Bad Gateway"}'),
        ]
        config = (
            BUILDERS
            + f"""
c['services'] = [reporters.TelegramBot(bot_token={TOKEN!r}, bot_username='yard_bot',
                                       pollTimeout=5, retryDelay=0.1)]
"""
        )
        with structlog.testing.capture_logs() as logs:
            async with running_master(tmp_path, config):
                mark = len(api.calls)
                await api.message("/hello", user=ALICE, chat={"id": 42, "type": "private"})
                [hello] = await api.wait_sent(1, start=mark)
                assert hello["chat_id"] == 42 and hello["text"]
    # bot_username given: no getMe
    assert "getMe" not in [c.method for c in api.calls]
    failed = [e for e in logs if e["event"] == "telegram_poll_failed"]
    assert len(failed) == 1  # once per failing spell
    assert failed[0]["reporter"] == "TelegramBot"
    assert "getUpdates" in failed[0]["error"] and "not JSON" in failed[0]["error"]
    assert TOKEN not in repr(logs)


async def test_force_dialog_walks_the_force_schedulers_parameters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Buildbot's /force dialog: the builder by button, the parameters shown with a button to
    set each (a required one marked), a value typed in answer, then "Start Build"; a payload
    too long for Telegram's callback data goes by number."""
    chat = {"id": ALICE["id"], "type": "private"}
    async with fake_telegram(TOKEN) as api:
        from buildyard.master.reporters.telegram import TelegramBot

        monkeypatch.setattr(TelegramBot, "api_url", api.url)
        config = (
            BUILDERS
            + f"""
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['ok', 'bad'],
    properties=[util.StringParameter(name='ticket', label='Ticket:', required=True)])]
c['services'] = [reporters.TelegramBot(
    bot_token={TOKEN!r}, bot_username='yard_bot', chat_ids=[{GROUP["id"]}],
    notify_events=['finished'], authz={{'force': [{ALICE["id"]}]}},
    pollTimeout=5, retryDelay=0.2)]
"""
        )

        async def press(button: dict[str, Any]) -> dict[str, Any]:
            mark = len(api.calls)
            await api.push(
                {
                    "callback_query": {
                        "id": "q",
                        "from": ALICE,
                        "data": str(button["callback_data"]),
                        "message": {"message_id": 3, "chat": chat},
                    }
                }
            )
            [answer] = await api.wait_sent(1, start=mark)
            return answer

        def buttons(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
            rows = message.get("reply_markup", {}).get("inline_keyboard", [])
            return {b["text"]: b for row in rows for b in row}

        async with running_master(tmp_path, config) as run:
            mark = len(api.calls)
            await api.message("/force", user=ALICE, chat=chat)
            [which] = await api.wait_sent(1, start=mark)
            assert which["text"] == "Which builder do you want to start?"
            assert {k: b["callback_data"] for k, b in buttons(which).items()} == {
                "ok": "/force force config ok",
                "bad": "/force force config bad",
            }
            form = await press(buttons(which)["ok"])
            assert form["text"].startswith(
                "Alice Liddell, you are about to start a new build on `ok`!\n\n"
                "The current build parameters are:\n"
            )
            assert "\n    Ticket: `` ⚠️" in form["text"]
            assert form["text"].endswith(
                "What do you want to do? You must set values for all parameters marked with ⚠️"
            )
            assert "🚀 Start Build" not in buttons(form)
            asked = await press(buttons(form)["⚠️ Set Ticket"])
            assert asked["text"] == "Enter the new value for the ticket..."

            ticket = "T-1: a ticket whose description is long enough to pass 64 bytes"
            mark = len(api.calls)
            await api.message(ticket, user=ALICE, chat=chat)
            [form2] = await api.wait_sent(1, start=mark)
            assert f"\n    Ticket: `{ticket}`" in form2["text"] and "⚠️" not in form2["text"]
            start = buttons(form2)["🚀 Start Build"]
            assert isinstance(start["callback_data"], int)  # kept by the bot, sent by number
            mark = len(api.calls)
            requested = await press(start)
            assert requested["text"] == "Force build successfully requested."
            _requested, done = await api.wait_sent(2, start=mark)
            assert "of `ok` completed successfully" in done["text"]
            [buildset] = await run.master.db.buildsets.get_buildsets()
            props = await run.master.db.buildsets.get_buildset_properties(buildset.id)
            assert props["ticket"][0] == ticket
            assert props["owner"][0] == "Alice Liddell (@alice)"
            # the builder and the owner are not parameters a user may type
            mark = len(api.calls)
            await api.message("/force force build ok builderNames=bad", user=ALICE, chat=chat)
            [refused] = await api.wait_sent(1, start=mark)
            assert refused["text"] == (
                "Try '/force' and follow the instructions (builderNames is not a parameter)"
            )
            # a button the bot no longer knows says so
            mark = len(api.calls)
            await api.push(
                {
                    "callback_query": {
                        "id": "old",
                        "from": ALICE,
                        "data": "99999",
                        "message": {"message_id": 4, "chat": chat},
                    }
                }
            )
            await api.wait_for(
                lambda: any(
                    c.method == "answerCallbackQuery" and c.body.get("callback_query_id") == "old"
                    for c in api.calls[mark:]
                )
            )
            [stale] = [c.body for c in api.calls[mark:] if c.method == "answerCallbackQuery"]
            assert stale["text"] == "Sorry, button is no longer valid!"


async def test_webhook_mode_serves_updates_on_the_masters_www(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``useWebhook=True``: no polling; the bot registers ``<buildbotURL>telegram<token>``
    with ``setWebhook`` (the certificate uploaded) and answers the updates posted there."""
    www_port = free_port()
    cert = tmp_path / "public.pem"
    cert.write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    async with fake_telegram(TOKEN) as api:
        from buildyard.master.reporters.telegram import TelegramBot

        monkeypatch.setattr(TelegramBot, "api_url", api.url)
        config = (
            BUILDERS.replace("http://ci.example/", f"http://127.0.0.1:{www_port}/")
            + f"""
c['www'] = {{'port': {www_port}}}
c['services'] = [reporters.TelegramBot(
    bot_token={TOKEN!r}, useWebhook=True, certificate=open({str(cert)!r}, 'rb'),
    chat_ids=[{GROUP["id"]}], retryDelay=0.2)]
"""
        )
        with structlog.testing.capture_logs() as logs:
            async with running_master(tmp_path, config), aiohttp.ClientSession() as http:
                await api.wait_for(lambda: any(c.method == "setWebhook" for c in api.calls))
                [hook] = [c.body for c in api.calls if c.method == "setWebhook"]
                url = f"http://127.0.0.1:{www_port}/telegram{TOKEN}"
                secret = hook.pop("secret_token")
                assert hook == {"url": url, "certificate": cert.read_bytes()}
                # a secret Telegram sends back in a header (Buildbot sets none), made from
                # the token but not showing it
                assert len(secret) >= 32 and TOKEN not in secret
                signed = {"X-Telegram-Bot-Api-Secret-Token": secret}
                methods = [c.method for c in api.calls]
                assert methods == ["getMe", "setMyCommands", "setWebhook"]

                # not JSON, or another path: refused, the path never echoed
                async with http.post(
                    url, data="hi", headers={"Content-Type": "text/plain", **signed}
                ) as r:
                    assert r.status == 415
                async with http.post(url + "x", json={"update_id": 1}, headers=signed) as r:
                    assert r.status == 404 and TOKEN not in await r.text()
                # the right path without the secret, or with another: refused before reading
                mark = len(api.calls)
                getid = {
                    "update_id": 4,
                    "message": {"message_id": 1, "from": ALICE, "chat": GROUP, "date": 0,
                                "text": "/getid@yard_bot"},
                }  # fmt: skip
                async with http.post(url, json=getid) as r:
                    assert r.status == 403
                wrong = {"X-Telegram-Bot-Api-Secret-Token": secret[:-1] + "!"}
                async with http.post(url, json=getid, headers=wrong) as r:
                    assert r.status == 403

                update = {
                    "update_id": 5,
                    "message": {"message_id": 1, "from": ALICE, "chat": GROUP, "date": 0,
                                "text": "/getid@yard_bot"},
                }  # fmt: skip
                async with http.post(url, json=update, headers=signed) as r:
                    assert r.status == 202
                mine, group = await api.wait_sent(2, start=mark)
                assert mine["text"] == "Alice, your ID is `42`."
                assert group["text"] == "This group ID is `-1001`."
                # Telegram re-sends an update it thinks was lost: answered once; the next
                # one (a new id) is answered, and so after the re-sent one
                async with http.post(url, json=update, headers=signed) as r:
                    assert r.status == 202
                nxt = {
                    "update_id": 6,
                    "message": {"message_id": 2, "from": BOB, "chat": GROUP, "date": 0,
                                "text": "/getid@yard_bot"},
                }  # fmt: skip
                async with http.post(url, json=nxt, headers=signed) as r:
                    assert r.status == 202
                # updates are answered in order: had 5 been answered again, its "Alice"
                # answers would come before Bob's
                answers = [m["text"] for m in await api.wait_sent(4, start=mark)]
                assert answers[2:] == ["Bob, your ID is `7`.", "This group ID is `-1001`."]
                assert "getUpdates" not in [c.method for c in api.calls]
    assert TOKEN not in repr(logs) and secret not in repr(logs)
    assert any(e["event"] == "telegram_webhook_set" for e in logs)
    refused = [e["why"] for e in logs if e["event"] == "webhook_refused"]
    assert "X-Telegram-Bot-Api-Secret-Token missing" in refused
    assert "wrong X-Telegram-Bot-Api-Secret-Token" in refused


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("bot_token=1", "bot_token must be a string or a secret"),
        ("bot_token='t', certificate='PEM'", "certificate is only used with useWebhook=True"),
        ("bot_token='t', authz={'force': 'alice'}", "authz values must be bool or a list"),
    ],
)
def test_bad_telegram_arguments_are_config_errors(tmp_path: Path, args: str, message: str) -> None:
    (tmp_path / "master.cfg").write_text(
        HEADER.format(port=0, db_url="sqlite://")
        + f"c['services'] = [reporters.TelegramBot({args})]\n"
    )
    with pytest.raises(ConfigErrors) as info:
        load_master_config(tmp_path)
    assert message in str(info.value)


async def test_shutdown_start_stop_now_from_telegram(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Buildbot's ``shutdown``: ``start`` starts no new build and stops the master once the
    running one has ended, ``stop`` lets builds start again, ``now`` stops at once; only the
    users ``authz`` names may."""
    go = tmp_path / "go"
    async with fake_telegram(TOKEN) as api:
        from buildyard.master.reporters.telegram import TelegramBot

        monkeypatch.setattr(TelegramBot, "api_url", api.url)
        config = (
            BUILDERS
            + f"""
c['builders'].append(util.BuilderConfig(name='slow', workernames=['w1'],
    factory=util.BuildFactory([steps.ShellCommand(
        command=['sh', '-c',
                 'i=0; while [ ! -e {go} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done'])])))
c['services'] = [reporters.TelegramBot(
    bot_token={TOKEN!r}, bot_username='yard_bot', chat_ids=[{GROUP["id"]}],
    notify_events=['started'],
    authz={{('force', 'shutdown'): [{ALICE["id"]}]}}, pollTimeout=5, retryDelay=0.2)]
"""
        )

        async def ask(text: str, count: int = 1, user: dict[str, object] = ALICE) -> list[str]:
            mark = len(api.calls)
            await api.message(text, user=user, chat=GROUP)
            return [m["text"] for m in await api.wait_sent(count, start=mark)]

        async with running_master(tmp_path, config) as run:
            master = run.master
            await api.wait_for(lambda: any(c.method == "getUpdates" for c in api.calls))
            [denied] = await ask("/shutdown start", user=BOB)
            assert denied in ACCESS_DENIED_MESSAGES
            assert not master.botmaster.shutting_down

            _requested, started = await ask("/force build slow long one", 2)
            assert "`slow` started" in started
            [menu] = await ask("/shutdown")
            assert menu == "What do you want to do?"
            assert await ask("/shutdown start") == ["Starting clean shutdown."]
            assert await ask("/shutdown check") == ["Status: buildbot is shutting down."]
            assert await ask("/shutdown start") == ["Shutdown already started."]
            # the keyboard now offers to stop the shutdown
            mark = len(api.calls)
            await api.message("/shutdown", user=ALICE, chat=GROUP)
            [menu2] = await api.wait_sent(1, start=mark)
            assert menu2["text"].startswith("Buildbot is currently shutting down.")
            buttons = [b["callback_data"] for row in menu2["reply_markup"]["inline_keyboard"]
                       for b in row]  # fmt: skip
            assert buttons == ["/shutdown stop", "/shutdown now"]

            # a build asked for meanwhile waits: a whole distribution pass leaves it unclaimed
            assert await ask("/force build ok meanwhile") == ["Force build successfully requested."]
            await master.botmaster.brd.distribute()
            waiting = await master.db.buildrequests.get_buildrequests(claimed=False)
            assert len(waiting) == 1
            # stopping the shutdown lets it start
            mark = len(api.calls)
            await api.message("/shutdown stop", user=ALICE, chat=GROUP)
            stopped, ok_started = [m["text"] for m in await api.wait_sent(2, start=mark)]
            assert stopped == "Stopping clean shutdown."
            assert "`ok` started" in ok_started
            assert await ask("/shutdown stop") == ["There is no ongoing shutdown to stop."]
            assert await ask("/shutdown check") == ["Status: buildbot is running."]

            # started again: once the slow build ends, the master is asked to stop
            assert await ask("/shutdown start") == ["Starting clean shutdown."]
            assert not master.stop_requested.is_set()
            go.touch()
            async with asyncio.timeout(60):
                await master.stop_requested.wait()
            assert not master.botmaster.brd.building

            master.stop_requested.clear()
            assert await ask("/shutdown now") == ["Stopping buildbot."]
            async with asyncio.timeout(10):  # asked right after the answer is sent
                await master.stop_requested.wait()
