"""reporters.IRC side by side with the stock Buildbot 4.3.0: the same master.cfg (but for the
bot's nick and channel) on each, each bot on the same real IRC server (ngIRCd); a user in the
bot's channel asks the same questions, forces the same build, and the answers and notices
are compared (build URLs and "how long ago" normalised). Where buildyard differs on purpose,
the assertion says why."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import buildyard
from buildyard.testing.ircd import Ircd, IrcUser, have_ngircd, irc_user
from tests.e2e.test_reporters_buildbot import _master

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not have_ngircd(), reason="needs ngircd (apt-get install ngircd)"),
]

CONFIG = """\
import os
from buildbot.plugins import *

c = BuildmasterConfig = {}
c['workers'] = [worker.Worker('w1', 'pw')]
c['protocols'] = {'msgpack_experimental_v7': {
    'port': int(os.environ['T_WORKER_PORT']), 'interface': '127.0.0.1'}}
c['builders'] = [util.BuilderConfig(
    name='ok', workernames=['w1'],
    factory=util.BuildFactory([steps.ShellCommand(command=['true'])]))]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['ok'])]
c['www'] = {'port': 'tcp:%s:interface=127.0.0.1' % os.environ['T_WWW_PORT']}
c['db'] = {'db_url': 'sqlite:///state.sqlite'}
c['buildbotURL'] = 'http://ci.example/'
c['buildbotNetUsageData'] = None
c['services'] = [reporters.IRC(
    host='127.0.0.1', port=int(os.environ['T_IRC_PORT']), nick=os.environ['T_NICK'],
    channels=[os.environ['T_CHANNEL']], notify_events=['started', 'finished'],
    allowForce=True, lostDelay=1, failedDelay=1)]
"""

# what the user asks, and how many lines each answer has
QUESTIONS = [
    ("status", 1),
    ("list builders", 1),
    ("list workers", 1),
    ("help status", 1),
    ("help shutdown check", 1),
    ("notify list", 1),
    ("notify on failure", 1),
    ("watch ok", 1),
    ("frobnicate", 2),
    ("force build ok because", 3),  # the answer, then the build's two notices
    ("last ok", 1),
    ("status ok", 1),
    ("stop build ok now", 1),
    ("last nope", 1),
    ("version", 1),
    ("source", 1),
]


def _normal(text: str) -> str:
    text = re.sub(r"/#/builders/\d+/builds/", "/#/builders/B/builds/", text)
    return re.sub(r"\b(a moment|\d+ seconds|a minute) ago", "AGO ago", text)


async def _ask(user: IrcUser, nick: str, channel: str, text: str, count: int) -> list[str]:
    mark = len(user.lines)
    user.say(channel, f"{nick}: {text}")
    return [_normal(m) for m in await user.messages(nick, start=mark, count=count, within=120)]


async def _conversation(kind: str, root: Path, ircd: Ircd) -> list[list[str]]:
    nick, channel = ("yard", "#yard") if kind == "buildyard" else ("stock", "#stock")
    settings = {"T_IRC_PORT": str(ircd.port), "T_NICK": nick, "T_CHANNEL": channel}
    async with irc_user(f"{nick}-user", ircd.port) as user:
        await user.join(channel)  # first in: the channel's operator
        async with _master(kind, root, settings, config=CONFIG):
            await user.wait_for(
                lambda p, c, a: c == "JOIN" and p.startswith(f"{nick}!"), within=120
            )
            return [await _ask(user, nick, channel, q, n) for q, n in QUESTIONS]


async def test_irc_bot_talks_like_buildbot(tmp_path: Path) -> None:
    ircd = Ircd(tmp_path / "ircd")
    ircd.directory.mkdir()
    ircd.start()
    try:
        ours = await _conversation("buildyard", tmp_path, ircd)
        theirs = await _conversation("buildbot", tmp_path, ircd)
    finally:
        ircd.stop()
    answers = dict(zip((q for q, _ in QUESTIONS), zip(ours, theirs, strict=True), strict=True))

    # buildyard names itself, and where its source is: it is not Buildbot
    mine, stock = answers.pop("version")
    assert mine == [f"This is buildyard-{buildyard.__version__} at your service"]
    assert stock == ["This is buildbot-4.3.0 at your service"]
    mine, stock = answers.pop("source")
    assert mine != stock and stock == [
        "My source can be found at https://github.com/buildbot/buildbot"
    ]
    for question, (mine, stock) in answers.items():
        assert mine == stock, question
    assert answers["frobnicate"][0][1].startswith("Buildbot commands: commands, dance, destroy")
    force = answers["force build ok because"][0]
    assert force[0] == "Force build successfully requested."
    assert force[1] == "Build [#1](http://ci.example/#/builders/B/builds/1) of `ok` started."
