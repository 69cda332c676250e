"""ShellSequence: several shell commands in one step, each with its own result flags.

``ShellSequence(commands=[util.ShellArg(command=..., logname=..., haltOnFailure=...), ...])``
runs the commands one after the other in the step's workdir with the step's shell arguments
(env, timeout, ...). Each command's result is folded into the step's as a step's is into its
build's (:func:`~buildyard.master.steps.base.combine`, with the ShellArg's flags); a command
whose ShellArg halts on failure ends the sequence. A command's output goes to the log named by
its ``logname`` (shared by the ShellArgs that name it); without one, as in Buildbot, it is not
kept. ``commands`` may be a renderable giving the list; a ShellArg's command and flags may be
renderables too.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, ClassVar

import structlog

from buildyard.common.config_object import ConfigObject
from buildyard.common.errors import ConfigError, ConfigErrors, config_error
from buildyard.master.model.properties import Properties, render
from buildyard.master.model.results import Results
from buildyard.master.steps.base import BuildStep, ShellMixin, combine
from buildyard.master.steps.shell import shell_result_summary

log = structlog.get_logger(__name__)

__all__ = ["ShellArg", "ShellSequence"]

_RESULT_FLAGS = (
    "haltOnFailure",
    "flunkOnWarnings",
    "flunkOnFailure",
    "warnOnWarnings",
    "warnOnFailure",
)


class ShellArg(ConfigObject):
    """One command of a :class:`ShellSequence`, with the flags that fold its result."""

    haltOnFailure: Any = False
    flunkOnWarnings: Any = False
    flunkOnFailure: Any = True
    warnOnWarnings: Any = False
    warnOnFailure: Any = False

    resultConfig: ClassVar[Sequence[str]] = _RESULT_FLAGS
    publicAttributes: ClassVar[Sequence[str]] = (*_RESULT_FLAGS, "command", "logname")

    def __init__(self, command: Any = None, logname: Any = None, **kwargs: Any) -> None:
        name = type(self).__name__
        if command is None:
            config_error(f"the 'command' parameter of {name} must not be None")
        self.command = command
        self.logname = logname
        for key, value in kwargs.items():
            if key not in self.resultConfig:
                config_error(f"the parameter '{key}' is not handled by {name}")
                continue
            setattr(self, key, value)
        self._rendered = False

    def validateAttributes(self) -> None:
        """Once rendered: the command is a string or a list of strings, the flags are bools."""
        command = self.command
        if not isinstance(command, str | list):
            config_error(f"{command} is an invalid command, it must be a string or a list")
        elif isinstance(command, list) and not all(isinstance(w, str) for w in command):
            config_error(f"{command} must only have strings in it")
        wrong = [(f, getattr(self, f)) for f in self.resultConfig]
        wrong = [(f, v) for f, v in wrong if not isinstance(v, bool)]
        if wrong:
            config_error(f"{wrong!r} must be booleans")

    async def getRenderingFor(self, props: Properties) -> ShellArg:
        """A copy with every public attribute rendered (the copy renders to itself)."""
        if self._rendered:
            return self
        rendered = copy.copy(self)
        for attr in self.publicAttributes:
            setattr(rendered, attr, await render(getattr(self, attr), props))
        rendered._rendered = True
        return rendered


class ShellSequence(ShellMixin, BuildStep):
    """Run the ShellArgs of ``commands`` in order; the result folds theirs."""

    last_command: Any = None
    commands: Any = None
    renderables: ClassVar[Sequence[str]] = (
        *BuildStep.renderables,
        *ShellMixin.shell_renderables,
        "commands",
    )

    def __init__(self, commands: Any = None, **kwargs: Any) -> None:
        self.commands = commands
        rest = self.setupShellMixin(kwargs, prohibitArgs=["command"])
        super().__init__(**rest)

    def shouldRunTheCommand(self, cmd: Any) -> bool:
        """Whether to run ``cmd`` (a rendered ShellArg's command); empty ones are skipped."""
        return bool(cmd)

    async def runShellSequence(self, commands: Any) -> int:
        """Run ``commands`` (ShellArgs); the folded result. Subclasses may call it with
        ShellArgs of their own making."""
        if commands is None:
            return await self._invalid("after rendering, ShellSequence `commands` is None")
        overall = Results.SUCCESS
        for arg in commands:
            if not isinstance(arg, ShellArg):
                return await self._invalid(
                    "after rendering, ShellSequence `commands` list contains something that "
                    f"is not a ShellArg: {arg!r}"
                )
            rendered = await self.render(arg)
            try:
                rendered.validateAttributes()
            except (ConfigError, ConfigErrors) as exc:
                return await self._invalid(
                    f"after rendering, ShellSequence `commands` is invalid: {exc}"
                )
            command = rendered.command
            if not self.shouldRunTheCommand(command):
                continue
            self.last_command = command
            self.command = command  # what the summary shows, as Buildbot's ShellMixin keeps it
            cmd = await self.makeRemoteShellCommand(command=command, stdioLogName=rendered.logname)
            await self.runCommand(cmd)
            overall, terminate = combine(rendered, cmd.results(), overall)
            if terminate:
                break
        return int(overall)

    async def run(self) -> int:
        return await self.runShellSequence(self.commands)

    async def _invalid(self, message: str) -> int:
        log.warning("shellsequence_invalid", step=self.name, message=message)
        await self.addCompleteLog("err.text", message + "\n")
        return int(Results.EXCEPTION)

    def getResultSummary(self) -> dict[str, str]:
        return shell_result_summary(self) or super().getResultSummary()
