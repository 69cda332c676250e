"""ShellSequence, SetProperty & co, Compile/Test/CMake/Configure, Assert, LogRenderable and log
observers: argument checks here, and one build with all of them on each worker kind."""

from __future__ import annotations

import asyncio
import inspect
import pprint
from pathlib import Path
from typing import Any

import pytest

from buildyard.common.errors import ConfigError
from buildyard.master.logs.observer import (
    BufferLogObserver,
    Consumer,
    LineConsumerLogObserver,
    LogLineObserver,
)
from buildyard.master.logs.writer import LogWriter
from buildyard.master.model.logs import LogType
from buildyard.master.model.properties import Interpolate, Properties, render
from buildyard.master.model.results import Results
from buildyard.master.steps import compile as compile_steps
from buildyard.master.steps.base import BuildStep
from buildyard.master.steps.master import Assert, MasterShellCommand
from buildyard.master.steps.properties import SetPropertyFromCommand
from buildyard.master.steps.shellsequence import ShellArg, ShellSequence
from buildyard.testing.masters import BuildResult, Running, running_master
from buildyard.testing.processes import eventually
from buildyard.testing.workers import KINDS

# -- arguments --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (ShellArg, "'command' parameter of ShellArg must not be None"),
        (lambda: ShellArg(command="x", timeout=3), "'timeout' is not handled by ShellArg"),
        (lambda: ShellSequence(command="x"), "invalid ShellSequence argument command"),
        (lambda: SetPropertyFromCommand(command="x"), "Exactly one of property and extract_fn"),
        (
            lambda: SetPropertyFromCommand(
                command="x", property="p", extract_fn=lambda rc, out, err: {}
            ),
            "Exactly one of property and extract_fn",
        ),
        (lambda: compile_steps.CMake(definitions=["A"]), "definitions must be a dictionary"),
        (lambda: compile_steps.CMake(options="-x"), "options must be a list, a tuple"),
        (lambda: compile_steps.CMake(command="x"), "invalid CMake argument command"),
        (
            compile_steps.WarningCountingShellCommand,
            "WarningCountingShellCommand's 'command' argument is not specified",
        ),
        (lambda: MasterShellCommand("x", bogus=1), "unexpected keyword argument(s) bogus"),
    ],
)
def test_bad_arguments_are_config_errors(make: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_classes_keep_buildbot_defaults() -> None:
    compile_step = compile_steps.Compile()
    assert (compile_step.name, compile_step.command) == ("compile", ["make", "all"])
    assert compile_step.haltOnFailure
    test_step = compile_steps.Test()
    assert (test_step.name, test_step.command, test_step.warnOnFailure) == (
        "test",
        ["make", "test"],
        True,
    )
    configure = compile_steps.Configure()
    assert (configure.name, configure.command, configure.haltOnFailure) == (
        "configure",
        ["./configure"],
        True,
    )
    assert compile_steps.CMake().haltOnFailure
    assert MasterShellCommand("true").haltOnFailure
    assert Assert(check=True).descriptionDone == ["checked True"]


async def test_shellarg_renders_to_a_copy_that_renders_to_itself() -> None:
    props = Properties(word="bird")
    arg = ShellArg(command=Interpolate("echo %(prop:word)s"), logname="log", haltOnFailure=True)
    rendered = await render(arg, props)
    assert isinstance(rendered, ShellArg)
    assert rendered is not arg
    assert (rendered.command, rendered.logname, rendered.haltOnFailure) == (
        "echo bird",
        "log",
        True,
    )
    assert await render(rendered, props) is rendered
    assert not isinstance(arg.command, str)  # the template is untouched
    rendered.validateAttributes()
    bad = await render(ShellArg(command=["echo", 3], warnOnFailure="yes"), props)
    with pytest.raises(ConfigError, match="must only have strings"):
        bad.validateAttributes()
    bad.command = ["echo"]
    with pytest.raises(ConfigError, match="must be booleans"):
        bad.validateAttributes()


class _Appender:
    async def append_log(
        self, logid: int, content: str, *, compression: str = "raw"
    ) -> tuple[int, int] | None:
        return None

    async def finish_log(self, logid: int, *, compression: str = "raw", last: str = "") -> None:
        return None


async def test_log_observers_get_lines_by_stream() -> None:
    step = BuildStep()
    writer = LogWriter(_Appender(), logid=1, name="stdio", type=LogType.STDIO)
    step.logs["stdio"] = writer

    class Lines(LogLineObserver):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[tuple[str, str]] = []
            self.finished = False

        def outLineReceived(self, line: str) -> None:  # noqa: N802
            self.seen.append(("o", line))

        def errLineReceived(self, line: str) -> None:  # noqa: N802
            self.seen.append(("e", line))

        def headerLineReceived(self, line: str) -> None:  # noqa: N802
            self.seen.append(("h", line))

        def finishReceived(self) -> None:  # noqa: N802
            self.finished = True

    consumed: list[tuple[str, str]] = []

    def consumer() -> Consumer:
        while True:
            consumed.append((yield))

    lines, buffer = Lines(), BufferLogObserver(wantStdout=True, wantStderr=True)
    consumer_observer = LineConsumerLogObserver(consumer)
    for observer in (lines, buffer, consumer_observer):
        step.addLogObserver("stdio", observer)
    assert lines.step is step
    assert lines.log is writer
    writer.add_header("cmd\n")
    writer.add_stdout("one\ntw")
    writer.add_stderr("oops\n")
    writer.add_stdout("o\nthree")
    await writer.finish()
    expected = [("h", "cmd"), ("o", "one"), ("e", "oops"), ("o", "two"), ("o", "three")]
    assert lines.seen == expected
    assert consumed == expected
    assert lines.finished
    assert buffer.getStdout() == "one\ntwo\nthree\n"
    assert buffer.getStderr() == "oops\n"
    assert consumer_observer.generator is not None
    # closed at the end of the log
    assert inspect.getgeneratorstate(consumer_observer.generator) == "GEN_CLOSED"


# -- one build with every step, on both workers ---------------------------------------------------

WARN_SCRIPT = r"""echo "make[1]: Entering directory '/src/lib'"
echo "a.c:3: warning: unused variable"
echo "make[1]: Leaving directory '/src/lib'"
echo "b.c:10: warning: deprecated call"
echo "b.c:20: warning: deprecated call"
echo "c.c:5: Warning: thing"
echo "all done"
"""

SUPPRESSIONS = """# comment

b.c : deprecated : 5-15
not a rule
"""

BODY = f"""
import asyncio
from buildyard.master.logs.observer import BufferLogObserver, LogLineObserver
from buildyard.master.steps.compile import CMake, Compile, Configure, PerlModuleTest, Test
from buildyard.master.steps.shell import TreeSize
from buildyard.master.steps.compile import WarningCountingShellCommand
from buildyard.master.steps.master import Assert, LogRenderable
from buildyard.master.steps.properties import SetProperties, SetProperty
from buildyard.master.steps.properties import SetPropertyFromCommand
from buildyard.master.steps.shellsequence import ShellArg, ShellSequence

class Lines(LogLineObserver):
    def __init__(self):
        super().__init__()
        self.out, self.err, self.headers, self.finished = [], [], 0, False
    def outLineReceived(self, line):
        self.out.append(line)
    def errLineReceived(self, line):
        self.err.append(line)
    def headerLineReceived(self, line):
        self.headers += 1
    def finishReceived(self):
        self.finished = True

class Observed(steps.ShellCommand):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.lines = Lines()
        self.buffer = BufferLogObserver(wantStderr=True)
        self.addLogObserver("stdio", self.lines)
        self.addLogObserver("stdio", self.buffer)
    async def run(self):
        result = await super().run()
        await self.getLog("stdio").finish()
        self.setProperty("observed", {{
            "out": self.lines.out, "err": self.lines.err, "headers": self.lines.headers > 0,
            "finished": self.lines.finished, "step": self.lines.step is self,
            "buffer": [self.buffer.getStdout(), self.buffer.getStderr()],
        }}, "Observed")
        return result

class MyTest(Test):
    def evaluateCommand(self, cmd):
        self.setTestResults(total=5, failed=1, passed=4)
        return super().evaluateCommand(cmd)

@util.renderer
def more_props(props):
    return {{"from_renderer": props.getProperty("word") + "!", "n": 3}}

f = util.BuildFactory()
f.addStep(ShellSequence(name="seq", commands=[
    ShellArg(command=["echo", "one"], logname="first"),
    ShellArg(command=util.Interpolate("echo %(prop:word)s"), logname="second"),
    ShellArg(command="exit 3", logname="second", flunkOnFailure=False, warnOnFailure=True),
    ShellArg(command="echo unlogged"),
    ShellArg(command="", logname="skipped"),
    ShellArg(command="exit 1", logname="third", haltOnFailure=True),
    ShellArg(command="echo never", logname="never"),
]))
f.addStep(ShellSequence(name="seq-warn", commands=util.FlattenList([[
    ShellArg(command="exit 3", logname="stdio", flunkOnFailure=False, warnOnFailure=True),
    ShellArg(command="echo fine", logname="stdio"),
]])))
f.addStep(SetPropertyFromCommand(name="prop", command="echo '  hello  '", property="greeting"))
f.addStep(SetPropertyFromCommand(name="prop-raw", command="printf '  a b'", property="raw",
                                 strip=False))
f.addStep(SetPropertyFromCommand(name="prop-failed", command="echo no; exit 1",
                                 property="never", flunkOnFailure=False))
f.addStep(SetPropertyFromCommand(
    name="extract", command="echo out; echo err >&2; exit 2", flunkOnFailure=False,
    extract_fn=lambda rc, out, err: {{"x_rc": rc, "x_out": out.strip(), "x_err": err.strip()}}))
f.addStep(SetProperty(name="setprop", property="p1",
                      value=util.Interpolate("%(prop:greeting)s world")))
f.addStep(SetProperties(name="setprops", properties=more_props))
f.addStep(steps.ShellCommand(name="files", command=["sh", "-c", "cat > warn.sh"],
                             initialStdin={WARN_SCRIPT!r}))
f.addStep(steps.ShellCommand(name="files2", command=["sh", "-c", "cat > supp.txt"],
                             initialStdin={SUPPRESSIONS!r}))
f.addStep(Compile(command=["sh", "warn.sh"],
                  warningPattern=r"^(.*?):(\\d+): [Ww]arning: (.*)$",
                  warningExtractor=Compile.warnExtractFromRegexpGroups,
                  suppressionList=[(r".*/lib/a\\.c", "unused", None, None)],
                  suppressionFile="supp.txt"))
f.addStep(WarningCountingShellCommand(name="wc", command=["sh", "warn.sh"], maxWarnCount=2,
                                      flunkOnFailure=False))
f.addStep(WarningCountingShellCommand(name="wc-none", command=["echo", "clean"]))
f.addStep(MyTest(command=["echo", "tests ran"]))
f.addStep(PerlModuleTest(command=["printf", "%s\\n", "Test Summary Report",
                                  "t/a.t (Wstat: 256 Tests: 4 Failed: 1)",
                                  "Files=2, Tests=9,  0 wallclock secs", "Result: FAIL"],
                         name="prove"))
f.addStep(TreeSize())
f.addStep(Observed(name="observed", command="echo a; echo b >&2; printf c"))
f.addStep(CMake(cmake="echo", generator="Ninja", options=["-Wdev"], path="..",
                definitions={{"A": util.Property("word"), "B": "1"}}))
f.addStep(Configure(command=["echo", "configured"]))
f.addStep(Assert(name="assert-ok", check=util.Property("word") == "bird"))
f.addStep(Assert(name="assert-bad", check=util.Property("word") == "fish",
                 flunkOnFailure=False))
f.addStep(LogRenderable(name="logrender",
                        content={{"word": util.Property("word"), "n": [1, 2]}}))
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=f)]
"""


@pytest.mark.parametrize("kind", KINDS)
async def test_steps_in_one_build(tmp_path: Path, kind: str) -> None:
    async with running_master(tmp_path, BODY, worker=kind) as running:
        result = await running.build("b", properties={"word": "bird"})
    props = {k: v for k, (v, _) in result.properties.items()}

    def results(step: str) -> Results | None:
        return result.step(step).results

    # ShellSequence: a log per logname, unlogged output dropped, halted at "exit 1"
    assert results("seq") == Results.FAILURE
    assert result.stdout("seq", "first") == "one\n"
    assert result.stdout("seq", "second") == "bird\n"
    assert "hprogram finished with exit code 3" in result.logs[("seq", "second")]
    assert "hprogram finished with exit code 1" in result.logs[("seq", "third")]
    assert not any(s == "seq" and n in ("never", "skipped") for s, n in result.logs)
    assert "unlogged" not in "".join(result.logs.values())
    assert result.step("seq").state_string == "'exit 1' (failure)"
    assert results("seq-warn") == Results.WARNINGS
    assert result.stdout("seq-warn") == "fine\n"

    # SetPropertyFromCommand
    assert result.properties["greeting"] == ("hello", "SetPropertyFromCommand Step")
    # not stripped (both workers end the last line of output with a newline, as Buildbot's does)
    assert props["raw"] == "  a b\n"
    assert result.logs[("prop", "property changes")] == "greeting: 'hello'\n"
    assert result.step("prop").state_string == "property 'greeting' set"
    assert results("prop-failed") == Results.FAILURE
    assert "never" not in props
    assert ("prop-failed", "property changes") not in result.logs
    assert results("extract") == Results.FAILURE
    assert (props["x_rc"], props["x_out"], props["x_err"]) == (2, "out", "err")
    assert result.step("extract").state_string == "3 properties set (failure)"

    # SetProperty, SetProperties
    assert result.properties["p1"] == ("hello world", "setprop")
    assert result.properties["from_renderer"] == ("bird!", "setprops")
    assert props["n"] == 3
    assert result.step("setprop").state_string == "Set"
    assert result.step("setprops").state_string == "Properties Set"

    # Compile: the pattern's groups, lib/a.c and b.c:10 suppressed, b.c:20 and c.c:5 counted
    assert results("compile") == Results.WARNINGS
    assert result.logs[("compile", "warnings (2)")] == (
        "b.c:20: warning: deprecated call\nc.c:5: Warning: thing\n"
    )
    assert result.step("compile").state_string == "compile (warnings)"
    assert result.logs[("compile", "suppressionFile")] == (
        "supp.txt: lines that are not suppressions, not applied:\n"
        "line 4: 'not a rule' is not 'file-regexp : warning-regexp [: start[-end]]'\n"
    )
    # the default pattern finds 4 (> maxWarnCount 2); warnings-count adds up over the build
    assert results("wc") == Results.FAILURE
    assert ("wc", "warnings (4)") in result.logs
    assert results("wc-none") == Results.SUCCESS
    assert not any(s == "wc-none" and n.startswith("warnings") for s, n in result.logs)
    assert result.properties["warnings-count"] == (6, "WarningCountingShellCommand")

    # Test with setTestResults
    assert results("test") == Results.SUCCESS
    assert result.step("test").state_string == "5 tests 4 passed 1 failed"

    assert result.step("prove").results == Results.FAILURE
    assert result.step("prove").state_string == "9 tests 8 passed 1 failed (failure)"
    assert results("treesize") == Results.SUCCESS
    assert isinstance(props["tree-size-KiB"], int)
    assert result.step("treesize").state_string == f"treesize {props['tree-size-KiB']} KiB"

    # a custom step's observers
    assert props["observed"] == {
        "out": ["a", "c"],
        "err": ["b"],
        "headers": True,
        "finished": True,
        "step": True,
        "buffer": ["a\nc\n", "b\n"],
    }

    # CMake, Configure
    assert result.stdout("cmake") == "-G Ninja -DA=bird -DB=1 -Wdev ..\n"
    assert results("cmake") == Results.SUCCESS
    assert result.step("cmake").state_string == "cmake"
    assert result.stdout("configure") == "configured\n"
    assert result.step("configure").state_string == "configure"

    # Assert, LogRenderable
    assert results("assert-ok") == Results.SUCCESS
    assert results("assert-bad") == Results.FAILURE
    assert (
        result.logs[("logrender", "Output")] == pprint.pformat({"n": [1, 2], "word": "bird"}) + "\n"
    )
    assert result.build.results == Results.FAILURE


# -- MasterShellCommand ---------------------------------------------------------------------------

MASTER_BODY = """
from buildyard.master.steps.master import MasterShellCommand

f = util.BuildFactory()
f.addStep(MasterShellCommand(
    name="msc", command=util.Interpolate("echo %(prop:word)s; echo err >&2; pwd; echo $FOO $BAR"),
    env={"FOO": "foo", "BAR": ["x", "y"], "HOMEISH": "${BUILDYARD_TEST_HOME}"},
    workdir=util.Property("dir")))
f.addStep(MasterShellCommand(name="mfail", command=["sh", "-c", "exit 3"], haltOnFailure=False,
                             logEnviron=False))
f.addStep(MasterShellCommand(name="home", command='echo "$HOMEISH"',
                             env={"HOMEISH": "${BUILDYARD_TEST_HOME}"}))
f.addStep(MasterShellCommand(name="basedir", command="pwd"))
f.addStep(MasterShellCommand(name="relative", command=["pwd"], workdir="rel"))
f.addStep(MasterShellCommand(name="timeout", command="echo x; sleep 30", runtime_timeout=1,
                             haltOnFailure=False))
slow = util.BuildFactory()
slow.addStep(MasterShellCommand(name="sleep", command="echo started; sleep 60 & wait"))
c['builders'] = [util.BuilderConfig(name="m", workernames=["w1"], factory=f),
                 util.BuilderConfig(name="slow", workernames=["w1"], factory=slow)]
"""


async def test_master_shell_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUILDYARD_TEST_HOME", "/home/someone")
    there = tmp_path / "there"
    there.mkdir()
    async with running_master(tmp_path, MASTER_BODY, worker="buildyard") as running:
        (running.basedir / "rel").mkdir()
        result = await running.build("m", properties={"word": "bird", "dir": str(there)})
        stopped = await _stop_while_running(running, "slow", "sleep")
    assert result.stdout("msc") == f"bird\n{there}\nfoo x:y\n"
    stdio = result.logs[("msc", "stdio")]
    assert "eerr\n" in stdio
    assert "h** RUNNING ON BUILDMASTER **\n" in stdio
    assert f"h in dir {there}\n" in stdio
    assert "h env: {'FOO': 'foo', 'BAR': 'x:y', 'HOMEISH': '/home/someone'}\n" in stdio
    assert result.step("msc").results == Results.SUCCESS
    assert result.step("msc").state_string == "Ran"
    assert result.step("mfail").results == Results.FAILURE
    assert result.step("mfail").state_string == "failed (3) (failure)"
    assert "hexit status 3\n" in result.logs[("mfail", "stdio")]
    assert " env:" not in result.logs[("mfail", "stdio")]
    assert result.stdout("home") == "/home/someone\n"
    # by default in the master's base directory; a relative workdir is relative to it
    assert result.stdout("basedir") == f"{running.basedir}\n"
    assert result.stdout("relative") == f"{running.basedir / 'rel'}\n"
    assert result.step("timeout").state_string == "killed (15) (failure)"
    assert "hcommand timed out: 1 seconds elapsed\n" in result.logs[("timeout", "stdio")]
    assert result.build.results == Results.FAILURE

    assert stopped.build.results == Results.CANCELLED
    step = stopped.step("sleep")
    assert step.results == Results.CANCELLED
    assert step.state_string == "killed (9) (cancelled)"
    assert "hsignal 9\n" in stopped.logs[("sleep", "stdio")]


async def _stop_while_running(running: Running, builder: str, step_name: str) -> BuildResult:
    """Start a build of ``builder``, stop it once ``step_name`` printed, and return its result."""
    master = running.master
    updates = master.data.updates
    builderid = await updates.find_builder_id(builder)
    _, brids = await updates.add_buildset(
        scheduler="test",
        sourcestamps=[
            {"branch": None, "revision": None, "repository": "", "project": "", "codebase": ""}
        ],
        reason="test",
        properties={},
        builderids=[builderid],
    )
    db = master.db
    buildids: list[int] = []

    async def printed() -> bool:
        builds = await db.builds.get_builds(buildrequestid=brids[builderid])
        if not builds:
            return False
        buildids[:] = [builds[0].id]
        for step in await db.steps.get_steps(builds[0].id):
            for lg in await db.logs.get_logs(step.id) if step.name == step_name else []:
                if lg.num_lines and "ostarted" in await db.logs.get_log_lines(
                    lg.id, 0, lg.num_lines - 1
                ):
                    return True
        return False

    await eventually(printed, within=60)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await master.botmaster.brd.stop_build(buildids[0], "enough")

    async def finished() -> bool:
        build = await db.builds.get_build(buildids[0])
        return build is not None and build.results is not None

    await eventually(finished, within=30)
    assert loop.time() - started < 20
    return await running.result(buildids[0])
