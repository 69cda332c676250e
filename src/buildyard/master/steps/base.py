"""BuildStep: what master.cfg adds to a factory, and how one step of one build runs.

The object master.cfg builds is a template: every build runs its own copy, made from the same
constructor arguments (:meth:`BuildStep.copy`), so a step keeps per-build state in attributes
as Buildbot's steps do. A step's life in a build (:meth:`BuildStep.execute`): it gets its row
(``add_step``), evaluates ``doStepIf`` (False: SKIPPED), renders the attributes named in
``renderables``, runs :meth:`BuildStep.run`, finishes its logs, and records its result, summary
and ``hideStepIf``. A worker lost during the step makes it RETRY; an exception in the step's
code makes it EXCEPTION with the traceback in a log named ``err.text``; a stopped build makes it
CANCELLED.

Custom steps follow Buildbot's documented way: subclass ``BuildStep`` (and ``ShellMixin`` to
run shell commands) and write ``async def run(self)`` returning a result code.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import structlog

from buildyard.common.awaitables import deferred_compatible, resolve
from buildyard.common.config_object import ConfigObject
from buildyard.common.errors import config_error
from buildyard.master.logs.writer import LogWriter
from buildyard.master.model.logs import LogType
from buildyard.master.model.properties import Properties, render
from buildyard.master.model.results import Results, worst
from buildyard.master.steps.locks import (
    Held,
    LockAccess,
    RealLock,
    accesses,
    acquire_all,
    release_all,
)
from buildyard.master.steps.remotecommand import (
    RemoteCommand,
    RemoteCommandFailed,
    RemoteShellCommand,
)
from buildyard.master.steps.test_results import TestResultRecorder
from buildyard.protocol.errors import ConnectionLost

if TYPE_CHECKING:
    from buildyard.master.steps.runtime import BuildRuntime

log = structlog.get_logger(__name__)

__all__ = ["BuildStep", "BuildStepFailed", "CommandMixin", "ShellMixin", "WorkerSetupError"]


class BuildStepFailed(Exception):
    """Raised by a step's code: the step ends FAILURE."""


class WorkerSetupError(Exception):
    """The worker cannot run this step (too old, a command missing): the step ends EXCEPTION."""


def _is_bool(value: object) -> bool:
    return isinstance(value, bool)


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _is_str_or_none(value: object) -> bool:
    return value is None or isinstance(value, str)


def _is_number_or_none(value: object) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _renderable(value: object) -> bool:
    return hasattr(value, "getRenderingFor")


# Buildbot's BuildStep keywords and how each is checked (None: anything).
_STEP_PARAMS: dict[str, Callable[[object], bool] | None] = {
    "alwaysRun": _is_bool,
    "description": None,
    "descriptionDone": None,
    "descriptionSuffix": None,
    "doStepIf": None,
    "flunkOnFailure": _is_bool,
    "flunkOnWarnings": _is_bool,
    "haltOnFailure": _is_bool,
    "updateBuildSummaryPolicy": None,
    "hideStepIf": None,
    "locks": None,
    "logEncoding": None,
    "name": _is_str,
    "progressMetrics": None,
    "useProgress": None,
    "warnOnFailure": _is_bool,
    "warnOnWarnings": _is_bool,
    "workdir": _is_str_or_none,
}


def _join(words: str | Sequence[str]) -> str:
    return words if isinstance(words, str) else " ".join(str(w) for w in words)


