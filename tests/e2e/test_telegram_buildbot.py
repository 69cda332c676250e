"""reporters.TelegramBot side by side with the stock Buildbot 4.3.0: the same master.cfg on each
(but for the line that points the bot at the fake Bot API), each bot talking to its own fresh
fake Telegram Bot API server in this process (tests/master/reporters/telegram_api.py, which
records every request). Each master signs on, the same build is forced, and a user in the
notified group sends the same commands and presses the same buttons (/force's dialog through to
a forced build); the requests each bot sends are compared (build numbers
in URLs and "how long ago" normalised). Where buildyard differs on purpose, the assertion says
why."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.e2e.test_reporters_buildbot import _force, _master
from tests.master.reporters.telegram_api import Call, FakeTelegram, fake_telegram

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("buildbot-telegram")]

TOKEN = "123456:AAH-side-by-side"
GROUP = {"id": -1001, "type": "group", "title": "CI"}
ALICE = {"id": 42, "is_bot": False, "first_name": "Alice", "username": "alice"}

CONFIG = """\
import os
from buildbot.plugins import *
{redirect}
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker('w1', 'pw')]
c['protocols'] = {{'msgpack_experimental_v7': {{
    'port': int(os.environ['T_WORKER_PORT']), 'interface': '127.0.0.1'}}}}
c['builders'] = [util.BuilderConfig(
    name='ok', workernames=['w1'],
    factory=util.BuildFactory([steps.ShellCommand(command=['true'])]))]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['ok'])]
