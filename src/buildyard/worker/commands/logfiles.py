"""Tailing the files of a shell command's ``logfiles`` into ``log`` updates.

docs/worker-protocol.md, "Commands" and "Updates".

A watcher is made before the process starts and remembers the file's (ctime, mtime, size) then:
until that changes, the file is an old one and nothing is sent. Once it changes the file is read
from its start, or from the size it had then with ``follow``; later polls send what was
appended. The last poll runs when the process has ended, so nothing written before the end is
lost. A file deleted before it changed is forgotten, so the one that replaces it is read whole.
"""

from __future__ import annotations

import asyncio
import codecs
import os
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

from buildyard.worker.commands.output import CommandOutput

POLL_INTERVAL = 1.0
READ_SIZE = 64 * 1024

Stat = tuple[float, float, int]


def parse_logfiles(value: Any, workdir: str) -> list[tuple[str, str, bool]]:
    """(name, path, follow) for each entry: a filename, or ``{"filename": ..., "follow": ...}``."""
    if not value:
        return []
    if not isinstance(value, Mapping):
        raise ValueError(f"logfiles must be a map of name to file, not {type(value).__name__}")
    entries = []
    for name, spec in value.items():
        filename, follow = spec, False
        if isinstance(spec, Mapping):
            if "filename" not in spec:
                raise ValueError(f"logfiles[{name!r}] has no 'filename'")
            filename, follow = spec["filename"], bool(spec.get("follow", False))
        entries.append((str(name), os.path.join(workdir, str(filename)), follow))
    return entries


class LogFileWatcher:
    def __init__(
        self,
        name: str,
        path: str,
        *,
        follow: bool,
        output: CommandOutput,
        on_data: Callable[[], None],
    ) -> None:
        self.name = name
        self.path = path
        self.follow = follow
        self.output = output
        self._on_data = on_data
        self._old: Stat | None = self._stat()
        self._file: BinaryIO | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def _stat(self) -> Stat | None:
        try:
            s = os.stat(self.path)
        except OSError:
            return None
        return (s.st_ctime, s.st_mtime, s.st_size)

    def _open(self) -> BinaryIO | None:
        """The file once it changed since the command started, positioned where to read."""
        now = self._stat()
        if now == self._old:
            return None  # not written since the command started
        if now is None:  # deleted: whatever comes next is a new file
            self._old = None
            return None
        try:
            file = open(self.path, "rb")  # noqa: SIM115 - kept open between polls
        except OSError:
            return None
        if self.follow and self._old is not None and self._old[2] <= now[2]:
            file.seek(self._old[2])  # appended since the start (the stock worker loses the
            # first append: it seeks to the size the file has when the change is seen)
        return file

    async def poll(self) -> None:
        if self._file is None:
            self._file = self._open()
            if self._file is None:
                return
        while data := self._file.read(READ_SIZE):
            self._on_data()
            self.output.log(self.name, self._decoder.decode(data))
            await self.output.drain()

    async def watch(self) -> None:
        """Poll until cancelled."""
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            await self.poll()

    async def stop(self) -> None:
        """The process ended: send what is left (then :meth:`close`)."""
        await self.poll()
        if self._file is not None:
            self.output.log(self.name, self._decoder.decode(b"", final=True))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
