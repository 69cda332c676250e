"""What the tests of users' own chat commands put in master.cfg: a force scheduler with a
``package`` parameter and a builder that prints it, and a contact subclass (of the bot's contact
class, ``BASE``) with the kinds of commands sites write, the way Buildbot's manual extends its
bots: ``contactClass`` set on the bot class."""

from __future__ import annotations

BUILDERS = """
c['buildbotURL'] = 'http://ci.example/'
c['builders'] = [
    util.BuilderConfig(name='zbt', workernames=['w1'], factory=util.BuildFactory([
        steps.ShellCommand(name='show', command=['echo', util.Property('package')])])),
]
c['schedulers'] = [schedulers.ForceScheduler(
    name='zbt-force', builderNames=['zbt'],
    reason=util.FixedParameter(name='reason', default=''),
    properties=[util.StringParameter(name='package', label='package', required=True)])]
"""

# {module}: buildbot.reporters.telegram or .irc; {base}: TelegramContact or IRCContact;
# {bot}: TelegramStatusBot or IrcStatusBot
CONTACT = '''
from buildbot.reporters import {module} as chat_module
from buildbot.reporters import words


class SiteContact(chat_module.{base}):
    def scheduler(self, name):
        found = self.master.scheduler_manager.namedServices
        if name not in found:
            raise ValueError(f"unknown scheduler: {{name!r}}")
        return found[name]

    async def command_ZBT(self, args, **kwargs):
        """test a package"""
        argv = self.splitArgs(args)
        if not argv:
            raise words.UsageError("Which package do you want to test?")
        await self.send(f"zbt {{argv[0]}}")
        await self.scheduler("zbt-force").force(owner=self.describeUser(), package=argv[0])

    command_ZBT.usage = "zbt _package_ - test a package with tatt"

    def command_ECHO(self, args, **kwargs):
        # a plain method: its messages go out although nothing waits for them, in order
        for word in self.splitArgs(args):
            self.send(word)

    async def command_WHO(self, args, **kwargs):
        builder = await self.bot.getBuilder(buildername="zbt")
        online = await self.bot.getOnlineBuilders()
        await self.send(
            f"{{self.describeUser()}} | private={{self.is_private_chat}} | "
            f"chat={{self.channel.id}} | user={{self.user_id}} | bot={{self.bot.nickname}} | "
            f"{{builder['name']}} online={{builder['builderid'] in online}}"
        )

    def command_BOOM(self, args, **kwargs):
        raise RuntimeError("the site's command broke")

    async def command_GONE(self, args, **kwargs):
        await self.scheduler("no-such-scheduler").force(owner="x")


chat_module.{bot}.contactClass = SiteContact
'''


def contact(kind: str) -> str:
    if kind == "telegram":
        return CONTACT.format(module="telegram", base="TelegramContact", bot="TelegramStatusBot")
    return CONTACT.format(module="irc", base="IRCContact", bot="IrcStatusBot")
