"""Steps that act on the worker's file system, and the helpers composite steps use (Buildbot's
``buildbot.steps.worker``).

``MakeDirectory``, ``RemoveDirectory``, ``CopyDirectory`` and ``FileExists`` run one file-system
command on the worker (``mkdir``, ``rmdir``, ``cpdir``, ``stat``); their paths are relative to
the builder's directory on the worker, as in Buildbot (so ``"build/out"`` names ``out`` in the
default workdir). ``SetPropertiesFromEnv`` copies variables of the worker's environment (as the
worker reported it when it connected) into build properties.

:class:`CompositeStepMixin` gives a step's own code Buildbot's helpers: ``runRemoteCommand`` and
the ``runRmdir``/``runRmFile``/``runMkdir``/``runGlob``/``pathExists`` built on it, and
``getFileContentFromWorker``/``downloadFileContentToWorker``, which move a file's content
between the worker and the step's memory.

:class:`TransferCommand` is a :class:`RemoteCommand` that carries a file: its data flows through
the :class:`~buildyard.master.workers.transfers.FileWriter` (upload) or ``FileReader``
(download) the master side of the connection serves for it.
"""

from __future__ import annotations

import contextlib
import ntpath
import os
import posixpath
import stat
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from buildyard.common.awaitables import deferred_compatible, resolve
from buildyard.master.logs.writer import LogWriter
from buildyard.master.model.results import Results
from buildyard.master.steps.base import BuildStep, BuildStepFailed
from buildyard.master.steps.remotecommand import RemoteCommand
from buildyard.master.workers.transfers import JOURNAL, FileReader, FileWriter

if TYPE_CHECKING:
    from collections.abc import Sequence


__all__ = [
    "CompositeStepMixin",
    "CopyDirectory",
    "FileExists",
    "MakeDirectory",
    "RemoveDirectory",
    "SetPropertiesFromEnv",
    "TransferCommand",
    "WorkerBuildStep",
    "bytes_reader",
]


# -- commands that carry a file ------------------------------------------------------------------


class TransferCommand(RemoteCommand):
    """``uploadFile``/``uploadDirectory`` with the ``writer`` that receives the data, or
    ``downloadFile`` with the ``reader`` that serves it; Buildbot's step-level arguments
    (``workersrc``/``workerdest`` relative to ``workdir``). Both are closed when it ends."""

    def __init__(
        self,
        remote_command: str,
        args: dict[str, Any],
        *,
        writer: FileWriter | None = None,
        reader: FileReader | None = None,
        stdioLogName: str = "stdio",
    ) -> None:
        super().__init__(
            remote_command,
            args,
            decodeRC={0: int(Results.SUCCESS)},
            stdioLogName=stdioLogName,
            writer=writer,
            reader=reader,
        )


@contextlib.asynccontextmanager
async def bytes_reader(data: bytes, *, blocksize: int) -> AsyncIterator[FileReader]:
    """A FileReader serving ``data`` (from a temporary file, gone afterwards)."""
    with tempfile.TemporaryDirectory(prefix="buildyard-download-") as tmp:
        path = Path(tmp) / "data"
        path.write_bytes(data)
        reader = FileReader(path, blocksize=blocksize)
        try:
            yield reader
        finally:
            await reader.close()


# -- steps ---------------------------------------------------------------------------------------


class WorkerBuildStep(BuildStep):
    """Buildbot's base of the steps in this module."""


