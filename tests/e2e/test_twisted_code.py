"""Users' Twisted-style code under the buildyard[twisted] extra, in real builds: a master
process whose master.cfg imports Twisted, a real worker process, builds forced through the REST
API. The steps, renderers and service are written the way Buildbot's manual teaches (Deferreds,
``@defer.inlineCallbacks``, ``@implementer(IRenderable)``), in our own words.

The same master.cfg runs on the stock Buildbot 4.3.0 too, and the steps' results, logs and
properties are compared.

Without Twisted installed, the same master.cfg is refused with an error naming the extra (the
check runs in a subprocess where a ``sys.meta_path`` finder makes Twisted unimportable).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from buildyard.testing.postgres import free_port
from buildyard.testing.processes import buildyard, end_popen, eventually, spawn_master, wait_for
from buildyard.testing.workers import start_worker
from tests.e2e.test_reporters_buildbot import _master as side_by_side_master

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("twisted-code")]  # one module master

CONFIG = """\
from twisted.internet import defer, reactor, task
from twisted.python import log as twlog
from zope.interface import implementer

from buildbot.interfaces import IRenderable
from buildbot.plugins import schedulers, steps, util, worker
from buildbot.process import buildstep, remotecommand, results
from buildbot.process.properties import renderer
from buildbot.util import service

GREETING = {greeting!r}


class TwoCommands(buildstep.CommandMixin, buildstep.BuildStep):
    \"\"\"Prints three lines, echoes a word, writes what it saw to a log, makes a directory.\"\"\"

    name = "two-commands"

    @defer.inlineCallbacks
    def run(self):
        stdio = yield self.addLog("stdio")
        listing = remotecommand.RemoteShellCommand(
            self.workdir, ["printf", "x\\\\ny\\\\nz\\\\n"], collectStdout=True)
        listing.useLog(stdio, False, "stdio")
        yield self.runCommand(listing)
        word = remotecommand.RemoteShellCommand(self.workdir, ["echo", "second"],
                                                collectStdout=True)
        word.useLog(stdio, False, "stdio")
        yield self.runCommand(word)
        counted = yield self.addLog("counted")
        counted.addStdout("lines: %d\\n" % len(listing.stdout.splitlines()))
        counted.addStdout("then: %s\\n" % word.stdout.strip())
        yield counted.finish()
        yield self.runMkdir("made-by-step")
        made = yield self.pathExists("made-by-step")
        self.setProperty("made", made, "TwoCommands")
        later = yield task.deferLater(reactor, 0.01, lambda: "after a reactor delay")
        self.setProperty("later", later, "TwoCommands")
        self.setProperty("seen-branch", self.build.getProperty("branch"), "TwoCommands")
        twlog.msg("two-commands counted %d lines" % len(listing.stdout.splitlines()))
        if listing.didFail() or word.didFail():
            defer.returnValue(results.FAILURE)
        defer.returnValue(results.SUCCESS)


class Hello(buildstep.ShellMixin, buildstep.BuildStep):
    \"\"\"Runs its shell command, with the name to greet appended, and keeps the answer.\"\"\"

    def __init__(self, who, **kwargs):
        self.who = who
        kwargs = self.setupShellMixin(kwargs)
        super().__init__(**kwargs)

    @defer.inlineCallbacks
    def run(self):
        cmd = yield self.makeRemoteShellCommand(command=self.command + [self.who],
                                                collectStdout=True)
        yield self.runCommand(cmd)
        self.setProperty("answer", cmd.stdout.strip(), "Hello")
        return cmd.results()


class Counted(steps.ShellCommand):
    \"\"\"A built-in step extended the Twisted way: its own run() yields the parent's.\"\"\"

    @defer.inlineCallbacks
    def run(self):
        result = yield super().run()
        self.setProperty("parent-result", result, "Counted")
        return result


class Broken(buildstep.BuildStep):
    @defer.inlineCallbacks
    def run(self):
        yield task.deferLater(reactor, 0, lambda: None)
        raise ValueError("broken on purpose")


