"""A site's own IRC commands: master.cfg subclasses ``buildbot.reporters.irc.IRCContact`` and
sets ``IrcStatusBot.contactClass``, as Buildbot's manual teaches. On a real master with a real
worker and a real IRC server (ngIRCd): the commands are listed by ``commands`` and ``help`` (with
their usage), run (async and plain ones), force a build with the property they give through the
master's force scheduler, obey authz, and a command that fails is answered and logged while the
bot goes on."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from buildyard.master.reporters.irc import IrcBot, IRCContact
from buildyard.testing.ircd import Ircd, IrcUser, have_ngircd, irc_user
from buildyard.testing.masters import running_master
from tests.master.reporters.site_contacts import BUILDERS, contact

pytestmark = pytest.mark.skipif(not have_ngircd(), reason="needs ngircd (apt-get install ngircd)")


@pytest.fixture
def ircd(tmp_path: Path) -> Iterator[Ircd]:
    server = Ircd(tmp_path / "ircd")
    server.directory.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_a_sites_own_irc_commands(
    tmp_path: Path, ircd: Ircd, monkeypatch: pytest.MonkeyPatch
) -> None:
    # master.cfg sets the class attribute (for the process, as in Buildbot): put it back after
    monkeypatch.setattr(IrcBot, "contactClass", IRCContact)
    config = (
        BUILDERS
        + contact("irc")
        + f"""
c['services'] = [reporters.IRC(host='127.0.0.1', port={ircd.port}, nick='bby',
    channels=[{{'channel': '#ci'}}], authz={{'zbt': ['alice']}}, useColors=False,
    lostDelay=0.2, failedDelay=0.2)]
"""
    )
    with structlog.testing.capture_logs() as logs:
        async with irc_user("alice", ircd.port) as alice, irc_user("bob", ircd.port) as bob:
            await alice.join("#ci")
            await bob.join("#ci")
            async with running_master(tmp_path, config) as run:
                await alice.wait_for(lambda p, c, a: c == "JOIN" and p.startswith("bby!"))

                async def ask(text: str, count: int, who: IrcUser = alice) -> list[str]:
                    mark = len(who.lines)
                    who.say("#ci", f"bby: {text}")
                    return await who.messages("bby", start=mark, count=count)

                assert await ask("help zbt", 1) == [
                    "Usage: zbt _package_ - test a package with tatt"
                ]
                # help: a line per command with a docstring (IRC's own ones last)
                mark = len(alice.lines)
                alice.say("#ci", "bby: help")
                await alice.wait_for(
                    lambda p, c, a: c == "PRIVMSG" and a[-1] == "leave - leave a channel",
                    start=mark,
                )
                listing = [a[-1] for p, c, a in alice.lines[mark:] if p.startswith("bby!")]
                assert "zbt - test a package" in listing
                assert not [line for line in listing if line.startswith("echo")]
                [known] = await ask("commands", 1)
                assert known.startswith("Buildbot commands: boom, commands, dance, destroy, echo,")
                assert known.endswith("who, zbt")

                async with run.master.mq.subscribe(("builds", None, "finished")) as finished:
                    assert await ask("zbt app-editors/vim", 1) == ["zbt app-editors/vim"]
                    async with asyncio.timeout(120):
                        _key, body = await finished.get()
                built = await run.result(int(body["buildid"]))
                assert built.properties["package"] == ("app-editors/vim", "Force Build Form")
                assert built.properties["owner"][0] == "alice on #ci"
                assert built.stdout("show") == "app-editors/vim\n"

                seen = len(alice.lines)
                assert await ask("zbt sys-apps/less", 1, who=bob) == ["Thou shall not pass, bob!!!"]
                # the refusal goes to the channel: alice's connection gets it too, maybe later
                # than bob's; her next question starts after it
                await alice.wait_for(
                    lambda p, c, a: c == "PRIVMSG" and a[-1] == "Thou shall not pass, bob!!!",
                    start=seen,
                )
                assert await ask("zbt", 1) == ["Which package do you want to test?"]
                assert await ask("echo one two three", 3) == ["one", "two", "three"]
                assert await ask("who", 1) == [
                    "alice on #ci | private=False | chat=#ci | user=alice | bot=bby | "
                    "zbt online=True"
                ]
                assert await ask("boom", 1) == ["Something bad happened (see logs)"]
                [hello] = await ask("hello", 1)
                assert hello
    failed = [e for e in logs if e["event"] == "chat_command_failed"]
    assert [(e["command"], e["error"]) for e in failed] == [
        ("boom", "RuntimeError: the site's command broke")
    ]
    assert failed[0]["reporter"] == "IRC"
