"""File transfers: upload_file, upload_directory, download_file (spec section 11).

Not implemented yet: they are registered (the master sees them in ``worker_commands``) and
their args are checked, but running one ends with a NotImplementedError.
"""

from __future__ import annotations

from buildyard.worker.commands.base import Command, register

MISSING = "file transfers on buildyard-worker are not implemented yet"


class _Transfer(Command):
    async def run(self) -> None:
        raise NotImplementedError(MISSING)


@register
class WorkerFileUploadCommand(_Transfer):
    names = ("upload_file", "uploadFile")
    required_args = ("path", "blocksize", "maxsize")


@register
class WorkerDirectoryUploadCommand(_Transfer):
    names = ("upload_directory", "uploadDirectory")
    required_args = ("path", "blocksize", "maxsize", "compress")


@register
class WorkerFileDownloadCommand(_Transfer):
    names = ("download_file", "downloadFile")
    required_args = ("path", "blocksize", "maxsize", "mode")
