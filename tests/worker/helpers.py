"""Running worker commands in-process with a recording stand-in for the master."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from buildyard.worker.commands import Command, create, execute
from buildyard.worker.commands.output import CommandOutput, Outbox, Settings


@dataclasses.dataclass
class Recorded:
    """Everything one command sent, in order."""

    messages: list[tuple[str, dict[str, Any]]] = dataclasses.field(default_factory=list)
    completed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    async def request(self, op: str, **fields: Any) -> None:
        assert not self.completed.is_set(), f"{op} after complete"
        self.messages.append((op, fields))
        if op == "complete":
            self.completed.set()

    @property
    def updates(self) -> list[tuple[str, Any]]:
        return [(k, v) for op, f in self.messages if op == "update" for k, v in f["args"]]

    def text(self, stream: str) -> str:
        return "".join(v[0] for k, v in self.updates if k == stream)

    def log(self, name: str) -> str:
        """The text sent for the watched logfile ``name``."""
        return "".join(v[1][0] for k, v in self.updates if k == "log" and v[0] == name)

    def last(self, key: str) -> Any:
        values = [v for k, v in self.updates if k == key]
        return values[-1] if values else None

    def keys(self) -> list[str]:
        return [k for k, _ in self.updates]

    @property
    def failure(self) -> Any:
        ((_op, fields),) = [m for m in self.messages if m[0] == "complete"]
        return fields["args"]


def start(
    name: str, args: dict[str, Any], basedir: Path, settings: Settings | None = None
) -> tuple[Command, Recorded, asyncio.Task[None]]:
    recorded = Recorded()

    def output() -> CommandOutput:
        return CommandOutput(Outbox(recorded.request, command_id="1"), settings or Settings())

    command = create(command_id="1", name=name, args=args, output_factory=output, basedir=basedir)
    return command, recorded, asyncio.get_running_loop().create_task(execute(command))


async def run(
    name: str, args: dict[str, Any], basedir: Path, settings: Settings | None = None
) -> Recorded:
    _, recorded, task = start(name, args, basedir, settings)
    async with asyncio.timeout(60):
        await task
    assert recorded.completed.is_set()
    return recorded
