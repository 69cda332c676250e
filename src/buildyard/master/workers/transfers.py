"""The master's end of file transfers (docs/worker-protocol.md, "File transfers").

A transfer is a command whose data flows through extra worker requests keyed by its command id:
``update_upload_file_write``/``_close``/``_utime`` and ``update_upload_directory_write``/``_unpack``
bring data to the master; ``update_read_file``/``_close`` take it to the worker. Unlike Buildbot
4.3.0 we answer ``update_read_file`` with the bytes (its downloads arrive empty) and apply
``update_upload_file_utime`` with the given times (its keepstamp uploads fail).

Uploads go to a temporary file beside the destination and are renamed onto it at the end, so a
failed transfer never leaves half a file under the real name. File IO runs in a thread.
"""

from __future__ import annotations

import asyncio
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

from buildyard.protocol.peer import RequestFailed


class FileWriter:
    """Receives an uploaded file (or a directory's tarball) from the worker."""

    def __init__(self, dest: Path, *, maxsize: int | None, unpack_into: Path | None = None) -> None:
        self.dest = dest
        self.maxsize = maxsize
        self.unpack_into = unpack_into
        self.written = 0
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        self._tmp = Path(tmp)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")

    async def write(self, data: Any) -> None:
        if not isinstance(data, bytes):
            raise RequestFailed("upload data must be bytes")
        if self._file is None:
            raise RequestFailed("upload already closed")
        if self.maxsize is not None:
            data = data[: max(0, self.maxsize - self.written)]
        self.written += len(data)
        await asyncio.to_thread(self._file.write, data)

    async def close(self) -> None:
        """End of a file upload: the data takes the destination's name."""
        if self._file is None:
            return
        file, self._file = self._file, None
        await asyncio.to_thread(file.close)
        await asyncio.to_thread(os.replace, self._tmp, self.dest)

    async def utime(self, access_time: Any, modified_time: Any) -> None:
        if not all(isinstance(t, (int, float)) for t in (access_time, modified_time)):
            raise RequestFailed("access_time and modified_time must be numbers")
        await asyncio.to_thread(os.utime, self.dest, (access_time, modified_time))

    async def unpack(self) -> None:
        """End of a directory upload: extract the tarball into ``unpack_into``."""
        if self._file is not None:
            file, self._file = self._file, None
            await asyncio.to_thread(file.close)
        target = self.unpack_into
        if target is None:
            raise RequestFailed("this transfer is not a directory upload")
        await asyncio.to_thread(_extract, self._tmp, target)

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp.unlink(missing_ok=True)


def _no_links(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """The data filter (no absolute paths, no devices, nothing outside ``dest``), and no links at
    all: chains of symlinks have slipped past the data filter in Python releases before
    3.11.13, and a worker's upload has no need of them. Links are skipped."""
    if member.issym() or member.islnk():
        return None
    return tarfile.data_filter(member, dest)


def _extract(archive: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    try:
        # "r:*" reads plain, gz and bz2
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(target, filter=_no_links)
    finally:
        archive.unlink(missing_ok=True)


class FileReader:
    """Serves a master file to the worker, block by block."""

    def __init__(self, source: Path, *, blocksize: int) -> None:
        self._file: BinaryIO | None = source.open("rb")
        self.blocksize = blocksize

    async def read(self, length: Any) -> bytes:
        if not isinstance(length, int) or length < 0:
            raise RequestFailed("length must be a non-negative integer")
        if self._file is None:
            return b""
        # the worker asks; the master decides how much it loads at once
        return await asyncio.to_thread(self._file.read, min(length, self.blocksize))

    async def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            await asyncio.to_thread(file.close)
