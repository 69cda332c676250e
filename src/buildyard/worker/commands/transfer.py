"""File transfers: upload_file, upload_directory, download_file (docs/worker-protocol.md).

Data moves in blocks of ``blocksize``; each block is one request the master must answer before
the next goes (flow control). ``maxsize`` caps what is sent or written: reaching it with data
left ends the transfer with rc 1 and the stock worker's message. An interrupt stops the
transfer at the next block with rc 1. File IO runs in a thread.
"""

from __future__ import annotations

import asyncio
import os
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Literal

from buildyard.worker.commands.base import Command, register


def _truncated(path: str) -> str:
    return f"Maximum filesize reached, truncating file '{path}'\n"


class _Transfer(Command):
    def _limit(self, done: int) -> int:
        """How much the next block may carry."""
        blocksize = int(self.args["blocksize"])
        maxsize = self.args["maxsize"]
        return blocksize if maxsize is None else min(blocksize, int(maxsize) - done)

    async def _send_file(self, file: BinaryIO, op: str, path: str) -> int:
        """Send ``file`` block by block as ``op`` requests; the rc."""
        sent = 0
        while not self.interrupted:
            size = self._limit(sent)
            if size <= 0:
                more = await asyncio.to_thread(file.read, 1)
                if more:
                    self.output.text("stderr", _truncated(path))
                    return 1
                return 0
            data = await asyncio.to_thread(file.read, size)
            if not data:
                return 0
            await self.output.call(op, args=data)
            sent += len(data)
        return 1


@register
class WorkerFileUploadCommand(_Transfer):
    names = ("upload_file", "uploadFile")
    required_args = ("path", "blocksize", "maxsize")

    async def run(self) -> None:
        path = str(self.args["path"])
        self.header(f"sending {path}")
        try:
            # the times before reading, which may refresh atime
            times = await asyncio.to_thread(os.stat, path)
            file = await asyncio.to_thread(open, path, "rb")
        except OSError:
            self.output.text("stderr", f"Cannot open file '{path}' for upload\n")
            await self.output.call("update_upload_file_close")
            self.output.update("rc", 1)
            return
        try:
            rc = await self._send_file(file, "update_upload_file_write", path)
        finally:
            file.close()
        await self.output.call("update_upload_file_close")
        if self.args.get("keepstamp") and rc == 0:
            await self.output.call(
                "update_upload_file_utime",
                access_time=times.st_atime,
                modified_time=times.st_mtime,
            )
        self.output.update("rc", rc)


_COMPRESSIONS = (None, "gz", "bz2")


def _make_tar(directory: str, compress: Any, archive: Path, stop: Callable[[], bool]) -> None:
    """Write ``directory``'s tarball to ``archive``; stops early when ``stop()`` says so."""
    mode: Literal["w", "w:gz", "w:bz2"] = (
        "w:gz" if compress == "gz" else "w:bz2" if compress == "bz2" else "w"
    )

    def unless_stopped(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if stop():
            raise InterruptedError("interrupted while packing")
        return member

    with tarfile.open(archive, mode) as tar:
        tar.add(directory, arcname="", filter=unless_stopped)


@register
class WorkerDirectoryUploadCommand(_Transfer):
    names = ("upload_directory", "uploadDirectory")
    required_args = ("path", "blocksize", "maxsize", "compress")

    async def run(self) -> None:
        path = str(self.args["path"])
        compress = self.args["compress"]
        if compress not in _COMPRESSIONS:
            self.output.text("stderr", f"unknown compression {compress!r}\n")
            self.output.update("rc", 1)
            return
        self.header(f"sending {path}")
        if not await asyncio.to_thread(os.path.isdir, path):
            self.output.text("stderr", f"Cannot read directory '{path}' for upload\n")
            self.output.update("rc", 1)
            return
        fd, name = tempfile.mkstemp(prefix="buildyard-upload-", suffix=".tar")
        os.close(fd)
        archive = Path(name)
        try:  # the tarball goes, whatever happens: a failed or interrupted packing included
            try:
                await asyncio.to_thread(
                    _make_tar, path, compress, archive, lambda: self.interrupted
                )
            except OSError as exc:  # an unreadable file, or an interrupt while packing
                self.output.text("stderr", f"Cannot pack directory '{path}': {exc}\n")
                self.output.update("rc", 1)
                return
            file = await asyncio.to_thread(archive.open, "rb")
            try:
                rc = await self._send_file(file, "update_upload_directory_write", path)
            finally:
                file.close()
            if rc == 0:
                await self.output.call("update_upload_directory_unpack")
        finally:
            await asyncio.to_thread(archive.unlink, missing_ok=True)
        self.output.update("rc", rc)


@register
class WorkerFileDownloadCommand(_Transfer):
    names = ("download_file", "downloadFile")
    required_args = ("path", "blocksize", "maxsize", "mode")

    async def run(self) -> None:
        path = str(self.args["path"])
        mode = self.args["mode"]
        try:
            await asyncio.to_thread(os.makedirs, os.path.dirname(path) or ".", exist_ok=True)
            file = await asyncio.to_thread(open, path, "wb")
            if mode is not None:
                await asyncio.to_thread(os.chmod, path, int(mode))
        except OSError as exc:
            self.output.text("stderr", f"Cannot open file '{path}' for download: {exc}\n")
            await self.output.call("update_read_file_close")
            self.output.update("rc", 1)
            return
        rc = 1
        written = 0
        try:
            while not self.interrupted:
                size = self._limit(written)
                if size <= 0:
                    more = await self.output.call("update_read_file", length=1)
                    if more:
                        self.output.text("stderr", _truncated(path))
                        break
                    rc = 0
                    break
                data = await self.output.call("update_read_file", length=size)
                if not data:
                    rc = 0
                    break
                await asyncio.to_thread(file.write, data)
                written += len(data)
        finally:
            file.close()
        await self.output.call("update_read_file_close")
        self.output.update("rc", rc)
