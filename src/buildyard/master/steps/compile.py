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
directory, so a suppression's file pattern sees ``dir/file.c``. Suppressions are
:class:`SuppressionRule` objects, compiled once; a ``suppressionList`` entry of the wrong shape
is a config error, and suppression file lines that are not rules are listed in a
``suppressionFile`` log of the step (and not applied).

``Test`` adds ``setTestResults(total, failed, passed, warnings)`` (statistics ``tests-total``,
``tests-failed``, ``tests-passed``, ``tests-warnings``) and a summary built from them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import structlog

from buildyard.common.errors import config_error
from buildyard.master.logs.observer import LogLineObserver
from buildyard.master.model.properties import is_renderable
from buildyard.master.model.results import Results, worst
from buildyard.master.steps.base import BuildStep, ShellMixin
from buildyard.master.steps.remotecommand import RemoteCommand
from buildyard.master.steps.shell import ShellCommand, shell_result_summary
from buildyard.master.steps.worker import CompositeStepMixin

log = structlog.get_logger(__name__)

__all__ = [
    "CMake",
    "Compile",
    "Configure",
    "PerlModuleTest",
    "PerlModuleTestObserver",
    "SuppressionRule",
    "Test",
    "WarningCountingShellCommand",
    "parse_suppressions",
]

# (file, line number, text) of a warning, as a warningExtractor gives it
WarningInfo = tuple[str | None, int | None, str]


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


_UNSET: Any = object()


@dataclasses.dataclass(frozen=True, slots=True)
class FoundWarning:
    """A warning line as the step's ``warningExtractor`` reads it."""

    file: str | None
    line: int | None
    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class SuppressionRule:
    """Warnings not to count: those whose file matches ``file`` (from its start), whose text
    contains a match of ``text``, on a line in ``lines``. A missing part matches anything, and
    so does ``file`` for a warning whose file is not known."""

    file: re.Pattern[str] | None = None
    text: re.Pattern[str] | None = None
    lines: range | None = None

    def covers(self, warning: FoundWarning) -> bool:
        file, text, number = warning.file, warning.text, warning.line
        return (
            (self.file is None or file is None or self.file.match(file) is not None)
            and (self.text is None or self.text.search(text) is not None)
            and (self.lines is None or (number is not None and number in self.lines))
        )

    @classmethod
    def from_entry(cls, entry: object) -> SuppressionRule:
        """A ``suppressionList`` entry: ``(file-re, warning-re, start, end)``, each pattern a
        string, a compiled pattern or None, and the line range inclusive (both bounds, or no
        range). ValueError says what is wrong with the entry."""
        if not (isinstance(entry, list | tuple) and len(entry) == 4):
            raise ValueError(
                f"suppression {entry!r}: expected (file-regexp, warning-regexp, start, end)"
            )
        file, text, start, end = entry
        bounds = [b for b in (start, end) if b is not None]
        if any(not isinstance(b, int) or isinstance(b, bool) for b in bounds):
            raise ValueError(f"suppression {entry!r}: start and end must be line numbers or None")
        lines = range(start, end + 1) if len(bounds) == 2 else None
        return cls(_pattern(entry, file), _pattern(entry, text), lines)


def _pattern(entry: object, given: object) -> re.Pattern[str] | None:
    if given is None or isinstance(given, re.Pattern):
        return given
    if not isinstance(given, str):
        raise ValueError(f"suppression {entry!r}: {given!r} is not a regular expression")
    try:
        return re.compile(given)
    except re.error as exc:
        raise ValueError(f"suppression {entry!r}: {given!r} is not valid: {exc}") from None


_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_suppressions(text: str) -> tuple[list[SuppressionRule], list[str]]:
    """The rules of a ``suppressionFile``, and a message for each line that is not one.

    A line is ``file-regexp : warning-regexp``, optionally followed by ``: start`` or
    ``: start-end`` (inclusive); blank lines and lines starting with ``#`` are skipped. The
    file pattern ends at the first ``:``; the warning pattern may contain more."""
    rules: list[SuppressionRule] = []
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        file, colon, rest = line.partition(":")
        lines: range | None = None
        head, last_colon, tail = rest.rpartition(":")
        if last_colon and (bounds := _RANGE.match(tail)):
            first = int(bounds[1])
            lines = range(first, int(bounds[2] or first) + 1)
            rest = head
        if not (colon and file.strip() and rest.strip()):
            problems.append(
                f"line {number}: {raw!r} is not 'file-regexp : warning-regexp [: start[-end]]'"
            )
            continue
        try:
            rules.append(SuppressionRule(re.compile(file.strip()), re.compile(rest.strip()), lines))
        except re.error as exc:
            problems.append(f"line {number}: {raw!r}: {exc}")
    return rules, problems


class DirectoryTracker:
    """Where GNU make says it is: ``Entering directory 'x'`` lines push a directory, and
    ``Leaving directory`` lines pop one, so warnings name their file from the top."""

    def __init__(self, enter: re.Pattern[str] | None, leave: re.Pattern[str] | None) -> None:
        self._enter = enter
        self._leave = leave
        self.stack: list[str] = []

    def moved(self, line: str) -> bool:
        """Whether ``line`` enters or leaves a directory (then it is not a warning)."""
        if self._enter is not None and (entered := self._enter.search(line)):
            self.stack.append(entered.group(1))
            return True
        if self._leave is not None and self.stack and self._leave.search(line):
            self.stack.pop()
            return True
        return False

    def qualify(self, file: str | None) -> str | None:
        if not file or not self.stack:
            return file
        return "/".join([*self.stack, file])


