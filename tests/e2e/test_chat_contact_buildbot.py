"""A site's own Telegram commands, side by side with the stock Buildbot 4.3.0: the same
master.cfg on each (but for the line that points the bot at the fake Bot API) subclasses
``buildbot.reporters.telegram.TelegramContact`` with Twisted-style commands written the way a
real site's are (``@defer.inlineCallbacks``, ``yield self.send(...)``,
``yield scheduler.force(owner=self.describeUser(), package=...)`` through
``self.master.scheduler_manager.namedServices``, a ``usage`` attribute) and sets
``TelegramStatusBot.contactClass``. On buildyard these run through the ``buildyard[twisted]``
extra. A user sends the same commands to each bot (each with its own fake Telegram server,
tests/master/reporters/telegram_api.py); the answers are compared, and the build the command
forced has the property it gave on both."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.e2e.test_reporters_buildbot import _master
from tests.e2e.test_telegram_buildbot import REDIRECT, _normal, _sent
from tests.master.reporters.telegram_api import fake_telegram

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("buildbot-telegram-contact")]

TOKEN = "123456:AAH-site-contact"
GROUP = {"id": -1001, "type": "group", "title": "CI"}
ALICE = {"id": 42, "is_bot": False, "first_name": "Alice", "username": "alice"}

CONFIG = """\
import os
from twisted.internet import defer
from buildbot.plugins import *
import buildbot.reporters.telegram as telegram
{redirect}


class SiteContact(telegram.TelegramContact):

    def getSchedulerByName(self, name):
        schedulers = self.master.scheduler_manager.namedServices
        if name not in schedulers:
            raise ValueError(f"unknown triggered scheduler: {{name!r}}")
        return schedulers[name]

    @defer.inlineCallbacks
    def command_ZBT(self, args, **kwargs):
        \"\"\"test a package\"\"\"
        try:
            argv = self.splitArgs(args)
            package = argv[0]
            scheduler = self.getSchedulerByName('zbt-force')
            yield self.send(f'zbt {{package}}')
            yield scheduler.force(owner=self.describeUser(), package=package)
        except IndexError:
            self.send("Which package do you want to force test?")
        return
    command_ZBT.usage = "zbt _package_ - test a package with tatt"

    @defer.inlineCallbacks
    def command_GONE(self, args, **kwargs):
        scheduler = self.getSchedulerByName('no-such-scheduler')
        yield scheduler.force(owner=self.describeUser())

    def command_LATER(self, args, **kwargs):
        # a Deferred that fails later, returned by a plain method
        d = defer.Deferred()
        from twisted.internet import reactor
        reactor.callLater(0.01, d.errback, RuntimeError("the site's command broke"))
        return d


telegram.TelegramStatusBot.contactClass = SiteContact

c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker('w1', 'pw')]
c['protocols'] = {{'msgpack_experimental_v7': {{
    'port': int(os.environ['T_WORKER_PORT']), 'interface': '127.0.0.1'}}}}
c['builders'] = [util.BuilderConfig(
    name='zbt', workernames=['w1'],
    factory=util.BuildFactory([
        steps.ShellCommand(name='show', command=['echo', util.Property('package')])]))]
c['schedulers'] = [schedulers.ForceScheduler(
    name='zbt-force', builderNames=['zbt'],
    reason=util.FixedParameter(name='reason', default=''),
    properties=[util.StringParameter(name='package', label='package', required=True)])]
