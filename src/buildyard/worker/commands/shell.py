"""``shell``: run a command line in ``workdir`` (docs/worker-protocol.md)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from buildyard.worker.commands.base import Command, register
from buildyard.worker.commands.logfiles import parse_logfiles
from buildyard.worker.commands.runprocess import RunProcess

_VAR = re.compile(r"\$\{([0-9a-zA-Z_]*)\}")


def build_env(overrides: Mapping[str, Any] | None, base: Mapping[str, str]) -> dict[str, str]:
    """The child's environment: ``base`` with ``overrides`` applied as the stock worker does.

    None deletes a variable, a list is joined with os.pathsep, ``${NAME}`` is expanded from
    ``base`` (empty when unset) and PYTHONPATH keeps the worker's own after the new value.
    """
    env = dict(base)
    for key, raw in (overrides or {}).items():
        if raw is None:
            env.pop(key, None)
            continue
        value = os.pathsep.join(str(v) for v in raw) if isinstance(raw, list | tuple) else str(raw)
        if key == "PYTHONPATH":
            value += os.pathsep + "${PYTHONPATH}"
        env[key] = _VAR.sub(lambda m: base.get(m.group(1), ""), value)
    return env


def _argv(command: Any) -> tuple[list[str], str]:
    """(argv, display text); obfuscated words ``["obfuscated", real, shown]`` are shown masked."""
    if isinstance(command, str):
        return ["/bin/sh", "-c", command], command
    argv: list[str] = []
    shown: list[str] = []
    for word in command:
        if isinstance(word, list | tuple) and len(word) == 3 and word[0] == "obfuscated":
            argv.append(str(word[1]))
            shown.append(str(word[2]))
        else:
            argv.append(str(word))
            shown.append(str(word))
    return argv, " ".join(shown)


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


@register
class WorkerShellCommand(Command):
    names = ("shell",)
    required_args = ("workdir", "command")

    process: RunProcess | None = None

    async def run(self) -> None:
        args = self.args
        use_pty = args.get("usePTY", False)
        if not isinstance(use_pty, bool):
            raise ValueError(f"usePTY must be True or False, not {use_pty!r}")
        argv, display = _argv(args["command"])
        workdir = os.path.join(self.basedir, str(args["workdir"]))
        max_lines = args.get("max_lines")
        process = RunProcess(
            argv=argv,
            display=display,
            workdir=workdir,
            env=build_env(args.get("env"), os.environ),
            output=self.output,
            want_stdout=bool(args.get("want_stdout", True)),
            want_stderr=bool(args.get("want_stderr", True)),
            timeout=_number(args.get("timeout")),
            max_time=_number(args.get("maxTime")),
            sigterm_time=_number(args.get("sigtermTime")),
            interrupt_signal=args.get("interruptSignal") or "KILL",
            initial_stdin=args.get("initial_stdin"),
            log_environ=bool(args.get("logEnviron", True)),
            max_lines=None if max_lines is None else int(max_lines),
            use_pty=use_pty,
            logfiles=parse_logfiles(args.get("logfiles"), workdir),
            logfiles_shown=args.get("logfiles") or {},
        )
        self.process = process
        if self.interrupted:
            return
        rc = await process.run()
        self.output.update("rc", rc)

    def interrupt(self, why: str) -> None:
        super().interrupt(why)
        if self.process is not None:
            self.process.kill(why)