class _WarningCounter:
    """Fed every line of the stdio log (any stream): counts the warnings the rules leave."""

    def __init__(self, step: WarningCountingShellCommand, pattern: re.Pattern[str]) -> None:
        self.step = step
        self.pattern = pattern
        self.directories = DirectoryTracker(
            _compiled(step.directoryEnterPattern), _compiled(step.directoryLeavePattern)
        )

    def __call__(self, _stream: str, line: str) -> None:
        if self.directories.moved(line):
            return
        match = self.pattern.match(line)
        if match is None or self._suppressed(line, match):
            return
        self.step.loggedWarnings.append(line)
        self.step.warnCount += 1

    def _suppressed(self, line: str, match: re.Match[str]) -> bool:
        rules = self.step.suppressions
        if not rules:  # the extractor only runs when something may be suppressed
            return False
        file, number, text = self.step.warningExtractor(self.step, line, match)
        warning = FoundWarning(
            self.directories.qualify(file), int(number) if number else None, text
        )
        return any(rule.covers(warning) for rule in rules)


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
    # GNU make's: 'dir' in the C locale, \u2018dir\u2019 in UTF-8 ones (Buildbot's default
    # misses the second form's opening quote)
    directoryEnterPattern: Any = "make.*: Entering directory [\u2018\u2019\"`'](.*)[\u2019'`\"]"
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
        if warningPattern is not _UNSET:
            self.warningPattern = warningPattern
        if directoryEnterPattern:
            self.directoryEnterPattern = directoryEnterPattern
        if directoryLeavePattern:
            self.directoryLeavePattern = directoryLeavePattern
        if suppressionFile:
            self.suppressionFile = suppressionFile
        self.suppressionList = suppressionList
        if isinstance(suppressionList, list | tuple):  # a renderable is checked when rendered
            for entry in suppressionList:
                try:
                    SuppressionRule.from_entry(entry)
                except ValueError as exc:
                    config_error(f"suppressionList: {exc}")
        self.warningExtractor: Callable[..., WarningInfo] = (
            warningExtractor or WarningCountingShellCommand.warnExtractWholeLine
        )
        self.maxWarnCount = maxWarnCount
        if type(self) is WarningCountingShellCommand and not kwargs.get("command"):
            config_error("WarningCountingShellCommand's 'command' argument is not specified")
        rest = self.setupShellMixin(kwargs)
        super().__init__(**rest)
        self.statistics = {}
        self.suppressions: list[SuppressionRule] = []
        self.warnCount = 0
        self.loggedWarnings: list[str] = []

    # -- suppressions ---------------------------------------------------------------------------

    def addSuppression(self, suppressionList: Iterable[Any]) -> None:
        """Do not count the warnings these ``(file-re, warning-re, start, end)`` entries
        describe (see :meth:`SuppressionRule.from_entry`)."""
        self.suppressions.extend(SuppressionRule.from_entry(e) for e in suppressionList)

    async def _load_suppressions(self) -> None:
        """The rules of ``suppressionList`` and ``suppressionFile`` (read from the worker;
        lines that are not rules are listed in a ``suppressionFile`` log, and not applied)."""
        if self.suppressionList is not None:
            self.addSuppression(self.suppressionList)
        if self.suppressionFile is None:
            return
        text = await self.getFileContentFromWorker(self.suppressionFile, abandonOnFailure=True)
        rules, problems = parse_suppressions(text or "")
        self.suppressions.extend(rules)
        if problems:
            log.warning("suppression_file_problems", file=self.suppressionFile, count=len(problems))
            await self.addCompleteLog(
                "suppressionFile",
                f"{self.suppressionFile}: lines that are not suppressions, not applied:\n"
                + "\n".join(problems),
            )

    # -- warnings -------------------------------------------------------------------------------

    def warnExtractWholeLine(self, line: str, match: re.Match[str]) -> WarningInfo:
        """The whole line is the warning's text; no file, no line number."""
        return (None, None, line)

    def warnExtractFromRegexpGroups(self, line: str, match: re.Match[str]) -> WarningInfo:
        """File, line number and text are groups 1, 2 and 3 of ``warningPattern``."""
        line_no = match.group(2)
        return (match.group(1), int(line_no) if line_no is not None else None, match.group(3))

    # -- running --------------------------------------------------------------------------------

    async def run(self) -> int:
        await self._load_suppressions()
        pattern = _compiled(self.warningPattern)
        if pattern is not None:
            self.addLogObserver("stdio", _WarningCounter(self, pattern))
        cmd = await self.makeRemoteShellCommand()
        await self.runCommand(cmd)
        await self._finish_stdio()  # every line counted before the summary
        await self.createSummary()
        return int(self.evaluateCommand(cmd))

    async def _finish_stdio(self) -> None:
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
