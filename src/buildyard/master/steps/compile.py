"""Configure, Compile, Test (and PerlModuleTest), CMake and the warning-counting shell command
they build on.

``WarningCountingShellCommand`` runs its command and matches every line of its stdio log
against ``warningPattern`` (default: lines with "warning:" or "warning "). Matching lines are
warnings unless a suppression matches them: ``suppressionList`` holds
``(file-re, warning-re, start, end)``; ``suppressionFile`` (in the workdir on the worker) has
lines ``file-re : warning-re`` optionally followed by ``: start[-end]``. The lines it counted go
to a ``warnings (N)`` log, the count is added to the build property ``warnings-count`` and to
the step's ``warnings`` statistic, and the step ends WARNINGS if it had any (FAILURE if more
than ``maxWarnCount``). GNU make's "Entering/Leaving directory" lines keep track of the
directory, so a suppression's file pattern sees ``dir/file.c``.

``Test`` adds ``setTestResults(total, failed, passed, warnings)`` (statistics ``tests-total``,
``tests-failed``, ``tests-passed``, ``tests-warnings``) and a summary built from them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

from buildyard.common.errors import config_error
from buildyard.master.logs.observer import Consumer, LineConsumerLogObserver, LogLineObserver
from buildyard.master.model.properties import is_renderable
from buildyard.master.model.results import Results, worst
from buildyard.master.steps.base import BuildStep, ShellMixin
from buildyard.master.steps.remotecommand import RemoteCommand
from buildyard.master.steps.shell import ShellCommand, shell_result_summary
from buildyard.master.steps.worker import CompositeStepMixin

__all__ = [
    "CMake",
    "Compile",
    "Configure",
    "PerlModuleTest",
    "PerlModuleTestObserver",
    "Test",
    "WarningCountingShellCommand",
]

# (file, line number, text) of a warning, as a warningExtractor gives it
WarningInfo = tuple[str | None, int | None, str]
Suppression = tuple[Any, Any, int | None, int | None]


class Configure(ShellCommand):
    """``./configure`` (or ``command``); halts the build if it fails."""

    name = "configure"
    haltOnFailure = True
    flunkOnFailure = True
    description: Any = "configuring"
    descriptionDone: Any = "configure"
    command: Any = ["./configure"]

    def __init__(self, **kwargs: Any) -> None:
        # ShellCommand insists on a command; this one has its own
        rest = self.setupShellMixin(kwargs)
        BuildStep.__init__(self, **rest)


class _Statistics:
    """Buildbot's step statistics (numbers a step reports, e.g. ``warnings``)."""

    statistics: dict[str, Any]

    def hasStatistic(self, name: str) -> bool:
        return name in self.statistics

    def getStatistic(self, name: str, default: Any = None) -> Any:
        return self.statistics.get(name, default)

    def getStatistics(self) -> dict[str, Any]:
        return dict(self.statistics)

    def setStatistic(self, name: str, value: Any) -> None:
        self.statistics[name] = value


class _Unset:
    pass


_UNSET = _Unset()
_COMMENT_OR_EMPTY = re.compile(r"^\s*(#.*)?$")
_SUPPRESSION_LINE = re.compile(r"^\s*(.+?)\s*:\s*(.+?)\s*(?:[:]\s*([0-9]+)(?:-([0-9]+))?\s*)?$")


