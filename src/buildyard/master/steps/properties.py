"""Steps that set build properties: from values, or from a command's output.

* ``SetProperty(property, value)`` and ``SetProperties(properties)`` (a dict, or a renderable
  giving one) set values that may be renderables.
* ``SetPropertyFromCommand(command=..., property=...)`` runs a shell command on the worker and
  sets ``property`` to its stdout (stripped unless ``strip=False``); with ``extract_fn`` instead,
  ``extract_fn(rc, stdout, stderr)`` returns the properties to set. A ``property changes`` log
  lists what was set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from buildyard.common.awaitables import resolve
from buildyard.common.errors import config_error
from buildyard.master.model.results import Results
from buildyard.master.steps.base import BuildStep, ShellMixin
from buildyard.master.steps.shell import shell_result_summary

__all__ = [
    "SetProperties",
    "SetProperty",
    "SetPropertyFromCommand",
]


class SetProperty(BuildStep):
    """Set ``property`` to ``value`` (both may be renderables)."""

    name = "SetProperty"
    description: Any = ["Setting"]
    descriptionDone: Any = ["Set"]
    renderables: ClassVar[Sequence[str]] = (*BuildStep.renderables, "property", "value")

    def __init__(self, property: Any, value: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.property = property
        self.value = value

    async def run(self) -> int:
        self.setProperty(self.property, self.value, self.name, runtime=True)
        return int(Results.SUCCESS)


class SetProperties(BuildStep):
    """Set every property of ``properties``: a dict or a renderable that gives one."""

    name = "SetProperties"
    description: Any = ["Setting Properties.."]
    descriptionDone: Any = ["Properties Set"]
    renderables: ClassVar[Sequence[str]] = (*BuildStep.renderables, "properties")

    def __init__(self, properties: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.properties = properties

    async def run(self) -> int:
        if self.properties is None:
            return int(Results.SUCCESS)
        for name, value in self.properties.items():
            self.setProperty(name, value, self.name, runtime=True)
        return int(Results.SUCCESS)


ExtractFn = Callable[[int, str, str], Any]


class SetPropertyFromCommand(ShellMixin, BuildStep):
    """Run ``command`` and set ``property`` from its stdout, or the properties ``extract_fn``
    returns from ``(rc, stdout, stderr)``. Exactly one of the two is given."""

    name = "setproperty"
    renderables: ClassVar[Sequence[str]] = (
        *BuildStep.renderables,
        *ShellMixin.shell_renderables,
        "property",
    )

    def __init__(
        self,
        property: Any = None,
        extract_fn: ExtractFn | None = None,
        strip: bool = True,
        includeStdout: bool = True,
        includeStderr: bool = False,
        **kwargs: Any,
    ) -> None:
        rest = self.setupShellMixin(kwargs)
        self.property = property
        self.extract_fn = extract_fn
        self.strip = strip
        self.includeStdout = includeStdout
        self.includeStderr = includeStderr
        if (property is None) == (extract_fn is None):
            config_error("Exactly one of property and extract_fn must be set")
        super().__init__(**rest)
        if self.extract_fn is not None:
            self.includeStderr = True

    async def run(self) -> int:
        cmd = await self.makeRemoteShellCommand(
            collectStdout=self.includeStdout, collectStderr=self.includeStderr
        )
        await self.runCommand(cmd)
        stdio = self.logs.get("stdio")
        if stdio is not None:
            await stdio.finish()
        changes: dict[str, Any]
        if self.property:
            if cmd.didFail():
                return int(Results.FAILURE)
            value = cmd.stdout.strip() if self.strip else cmd.stdout
            self.setProperty(self.property, value, "SetPropertyFromCommand Step")
            changes = {self.property: value}
        else:
            assert self.extract_fn is not None
            found = self.extract_fn(cmd.rc if cmd.rc is not None else -1, cmd.stdout, cmd.stderr)
            found = await resolve(found)
            changes = dict(found)
            for name, value in changes.items():
                self.setProperty(name, value, "SetPropertyFromCommand Step")
        await self.addCompleteLog(
            "property changes", "\n".join(f"{k}: {v!r}" for k, v in sorted(changes.items()))
        )
        if len(changes) > 1:
            self.descriptionDone = f"{len(changes)} properties set"
        elif len(changes) == 1:
            self.descriptionDone = f"property '{next(iter(changes))}' set"
        return int(Results.FAILURE if cmd.didFail() else Results.SUCCESS)

    def getResultSummary(self) -> dict[str, str]:
        return shell_result_summary(self) or super().getResultSummary()
