"""Worker commands: the registry (name -> class), argument checks, and the run wrapper.

A command is created by ``start_command`` (:func:`create`), runs in a task of its own
(:func:`execute`), reports through its :class:`CommandOutput`, and ends with ``complete``:
``None`` when it ran to the end, the traceback text when it raised. ``elapsed`` is sent after a
run that was not interrupted (docs/worker-protocol.md).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import structlog

from buildyard.protocol.peer import RequestFailed
from buildyard.worker.commands.output import CommandOutput

log = structlog.get_logger(__name__)

# the command protocol version the stock worker announces for each command
COMMAND_VERSION = "3.3"


class Command:
    """Base of every worker command; subclasses set ``names``, ``required_args`` and run()."""

    names: ClassVar[tuple[str, ...]] = ()
    required_args: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, *, command_id: str, args: Mapping[str, Any], output: CommandOutput, basedir: Path
    ) -> None:
        self.command_id = command_id
        self.args = dict(args)
        self.output = output
        self.basedir = basedir
        self.interrupted = False

    async def run(self) -> None:
        raise NotImplementedError(f"{type(self).__name__}.run")

    def interrupt(self, why: str) -> None:
        """Ask the command to stop; commands without a process ignore it."""
        self.interrupted = True

    # helpers shared by commands
    def header(self, line: str) -> None:
        self.output.text("header", line if line.endswith("\n") else line + "\n")


REGISTRY: dict[str, type[Command]] = {}


def register(cls: type[Command]) -> type[Command]:
    for name in cls.names:
        REGISTRY[name] = cls
    return cls


def worker_commands() -> dict[str, str]:
    """The ``worker_commands`` entry of the worker info: every name and alias."""
    return dict.fromkeys(sorted(REGISTRY), COMMAND_VERSION)


def create(
    *,
    command_id: str,
    name: str,
    args: Any,
    output_factory: Callable[[], CommandOutput],
    basedir: Path,
) -> Command:
    """Build the command ``start_command`` asks for; RequestFailed with the stock texts."""
    cls = REGISTRY.get(name)
    if cls is None:
        raise RequestFailed(f"(command {command_id}): unrecognized WorkerCommand '{name}'")
    if not isinstance(args, Mapping):
        raise RequestFailed(f"(command {command_id}): args must be a map")
    missing = [a for a in cls.required_args if a not in args]
    if missing:
        raise RequestFailed(f"{cls.__name__} is missing args: {', '.join(missing)}")
    output: CommandOutput = output_factory()
    return cls(command_id=command_id, args=args, output=output, basedir=basedir)


async def execute(command: Command) -> None:
    """Run ``command`` to its end and send ``complete``; never raises but CancelledError."""
    started = time.monotonic()
    failure: str | None = None
    try:
        await command.run()
    except Exception:
        log.exception("command_failed", command_id=command.command_id)
        failure = traceback.format_exc()
    if failure is None and not command.interrupted:
        command.output.update("elapsed", time.monotonic() - started)
    await command.output.complete(failure)
