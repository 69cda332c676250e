"""Steps that move files between the master and the worker (Buildbot's
``buildbot.steps.transfer``).

Uploads: ``FileUpload`` (one file), ``DirectoryUpload`` (a tree, as a tarball unpacked into
``masterdest``), ``MultipleFileUpload`` (several files or trees, optionally globbed, into the
directory ``masterdest``). Downloads: ``FileDownload`` (a master file), ``StringDownload`` (a
string), ``JSONStringDownload`` (an object as JSON) and ``JSONPropertiesDownload`` (the build's
properties and source stamps as JSON).

Worker paths are relative to the step's ``workdir`` (the build's by default). Master paths may
start with ``~`` and, when relative, are relative to the master's base directory.

A transfer's result is its command's: a missing source, or reaching ``maxsize`` (the worker says
``Maximum filesize reached, truncating file ...`` in the ``stdio`` log), is a FAILURE. As in
Buildbot, a file upload that fails leaves nothing at ``masterdest`` (the partial file is
removed). A directory upload that fails removes ``masterdest`` only if the step created it:
Buildbot removes the directory whatever it held before, which we do not do to a user's files.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from buildyard.common.awaitables import resolve
from buildyard.common.errors import config_error
from buildyard.master.model.results import Results
from buildyard.master.model.sourcestamps import SourceStamp
from buildyard.master.steps.base import BuildStep
from buildyard.master.steps.remotecommand import RemoteCommand
from buildyard.master.steps.worker import CompositeStepMixin, TransferCommand, bytes_reader
from buildyard.master.workers.transfers import JOURNAL, FileReader, FileWriter

__all__ = [
    "DirectoryUpload",
    "FileDownload",
    "FileUpload",
    "JSONPropertiesDownload",
    "JSONStringDownload",
    "MultipleFileUpload",
    "StringDownload",
]

_COMPRESSIONS = (None, "gz", "bz2")


def _check_mode(mode: object, message: str = "mode must be an integer or None") -> None:
    if not isinstance(mode, int | None):
        config_error(message)


def _check_compress(compress: object) -> None:
    if compress not in _COMPRESSIONS:
        config_error("'compress' must be one of None, 'gz', or 'bz2'")


def _missing_arguments(*values: object, count: int = 3) -> None:
    # Buildbot's steps take their first arguments positionally and say so when they are missing
    if any(v is None for v in values):
        config_error(f"__init__() takes at least {count} arguments")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _remove_file(path: Path) -> None:
    if not path.is_dir():
        path.unlink(missing_ok=True)


def _expanded(path: object) -> str:
    return os.path.expanduser(str(path))


def _last_name(path: str) -> str:
    """The last component of a directory path (``a/b/`` gives ``b``)."""
    return os.path.basename(os.path.normpath(path))


class _TransferBuildStep(BuildStep):
    """What the transfer steps share: the ``stdio`` log, the transfer commands, interrupts."""

    haltOnFailure = True
    flunkOnFailure = True

    def __init__(self, workdir: str | None = None, **kwargs: Any) -> None:
        super().__init__(workdir=workdir, **kwargs)

    def _master_path(self, path: str) -> Path:
        """``path`` on the master: ``~`` expanded, relative to the master's base directory."""
        expanded = Path(os.path.expanduser(path))
        if expanded.is_absolute():
            return expanded
        # TODO: BuildRuntime.master_basedir once the build passes it; Buildbot's master runs in
        # its base directory, so the process's directory is the fallback
        basedir = getattr(self._runtime(), "master_basedir", None)
        return Path(basedir or os.getcwd()) / expanded

    def _journal(self) -> Path | None:
        """The master's journal of uploads in progress (None outside a master)."""
        basedir = getattr(self._runtime(), "master_basedir", None)
        return None if basedir is None else Path(basedir) / JOURNAL

    def _step_workdir(self) -> str:
        return str(self.workdir or self._runtime().workdir)

    async def _stdio(self) -> None:
        # Buildbot's attribute name, which subclasses use
        self.stdio_log = self.logs.get("stdio") or await self.addLog("stdio")

    def _status_command(
        self,
        name: str,
        args: dict[str, Any],
        *,
        writer: FileWriter | None = None,
        reader: FileReader | None = None,
    ) -> RemoteCommand:
        cmd: RemoteCommand
        if writer is None and reader is None:
            cmd = RemoteCommand(name, args)
        else:
            cmd = TransferCommand(name, args, writer=writer, reader=reader)
        cmd.useLog(self.stdio_log, False, "stdio")
        return cmd

    async def runTransferCommand(self, cmd: RemoteCommand, writer: Any = None) -> Results:
        """Run a transfer command; its result (rc 0: SUCCESS, else FAILURE). ``writer`` is
        Buildbot's argument and unused: the callers clean up after a failed upload."""
        await self.runCommand(cmd)
        return cmd.results()

    async def _upload_file(
        self,
        source: str,
        dest: Path,
        *,
        maxsize: int | None,
        blocksize: int,
        keepstamp: bool,
        mode: int | None,
    ) -> Results:
        writer = FileWriter(dest, maxsize=maxsize, journal=self._journal())
        args = {
            "workdir": self._step_workdir(),
            "workersrc": source,
            "maxsize": maxsize,
            "blocksize": blocksize,
            "keepstamp": bool(keepstamp),
        }
        try:
            results = await self.runTransferCommand(
                self._status_command("uploadFile", args, writer=writer)
            )
        finally:
            writer.discard()
        if results >= Results.FAILURE:
            # the worker closed the file before failing: what arrived is not the file
            await asyncio.to_thread(_remove_file, dest)
        elif mode is not None:
            await asyncio.to_thread(os.chmod, dest, mode)
        return results

    async def _upload_directory(
        self,
        source: str,
        dest: Path,
        *,
        maxsize: int | None,
        blocksize: int,
        compress: str | None,
    ) -> Results:
        created = not await asyncio.to_thread(dest.exists)
        writer = FileWriter(
            dest / ".upload.tar", maxsize=maxsize, unpack_into=dest, journal=self._journal()
        )
        args = {
            "workdir": self._step_workdir(),
            "workersrc": source,
            "maxsize": maxsize,
            "blocksize": blocksize,
            "compress": compress,
        }
        results = Results.EXCEPTION
        try:
            results = await self.runTransferCommand(
                self._status_command("uploadDirectory", args, writer=writer)
            )
        finally:
            writer.discard()
            if results >= Results.FAILURE and created:
                await asyncio.to_thread(_remove, dest)
        return results

    async def _download(
        self,
        reader: FileReader,
        workerdest: str,
        *,
        maxsize: int | None,
        blocksize: int,
        mode: int | None,
    ) -> Results:
        args = {
            "workdir": self._step_workdir(),
            "workerdest": workerdest,
            "maxsize": maxsize,
            "blocksize": blocksize,
            "mode": mode,
        }
        return await self.runTransferCommand(
            self._status_command("downloadFile", args, reader=reader)
        )

    async def interrupt(self, reason: str) -> None:
        await self.addCompleteLog("interrupt", str(reason))
        await super().interrupt(reason)