class WarningCountingShellCommand(_Statistics, ShellMixin, CompositeStepMixin, BuildStep):
    """A shell command whose warnings are counted (see the module's docstring)."""

    renderables: ClassVar[Sequence[str]] = (
        *BuildStep.renderables,
        *ShellMixin.shell_renderables,
        "suppressionFile",
        "suppressionList",
        "warningPattern",
        "directoryEnterPattern",
        "directoryLeavePattern",
        "maxWarnCount",
    )

    warnCount = 0
    warningPattern: Any = "(?i).*warning[: ].*"
    # GNU make's
    directoryEnterPattern: Any = "make.*: Entering directory [\u2019\"`'](.*)[\u2019'`\"]"
    directoryLeavePattern: Any = "make.*: Leaving directory"
    suppressionFile: Any = None

    def __init__(
        self,
        warningPattern: Any = _UNSET,
        warningExtractor: Callable[..., WarningInfo] | None = None,
        maxWarnCount: Any = None,
        directoryEnterPattern: Any = None,
        directoryLeavePattern: Any = None,
        suppressionFile: Any = None,
        suppressionList: Any = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(warningPattern, _Unset):
            self.warningPattern = warningPattern
        if directoryEnterPattern:
            self.directoryEnterPattern = directoryEnterPattern
        if directoryLeavePattern:
            self.directoryLeavePattern = directoryLeavePattern
        if suppressionFile:
            self.suppressionFile = suppressionFile
        self.suppressionList = suppressionList
        self.warningExtractor: Callable[..., WarningInfo] = (
            warningExtractor or WarningCountingShellCommand.warnExtractWholeLine
        )
        self.maxWarnCount = maxWarnCount
        if type(self) is WarningCountingShellCommand and not kwargs.get("command"):
            config_error("WarningCountingShellCommand's 'command' argument is not specified")
        rest = self.setupShellMixin(kwargs)
        super().__init__(**rest)
        self.statistics = {}
        self.suppressions: list[Suppression] = []
        self.directoryStack: list[str] = []
        self.warnCount = 0
        self.loggedWarnings: list[str] = []
        if self.warningPattern is not None:
            self.addLogObserver("stdio", LineConsumerLogObserver(self.warningLogConsumer))

    # -- suppressions ---------------------------------------------------------------------------

    def addSuppression(self, suppressionList: Iterable[Sequence[Any]]) -> None:
        """Add ``(file-re, warning-re, start, end)`` patterns of warnings not to count: a
        regexp (string or compiled) or None (any) for the file and the text, and an inclusive
        line range (None: unbounded)."""
        for file_re, warn_re, start, end in suppressionList:
            self.suppressions.append(
                (
                    re.compile(file_re) if isinstance(file_re, str) else file_re,
                    re.compile(warn_re) if isinstance(warn_re, str) else warn_re,
                    start,
                    end,
                )
            )

    async def setup_suppression(self) -> None:
        if self.suppressionList is not None:
            self.addSuppression(self.suppressionList)
        if self.suppressionFile is not None:
            text = await self.getFileContentFromWorker(self.suppressionFile, abandonOnFailure=True)
            assert text is not None
            found: list[Suppression] = []
            for line in text.split("\n"):
                if _COMMENT_OR_EMPTY.match(line):
                    continue
                match = _SUPPRESSION_LINE.match(line)
                if match:
                    file, test, start, end = match.groups()
                    first = int(start) if start is not None else None
                    last = int(end) if end is not None else first
                    found.append((file, test, first, last))
            self.addSuppression(found)

    # -- warnings -------------------------------------------------------------------------------

    def warnExtractWholeLine(self, line: str, match: re.Match[str]) -> WarningInfo:
        """The whole line is the warning's text; no file, no line number."""
        return (None, None, line)

    def warnExtractFromRegexpGroups(self, line: str, match: re.Match[str]) -> WarningInfo:
        """File, line number and text are groups 1, 2 and 3 of ``warningPattern``."""
        line_no = match.group(2)
        return (match.group(1), int(line_no) if line_no is not None else None, match.group(3))

    def warningLogConsumer(self) -> Consumer:
        """Count the warnings among the stdio log's lines (a LineConsumerLogObserver's)."""
        warning_re = _compiled(self.warningPattern)
        enter_re = _compiled(self.directoryEnterPattern)
        leave_re = _compiled(self.directoryLeavePattern)
        self.loggedWarnings = []
        while True:
            _, line = yield
            if enter_re is not None:
                entered = enter_re.search(line)
                if entered:
                    self.directoryStack.append(entered.group(1))
                    continue
            if leave_re is not None and self.directoryStack and leave_re.search(line):
                self.directoryStack.pop()
                continue
            assert warning_re is not None
            match = warning_re.match(line)
            if match:
                self.maybeAddWarning(self.loggedWarnings, line, match)

    def maybeAddWarning(self, warnings: list[str], line: str, match: re.Match[str]) -> None:
        if self.suppressions:
            file, line_no, text = self.warningExtractor(self, line, match)
            line_no = int(line_no) if line_no else line_no
            if file and self.directoryStack:
                file = "/".join(self.directoryStack) + "/" + file
            for file_re, warn_re, start, end in self.suppressions:
                if not (file is None or file_re is None or file_re.match(file)):
                    continue
                if not (warn_re is None or warn_re.search(text)):
                    continue
                if (
                    start is not None
                    and end is not None
                    and not (line_no is not None and start <= line_no <= end)
                ):
                    continue
                return  # suppressed
        warnings.append(line)
        self.warnCount += 1

    # -- running --------------------------------------------------------------------------------

    async def run(self) -> int:
        await self.setup_suppression()
        cmd = await self.makeRemoteShellCommand()
        await self.runCommand(cmd)
        await self.finish_logs()
        await self.createSummary()
        return int(self.evaluateCommand(cmd))

    async def finish_logs(self) -> None:
        stdio = self.logs.get("stdio")
        if stdio is not None:
            await stdio.finish()

    async def createSummary(self) -> None:
        """The ``warnings (N)`` log, the ``warnings`` statistic, ``warnings-count``."""
        if self.warnCount:
            await self.addCompleteLog(
                f"warnings ({self.warnCount})", "\n".join(self.loggedWarnings) + "\n"
            )
        self.setStatistic("warnings", self.getStatistic("warnings", 0) + self.warnCount)
        count = self.getProperty("warnings-count", 0)
        self.setProperty("warnings-count", count + self.warnCount, "WarningCountingShellCommand")

    def evaluateCommand(self, cmd: RemoteCommand) -> Results:
        result = cmd.results()
        if self.maxWarnCount is not None and self.warnCount > self.maxWarnCount:
            return worst([result, Results.FAILURE])
        if self.warnCount:
            return worst([result, Results.WARNINGS])
        return result

    def getResultSummary(self) -> dict[str, str]:
        return shell_result_summary(self) or super().getResultSummary()


def _compiled(pattern: Any) -> re.Pattern[str] | None:
    if pattern is None or isinstance(pattern, re.Pattern):
        return pattern
    return re.compile(pattern)


class Compile(WarningCountingShellCommand):
    """``make all`` (or ``command``), counting warnings; halts the build if it fails."""

    name = "compile"
    haltOnFailure = True
    flunkOnFailure = True
    description: Any = ["compiling"]
    descriptionDone: Any = ["compile"]
    command: Any = ["make", "all"]


class Test(WarningCountingShellCommand):
    """``make test`` (or ``command``), counting warnings; a failure only warns the build.
    Subclasses report counts with :meth:`setTestResults`."""

    name = "test"
    warnOnFailure = True
    description: Any = ["testing"]
    descriptionDone: Any = ["test"]
    command: Any = ["make", "test"]

    def setTestResults(
        self, total: int = 0, failed: int = 0, passed: int = 0, warnings: int = 0
    ) -> None:
        """Add to the statistics tests-total, tests-failed, tests-passed, tests-warnings."""
        for name, value in (
            ("tests-total", total),
            ("tests-failed", failed),
            ("tests-warnings", warnings),
            ("tests-passed", passed),
        ):
            self.setStatistic(name, self.getStatistic(name, 0) + value)

    def getResultSummary(self) -> dict[str, str]:
        if self.hasStatistic("tests-total"):
            failed = self.getStatistic("tests-failed", 0)
            passed = self.getStatistic("tests-passed", 0)
            warnings = self.getStatistic("tests-warnings", 0)
            total = self.getStatistic("tests-total", 0) or failed + passed + warnings
            words = [
                f"{count} {label}"
                for count, label in (
                    (total, "tests"),
                    (passed, "passed"),
                    (warnings, "warnings"),
                    (failed, "failed"),
                )
                if count
            ]
            if words:
                text = " ".join(words)
                if self.results is not None and self.results != Results.SUCCESS:
                    text += f" ({self.results.text})"
                    if self.timed_out:
                        text += " (timed out)"
                return {"step": text}
        return super().getResultSummary()


class CMake(ShellMixin, BuildStep):
    """``cmake [-G generator] [-Dname=value ...] [options ...] [path]``; halts on failure."""

    DEFAULT_CMAKE = "cmake"
    name = "cmake"
    description: Any = ["running", "cmake"]
    descriptionDone: Any = ["cmake"]
    haltOnFailure = True
    renderables: ClassVar[Sequence[str]] = (
        *BuildStep.renderables,
        *ShellMixin.shell_renderables,
        "cmake",
        "definitions",
        "generator",
        "options",
        "path",
    )

    def __init__(
        self,
        path: Any = None,
        generator: Any = None,
        definitions: Any = None,
        options: Any = None,
        cmake: Any = DEFAULT_CMAKE,
        **kwargs: Any,
    ) -> None:
        self.path = path
        self.generator = generator
        if not (definitions is None or isinstance(definitions, dict) or is_renderable(definitions)):
            config_error("definitions must be a dictionary or implement IRenderable")
        self.definitions = definitions
        if not (options is None or isinstance(options, list | tuple) or is_renderable(options)):
            config_error("options must be a list, a tuple or implement IRenderable")
        self.options = options
        self.cmake = cmake
        rest = self.setupShellMixin(kwargs, prohibitArgs=["command"])
        super().__init__(**rest)

    async def run(self) -> int:
        command: list[Any] = [self.cmake]
        if self.generator:
            command += ["-G", self.generator]
        if self.definitions is not None:
            command += [f"-D{name}={value}" for name, value in self.definitions.items()]
        if self.options is not None:
            command += list(self.options)
        if self.path:
            command.append(self.path)
        self.command = command
        cmd = await self.makeRemoteShellCommand(command=command)
        await self.runCommand(cmd)
        return int(cmd.results())

    def getResultSummary(self) -> dict[str, str]:
        return shell_result_summary(self) or super().getResultSummary()


class PerlModuleTestObserver(LogLineObserver):
    """Reads ``prove``'s summary (old and new style): totals, failures, warnings."""

    failedRe = re.compile(r"Tests: \d+ Failed: (\d+)\)")
    testsRe = re.compile(r"Files=\d+, Tests=(\d+)")
    oldFailureCountsRe = re.compile(r"(\d+)/(\d+) subtests failed")
    oldSuccessCountsRe = re.compile(r"Files=\d+, Tests=(\d+),")

    def __init__(self, warningPattern: Any) -> None:
        super().__init__()
        self.warningPattern = re.compile(warningPattern) if warningPattern else None
        self.rc = Results.SUCCESS
        self.total = 0
        self.failed = 0
        self.warnings = 0
        self.newStyle = False
        self.complete = False

    def outLineReceived(self, line: str) -> None:
        if self.warningPattern is not None and self.warningPattern.match(line):
            self.warnings += 1
        if self.newStyle:
            if line.startswith("Result: FAIL"):
                self.rc = Results.FAILURE
            if found := self.failedRe.search(line):
                self.failed += int(found.group(1))
                if self.failed:
                    self.rc = Results.FAILURE
            if found := self.testsRe.search(line):
                self.total = int(found.group(1))
            return
        if line.startswith("Test Summary Report"):
            self.newStyle = True
        if found := self.oldFailureCountsRe.search(line):
            self.failed = int(found.group(1))
            self.total = int(found.group(2))
            self.rc = Results.FAILURE
        if found := self.oldSuccessCountsRe.search(line):
            self.total = int(found.group(1))


class PerlModuleTest(Test):
    """``prove --lib lib -r t``; the result and the test counts come from prove's summary."""

    command: Any = ["prove", "--lib", "lib", "-r", "t"]
    total = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.observer = PerlModuleTestObserver(warningPattern=self.warningPattern)
        self.addLogObserver("stdio", self.observer)

    def evaluateCommand(self, cmd: RemoteCommand) -> Results:
        observer = self.observer
        if observer.total:
            self.setTestResults(
                total=observer.total,
                failed=observer.failed,
                passed=observer.total - observer.failed,
                warnings=observer.warnings,
            )
        if observer.rc == Results.SUCCESS and observer.warnings:
            return Results.WARNINGS
        return observer.rc