@renderer
def later_name(props):
    d = defer.Deferred()
    reactor.callLater(0.01, d.callback, "late-" + props.getProperty("buildername"))
    return d


@implementer(IRenderable)
class Shouted:
    def __init__(self, word):
        self.word = word

    @defer.inlineCallbacks
    def getRenderingFor(self, props):
        builder = yield props.render(util.Interpolate("%(prop:buildername)s"))
        return "%s-%s" % (self.word.upper(), builder)


class Greeter(service.BuildbotService):
    name = "greeter"

    @defer.inlineCallbacks
    def reconfigService(self, greeting):
        yield task.deferLater(reactor, 0.01, lambda: None)
        self.greeting = greeting
        twlog.msg("greeter configured: %s" % greeting)

    def startService(self):
        twlog.msg("greeter started")
        return defer.succeed(None)

    def stopService(self):
        twlog.msg("greeter stopped")
        return task.deferLater(reactor, 0.01, lambda: None)


c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w1", "pw")]
c['protocols'] = {{'msgpack_experimental_v7': {{'port': {port}, 'interface': '127.0.0.1'}}}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['www'] = {{'port': {www}}}
c['buildbotNetUsageData'] = None
c['services'] = [Greeter(GREETING)] if GREETING else []
f = util.BuildFactory()
f.addStep(TwoCommands())
f.addStep(Hello("world", name="hello", command=["echo", "hello"]))
f.addStep(steps.ShellCommand(name="rendered", command=["echo", later_name, Shouted("loud")]))
f.addStep(Counted(name="counted", command=["echo", "counted"]))
f.addStep(Broken(name="broken"))
c['builders'] = [util.BuilderConfig(name="tw", workernames=["w1"], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name="force", builderNames=["tw"])]
"""


@dataclass
class Master:
    basedir: Path
    www: int
    pid: int  # the master process (0: not signalled by the test)
    port: int

    def api(self, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.www}/api/v2/{path}",
            data=data,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.loads(resp.read())

    def log(self) -> str:
        return (self.basedir / "out.log").read_text()

    def lines(self, step: str, log: str) -> list[str]:
        found = self.api(f"builds/1/steps/{step}/logs/{log}/contents")
        return "".join(c["content"] for c in found["logchunks"]).splitlines()

    def step(self, name: str) -> dict[str, Any]:
        [found] = self.api(f"builders/tw/builds/1/steps/{name}")["steps"]
        return dict(found)


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Master]:
    tmp = tmp_path_factory.mktemp("twisted")
    basedir = tmp / "master"
    made = buildyard("create-master", "-q", str(basedir))
    assert made.returncode == 0, made.stderr
    port, www = free_port(), free_port()
    (basedir / "master.cfg").write_text(CONFIG.format(port=port, www=www, greeting="hello"))
    proc = spawn_master(basedir)
    m = Master(basedir, www, proc.pid, port)
    worker = None
    try:
        assert wait_for(lambda: "master_started" in m.log(), timeout=90), m.log()[-3000:]
        worker = start_worker("buildyard", tmp / "worker", port, "w1", "pw")
        assert wait_for(lambda: "worker_attached" in m.log(), timeout=60), m.log()[-3000:]
        [builder] = m.api("builders/tw")["builders"]
        m.api(
            "forceschedulers/force",
            {
                "jsonrpc": "2.0",
                "method": "force",
                "id": 1,
                "params": {"builderid": str(builder["builderid"]), "reason": "twisted"},
            },
        )

        def finished() -> bool:
            builds = m.api("builders/tw/builds")["builds"]
            return bool(builds) and builds[0]["complete"]

        assert wait_for(finished, timeout=90), m.log()[-3000:]
        yield m
        # SIGTERM stops the master cleanly, Twisted's reactor on its loop and all
        assert end_popen(proc) == 0, m.log()[-3000:]
        assert "master_stopped" in m.log()
    finally:
        if worker is not None:
            end_popen(worker)
        end_popen(proc)


def test_an_inline_callbacks_step_runs_two_commands_and_writes_its_log(master: Master) -> None:
    step = master.step("two-commands")
    assert step["results"] == 0, master.log()[-3000:]
    stdout = [line for line in master.lines("two-commands", "stdio") if line.startswith("o")]
    assert stdout == ["ox", "oy", "oz", "osecond"]
    assert master.lines("two-commands", "counted") == ["olines: 3", "othen: second"]
    props = master.api("builds/1/properties")["properties"][0]
    # task.deferLater ran on Twisted's reactor, which runs on the master's loop
    assert props["later"] == ["after a reactor delay", "TwoCommands"]
    assert props["seen-branch"] == ["", "TwoCommands"]
    # CommandMixin's helpers, yielded
    assert props["made"] == [True, "TwoCommands"]


def test_a_shell_mixin_step_makes_and_runs_its_command(master: Master) -> None:
    assert master.step("hello")["results"] == 0
    assert "ohello world" in master.lines("hello", "stdio")
    props = master.api("builds/1/properties")["properties"][0]
    assert props["answer"] == ["hello world", "Hello"]


def test_a_deferred_renderer_and_an_irenderable_render_the_command(master: Master) -> None:
    assert master.step("rendered")["results"] == 0
    assert "olate-tw LOUD-tw" in master.lines("rendered", "stdio")


def test_a_builtin_step_subclass_yields_the_parents_run(master: Master) -> None:
    assert master.step("counted")["results"] == 0
    assert "ocounted" in master.lines("counted", "stdio")
    props = master.api("builds/1/properties")["properties"][0]
    assert props["parent-result"] == [0, "Counted"]


def test_a_failing_deferred_ends_the_step_with_an_exception_and_its_traceback(
    master: Master,
) -> None:
    assert master.step("broken")["results"] == 4  # EXCEPTION
    text = "\n".join(master.lines("broken", "err_text"))
    assert "ValueError: broken on purpose" in text
    [build] = master.api("builders/tw/builds/1")["builds"]
    assert build["results"] == 4


def test_twisted_log_messages_reach_the_master_log(master: Master) -> None:
    log = master.log()
    assert "two-commands counted 3 lines" in log
    assert "twisted_log" in log


def test_a_service_with_deferred_hooks_is_configured_started_reconfigured_and_stopped(
    master: Master,
) -> None:
    assert "greeter configured: hello" in master.log()
    assert "greeter started" in master.log()
    # a reconfig loads master.cfg again with Twisted already imported and the reactor running
    (master.basedir / "master.cfg").write_text(
        CONFIG.format(port=master.port, www=master.www, greeting="goodbye")
    )
    os.kill(master.pid, signal.SIGHUP)
    assert wait_for(lambda: "greeter configured: goodbye" in master.log(), timeout=60), (
        master.log()[-3000:]
    )
    assert wait_for(lambda: "reconfig_done" in master.log(), timeout=60), master.log()[-3000:]
    assert "greeter stopped" not in master.log()
    # a reconfig without the service stops it
    (master.basedir / "master.cfg").write_text(
        CONFIG.format(port=master.port, www=master.www, greeting="")
    )
    os.kill(master.pid, signal.SIGHUP)
    assert wait_for(lambda: master.log().count("reconfig_done") == 2, timeout=60), master.log()[
        -3000:
    ]
    assert "greeter stopped" in master.log()


# A finder that makes Twisted and zope.interface unimportable, as if the extra were not installed.
_WITHOUT_TWISTED = """\
import sys

class NoTwisted:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("twisted", "zope"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoTwisted())
from buildyard.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("command", ["checkconfig", "start"])
def test_without_twisted_the_master_names_the_extra(tmp_path: Path, command: str) -> None:
    basedir = tmp_path / "master"
    assert buildyard("create-master", "-q", str(basedir)).returncode == 0
    port, www = free_port(), free_port()
    (basedir / "master.cfg").write_text(CONFIG.format(port=port, www=www, greeting="hi"))
    args = [command, "--nodaemon", str(basedir)] if command == "start" else [command, str(basedir)]
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TWISTED, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "pip install 'buildyard[twisted]'" in out
    assert "master.cfg:1" in out  # where: the first Twisted import
    assert "Traceback" not in out


# The same master.cfg for both masters of the side-by-side test, its ports from the environment
# (as tests/e2e/test_reporters_buildbot.py's masters expect).
_SIDE_BY_SIDE = CONFIG.format(
    port="int(__import__('os').environ['T_WORKER_PORT'])",
    www="'tcp:%s:interface=127.0.0.1' % __import__('os').environ['T_WWW_PORT']",
    greeting="hello",
)


async def _run_once(kind: str, root: Path) -> dict[str, Any]:
    """Force one build of ``tw`` on a ``kind`` master; what its steps produced."""
    async with side_by_side_master(kind, root, {}, config=_SIDE_BY_SIDE) as api:
        base = api.removesuffix("/api/v2")
        m = Master(root / kind / "master", int(base.rsplit(":", 1)[1]), 0, 0)
        [builder] = (await asyncio.to_thread(m.api, "builders/tw"))["builders"]
        body = {
            "jsonrpc": "2.0",
            "method": "force",
            "id": 1,
            "params": {"builderid": builder["builderid"], "reason": "side by side"},
        }
        reply = await asyncio.to_thread(m.api, "forceschedulers/force", body)
        assert "result" in reply, reply

        async def finished() -> bool:
            builds = (await asyncio.to_thread(m.api, "builders/tw/builds"))["builds"]
            return bool(builds) and builds[0]["complete"]

        await eventually(finished, within=120, interval=0.2)
        steps = (await asyncio.to_thread(m.api, "builders/tw/builds/1/steps"))["steps"]
        props = await asyncio.to_thread(m.api, "builds/1/properties")
        logs = {
            (step, log): await asyncio.to_thread(m.lines, step, log)
            for step, log in (
                ("two-commands", "counted"),
                ("two-commands", "stdio"),
                ("hello", "stdio"),
                ("rendered", "stdio"),
                ("counted", "stdio"),
            )
        }
        return {
            "steps": [(s["name"], s["results"]) for s in steps],
            "properties": props["properties"][0],
            "logs": logs,
            "err": "\n".join(await asyncio.to_thread(m.lines, "broken", "err_text")),
        }


async def test_twisted_style_code_gives_what_buildbot_gives(tmp_path: Path) -> None:
    ours = await _run_once("buildyard", tmp_path)
    theirs = await _run_once("buildbot", tmp_path)

    # Buildbot records the worker's preparation as a step of its own; buildyard does not
    assert ours["steps"] == [s for s in theirs["steps"] if s[0] != "worker_preparation"]
    assert ours["steps"] == [
        ("two-commands", 0),
        ("hello", 0),
        ("rendered", 0),
        ("counted", 0),
        ("broken", 4),
    ]
    for name in ("later", "made", "answer", "seen-branch", "parent-result"):
        assert ours["properties"][name] == theirs["properties"][name], name
    assert ours["logs"][("two-commands", "counted")] == ["olines: 3", "othen: second"]

    def stdout(lines: list[str]) -> list[str]:
        # the header lines (the command, its environment, the exit code) are each master's own
        return [line for line in lines if line.startswith("o")]

    for key in ours["logs"]:
        assert stdout(ours["logs"][key]) == stdout(theirs["logs"][key]), key
    assert "ValueError: broken on purpose" in ours["err"]
    assert "ValueError: broken on purpose" in theirs["err"]
    # twisted.python.log.msg reaches each master's log (Buildbot's is twistd.log)
    assert "two-commands counted 3 lines" in (tmp_path / "buildyard/master/out.log").read_text()
    assert "two-commands counted 3 lines" in (tmp_path / "buildbot/master/twistd.log").read_text()