class FileUpload(_TransferBuildStep):
    """Copy the worker file ``workersrc`` to ``masterdest`` on the master."""

    name = "upload"
    renderables: ClassVar[Sequence[str]] = (
        *BuildStep.renderables,
        "masterdest",
        "url",
        "urlText",
        "workersrc",
    )

    def __init__(
        self,
        workersrc: Any = None,
        masterdest: Any = None,
        workdir: str | None = None,
        maxsize: int | None = None,
        blocksize: int = 256 * 1024,
        mode: int | None = None,
        keepstamp: bool = False,
        url: Any = None,
        urlText: Any = None,
        **kwargs: Any,
    ) -> None:
        _missing_arguments(workersrc, masterdest)
        super().__init__(workdir=workdir, **kwargs)
        self.workersrc = workersrc
        self.masterdest = masterdest
        self.maxsize = maxsize
        self.blocksize = blocksize
        _check_mode(mode)
        self.mode = mode
        self.keepstamp = keepstamp
        self.url = url
        self.urlText = urlText

    async def run(self) -> int:
        self.checkWorkerHasCommand("uploadFile")
        await self._stdio()
        source = str(self.workersrc)
        masterdest = _expanded(self.masterdest)
        if self.description is None:
            self.description = [f"uploading {os.path.basename(source)}"]
        if self.descriptionDone is None:
            self.descriptionDone = self.description
        await self.updateSummary()
        if self.url is not None:
            text = self.urlText if self.urlText is not None else os.path.basename(masterdest)
            await self.addURL(text, self.url)
        return await self._upload_file(
            source,
            self._master_path(masterdest),
            maxsize=self.maxsize,
            blocksize=self.blocksize,
            keepstamp=self.keepstamp,
            mode=self.mode,
        )


