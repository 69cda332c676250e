"""Shell steps: ShellCommand, and the ones that read what the command printed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from buildyard.common.errors import config_error
from buildyard.master.model.results import Results
from buildyard.master.steps.base import BuildStep, ShellMixin


def command_to_string(command: Any) -> str:
    """A short text for the step's summary: the first words of the command."""
    if isinstance(command, str):
        words = command.split()
    elif isinstance(command, list | tuple):
        words = [str(w) for w in command if isinstance(w, str | int | float)]
    else:
        return ""
    text = " ".join(words[:2])
    return f"'{text} ...'" if len(words) > 2 else f"'{text}'"


class ShellCommand(ShellMixin, BuildStep):
    """Run ``command`` on the worker; the result comes from its exit code (``decodeRC``)."""

    name = "shell"
    renderables: ClassVar[Sequence[str]] = (
        *BuildStep.renderables,
        *ShellMixin.shell_renderables,
    )

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("command") is None:
            config_error(f"{type(self).__name__}'s `command' argument is not specified")
        rest = self.setupShellMixin(kwargs)
        super().__init__(**rest)

    async def run(self) -> int:
        cmd = await self.makeRemoteShellCommand()
        await self.runCommand(cmd)
        return int(cmd.results())

    def getCurrentSummary(self) -> dict[str, str]:
        if self.description is None and (text := command_to_string(self.command)):
            return {"step": text}
        return super().getCurrentSummary()

    def getResultSummary(self) -> dict[str, str]:
        if self.descriptionDone is not None or self.description is not None:
            return super().getResultSummary()
        text = command_to_string(self.command)
        if not text:
            return super().getResultSummary()
        if self.results is not None and self.results != Results.SUCCESS:
            text += f" ({self.results.text})"
            if self.timed_out:
                text += " (timed out)"
            elif self.max_lines_reached:
                text += " (max lines)"
        return {"step": text}
