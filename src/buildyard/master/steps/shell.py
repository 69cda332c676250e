"""Shell steps: ShellCommand, and the ones that read what the command printed (TreeSize)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

from buildyard.common.errors import config_error
from buildyard.master.logs.observer import BufferLogObserver
from buildyard.master.model.results import Results
from buildyard.master.steps.base import BuildStep, ShellMixin, command_to_string


class ShellCommand(ShellMixin, BuildStep):
    """Run ``command`` on the worker; the result comes from its exit code (``decodeRC``)."""

    name = "shell"
    renderables: ClassVar[Sequence[str]] = (
        *BuildStep.renderables,
        *ShellMixin.shell_renderables,
    )

    def __init__(self, **kwargs: Any) -> None:
        rest = self.setupShellMixin(kwargs)
        super().__init__(**rest)
        if self.command is None:  # a subclass may give it as a class attribute
            config_error(f"{type(self).__name__}'s `command' argument is not specified")

    async def run(self) -> int:
        cmd = await self.makeRemoteShellCommand()
        await self.runCommand(cmd)
        return int(cmd.results())


def shell_result_summary(step: BuildStep) -> dict[str, str] | None:
    """Buildbot's ShellMixin summary for a finished step without ``descriptionDone``: the
    command's first words and, unless SUCCESS, the result. None when the
    step has a ``descriptionDone`` or no command to show (BuildStep's summary applies)."""
    if step.descriptionDone is not None:
        return None
    text = command_to_string(getattr(step, "command", None))
    if not text:
        return None
    if step.results is not None and step.results != Results.SUCCESS:
        text += f" ({step.results.text})"
        if step.timed_out:
            text += " (timed out)"
        elif step.max_lines_reached:
            text += " (max lines)"
    return {"step": text}


class TreeSize(ShellMixin, BuildStep):
    """``du -s -k .`` in the workdir: the tree's size in KiB, as property ``tree-size-KiB``."""

    name = "treesize"
    command: Any = ["du", "-s", "-k", "."]
    description: Any = ["measuring", "tree", "size"]
    renderables: ClassVar[Sequence[str]] = (
        *BuildStep.renderables,
        *ShellMixin.shell_renderables,
    )

    def __init__(self, **kwargs: Any) -> None:
        rest = self.setupShellMixin(kwargs)
        super().__init__(**rest)
        self.observer = BufferLogObserver(wantStdout=True, wantStderr=True)
        self.addLogObserver("stdio", self.observer)

    async def run(self) -> int:
        cmd = await self.makeRemoteShellCommand()
        await self.runCommand(cmd)
        await self.getLog("stdio").finish()
        found = re.search(r"^(\d+)", self.observer.getStdout())
        kib = int(found.group(1)) if found else None
        if kib is not None:
            self.setProperty("tree-size-KiB", kib, "treesize")
            self.descriptionDone = f"treesize {kib} KiB"
        else:
            self.descriptionDone = "treesize unknown"
        if cmd.didFail():
            return int(Results.FAILURE)
        return int(Results.WARNINGS if kib is None else Results.SUCCESS)