class DirectoryUpload(_TransferBuildStep):
    """Copy the contents of the worker directory ``workersrc`` into ``masterdest``."""

    name = "upload"
    renderables: ClassVar[Sequence[str]] = (
        *BuildStep.renderables,
        "workersrc",
        "masterdest",
        "url",
        "urlText",
    )

    def __init__(
        self,
        workersrc: Any = None,
        masterdest: Any = None,
        workdir: str | None = None,
        maxsize: int | None = None,
        blocksize: int = 16 * 1024,
        compress: str | None = None,
        url: Any = None,
        urlText: Any = None,
        **kwargs: Any,
    ) -> None:
        _missing_arguments(workersrc, masterdest)
        super().__init__(workdir=workdir, **kwargs)
        self.workersrc = workersrc
        self.masterdest = masterdest
        self.maxsize = maxsize
        self.blocksize = blocksize
        _check_compress(compress)
        self.compress = compress
        self.url = url
        self.urlText = urlText

    async def run(self) -> int:
        self.checkWorkerHasCommand("uploadDirectory")
        await self._stdio()
        source = str(self.workersrc)
        masterdest = _expanded(self.masterdest)
        self.descriptionDone = f"uploading {os.path.basename(source)}"
        if self.url is not None:
            text = self.urlText
            if text is None:
                text = _last_name(masterdest)
            await self.addURL(text, self.url)
        return await self._upload_directory(
            source,
            self._master_path(masterdest),
            maxsize=self.maxsize,
            blocksize=self.blocksize,
            compress=self.compress,
        )