class BuildStep(ConfigObject):
    name: Any = "generic"
    description: Any = None
    descriptionDone: Any = None
    descriptionSuffix: Any = None
    updateBuildSummaryPolicy: Any = None
    haltOnFailure: Any = False
    flunkOnWarnings: Any = False
    flunkOnFailure: Any = True
    warnOnWarnings: Any = False
    warnOnFailure: Any = False
    alwaysRun: Any = False
    doStepIf: Any = True
    hideStepIf: Any = False
    locks: Any = None
    logEncoding: str | None = None
    progressMetrics: Any = ()
    useProgress: Any = True
    workdir: Any = None

    renderables: ClassVar[Sequence[str]] = (
        "haltOnFailure",
        "flunkOnWarnings",
        "flunkOnFailure",
        "warnOnWarnings",
        "warnOnFailure",
        "alwaysRun",
        "description",
        "descriptionDone",
        "descriptionSuffix",
        "doStepIf",
        "hideStepIf",
        "workdir",
    )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # users' Twisted-style subclasses of our steps yield super().run() in inlineCallbacks
        super().__init_subclass__(**kwargs)
        run: Any = cls.__dict__.get("run")
        if cls.__module__.startswith("buildyard.") and inspect.iscoroutinefunction(run):
            cls.run = deferred_compatible(run)  # type: ignore[method-assign]

    def __init__(self, **kwargs: Any) -> None:
        unknown = sorted(k for k in kwargs if k not in _STEP_PARAMS)
        if unknown:
            config_error(
                f"{type(self).__name__}.__init__ got unexpected keyword argument(s) "
                f"{', '.join(unknown)}"
            )
        for key, value in kwargs.items():
            if key not in _STEP_PARAMS:
                continue
            check = _STEP_PARAMS[key]
            if check is not None and not _renderable(value) and not check(value):
                config_error(f"{type(self).__name__} argument {key} has an invalid value {value!r}")
            setattr(self, key, value)
        for attr in ("description", "descriptionDone", "descriptionSuffix"):
            value = getattr(self, attr)
            if not (value is None or isinstance(value, str | list | tuple) or _renderable(value)):
                config_error(f"{type(self).__name__} {attr} must be a string or a list")
        policy = self.updateBuildSummaryPolicy
        if policy is not None and not isinstance(policy, bool | list):
            config_error(
                f"{type(self).__name__} updateBuildSummaryPolicy must be a list of result codes "
                "or a bool"
            )
        # per build
        self.build: BuildRuntime | None = None
        self.stepid: int | None = None
        self.number: int | None = None
        self.results: Results | None = None
        self.logs: dict[str, LogWriter] = {}
        self.cmd: RemoteCommand | None = None
        self.stopped = False
        self.timed_out = False
        self.max_lines_reached = False
        self._test_results: dict[int, TestResultRecorder] = {}
        self._summary: dict[str, str] = {}
        self._log_observers: dict[str, list[Any]] = {}
        self._lock_wait: asyncio.Task[Held] | None = None
        self.statistics: dict[str, Any] = {}

    # -- one copy per build --------------------------------------------------------------------

    def copy(self) -> BuildStep:
        """A fresh step built from the same arguments, for one build."""
        args, kwargs = self._raw_arguments
        return type(self)(*args, **kwargs)

    # -- what a step's code uses (Buildbot's names) ---------------------------------------------

    def _runtime(self) -> BuildRuntime:
        if self.build is None:
            raise RuntimeError(f"step {self.name!r} is not running in a build")
        return self.build

    def getProperties(self) -> Properties:
        return self._runtime().properties

    def getProperty(self, name: str, default: Any = None) -> Any:
        return self._runtime().properties.getProperty(name, default)

    def hasProperty(self, name: str) -> bool:
        return bool(self._runtime().properties.hasProperty(name))

    def setProperty(
        self, name: str, value: Any, source: str = "Step", runtime: bool = True
    ) -> None:
        self._runtime().properties.setProperty(name, value, source, runtime=runtime)

    @deferred_compatible
    async def render(self, value: Any) -> Any:
        return await render(value, self._runtime().properties)

    @property
    def worker(self) -> Any:
        return self._runtime().worker

    def workerVersion(self, command: str, oldversion: str | None = None) -> str | None:
        commands = self._runtime().conn.info.get("worker_commands") or {}
        return commands.get(command, oldversion)

    def workerVersionIsOlderThan(self, command: str, minversion: str) -> bool:
        version = self.workerVersion(command)
        if version is None:
            return True
        return [int(p) for p in version.split(".")] < [int(p) for p in minversion.split(".")]

    def checkWorkerHasCommand(self, command: str) -> None:
        if self.workerVersion(command) is None:
            raise WorkerSetupError(f"worker is too old, does not know about {command}")

    @deferred_compatible
    async def addLog(self, name: str, type: str = "s", logEncoding: str | None = None) -> LogWriter:
        rt = self._runtime()
        assert self.stepid is not None
        kind = LogType(type)
        logid = await rt.updates.add_log(self.stepid, name, kind)
        writer = LogWriter(
            rt.updates,
            logid=logid,
            name=name,
            type=kind,
            limits=rt.log_limits,
            redactor=rt.updates.redactor,
            encoding=logEncoding or self.logEncoding,
        )
        self.logs[name] = writer
        for observer in self._log_observers.get(name, ()):
            _attach(observer, writer)
        return writer

    def addLogObserver(self, logname: str, observer: Any) -> None:
        """Feed the lines of log ``logname`` (now or once it exists) to ``observer``: a
        LogLineObserver (``outLineReceived``, ``errLineReceived``, ``headerLineReceived``) or a
        callable taking (stream, line)."""
        if hasattr(observer, "setStep"):
            observer.setStep(self)
        self._log_observers.setdefault(logname, []).append(observer)
        if logname in self.logs:
            _attach(observer, self.logs[logname])

    def getLog(self, name: str) -> LogWriter:
        return self.logs[name]

    @deferred_compatible
    async def addCompleteLog(self, name: str, text: str) -> None:
        writer = await self.addLog(name, "t")
        writer.add_content(text if text.endswith("\n") or not text else text + "\n")
        await writer.finish()

    @deferred_compatible
    async def addHTMLLog(self, name: str, html: str) -> None:
        writer = await self.addLog(name, "h")
        writer.add_content(html if html.endswith("\n") or not html else html + "\n")
        await writer.finish()

    @deferred_compatible
    async def addURL(self, name: str, url: str) -> None:
        assert self.stepid is not None
        await self._runtime().updates.add_step_url(self.stepid, name, url)

    @deferred_compatible
    async def setBuildData(self, name: str, value: bytes, source: str) -> None:
        """Store a named blob on the build (``builds/<id>/data/<name>``)."""
        await self._runtime().updates.set_build_data(self._runtime().buildid, name, value, source)

    async def addTestResultSets(self) -> None:
        """Called before run(): a step that reports test results may add its sets here."""

    @deferred_compatible
    async def addTestResultSet(
        self, description: str | None, category: str, value_unit: str
    ) -> int:
        """A new set of test results of this step; returns its id for ``addTestResult``. The
        set is completed, with its pass/fail counts, when the step ends."""
        rt = self._runtime()
        assert self.stepid is not None
        setid = await rt.updates.add_test_result_set(
            builderid=rt.builderid,
            buildid=rt.buildid,
            stepid=self.stepid,
            description=description,
            category=category,
            value_unit=value_unit,
        )
        self._test_results[setid] = TestResultRecorder(
            updates=rt.updates,
            builderid=rt.builderid,
            setid=setid,
            category=category,
            value_unit=value_unit,
        )
        return setid

    def addTestResult(
        self,
        setid: int,
        value: str,
        test_name: str | None = None,
        test_code_path: str | None = None,
        line: int | None = None,
        duration_ns: int | None = None,
    ) -> None:
        """Record one result in a set this step added (written when the step ends)."""
        self._test_results[setid].add(
            value,
            test_name=test_name,
            test_code_path=test_code_path,
            line=line,
            duration_ns=duration_ns,
        )

    @deferred_compatible
    async def runCommand(self, command: RemoteCommand) -> RemoteCommand:
        """Run ``command`` on the build's worker; the step can be stopped meanwhile."""
        rt = self._runtime()
        self.cmd = command
        if self.stopped:
            command.interrupted = True
            return command
        await command.run(rt.conn, builder_name=rt.builder_name, builder_dir=rt.builder_dir)
        if command.failure_reason in ("timeout", "timeout_without_output"):
            self.timed_out = True
        elif command.failure_reason == "max_lines_failure":
            self.max_lines_reached = True
        return command

    @deferred_compatible
    async def run(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} has no run() method")

    @deferred_compatible
    async def interrupt(self, reason: str) -> None:
        """The build is being stopped: stop what runs (the step then ends CANCELLED)."""
        self.stopped = True
        if self._lock_wait is not None:
            self._lock_wait.cancel()
        if self.cmd is not None:
            await self.cmd.interrupt(reason)

    # -- summaries (the state strings of the step and the build) -------------------------------

    def getCurrentSummary(self) -> dict[str, str]:
        if self.description is not None:
            text = _join(self.description)
            if self.descriptionSuffix:
                text += " " + _join(self.descriptionSuffix)
            return {"step": text}
        return {"step": "running"}

    def getResultSummary(self) -> dict[str, str]:
        if self.descriptionDone is not None or self.description is not None:
            text = _join(self.descriptionDone or self.description)
            if self.descriptionSuffix:
                text += " " + _join(self.descriptionSuffix)
        else:
            text = "finished"
        if self.results is not None and self.results != Results.SUCCESS:
            text += f" ({self.results.text})"
            if self.timed_out:
                text += " (timed out)"
            elif self.max_lines_reached:
                text += " (max lines reached)"
        return {"step": text}

    def getBuildResultSummary(self) -> dict[str, str]:
        summary = dict(self.getResultSummary())
        policy = self.updateBuildSummaryPolicy
        if policy is None:
            codes = [r for r in Results if r not in (Results.SUCCESS, Results.SKIPPED)]
            policy = codes if self.flunkOnFailure or self.flunkOnWarnings else []
        elif policy is True:
            policy = list(Results)
        elif policy is False:
            policy = []
        if self.results in policy and "build" not in summary and "step" in summary:
            summary["build"] = summary["step"]
        return summary

    async def updateSummary(self) -> None:
        if self.stepid is None or self.build is None:
            return
        summary = self.getCurrentSummary() if self.results is None else self.getResultSummary()
        text = summary.get("step", "")
        if text != self._summary.get("step"):
            self._summary = dict(summary)
            await self.build.updates.set_step_state_string(self.stepid, text)

    # -- the step's life in a build ------------------------------------------------------------

    async def execute(self, build: BuildRuntime) -> Results:
        """Run this step in ``build``: its row, doStepIf, run(), logs, result, summary."""
        self.build = build
        updates = build.updates
        name = str(await render(self.name, build.properties))
        wanted = [
            (build.locks.real(a.lockid, build.conn.name), a)
            for a in accesses(await render(self.locks, build.properties))
        ]
        self.stepid, self.number, self.name = await updates.add_step(
            build.buildid, name, start=True, locks_acquired=not wanted
        )
        build.current_step = self
        if getattr(build.build, "stopped", False):  # stopped while the step was being added
            self.stopped = True
        held: Held = []
        try:
            if wanted:
                held = await self._acquire(build, wanted)
            results = Results.CANCELLED if self.stopped else await self._run_checked(build)
        finally:
            build.current_step = None
            release_all(self, held)
        self.results = results
        # With nothing of the user's to run between (no test results, hideStepIf a plain
        # value), the logs still open are closed in the step's end transaction: their lines
        # and events as when each is closed on its own, one transaction for all.
        closing: list[tuple[int, str, str]] = []
        together = not self._test_results and isinstance(self.hideStepIf, bool)
        for writer in self.logs.values():
            if writer.finished:
                continue
            if together:
                last = await writer.take_last()
                if last is not None:
                    closing.append((writer.logid, writer.limits.compression, last))
            else:
                await writer.finish()
        for recorder in self._test_results.values():
            await recorder.finish()
        hidden = await self._hidden(results)
        summary = self.getResultSummary()
        text = summary.get("step", "")
        changed = text != self._summary.get("step")
        self._summary = dict(summary)
        await updates.finish_step(
            self.stepid,
            results,
            hidden=hidden,
            state_string=text if changed else None,
            logs=closing,
        )
        return results

    async def _acquire(
        self, build: BuildRuntime, wanted: list[tuple[RealLock, LockAccess]]
    ) -> Held:
        """Take the step's locks; a stop while waiting gives up (the step is CANCELLED)."""
        assert self.stepid is not None
        if not all(lock.available(self, access) for lock, access in wanted):
            await self._set_state("waiting for locks")
        self._lock_wait = asyncio.get_running_loop().create_task(acquire_all(self, wanted))
        try:
            held = await self._lock_wait
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            return []  # interrupted: self.stopped is set
        finally:
            self._lock_wait = None
        await build.updates.set_step_locks_acquired_at(self.stepid, int(time.time()))
        return held

    async def _run_checked(self, build: BuildRuntime) -> Results:
        try:
            if not await self._should_run():
                await self._set_state("skipped")
                return Results.SKIPPED
            for attr in self._all_renderables():
                setattr(self, attr, await render(getattr(self, attr), build.properties))
            if self.workdir is None:  # Buildbot's default: the build's (the factory's) workdir
                self.workdir = build.workdir
            await self.updateSummary()
            await resolve(self.addTestResultSets())
            outcome = await resolve(self.run())
            results = Results(outcome)
            if self.stopped and results not in (Results.RETRY, Results.EXCEPTION):
                return Results.CANCELLED
            return results
        except BuildStepFailed as exc:
            log.info("step_failed", step=self.name, reason=str(exc))
            return Results.CANCELLED if self.stopped else Results.FAILURE
        except WorkerSetupError as exc:
            await self._error_log(f"{exc}\n")
            return Results.EXCEPTION
        except ConnectionLost as exc:
            log.warning("step_worker_lost", step=self.name, reason=str(exc))
            await self._error_log(f"worker lost: {exc}\n")
            return Results.RETRY
        except RemoteCommandFailed as exc:
            await self._error_log(f"the worker failed to run the command:\n{exc}\n")
            return Results.EXCEPTION
        except Exception:
            log.exception("step_exception", step=self.name)
            await self._error_log(traceback.format_exc())
            return Results.EXCEPTION

    @classmethod
    def _all_renderables(cls) -> list[str]:
        """``renderables`` of every class in the hierarchy (Buildbot adds them up)."""
        names: dict[str, None] = {}
        for klass in reversed(cls.__mro__):
            for name in klass.__dict__.get("renderables", ()) or ():
                names[name] = None
            for name in klass.__dict__.get("shell_renderables", ()) or ():
                names[name] = None
        return list(names)

    # -- statistics (numbers a step reports, e.g. warnings) --------------------------------

    def hasStatistic(self, name: str) -> bool:
        return name in self.statistics

    def getStatistic(self, name: str, default: Any = None) -> Any:
        return self.statistics.get(name, default)

    def getStatistics(self) -> dict[str, Any]:
        return dict(self.statistics)

    def setStatistic(self, name: str, value: Any) -> None:
        self.statistics[name] = value

    async def _should_run(self) -> bool:
        condition = self.doStepIf
        if callable(condition) and not _renderable(condition):
            condition = condition(self)
            condition = await resolve(condition)
        else:
            condition = await self.render(condition)
        return bool(condition)

    async def _hidden(self, results: Results) -> bool:
        hide = self.hideStepIf
        if callable(hide) and not _renderable(hide):
            hide = hide(int(results), self)
            hide = await resolve(hide)
        else:
            hide = await self.render(hide)
        return bool(hide)

    async def _set_state(self, text: str) -> None:
        assert self.stepid is not None
        assert self.build is not None
        self._summary = {"step": text}
        await self.build.updates.set_step_state_string(self.stepid, text)

    async def _error_log(self, text: str) -> None:
        try:
            await self.addCompleteLog("err.text", text)
        except Exception:  # the database may be what failed; the log line stays
            log.exception("step_error_log_failed", step=self.name)


