"""File-system commands: stat, glob, listdir, mkdir, rmdir, rmfile, cpdir (docs/worker-protocol.md).

In-process commands report an OSError as a ``header`` line and ``rc`` = its errno. ``rmdir``
and ``cpdir`` run ``rm -rf`` / ``cp -R -P -p`` like the stock POSIX worker, so their output
arrives as ``header``/``stdout``/``stderr``.
"""

from __future__ import annotations

import errno
import glob
import os
from typing import Any

from buildyard.worker.commands.base import Command, register
from buildyard.worker.commands.runprocess import RunProcess


def _errno(exc: OSError) -> int:
    return exc.errno if exc.errno is not None else errno.EIO


class _FsCommand(Command):
    """An in-process command; :meth:`act` may raise OSError."""

    def act(self) -> None:
        raise NotImplementedError(type(self).__name__)

    async def run(self) -> None:
        try:
            self.act()
        except OSError as exc:
            self.header(f"{self.names[0]}: {exc}")
            self.output.update("rc", _errno(exc))
            return
        self.output.update("rc", 0)

    def path(self, value: Any) -> str:
        return os.path.join(self.basedir, str(value))


@register
class StatFile(_FsCommand):
    names = ("stat",)
    required_args = ("path",)

    def act(self) -> None:
        st = os.stat(self.path(self.args["path"]))
        self.output.update(
            "stat",
            [
                st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid,
                st.st_gid, st.st_size, st.st_atime, st.st_mtime, st.st_ctime,
            ],
        )  # fmt: skip


@register
class GlobPath(_FsCommand):
    names = ("glob",)
    required_args = ("path",)

    def act(self) -> None:
        self.output.update("files", glob.glob(self.path(self.args["path"]), recursive=True))


@register
class ListDir(_FsCommand):
    names = ("listdir",)
    required_args = ("path",)

    def act(self) -> None:
        self.output.update("files", os.listdir(self.path(self.args["path"])))


@register
class RemoveFile(_FsCommand):
    names = ("rmfile",)
    required_args = ("path",)

    def act(self) -> None:
        os.remove(self.path(self.args["path"]))


@register
class MakeDirectory(_FsCommand):
    names = ("mkdir",)
    required_args = ("paths",)

    def act(self) -> None:
        for path in self.args["paths"]:
            os.makedirs(self.path(path), exist_ok=True)


class _ProcessCommand(Command):
    """Runs one subprocess per path; ``rc`` is the last non-zero one (0 if all succeeded)."""

    process: RunProcess | None = None

    async def run_one(self, argv: list[str]) -> int:
        args = self.args
        timeout = args.get("timeout", 120)
        max_time = args.get("maxTime")
        self.process = RunProcess(
            argv=argv,
            display=" ".join(argv),
            workdir=str(self.basedir),
            env=dict(os.environ),
            output=self.output,
            timeout=None if timeout is None else float(timeout),
            max_time=None if max_time is None else float(max_time),
            log_environ=bool(args.get("logEnviron", True)),
        )
        if self.interrupted:
            return -1
        return await self.process.run()

    def interrupt(self, why: str) -> None:
        super().interrupt(why)
        if self.process is not None:
            self.process.kill(why)


@register
class RemoveDirectory(_ProcessCommand):
    names = ("rmdir",)
    required_args = ("paths",)

    async def run(self) -> None:
        paths = self.args["paths"]
        if isinstance(paths, str):
            paths = [paths]
        rc = 0
        for path in paths:
            target = os.path.join(self.basedir, str(path))
            one = await self.run_one(["rm", "-rf", target])
            if one != 0 and not self.interrupted:
                # the stock worker retries once after making everything writable
                await self.run_one(["chmod", "-Rf", "u+rwx", target])
                one = await self.run_one(["rm", "-rf", target])
            if one != 0:
                rc = one
            if self.interrupted:
                break
        self.output.update("rc", rc)


@register
class CopyDirectory(_ProcessCommand):
    names = ("cpdir",)
    required_args = ("from_path", "to_path")

    async def run(self) -> None:
        src = os.path.join(self.basedir, str(self.args["from_path"]))
        dst = os.path.join(self.basedir, str(self.args["to_path"]))
        rc = await self.run_one(["cp", "-R", "-P", "-p", src, dst])
        self.output.update("rc", rc)