class SetPropertiesFromEnv(WorkerBuildStep):
    """Set a property for each of ``variables`` found (non-empty) in the worker's environment."""

    name = "SetPropertiesFromEnv"
    description: Any = ["Setting"]
    descriptionDone: Any = ["Set"]

    def __init__(
        self, variables: str | Sequence[str], source: str = "WorkerEnvironment", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.variables = variables
        self.source = source

    async def run(self) -> int:
        info = self._runtime().conn.info
        # Windows variable names are case-insensitive: the worker reports them upper-cased
        fold = info.get("system") == "nt"
        environ = info.get("environ") or {}
        variables = [self.variables] if isinstance(self.variables, str) else self.variables
        lines = []
        for variable in variables:
            value = environ.get(variable.upper() if fold else variable)
            if value:
                self.setProperty(variable, value, self.source, runtime=True)
                lines.append(f"{variable} = {value!r}")
        await self.addCompleteLog("properties", "\n".join(lines))
        return Results.SUCCESS


class FileExists(WorkerBuildStep):
    """SUCCESS if ``file`` (relative to the builder's directory) is a regular file."""

    name = "FileExists"
    haltOnFailure = True
    flunkOnFailure = True
    renderables: ClassVar[Sequence[str]] = (*BuildStep.renderables, "file")

    def __init__(self, file: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.file = file

    async def run(self) -> int:
        self.checkWorkerHasCommand("stat")
        cmd = RemoteCommand("stat", {"file": self.file})
        await self.runCommand(cmd)
        if cmd.didFail():
            self.descriptionDone = ["File not found."]
            return Results.FAILURE
        mode = cmd.updates["stat"][-1][stat.ST_MODE]
        if stat.S_ISREG(mode):
            self.descriptionDone = ["File found."]
            return Results.SUCCESS
        self.descriptionDone = ["Not a file."]
        return Results.FAILURE


class CopyDirectory(WorkerBuildStep):
    """Copy the tree ``src`` to ``dest`` on the worker (both relative to the builder's
    directory)."""

    name = "CopyDirectory"
    description: Any = ["Copying"]
    descriptionDone: Any = ["Copied"]
    haltOnFailure = True
    flunkOnFailure = True
    renderables: ClassVar[Sequence[str]] = (*BuildStep.renderables, "src", "dest")

    def __init__(
        self,
        src: Any,
        dest: Any,
        timeout: float | None = 120,
        maxTime: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.src = src
        self.dest = dest
        self.timeout = timeout
        self.maxTime = maxTime

    async def run(self) -> int:
        self.checkWorkerHasCommand("cpdir")
        args: dict[str, Any] = {"fromdir": self.src, "todir": self.dest, "timeout": self.timeout}
        if self.maxTime:
            args["maxTime"] = self.maxTime
        cmd = RemoteCommand("cpdir", args)
        await self.runCommand(cmd)
        if cmd.didFail():
            self.descriptionDone = ["Copying", self.src, "to", self.dest, "failed."]
            return Results.FAILURE
        self.descriptionDone = ["Copied", self.src, "to", self.dest]
        return Results.SUCCESS


class RemoveDirectory(WorkerBuildStep):
    """Remove the tree ``dir`` (relative to the builder's directory) on the worker."""

    name = "RemoveDirectory"
    description: Any = ["Deleting"]
    descriptionDone: Any = ["Deleted"]
    haltOnFailure = True
    flunkOnFailure = True
    renderables: ClassVar[Sequence[str]] = (*BuildStep.renderables, "dir")

    def __init__(self, dir: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dir = dir

    async def run(self) -> int:
        self.checkWorkerHasCommand("rmdir")
        cmd = RemoteCommand("rmdir", {"dir": self.dir})
        await self.runCommand(cmd)
        if cmd.didFail():
            self.descriptionDone = ["Delete failed."]
            return Results.FAILURE
        return Results.SUCCESS


class MakeDirectory(WorkerBuildStep):
    """Create ``dir`` (and its parents; relative to the builder's directory) on the worker."""

    name = "MakeDirectory"
    description: Any = ["Creating"]
    descriptionDone: Any = ["Created"]
    haltOnFailure = True
    flunkOnFailure = True
    renderables: ClassVar[Sequence[str]] = (*BuildStep.renderables, "dir")

    def __init__(self, dir: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dir = dir

    async def run(self) -> int:
        self.checkWorkerHasCommand("mkdir")
        cmd = RemoteCommand("mkdir", {"dir": self.dir})
        await self.runCommand(cmd)
        if cmd.didFail():
            self.descriptionDone = ["Create failed."]
            return Results.FAILURE
        return Results.SUCCESS


# -- helpers for a step's own code ---------------------------------------------------------------


def _did_fail(cmd: RemoteCommand) -> bool:
    return cmd.didFail()


class CompositeStepMixin:
    """Buildbot's CompositeStepMixin: several worker commands from one step's ``run``.

    The commands write into the log made by :meth:`addLogForRemoteCommands` (name it
    ``"stdio"`` to get their output). Paths are relative to the builder's directory on the
    worker, except the transfers', which are relative to the step's workdir.
    """

    rc_log: LogWriter | None = None

    def _composite_step(self) -> BuildStep:
        assert isinstance(self, BuildStep), "CompositeStepMixin goes with BuildStep"
        return self

    def _log_environ(self) -> Any:
        return getattr(self, "logEnviron", True)

    def _workdir(self) -> str:
        step = self._composite_step()
        return str(step.workdir or step._runtime().workdir)

    def workerPathToMasterPath(self, path: str) -> str:
        """``path`` (as the worker wrote it) with the master's separators."""
        windows = self._composite_step()._runtime().conn.windows
        head, tail = (ntpath if windows else posixpath).split(path)
        return os.path.join(str(head), str(tail))

    @deferred_compatible
    async def addLogForRemoteCommands(self, logname: str) -> LogWriter:
        """The log the following commands write into (the last one made wins)."""
        self.rc_log = await self._composite_step().addLog(logname)
        return self.rc_log

    @deferred_compatible
    async def runRemoteCommand(
        self,
        cmd: str,
        args: dict[str, Any],
        abandonOnFailure: bool = True,
        evaluateCommand: Callable[[RemoteCommand], Any] = _did_fail,
    ) -> Any:
        """Run command ``cmd``; BuildStepFailed if it failed and ``abandonOnFailure``, else
        what ``evaluateCommand`` makes of it (by default whether it failed)."""
        return await self._run_remote(RemoteCommand(cmd, args), abandonOnFailure, evaluateCommand)

    async def _run_remote(
        self,
        command: RemoteCommand,
        abandonOnFailure: bool,
        evaluateCommand: Callable[[RemoteCommand], Any],
    ) -> Any:
        if self.rc_log is not None:
            command.useLog(self.rc_log, False)
        await self._composite_step().runCommand(command)
        if abandonOnFailure and command.didFail():
            raise BuildStepFailed(f"{command.remote_command} failed")
        result = evaluateCommand(command)
        result = await resolve(result)
        return result

    @deferred_compatible
    async def runRmdir(
        self,
        dir: Any,
        timeout: float | None = None,  # noqa: ASYNC109  # Buildbot's keyword: the worker's limit
        **kwargs: Any,
    ) -> Any:
        """Remove the tree ``dir`` on the worker."""
        args: dict[str, Any] = {"dir": dir, "logEnviron": self._log_environ()}
        if timeout:
            args["timeout"] = timeout
        return await self.runRemoteCommand("rmdir", args, **kwargs)

    @deferred_compatible
    async def runRmFile(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109  # Buildbot's keyword: the worker's limit
        **kwargs: Any,
    ) -> Any:
        """Remove the file ``path`` on the worker."""
        args: dict[str, Any] = {"path": path, "logEnviron": self._log_environ()}
        if timeout:
            args["timeout"] = timeout
        return await self.runRemoteCommand("rmfile", args, **kwargs)

    @deferred_compatible
    async def pathExists(self, path: str) -> bool:
        """Whether ``path`` exists on the worker."""
        return bool(
            await self.runRemoteCommand(
                "stat",
                {"file": path, "logEnviron": self._log_environ()},
                abandonOnFailure=False,
                evaluateCommand=lambda cmd: not cmd.didFail(),
            )
        )

    @deferred_compatible
    async def runMkdir(self, _dir: Any, **kwargs: Any) -> Any:
        """Create ``_dir`` and its parents on the worker."""
        return await self.runRemoteCommand(
            "mkdir", {"dir": _dir, "logEnviron": self._log_environ()}, **kwargs
        )

    @deferred_compatible
    async def runGlob(self, path: str, **kwargs: Any) -> Any:
        """The worker paths matching the shell pattern ``path``."""
        return await self.runRemoteCommand(
            "glob",
            {"path": path, "logEnviron": self._log_environ()},
            evaluateCommand=lambda cmd: cmd.updates["files"][-1],
            **kwargs,
        )

    @deferred_compatible
    async def getFileContentFromWorker(
        self, filename: str, abandonOnFailure: bool = False
    ) -> str | None:
        """The text of ``filename`` (relative to the workdir) on the worker; None if it could
        not be read."""
        self._composite_step().checkWorkerHasCommand("uploadFile")
        with tempfile.TemporaryDirectory(prefix="buildyard-upload-") as tmp:
            dest = Path(tmp) / "content"
            basedir = self._composite_step()._runtime().master_basedir
            journal = None if basedir is None else basedir / JOURNAL
            writer = FileWriter(dest, maxsize=None, journal=journal)
            args = {
                "workdir": self._workdir(),
                "workersrc": filename,
                "maxsize": None,
                "blocksize": 32 * 1024,
                "keepstamp": False,
            }
            try:
                failed = await self._run_remote(
                    TransferCommand("uploadFile", args, writer=writer),
                    abandonOnFailure,
                    _did_fail,
                )
            finally:
                writer.discard()
            if failed:
                return None
            return dest.read_bytes().decode("utf-8", errors="replace")

    @deferred_compatible
    async def downloadFileContentToWorker(
        self,
        workerdest: str,
        strfile: str | bytes,
        abandonOnFailure: bool = False,
        mode: int | None = None,
        workdir: str | None = None,
    ) -> FileReader | None:
        """Write ``strfile`` to ``workerdest`` (relative to ``workdir``, by default the
        step's) on the worker; None if that failed."""
        self._composite_step().checkWorkerHasCommand("downloadFile")
        data = strfile.encode() if isinstance(strfile, str) else strfile
        args = {
            "workdir": workdir or self._workdir(),
            "workerdest": workerdest,
            "maxsize": None,
            "mode": mode,
            "blocksize": 32 * 1024,
        }
        async with bytes_reader(data, blocksize=32 * 1024) as reader:
            failed = await self._run_remote(
                TransferCommand("downloadFile", args, reader=reader), abandonOnFailure, _did_fail
            )
        return None if failed else reader
