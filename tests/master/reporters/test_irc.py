"""reporters.IRC on a real master with a real worker, against a real IRC server (ngIRCd): the
build notices reach the channel, a user in the channel runs commands and gets Buildbot's
answers, and the bot comes back after the server restarts."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from buildyard.master.model.results import Results
from buildyard.master.reporters.irc import LineError, parse_line
from buildyard.testing.ircd import Ircd, have_ngircd, irc_user
from buildyard.testing.masters import running_master

pytestmark = pytest.mark.skipif(not have_ngircd(), reason="needs ngircd (apt-get install ngircd)")

BUILDERS = """
c['buildbotURL'] = 'http://ci.example/'
c['builders'] = [
    util.BuilderConfig(name='ok', workernames=['w1'],
                       factory=util.BuildFactory([steps.ShellCommand(command=['true'])])),
    util.BuilderConfig(name='bad', workernames=['w1'],
                       factory=util.BuildFactory([steps.ShellCommand(command=['false'])])),
]
"""


@pytest.fixture
def ircd(tmp_path: Path) -> Iterator[Ircd]:
    server = Ircd(tmp_path / "ircd")
    server.directory.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _irc(port: int, **extra: str) -> str:
    args = {
        "host": "'127.0.0.1'",
        "port": str(port),
        "nick": "'bby'",
        "channels": "[{'channel': '#ci'}]",
        "notify_events": "['started', 'finished']",
        "useColors": "False",
        "lostDelay": "0.2",
        "failedDelay": "0.2",
        **extra,
    }
    return (
        "c['services'] = [reporters.IRC(" + ", ".join(f"{k}={v}" for k, v in args.items()) + ")]\n"
    )


def _bot_in_channel(prefix: str, command: str, params: list[str]) -> bool:
    """The bot joins the channel, or is named among those already in it."""
    if command == "JOIN":
        return prefix.startswith("bby!")
    return command == "353" and "bby" in [n.lstrip("@+%&~") for n in params[-1].split()]


def _build_url(text: str) -> str:
    return re.sub(r"/#/builders/\d+/builds/", "/#/builders/B/builds/", text)


async def test_irc_bot_reports_builds_and_answers_commands(tmp_path: Path, ircd: Ircd) -> None:
    config = BUILDERS + _irc(ircd.port, authz="{('force', 'stop', 'shutdown'): ['alice']}")
    async with irc_user("alice", ircd.port) as alice, irc_user("bob", ircd.port) as bob:
        await alice.join("#ci")  # first in the channel: alice is its operator
        await bob.join("#ci")
        async with running_master(tmp_path, config) as run:
            await alice.wait_for(lambda p, c, a: c == "JOIN" and p.startswith("bby!"))
            mark = len(alice.lines)
            ok = await run.build("ok")
            assert ok.build.results == Results.SUCCESS
            started, finished = await alice.messages("bby", start=mark, count=2)
            assert _build_url(started) == (
                "Build [#1](http://ci.example/#/builders/B/builds/1) of `ok` started."
            )
            assert _build_url(finished) == (
                "Build [#1](http://ci.example/#/builders/B/builds/1) of `ok` completed "
                "successfully."
            )

            mark = len(alice.lines)
            alice.say("#ci", "bby: status")
            answers = await alice.messages("bby", start=mark, count=2)
            assert set(answers) == {
                "`bad`: idle",
                f"`ok`: idle  last build {answers[0].split('last build ')[-1]}"
                if "ok" in answers[0]
                else f"`ok`: idle  last build {answers[1].split('last build ')[-1]}",
            }
            [ok_line] = [a for a in answers if a.startswith("`ok`")]
            assert re.fullmatch(
                r"`ok`: idle  last build (a moment|\d+ seconds) ago, Success", ok_line
            )

            mark = len(alice.lines)
            alice.say("#ci", "bby: notify on failure")
            [listed] = await alice.messages("bby", start=mark)
            assert listed == "The following events are being notified: failure, finished, started."

            # bob is not an operator of #ci, and not allowed to force
            mark = len(bob.lines)
            bob.say("#ci", "bby: notify off")
            bob.say("#ci", "bby: force build ok because")
            refused = await bob.messages("bby", start=mark, count=2)
            assert refused == [
                "Only channel operators can change notified events for this channel. "
                "And you, bob, are neither!",
                "Thou shall not pass, bob!!!",
            ]

            mark = len(alice.lines)
            alice.say("#ci", "bby: force build --branch=main bad because I can")
            answers = await alice.messages("bby", start=mark, count=3)
            assert answers[0] == "Force build successfully requested."
            assert _build_url(answers[1]) == (
                "Build [#1](http://ci.example/#/builders/B/builds/1) of `bad` started."
            )
            # showBlameList (on by default) names who is responsible for a failed build: here
            # the build's owner (Buildbot 4.3 documents it but never adds it)
            assert _build_url(answers[2]) == (
                "Build [#1](http://ci.example/#/builders/B/builds/1) of `bad` failed: "
                "failed 'false' (failure)  blamelist: alice on #ci"
            )

            mark = len(alice.lines)
            alice.say("#ci", "bby: frobnicate")
            alice.say("bby", "last bad")  # a private message needs no "bby:"
            got = await alice.messages("bby", start=mark, count=3)
            # the channel's two answers come in order; the private one (another contact,
            # handled concurrently) may come before, between or after them
            [last] = [line for line in got if line.startswith("`bad`:")]
            unknown, commands = [line for line in got if line is not last]
            assert unknown == "I don't get this 'frobnicate'..."
            assert commands == (
                "Buildbot commands: commands, dance, destroy, force, hello, help, hustle, join, "
                "last, leave, list, mute, notify, shutdown, source, status, stop, unmute, "
                "version, watch"
            )
            assert re.fullmatch(
                r"`bad`: last build failed \((a moment|\d+ seconds) ago\): "
                r"failed 'false' \(failure\)",
                last,
            )

            # shutdown: bob may not; alice starts a clean shutdown, sees it, and stops it
            # (the build after the server's restart below shows builds start again)
            mark = len(alice.lines)
            bob.say("#ci", "bby: shutdown start")
            await alice.wait_for(lambda p, c, a: c == "PRIVMSG" and "bob!!!" in a[-1], start=mark)
            for command in ("start", "check", "stop", "check"):
                alice.say("#ci", f"bby: shutdown {command}")
            assert await alice.messages("bby", start=mark, count=5) == [
                "Thou shall not pass, bob!!!",
                "Starting clean shutdown.",
                "Status: buildbot is shutting down.",
                "Stopping clean shutdown.",
                "Status: buildbot is running.",
            ]

            # the server goes away and comes back: the bot connects and joins again
            ircd.restart()
            async with irc_user("carol", ircd.port) as carol:
                await carol.join("#ci")
                await carol.wait_for(_bot_in_channel, within=60)
                mark = len(carol.lines)
                await run.build("ok")
                started, finished = await carol.messages("bby", start=mark, count=2)
                assert _build_url(finished) == (
                    "Build [#2](http://ci.example/#/builders/B/builds/2) of `ok` completed "
                    "successfully."
                )


def test_parse_line_reads_irc_messages_and_names_garbage() -> None:
    assert parse_line(":nick!u@h PRIVMSG #ci :bby: status") == (
        "nick!u@h",
        "PRIVMSG",
        ["#ci", "bby: status"],
    )
    assert parse_line("PING :irc.example") == ("", "PING", ["irc.example"])
    assert parse_line("@time=x :srv 353 me = #ci :@a b") == (
        "srv",
        "353",
        ["me", "=", "#ci", "@a b"],
    )
    for garbage in ("", ":only-a-prefix", "12345 x", "!!! what"):
        with pytest.raises(LineError):
            parse_line(garbage)


FLIP = """
c['buildbotURL'] = 'http://ci.example/'
c['builders'] = [
    util.BuilderConfig(name='flip', workernames=['w1'], tags=['watched'],
                       factory=util.BuildFactory([
                           steps.ShellCommand(command=util.Interpolate('%(prop:cmd:-true)s'))])),
    util.BuilderConfig(name='other', workernames=['w1'],
                       factory=util.BuildFactory([steps.ShellCommand(command=['false'])])),
    util.BuilderConfig(name='slow', workernames=['w1'], tags=['watched'],
                       factory=util.BuildFactory([steps.ShellCommand(command=['sleep', '60'])])),
]
"""


async def test_irc_transitions_tags_and_private_notices(tmp_path: Path, ircd: Ircd) -> None:
    """``problem`` and ``recovery`` compare a build with the builder's previous one; ``tags``
    keeps other builders quiet; ``pm_to_nicks`` get the notices in private, as notices in the
    channel with ``noticeOnChannel``; colours mark the result."""
    config = FLIP + _irc(
        ircd.port,
        notify_events="['problem', 'recovery']",
        tags="['watched']",
        pm_to_nicks="['dave']",
        noticeOnChannel="True",
        useColors="True",
        authz="{'stop': ['alice']}",
        channels="[{'channel': '#ci'}, {'channel': '#locked', 'password': 'sesame'}]",
    )
    async with irc_user("alice", ircd.port) as alice, irc_user("dave", ircd.port) as dave:
        await alice.join("#ci")
        await alice.join("#locked")
        alice.send("MODE #locked +k sesame")  # a channel key: the bot's password opens it
        await alice.wait_for(lambda p, c, a: c == "MODE" and a[:2] == ["#locked", "+k"])
        async with running_master(tmp_path, config) as run:
            for channel in ("#ci", "#locked"):

                def joined(p: str, c: str, a: list[str], ch: str = channel) -> bool:
                    return c == "JOIN" and p.startswith("bby!") and a[0] == ch

                await alice.wait_for(joined)
            # the builders' tags are stored from the configuration, as the data API shows them
            found = await run.master.data.api.get(("builders",))
            builders = {b["name"]: b for b in getattr(found, "items", [])}
            assert (builders["flip"]["tags"], builders["other"]["tags"]) == (["watched"], [])
            mark_a, mark_d = len(alice.lines), len(dave.lines)
            await run.build("flip")  # success: nothing to say
            await run.build("other")  # failure, but not a watched builder
            await run.build("flip", properties={"cmd": "false"})  # problem
            await run.build("flip")  # recovery
            problem, recovery = await alice.messages("bby", start=mark_a, count=2, to="#ci")
            locked = await alice.messages("bby", start=mark_a, count=2, to="#locked")
            assert locked == [problem, recovery]
            assert _build_url(problem) == (
                "Build [#2](http://ci.example/#/builders/B/builds/2) of `flip` \x034failed\x0f: "
                "failed 'false' (failure)"
            )
            assert _build_url(recovery) == (
                "Build [#3](http://ci.example/#/builders/B/builds/3) of `flip` "
                "\x033completed successfully\x0f."
            )
            kinds = [c for p, c, a in alice.lines[mark_a:] if p.startswith("bby!")]
            assert kinds == ["NOTICE"] * 4
            private = await dave.messages("bby", start=mark_d, count=2)
            assert private == [problem, recovery]
            assert [a[0] for p, c, a in dave.lines[mark_d:] if p.startswith("bby!")] == [
                "dave",
                "dave",
            ]

            # watch a running build (the channel is not notified of its end otherwise), then
            # stop it
            updates = run.master.data.updates
            slow = await updates.find_builder_id("slow")
            _bsid, brids = await updates.add_buildset(
                scheduler="test",
                sourcestamps=[
                    {
                        "branch": None,
                        "revision": None,
                        "repository": "",
                        "project": "",
                        "codebase": "",
                    }
                ],
                reason="test",
                properties={},
                builderids=[slow],
            )
            await run.started_build(brids[slow])
            mark = len(alice.lines)
            alice.say("#ci", "bby: watch slow")
            [watching] = await alice.messages("bby", start=mark, to="#ci")
            assert _build_url(watching) == (
                "Watching build [#1](http://ci.example/#/builders/B/builds/1) of `slow` until it "
                "finishes..."
            )
            mark = len(alice.lines)
            alice.say("#ci", "bby: stop build slow enough of this")
            interrupted, ended = await alice.messages("bby", start=mark, count=2, to="#ci")
            assert _build_url(interrupted) == (
                "Build [#1](http://ci.example/#/builders/B/builds/1) of `slow` interrupted."
            )
            assert _build_url(ended).startswith(
                "Build [#1](http://ci.example/#/builders/B/builds/1) of `slow` \x0313was cancelled"
            ), ended


async def test_irc_notified_events_survive_a_new_bot(tmp_path: Path, ircd: Ircd) -> None:
    """What a channel asked for is kept in the master's state table: a reconfiguration that
    changes the bot's arguments starts a new bot, which still knows it."""
    async with irc_user("alice", ircd.port) as alice:
        await alice.join("#ci")
        async with running_master(tmp_path, BUILDERS + _irc(ircd.port)) as run:
            await alice.wait_for(lambda p, c, a: c == "JOIN" and p.startswith("bby!"))
            mark = len(alice.lines)
            alice.say("#ci", "bby: notify on failure")
            await alice.messages("bby", start=mark)
            cfg = run.basedir / "master.cfg"
            cfg.write_text(cfg.read_text().replace("lostDelay=0.2", "lostDelay=0.3"))
            mark = len(alice.lines)
            assert await run.master.reconfig() is True
            joined = await alice.wait_for(
                lambda p, c, a: c == "JOIN" and p.startswith("bby"), start=mark
            )
            nick = joined[0].split("!")[0]
            mark = len(alice.lines)
            alice.say("#ci", f"{nick}: notify list")
            [listed] = await alice.messages(nick, start=mark)
    assert listed == "The following events are being notified: failure, finished, started."