class MultipleFileUpload(_TransferBuildStep, CompositeStepMixin):
    """Copy each of ``workersrcs`` (files or directories; shell patterns with ``glob=True``)
    into the master directory ``masterdest``, under its base name; stops at the first that
    fails."""

    name = "upload"
    logEnviron = False
    renderables: ClassVar[Sequence[str]] = (
        *BuildStep.renderables,
        "workersrcs",
        "masterdest",
        "url",
        "urlText",
    )

    def __init__(
        self,
        workersrcs: Any = None,
        masterdest: Any = None,
        workdir: str | None = None,
        maxsize: int | None = None,
        blocksize: int = 16 * 1024,
        glob: bool = False,
        mode: int | None = None,
        compress: str | None = None,
        keepstamp: bool = False,
        url: Any = None,
        urlText: Any = None,
        **kwargs: Any,
    ) -> None:
        _missing_arguments(workersrcs, masterdest)
        super().__init__(workdir=workdir, **kwargs)
        self.workersrcs = workersrcs
        self.masterdest = masterdest
        self.maxsize = maxsize
        self.blocksize = blocksize
        _check_mode(mode)
        self.mode = mode
        _check_compress(compress)
        self.compress = compress
        self.glob = glob
        self.keepstamp = keepstamp
        self.url = url
        self.urlText = urlText

    async def uploadFile(self, source: str, masterdest: str) -> Results:
        return await self._upload_file(
            source,
            self._master_path(masterdest),
            maxsize=self.maxsize,
            blocksize=self.blocksize,
            keepstamp=self.keepstamp,
            mode=self.mode,
        )

    async def uploadDirectory(self, source: str, masterdest: str) -> Results:
        return await self._upload_directory(
            source,
            self._master_path(masterdest),
            maxsize=self.maxsize,
            blocksize=self.blocksize,
            compress=self.compress,
        )

    async def startUpload(self, source: str, destdir: str) -> Results:
        masterdest = os.path.join(destdir, os.path.basename(source))
        workdir = self._step_workdir()
        cmd = self._status_command("stat", {"file": source, "workdir": workdir})
        await self.runCommand(cmd)
        if cmd.rc != 0:
            await self.addCompleteLog("stderr", f"File {workdir}/{source} not available at worker")
            return Results.FAILURE
        mode = cmd.updates["stat"][-1][stat.ST_MODE]
        if stat.S_ISDIR(mode):
            result = await self.uploadDirectory(source, masterdest)
        elif stat.S_ISREG(mode):
            result = await self.uploadFile(source, masterdest)
        else:
            await self.addCompleteLog(
                "stderr", f"{source} is neither a regular file, nor a directory"
            )
            return Results.FAILURE
        await _maybe_await(self.uploadDone(result, source, masterdest))
        return result

    def uploadDone(self, result: int, source: str, masterdest: str) -> Any:
        """Called after each upload (a subclass's hook; may be async)."""
        return None

    async def allUploadsDone(self, result: int, sources: list[str], masterdest: str) -> None:
        """Called once all uploads ended (a subclass's hook); adds the step's URL."""
        if self.url is not None:
            text = self.urlText
            if text is None:
                text = _last_name(masterdest)
            await self.addURL(text, self.url)

    async def run(self) -> int:
        self.checkWorkerHasCommand("uploadDirectory")
        self.checkWorkerHasCommand("uploadFile")
        self.checkWorkerHasCommand("stat")
        await self._stdio()
        masterdest = _expanded(self.masterdest)
        sources = self.workersrcs if isinstance(self.workersrcs, list) else [self.workersrcs]
        if not sources:
            return Results.SKIPPED
        if self.glob:
            workdir = self._step_workdir()
            found: list[str] = []
            for pattern in sources:
                matches = await self.runGlob(
                    os.path.join(workdir, str(pattern)), abandonOnFailure=False
                )
                found.extend(self.workerPathToMasterPath(p) for p in matches)
            sources = found
        self.descriptionDone = [
            "uploading",
            str(len(sources)),
            "file" if len(sources) == 1 else "files",
        ]
        result = Results.SKIPPED if not sources else Results.SUCCESS
        for source in sources:
            if await self.startUpload(str(source), masterdest) == Results.FAILURE:
                result = Results.FAILURE
                break
        await _maybe_await(self.allUploadsDone(result, sources, masterdest))
        return result


async def _maybe_await(value: Any) -> Any:
    return await resolve(value)


class FileDownload(_TransferBuildStep):
    """Copy the master file ``mastersrc`` to ``workerdest`` on the worker."""

    name = "download"
    renderables: ClassVar[Sequence[str]] = (*BuildStep.renderables, "mastersrc", "workerdest")

    def __init__(
        self,
        mastersrc: Any,
        workerdest: Any = None,
        workdir: str | None = None,
        maxsize: int | None = None,
        blocksize: int = 16 * 1024,
        mode: int | None = None,
        **kwargs: Any,
    ) -> None:
        _missing_arguments(workerdest)
        super().__init__(workdir=workdir, **kwargs)
        self.mastersrc = mastersrc
        self.workerdest = workerdest
        self.maxsize = maxsize
        self.blocksize = blocksize
        _check_mode(mode)
        self.mode = mode

    async def run(self) -> int:
        self.checkWorkerHasCommand("downloadFile")
        await self._stdio()
        source = _expanded(self.mastersrc)
        workerdest = str(self.workerdest)
        self.descriptionDone = ["downloading to", os.path.basename(workerdest)]
        try:
            reader = FileReader(self._master_path(source), blocksize=self.blocksize)
        except OSError:
            await self.addCompleteLog("stderr", f"File {source!r} not available at master")
            return Results.FAILURE
        try:
            return await self._download(
                reader, workerdest, maxsize=self.maxsize, blocksize=self.blocksize, mode=self.mode
            )
        finally:
            await reader.close()