def _attach(observer: Any, writer: LogWriter) -> None:
    if callable(observer) and not hasattr(observer, "outLineReceived"):
        writer.add_observer(observer)
        return
    if hasattr(observer, "setLog"):
        observer.setLog(writer)
    handlers = {
        "stdout": getattr(observer, "outLineReceived", None),
        "stderr": getattr(observer, "errLineReceived", None),
        "header": getattr(observer, "headerLineReceived", None),
        "": getattr(observer, "outLineReceived", None),
    }

    def feed(stream: str, line: str) -> None:
        handler = handlers.get(stream)
        limit = getattr(observer, "max_length", None)
        if handler is not None and (limit is None or len(line) <= limit):
            handler(line)

    writer.add_observer(feed)
    finish = getattr(observer, "finishReceived", None)
    if finish is not None:
        writer.add_finish_callback(finish)


class ShellMixin:
    """Buildbot's ShellMixin: the shell arguments of a step and ``makeRemoteShellCommand``."""

    command: Any = None
    env: Any = None
    want_stdout: Any = True
    want_stderr: Any = True
    usePTY: Any = None
    logfiles: Any = None
    lazylogfiles: Any = False
    timeout: Any = 1200
    maxTime: Any = None
    max_lines: Any = None
    logEnviron: Any = True
    interruptSignal: Any = "KILL"
    sigtermTime: Any = None
    initialStdin: Any = None
    decodeRC: Any = None

    _shell_args: ClassVar[dict[str, Callable[[object], bool] | None]] = {
        "command": None,
        "workdir": _is_str,
        "env": None,
        "want_stdout": _is_bool,
        "want_stderr": _is_bool,
        "usePTY": _is_bool,
        "logfiles": None,
        "lazylogfiles": _is_bool,
        "timeout": _is_number_or_none,
        "maxTime": _is_number_or_none,
        "max_lines": _is_number_or_none,
        "logEnviron": _is_bool,
        "interruptSignal": _is_str_or_none,
        "sigtermTime": _is_number_or_none,
        "initialStdin": _is_str_or_none,
        "decodeRC": None,
    }
    shell_renderables: ClassVar[tuple[str, ...]] = tuple(_shell_args)

    def setupShellMixin(
        self, constructorArgs: Mapping[str, Any], prohibitArgs: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Take the shell arguments out of ``constructorArgs`` (set on the step); the rest are
        returned for BuildStep. A prohibited or unknown argument is a config error."""
        remaining = dict(constructorArgs)
        prohibited = set(prohibitArgs or ())
        name = type(self).__name__
        for arg, check in self._shell_args.items():
            if arg not in remaining:
                continue
            value = remaining.pop(arg)
            if arg in prohibited:
                config_error(f"invalid {name} argument {arg}")
                continue
            if check is not None and not _renderable(value) and not check(value):
                config_error(f"{name} argument {arg} has an invalid value {value!r}")
            setattr(self, arg, value)
        for arg in list(remaining):
            if arg not in _STEP_PARAMS:
                config_error(f"invalid {name} argument {arg}")
                del remaining[arg]
        return remaining

    @deferred_compatible
    async def makeRemoteShellCommand(
        self,
        collectStdout: bool = False,
        collectStderr: bool = False,
        stdioLogName: str | None = "stdio",
        **overrides: Any,
    ) -> RemoteShellCommand:
        step = self._step()
        kwargs = {arg: getattr(self, arg) for arg in self._shell_args}
        kwargs.update(overrides)
        kwargs = await step.render(kwargs)
        build = step._runtime()
        workdir = kwargs.pop("workdir") or build.workdir
        env = dict(build.env)
        env.update(kwargs.pop("env") or {})
        command = kwargs.pop("command")
        if command is None:
            raise BuildStepFailed(f"step {step.name!r} has no command to run")
        command = _flatten_command(command)
        self.command = command  # what the summaries show
        logfiles = kwargs.pop("logfiles") or {}
        lazylogfiles = kwargs.pop("lazylogfiles")
        cmd = RemoteShellCommand(
            workdir,
            command,
            env=env,
            want_stdout=kwargs.pop("want_stdout"),
            want_stderr=kwargs.pop("want_stderr"),
            timeout=kwargs.pop("timeout"),
            maxTime=kwargs.pop("maxTime"),
            max_lines=kwargs.pop("max_lines"),
            sigtermTime=kwargs.pop("sigtermTime"),
            logfiles=logfiles,
            usePTY=kwargs.pop("usePTY"),
            logEnviron=kwargs.pop("logEnviron"),
            collectStdout=collectStdout,
            collectStderr=collectStderr,
            interruptSignal=kwargs.pop("interruptSignal"),
            initialStdin=kwargs.pop("initialStdin"),
            decodeRC=kwargs.pop("decodeRC"),
            stdioLogName=stdioLogName or "stdio",
        )
        if stdioLogName is not None:
            stdio = step.logs.get(stdioLogName) or await step.addLog(stdioLogName)
            cmd.useLog(stdio, False, stdioLogName)
        if not lazylogfiles:
            for name in logfiles:
                cmd.useLog(step.logs.get(name) or await step.addLog(name), False, name)
        return cmd

    def _step(self) -> BuildStep:
        assert isinstance(self, BuildStep), "ShellMixin goes with BuildStep"
        return self

    def getCurrentSummary(self) -> dict[str, str]:
        step = self._step()
        if step.description is None and (text := command_to_string(self.command)):
            return {"step": text}
        summary: dict[str, str] = super().getCurrentSummary()  # type: ignore[misc]
        return summary

    def getResultSummary(self) -> dict[str, str]:
        """The command's first words and the result, unless ``descriptionDone`` is set."""
        step = self._step()
        text = command_to_string(self.command) if step.descriptionDone is None else ""
        if not text:
            summary: dict[str, str] = super().getResultSummary()  # type: ignore[misc]
            return summary
        if step.results is not None and step.results != Results.SUCCESS:
            text += f" ({step.results.text})"
            if step.timed_out:
                text += " (timed out)"
            elif step.max_lines_reached:
                text += " (max lines)"
        return {"step": text}


def command_to_string(command: Any) -> str:
    """A short text for a step's summary: the first words of the command."""
    if isinstance(command, str):
        words = command.split()
    elif isinstance(command, list | tuple):
        words = [str(w) for w in command if isinstance(w, str | int | float)]
    else:
        return ""
    text = " ".join(words[:2])
    return f"'{text} ...'" if len(words) > 2 else f"'{text}'"


def _flatten_command(command: Any) -> Any:
    if isinstance(command, str):
        return command
    flat: list[Any] = []
    for word in command:
        if isinstance(word, list | tuple):
            flat.extend(_flatten_command(word))
        elif word is not None:
            flat.append(word if isinstance(word, str) else str(word))
    return flat


class CommandMixin:
    """Buildbot's CommandMixin: file-system commands on the worker from a step's code."""

    async def _fs(self, name: str, args: dict[str, Any]) -> RemoteCommand:
        assert isinstance(self, BuildStep)
        cmd = RemoteCommand(name, args)
        await self.runCommand(cmd)
        if cmd.rc not in (0, None) and name not in ("stat", "glob"):
            raise BuildStepFailed(f"{name} failed with rc {cmd.rc}")
        return cmd

    @deferred_compatible
    async def runRmdir(self, dir: str, log: Any = None, abandonOnFailure: bool = True) -> bool:
        cmd = await self._fs("rmdir", {"dir": dir, "logEnviron": False})
        return cmd.rc == 0

    @deferred_compatible
    async def pathExists(self, path: str) -> bool:
        cmd = RemoteCommand("stat", {"file": path})
        assert isinstance(self, BuildStep)
        await self.runCommand(cmd)
        return cmd.rc == 0

    @deferred_compatible
    async def runMkdir(self, dir: str, log: Any = None) -> None:
        await self._fs("mkdir", {"dir": dir, "logEnviron": False})

    @deferred_compatible
    async def runGlob(self, glob: str) -> list[str]:
        cmd = RemoteCommand("glob", {"path": glob, "logEnviron": False})
        assert isinstance(self, BuildStep)
        await self.runCommand(cmd)
        if cmd.rc != 0:
            raise BuildStepFailed(f"glob failed with rc {cmd.rc}")
        return list((cmd.updates.get("files") or [[]])[-1])


def combine(step: BuildStep, result: Results, previous: Results) -> tuple[Results, bool]:
    """The build's result after ``step`` ended with ``result``, and whether the build stops
    (Buildbot's computeResultAndTermination)."""
    overall = result
    terminate = False
    if result == Results.FAILURE:
        if not step.flunkOnFailure:
            overall = Results.SUCCESS
        if step.warnOnFailure:
            overall = Results.WARNINGS
        if step.flunkOnFailure:
            overall = Results.FAILURE
        if step.haltOnFailure:
            terminate = True
    elif result == Results.WARNINGS:
        overall = Results.WARNINGS if step.warnOnWarnings else Results.SUCCESS
        if step.flunkOnWarnings:
            overall = Results.FAILURE
    elif result in (Results.EXCEPTION, Results.RETRY, Results.CANCELLED):
        terminate = True
    return worst([previous, overall]), terminate
