"""The master's end of file transfers (docs/worker-protocol.md, "File transfers").

A transfer is a command whose data flows through extra worker requests keyed by its command id:
``update_upload_file_write``/``_close``/``_utime`` and ``update_upload_directory_write``/``_unpack``
bring data to the master; ``update_read_file``/``_close`` take it to the worker. Unlike Buildbot
4.3.0 we answer ``update_read_file`` with the bytes (its downloads arrive empty) and apply
``update_upload_file_utime`` with the given times (its keepstamp uploads fail).

Uploads go to a temporary file beside the destination (``.NAME.RANDOM.part``) and are renamed
onto it at the end, so a failed transfer never leaves half a file under the real name. A step
that fails, is cancelled or loses its worker removes its temporary file; so that one left by a
master that was killed goes too, each temporary file is named in a journal in the master's base
directory (:data:`JOURNAL`, one entry per transfer in progress) while it exists, and the master
removes what the journal names when it starts again (:func:`remove_interrupted_uploads`).
File IO runs in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tarfile
from pathlib import Path
from typing import Any, BinaryIO

import structlog

from buildyard.protocol.peer import RequestFailed

log = structlog.get_logger(__name__)

# the journal of uploads in progress, in the master's base directory: one file per transfer,
# holding the path of its temporary file
JOURNAL = "uploads-in-progress"
_SUFFIX = ".part"


class FileWriter:
    """Receives an uploaded file (or a directory's tarball) from the worker.

    With ``journal`` (the master's journal directory), the temporary file is named there from
    before it is created until it is renamed or removed.
    """

    def __init__(
        self,
        dest: Path,
        *,
        maxsize: int | None,
        unpack_into: Path | None = None,
        journal: Path | None = None,
    ) -> None:
        self.dest = dest
        self.maxsize = maxsize
        self.unpack_into = unpack_into
        self.written = 0
        dest.parent.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(8)
        self._tmp = dest.parent.absolute() / f".{dest.name}.{token}{_SUFFIX}"
        self._entry: Path | None = None
        if journal is not None:
            journal.mkdir(parents=True, exist_ok=True)
            self._entry = journal / token
            self._entry.write_text(str(self._tmp))
        try:
            fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except BaseException:
            self._forget()
            raise
        self._file: BinaryIO | None = os.fdopen(fd, "wb")

    def _forget(self) -> None:
        """The temporary file is gone (renamed or removed): drop its journal entry."""
        if self._entry is not None:
            self._entry.unlink(missing_ok=True)
            self._entry = None

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
        self._forget()

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
        try:
            await asyncio.to_thread(_extract, self._tmp, target)
        finally:
            self._forget()

    def discard(self) -> None:
        """Remove what is left of the transfer (nothing once it completed)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp.unlink(missing_ok=True)
        self._forget()


def remove_interrupted_uploads(journal: Path) -> list[Path]:
    """Remove the temporary files that the journal names (uploads a killed master left), and
    their entries; returns the files removed. Only files named as :class:`FileWriter` names
    them are removed, whatever an entry says."""
    removed: list[Path] = []
    if not journal.is_dir():
        return removed
    for entry in sorted(journal.iterdir()):
        with contextlib.suppress(OSError, UnicodeDecodeError):
            tmp = Path(entry.read_text().strip())
            if tmp.is_absolute() and tmp.name.startswith(".") and tmp.name.endswith(_SUFFIX):
                try:
                    tmp.unlink()
                except FileNotFoundError:
                    pass
                else:
                    removed.append(tmp)
                    log.info("interrupted_upload_removed", path=str(tmp))
        with contextlib.suppress(OSError):
            entry.unlink(missing_ok=True)
    return removed


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