c['www'] = {{'port': 'tcp:%s:interface=127.0.0.1' % os.environ['T_WWW_PORT']}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['buildbotURL'] = 'http://ci.example/'
c['buildbotNetUsageData'] = None
c['services'] = [telegram.TelegramBot(bot_token={token!r}, pollTimeout=5, retryDelay=1)]
"""

# what the user sends in the group, and how many messages each answer has
QUESTIONS = [
    ("/help zbt", 1),
    ("/zbt", 1),  # no package: the command's own answer
    ("/zbt app-editors/vim", 1),
    ("/gone", 1),  # the command fails (a ValueError in its generator)
    ("/later", 1),  # its Deferred fails
    ("/commands", 1),
    ("/commands botfather", 1),
]


async def _properties(http: aiohttp.ClientSession, api: str) -> dict[str, Any]:
    """The properties of the first build, once it has finished."""
    for _ in range(240):
        async with http.get(f"{api}/builds?complete=true") as resp:
            builds = (await resp.json(content_type=None))["builds"]
        if builds:
            buildid = builds[0]["buildid"]
            async with http.get(f"{api}/builds/{buildid}/properties") as resp:
                props: dict[str, Any] = (await resp.json(content_type=None))["properties"][0]
            return props
        await asyncio.sleep(0.5)
    raise AssertionError("the forced build did not finish within 120 s")


async def _session(kind: str, root: Path) -> dict[str, Any]:
    async with fake_telegram(TOKEN) as api:
        config = CONFIG.format(redirect=REDIRECT[kind], token=TOKEN)
        async with _master(kind, root, {"T_TELEGRAM": api.url}, config=config) as rest:
            await api.wait_for(
                lambda: {"setMyCommands", "getUpdates"} <= {c.method for c in api.calls},
                within=120,
            )
            [announced] = [c.body for c in api.calls if c.method == "setMyCommands"]
            answers = {}
            for text, count in QUESTIONS:
                mark = len(api.calls)
                await api.message(text, user=ALICE, chat=GROUP)
                await api.wait_sent(count, start=mark, within=120)
                answers[text] = mark
            ends = [*list(answers.values())[1:], None]
            async with aiohttp.ClientSession() as http:
                props = await _properties(http, rest)
            bodies = {
                text: _sent(api.calls[start:end])
                for (text, start), end in zip(answers.items(), ends, strict=True)
            }
    return {"announced": announced, "answers": bodies, "properties": props}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def both(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("telegram-contact")
    yield {kind: await _session(kind, root) for kind in ("buildyard", "buildbot")}


def _texts(answer: list[tuple[str, Any]]) -> list[str]:
    return [body["text"] for method, body in answer if method == "sendMessage"]


@pytest.mark.asyncio(loop_scope="module")
async def test_a_sites_twisted_style_commands_answer_like_buildbot(both: dict[str, Any]) -> None:
    ours, theirs = both["buildyard"]["answers"], both["buildbot"]["answers"]
    for text, _count in QUESTIONS:
        assert ours[text] == theirs[text], text
    assert _texts(ours["/help zbt"]) == ["Usage: /zbt _package_ - test a package with tatt"]
    assert _texts(ours["/zbt"]) == ["Which package do you want to force test?"]
    assert _texts(ours["/zbt app-editors/vim"])[0] == "zbt app-editors/vim"
    assert _texts(ours["/gone"]) == ["Something bad happened (see logs)"]
    assert _texts(ours["/later"]) == ["Something bad happened (see logs)"]
    [commands] = _texts(ours["/commands"])
    assert "/gone" in commands and "/later" in commands and "/zbt" in commands
    [botfather] = _texts(ours["/commands botfather"])
    assert "\nzbt - test a package\n" in botfather + "\n"


@pytest.mark.asyncio(loop_scope="module")
async def test_the_command_forces_a_build_with_its_property_like_buildbot(
    both: dict[str, Any],
) -> None:
    ours, theirs = both["buildyard"]["properties"], both["buildbot"]["properties"]
    for name in ("package", "owner", "scheduler"):
        assert ours[name] == theirs[name], name
    assert ours["package"] == ["app-editors/vim", "Force Build Form"]
    assert ours["owner"][0] == "Alice (@alice) on 'CI'"


@pytest.mark.asyncio(loop_scope="module")
async def test_the_sites_commands_in_telegrams_menu(both: dict[str, Any]) -> None:
    ours = {c["command"]: c["description"] for c in both["buildyard"]["announced"]["commands"]}
    theirs = {c["command"]: c["description"] for c in both["buildbot"]["announced"]["commands"]}
    # Buildbot announces the commands of its own TelegramContact, never a site's; buildyard
    # announces those of the contact class in use, so that Telegram's menu offers them too
    assert "zbt" not in theirs
    assert ours.pop("zbt") == "test a package"
    assert ours.pop("gone") == "gone" and ours.pop("later") == "later"
    assert _normal(ours) == _normal(theirs)