class StringDownload(_TransferBuildStep):
    """Write the string ``s`` to ``workerdest`` on the worker."""

    name = "string_download"
    renderables: ClassVar[Sequence[str]] = (*BuildStep.renderables, "workerdest", "s")

    def __init__(
        self,
        s: Any,
        workerdest: Any = None,
        workdir: str | None = None,
        maxsize: int | None = None,
        blocksize: int = 16 * 1024,
        mode: int | None = None,
        **kwargs: Any,
    ) -> None:
        _missing_arguments(workerdest)
        super().__init__(workdir=workdir, **kwargs)
        self.s = s
        self.workerdest = workerdest
        self.maxsize = maxsize
        self.blocksize = blocksize
        _check_mode(mode, f"StringDownload step's mode must be an integer or None, got '{mode}'")
        self.mode = mode

    async def run(self) -> int:
        self.checkWorkerHasCommand("downloadFile")
        await self._stdio()
        workerdest = str(self.workerdest)
        self.descriptionDone = ["downloading to", os.path.basename(workerdest)]
        data: object = self.s.encode() if isinstance(self.s, str) else self.s
        if not isinstance(data, bytes):
            raise TypeError(f"{type(self).__name__}: s must be a string, not {type(data).__name__}")
        async with bytes_reader(data, blocksize=self.blocksize) as reader:
            return await self._download(
                reader, workerdest, maxsize=self.maxsize, blocksize=self.blocksize, mode=self.mode
            )


class JSONStringDownload(StringDownload):
    """Write the object ``o`` as JSON to ``workerdest`` on the worker."""

    name = "json_download"

    def __init__(self, o: Any, workerdest: Any = None, **kwargs: Any) -> None:
        _missing_arguments(workerdest)
        kwargs.pop("s", None)
        super().__init__(s=o, workerdest=workerdest, **kwargs)

    async def run(self) -> int:
        self.s = json.dumps(self.s)
        return await super().run()


def _stamp_dict(ss: SourceStamp) -> dict[str, Any]:
    """A stamp as Buildbot's ``asDict`` gives it (the arguments that find the stamp)."""
    patch = ss.patch
    body = None if patch is None else patch.body
    return {
        "branch": ss.branch,
        "revision": ss.revision,
        "repository": ss.repository,
        "project": ss.project,
        "codebase": ss.codebase,
        "patch_level": None if patch is None else patch.level,
        # JSON has no bytes: the patch as text
        "patch_body": body.decode("utf-8", errors="replace") if body is not None else None,
        "patch_subdir": None if patch is None else patch.subdir,
        "patch_author": None if patch is None else patch.author,
        "patch_comment": None if patch is None else patch.comment,
    }


class JSONPropertiesDownload(StringDownload):
    """Write the build's properties and source stamps as JSON to ``workerdest``:
    ``{"properties": {name: value}, "sourcestamps": [{branch, revision, ...}]}``."""

    name = "json_properties_download"

    def __init__(self, workerdest: Any = None, **kwargs: Any) -> None:
        _missing_arguments(workerdest, count=2)
        kwargs.pop("s", None)
        super().__init__(s=None, workerdest=workerdest, **kwargs)

    async def run(self) -> int:
        props = {name: value for name, value, _ in self.getProperties().asList()}
        build = self._runtime().build
        stamps = getattr(build, "sourcestamps", None) or []
        self.s = json.dumps(
            {"properties": props, "sourcestamps": [_stamp_dict(ss) for ss in stamps]}
        )
        return await super().run()