c['www'] = {{'port': 'tcp:%s:interface=127.0.0.1' % os.environ['T_WWW_PORT'],
            'change_hook_dialects': {{'base': True}}}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['buildbotURL'] = 'http://ci.example/'
c['buildbotNetUsageData'] = None
c['services'] = [reporters.TelegramBot(
    bot_token={token!r}, chat_ids=[{chat}], notify_events=['started', 'finished'],
    authz={{('force', 'shutdown'): [42]}}, pollTimeout=5, retryDelay=1)]  # 42: Alice
"""

# Test only: both bots must talk to the fake, not to https://api.telegram.org. buildyard's
# TelegramBot takes the API's address from a class attribute; Buildbot builds its HTTP session
# on the hardcoded address (TelegramBot._get_http), so its master.cfg replaces that method with
# one building the same session on the fake's address.
REDIRECT = {
    "buildyard": "reporters.TelegramBot.api_url = os.environ['T_TELEGRAM']\n",
    "buildbot": """
import buildbot.reporters.telegram as _t_telegram
from buildbot.util import httpclientservice as _t_http


def _t_session_on_the_fake(self, bot_token):
    return _t_http.HTTPSession(
        self.master.httpservice, os.environ['T_TELEGRAM'] + '/bot' + bot_token)


_t_telegram.TelegramBot._get_http = _t_session_on_the_fake
""",
}

CHANGES = [
    {
        "comments": f"Brighter lamp {n}\n\nMakes it brighter.",
        "author": "Ann <ann@example.org>",
        "revision": f"{n}bc123",
        "branch": "main",
        "repository": "https://example.org/lamp.git",
        "revlink": f"https://example.org/lamp/{n}",
        "when_timestamp": str(1_700_000_000 + 3600 * n),
    }
    for n in (1, 2)
]

# the commands the user sends in the group, and how many messages each answer has
QUESTIONS = [
    ("/status", 1),
    ("/list", 1),  # no argument: a question with buttons
    ("/list builders", 1),
    ("/list all workers", 1),
    ("/notify on failure", 1),
    ("/list changes", 2),  # "getting them" (then deleted), then the list
    ("/status ok", 1),
    ("/last ok", 1),
    ("/notify list", 1),
    ("/watch", 1),
    ("/help status", 1),
    ("/getid", 2),  # in a group: the user's id, then the group's
    ("/commands", 1),
    ("/frobnicate", 2),  # "I don't get this", then the list of commands
    ("/force", 1),  # the dialog: which builder?
    ("/shutdown", 1),  # a question with buttons
    ("/shutdown check", 1),
]

# buttons pressed (callback queries): a name, the button's command, how many messages follow
PRESSES = [
    ("button", "/list builders", 1),
    # /force's dialog: the builder chosen, the form of the scheduler's parameters; then
    # "Start Build" (its command as the form's button has it): requested, started, finished
    ("force form", "/force force config ok", 1),
    ("force start", "/force force build ok ", 3),
]


def _normal(value: Any) -> Any:
    """Build numbers in URLs and "how long ago" made comparable; message ids (the fake numbers
    them in the order it sees messages) kept only as "there is one"."""
    if isinstance(value, str):
        value = re.sub(r"/#/builders/\d+/builds/", "/#/builders/B/builds/", value)
        return re.sub(r"\b(a moment|\d+ seconds|a minute) ago", "AGO ago", value)
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {
            k: (isinstance(v, int) if k.endswith("message_id") else _normal(v))
            for k, v in value.items()
        }
    return value


def _sent(calls: list[Call]) -> list[tuple[str, Any]]:
    """What the bot sent, but its polls: grouped by method (Buildbot sends some requests
    without waiting for the previous one), the messages in the order they were sent."""
    sent = [(c.method, _normal(c.body)) for c in calls if c.method != "getUpdates"]
    return sorted(sent, key=lambda call: call[0])


async def _session(kind: str, root: Path) -> dict[str, Any]:
    async with fake_telegram(TOKEN) as api:
        settings = {"T_TELEGRAM": api.url}
        config = CONFIG.format(redirect=REDIRECT[kind], token=TOKEN, chat=GROUP["id"])
        async with _master(kind, root, settings, config=config) as rest:
            await api.wait_for(
                lambda: {"setMyCommands", "getUpdates"} <= {c.method for c in api.calls},
                within=120,
            )
            # (on a loaded machine a second poll may already be there: one is enough)
            first_poll = next(i for i, c in enumerate(api.calls) if c.method == "getUpdates")
            sign_on = [
                c for i, c in enumerate(api.calls) if c.method != "getUpdates" or i == first_poll
            ]
            mark = len(api.calls)
            await _force(rest)
            build = await _wait_sent(api, mark, 2)
            # two changes for /list changes, through the base change hook
            async with aiohttp.ClientSession() as http:
                for change in CHANGES:
                    url = rest.removesuffix("/api/v2") + "/change_hook/base"
                    async with http.post(url, data=change) as resp:
                        assert resp.status == 200, await resp.text()
            marks = []
            for text, count in QUESTIONS:
                marks.append(len(api.calls))
                await api.message(text, user=ALICE, chat=GROUP)
                await _wait_sent(api, marks[-1], count)
            # buttons of the keyboards pressed: callback queries
            for n, (_name, data, count) in enumerate(PRESSES, start=1):
                marks.append(len(api.calls))
                await api.push(
                    {
                        "callback_query": {
                            "id": f"q{n}",
                            "from": ALICE,
                            "data": data,
                            "message": {"message_id": 2, "chat": GROUP},
                        }
                    }
                )
                await _wait_sent(api, marks[-1], count)
            # the poll after the last update: past it
            last = 100 + len(QUESTIONS) + len(PRESSES)
            await api.wait_for(
                lambda: any(
                    c.method == "getUpdates" and c.body.get("offset") == last for c in api.calls
                )
            )
            polls = [c.body for c in api.calls if c.method == "getUpdates"]
            # each answer is what was sent until the next question (a request Buildbot does
            # not wait for, as deleteMessage, may arrive a moment after the messages)
            ends = [*marks[1:], len(api.calls)]
            answers = {
                text: _sent(api.calls[start:end])
                for text, start, end in zip(
                    [q for q, _ in QUESTIONS] + [p for p, _, _ in PRESSES], marks, ends, strict=True
                )
            }
    return {"sign_on": sign_on, "build": build, "answers": answers, "polls": polls}


async def _wait_sent(api: FakeTelegram, mark: int, count: int) -> list[tuple[str, Any]]:
    await api.wait_sent(count, start=mark, within=120)
    return _sent(api.calls[mark:])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def both(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("telegram")
    yield {kind: await _session(kind, root) for kind in ("buildyard", "buildbot")}


@pytest.mark.asyncio(loop_scope="module")
async def test_telegram_bot_signs_on_and_notifies_like_buildbot(both: dict[str, Any]) -> None:
    ours, theirs = both["buildyard"], both["buildbot"]
    mine = [c.method for c in ours["sign_on"]]
    stock = [c.method for c in theirs["sign_on"]]
    assert mine == ["getMe", "setMyCommands", "deleteWebhook", "getUpdates"]
    # Buildbot asks its name first too, but does not wait for setMyCommands before it starts
    # polling (it was seen last): the same requests, after getMe in any order. buildyard
    # announces its commands before taking any, so that a user never sees a bot without them.
    assert stock[0] == "getMe" and sorted(stock) == sorted(mine), stock
    bodies = {c.method: c.body for c in ours["sign_on"]}
    stock_bodies = {c.method: c.body for c in theirs["sign_on"]}
    assert bodies == stock_bodies
    assert "getid" in {c["command"] for c in bodies["setMyCommands"]["commands"]}
    # long polling: the same timeout, then the offset past the last update taken
    assert ours["polls"][0] == theirs["polls"][0] == {"timeout": 5}
    offsets = [p.get("offset") for p in ours["polls"]]
    assert offsets == sorted(offsets, key=lambda o: o or 0)
    assert (
        ours["polls"][-1]
        == theirs["polls"][-1]
        == {"timeout": 5, "offset": 100 + len(QUESTIONS) + len(PRESSES)}
    )

    assert ours["build"] == theirs["build"]
    assert [body for _, body in ours["build"]] == [
        {
            "chat_id": GROUP["id"],
            "parse_mode": "Markdown",
            "text": "Build [#1](http://ci.example/#/builders/B/builds/1) of `ok` started.",
        },
        {
            "chat_id": GROUP["id"],
            "parse_mode": "Markdown",
            "text": "Build [#1](http://ci.example/#/builders/B/builds/1) of `ok` completed "
            "successfully ✅.",
        },
    ]


@pytest.mark.asyncio(loop_scope="module")
async def test_telegram_bot_answers_commands_like_buildbot(both: dict[str, Any]) -> None:
    ours, theirs = both["buildyard"]["answers"], both["buildbot"]["answers"]
    # the forced build's started/finished notices and the "requested" answer may come in
    # either order on either master: compared as a set
    start, stock_start = ours.pop("force start"), theirs.pop("force start")
    assert sorted(map(repr, start)) == sorted(map(repr, stock_start))
    for text in ours:
        assert ours[text] == theirs[text], text
    [(_, force)] = ours["/force"]
    assert force["text"] == "Which builder do you want to start?"
    assert force["reply_markup"] == {
        "inline_keyboard": [[{"text": "ok", "callback_data": "/force force config ok"}]]
    }
    [_, (_, form)] = ours["force form"]
    assert form["text"].startswith(
        "Alice, you are about to start a new build on `ok`!\n\nThe current build parameters are:"
    )
    texts = sorted(body["text"] for method, body in start if method == "sendMessage")
    assert [t[:10] for t in texts] == ["Build [#2]", "Build [#2]", "Force buil"]
    # the used keyboard is taken away, as Buildbot does
    assert "editMessageReplyMarkup" in {method for method, _ in start}
    assert ours["/shutdown check"][0][1]["text"] == "Status: buildbot is running."
    [(_, status)] = ours["/status"]
    assert status["text"] == "`ok`: idle 💤  last build AGO ago ✅"
    [(_, menu)] = ours["/list"]
    assert menu["text"] == "What do you want to list?" and menu["reply_markup"]["inline_keyboard"]
    assert ours["/list builders"][0][1]["text"] == "I found the following **builders**:\n`ok`"
    assert ours["/list all workers"][0][1]["text"] == "I found the following **workers**:\n`w1`"
    # a button pressed: the query is answered, then the command it carries
    assert ours["button"] == [
        ("answerCallbackQuery", {"callback_query_id": "q1"}),
        ours["/list builders"][0],
    ]
    (_, deleted), (_, waiting), (_, changes) = ours["/list changes"]
    assert waiting["text"] == "⏳ Getting your changes..." and deleted["message_id"] is True
    assert changes["text"] == (
        "I found the following recent **changes**:\n\n"
        "[Brighter lamp 2](https://example.org/lamp/2)\n_Author_: Ann <ann@example.org>\n"
        "_Date_: 2023-11-15 00:13\n_Repository_: https://example.org/lamp.git\n"
        "_Branch_: main\n_Revision_: 2bc123\n\n"
        "[Brighter lamp 1](https://example.org/lamp/1)\n_Author_: Ann <ann@example.org>\n"
        "_Date_: 2023-11-14 23:13\n_Repository_: https://example.org/lamp.git\n"
        "_Branch_: main\n_Revision_: 1bc123"
    )
    (_, unknown), (_, known) = ours["/frobnicate"]
    assert unknown["text"] == "I don't get this '/frobnicate'..."
    assert known["text"].startswith("Buildbot commands: /commands, /force, /getid")


CERTIFICATE = b"-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


async def _webhook_session(kind: str, root: Path) -> dict[str, Any]:
    """The bot with ``useWebhook=True`` (and a certificate): what it tells Telegram, and how
    it answers an update posted to its address on the master's web server."""
    async with fake_telegram(TOKEN) as api:
        config = CONFIG.format(redirect=REDIRECT[kind], token=TOKEN, chat=GROUP["id"]).replace(
            "pollTimeout=5,", f"useWebhook=True, certificate={CERTIFICATE!r},"
        )
        async with _master(kind, root, {"T_TELEGRAM": api.url}, config=config) as rest:
            await api.wait_for(
                lambda: {"setMyCommands", "setWebhook"} <= {c.method for c in api.calls},
                within=120,
            )
            sign_on = [(c.method, c.body) for c in api.calls]
            hook = dict(sign_on)["setWebhook"]
            # ours also gives Telegram a secret to send back (Buildbot sets none)
            headers = {"X-Telegram-Bot-Api-Secret-Token": hook.pop("secret_token", "")}
            # Telegram posts the update to the address given (ci.example is not this machine:
            # the same path on the master's web server)
            path = "/telegram" + TOKEN
            update = {
                "update_id": 500,
                "message": {"message_id": 1, "from": ALICE, "chat": GROUP, "date": 0,
                            "text": "/getid"},
            }  # fmt: skip
            mark = len(api.calls)
            async with aiohttp.ClientSession() as http:
                url = rest.removesuffix("/api/v2") + path
                async with http.post(url, json=update, headers=headers) as resp:
                    status = resp.status
                answer = await _wait_sent(api, mark, 2)
    return {
        "sign_on": sign_on,
        "status": status,
        "answer": answer,
        "secret": headers["X-Telegram-Bot-Api-Secret-Token"],
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def both_webhooks(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("telegram-webhook")
    yield {kind: await _webhook_session(kind, root) for kind in ("buildyard", "buildbot")}


@pytest.mark.asyncio(loop_scope="module")
async def test_telegram_webhook_mode_like_buildbot(both_webhooks: dict[str, Any]) -> None:
    ours, theirs = both_webhooks["buildyard"], both_webhooks["buildbot"]
    # no polling, no deleteWebhook: the name, the commands, then the webhook with the
    # certificate uploaded (Buildbot may announce its commands after setting the webhook)
    assert [m for m, _ in ours["sign_on"]] == ["getMe", "setMyCommands", "setWebhook"]
    assert sorted(map(repr, ours["sign_on"])) == sorted(map(repr, theirs["sign_on"]))
    hook = dict(ours["sign_on"])["setWebhook"]
    assert ours["secret"] and not theirs["secret"]
    assert hook == {"url": "http://ci.example/telegram" + TOKEN, "certificate": CERTIFICATE}
    assert ours["status"] == theirs["status"] == 202
    assert ours["answer"] == theirs["answer"]
    assert [body["text"] for _, body in ours["answer"]] == [
        "Alice, your ID is `42`.",
        "This group ID is `-1001`.",
    ]
