"""Source: the base of the steps that put a version-controlled tree on the worker.

Buildbot's ``buildbot.steps.source.base.Source``. A source step checks out, into its
``workdir``, what the build's source stamp for the step's ``codebase`` names: the stamp's branch
(or the step's default ``branch``), its revision (or the newest one), and its patch if it has
one. With ``alwaysUseLatest`` the stamp is ignored: the newest revision of the step's ``branch``.
A build without a stamp for the codebase fails the step ("Codebase X not in build").

A subclass implements ``async def run_vc(self, branch, revision, patch)``; ``patch`` is
Buildbot's tuple ``(level, diff, subdir)`` or None. The helpers that a VC step needs are here
too, through Buildbot's CompositeStepMixin (:mod:`buildyard.master.steps.worker`):
``runRemoteCommand``, ``runRmdir``, ``pathExists``, ``runMkdir``,
``downloadFileContentToWorker``; their output goes to the log opened by
``addLogForRemoteCommands``.
"""

from __future__ import annotations

import ntpath
import posixpath
from collections.abc import Sequence
from types import ModuleType
from typing import Any, ClassVar

from buildyard.common.errors import config_error
from buildyard.master.model.properties import Interpolate, is_renderable
from buildyard.master.model.results import Results
from buildyard.master.steps.base import BuildStep, BuildStepFailed
from buildyard.master.steps.remotecommand import RemoteShellCommand
from buildyard.master.steps.worker import CompositeStepMixin

__all__ = ["Patch", "Source"]

# Buildbot's form of a source stamp's patch: (level, diff, subdir)
Patch = tuple[int, bytes, str | None]

_DESCRIPTIONS = {"clobber": "checkout", "export": "exporting"}
_DESCRIPTIONS_DONE = {"clobber": "checkout", "export": "export"}


def _is_retry(value: object) -> bool:
    return (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    )


class Source(CompositeStepMixin, BuildStep):
    """A step that checks out sources; subclasses implement :meth:`run_vc`."""

    haltOnFailure: Any = True
    flunkOnFailure: Any = True
    # the branch used when the source stamp has none; a subclass sets it
    branch: Any = None

    renderables: ClassVar[Sequence[str]] = (*BuildStep.renderables, "env")

    def __init__(
        self,
        workdir: str | None = None,
        mode: Any = "update",
        alwaysUseLatest: bool = False,
        timeout: float | None = 20 * 60,
        retry: tuple[float, int] | None = None,
        env: Any = None,
        logEnviron: bool = True,
        description: Any = None,
        descriptionDone: Any = None,
        descriptionSuffix: Any = None,
        codebase: Any = "",
        **kwargs: Any,
    ) -> None:
        mode_key = mode if isinstance(mode, str) else ""
        if not description:
            description = [_DESCRIPTIONS.get(mode_key, "updating")]
        if not descriptionDone:
            descriptionDone = [_DESCRIPTIONS_DONE.get(mode_key, "update")]
        if not descriptionSuffix and codebase:
            descriptionSuffix = [codebase]
        super().__init__(
            description=description,
            descriptionDone=descriptionDone,
            descriptionSuffix=descriptionSuffix,
            workdir=workdir,
            **kwargs,
        )
        name = type(self).__name__
        if retry is not None and not _is_retry(retry):
            config_error(f"{name}: retry must be a (delay, repeats) pair, not {retry!r}")
        if env is not None and not isinstance(env, dict) and not is_renderable(env):
            config_error(f"{name}: env must be a dict, not {env!r}")
        self.codebase: Any = codebase
        if codebase:
            if isinstance(self.name, str) and isinstance(codebase, str):
                self.name = f"{self.name}-{codebase}"
            else:
                self.name = Interpolate(
                    "%(kw:name)s-%(kw:codebase)s", name=self.name, codebase=codebase
                )
        self.alwaysUseLatest = alwaysUseLatest
        self.logEnviron = logEnviron
        self.env: Any = env
        self.timeout = timeout
        self.retry: tuple[float, int] | None = (
            (float(retry[0]), int(retry[1])) if retry is not None and _is_retry(retry) else None
        )
        # per build
        self.sourcestamp: Any = None

    # -- what a subclass implements ------------------------------------------------------------

    async def run_vc(self, branch: Any, revision: str | None, patch: Patch | None) -> int:
        raise NotImplementedError(f"{type(self).__name__} has no run_vc() method")

    def computeSourceRevision(self, changes: Sequence[Any]) -> str | None:
        """The revision to use when the stamp names none (Buildbot's hook; None: the newest)."""
        return None

    # -- the step ------------------------------------------------------------------------------

    async def run(self) -> int:
        rt = self._runtime()
        if self.workdir is None:
            self.workdir = rt.workdir
        if self.alwaysUseLatest:
            return await self.run_vc(self.branch, None, None)
        stamp = self._find_stamp()
        self.sourcestamp = stamp
        if stamp is None:
            text = f"No sourcestamp found in build for codebase '{self.codebase}'"
            self.descriptionDone = f"Codebase {self.codebase} not in build"
            await self.addCompleteLog("log", text)
            return int(Results.FAILURE)
        branch = stamp.branch or self.branch
        revision = stamp.revision
        if not revision:
            revision = self.computeSourceRevision(list(getattr(stamp, "changes", None) or ()))
            if revision is not None:
                self.updateSourceProperty("revision", str(revision))
        patch: Patch | None = None
        if stamp.patch is not None:
            p = stamp.patch
            patch = (int(p.level), bytes(p.body), p.subdir)
            await self.addCompleteLog("patch", p.body.decode("utf-8", errors="ignore"))
        return await self.run_vc(branch, revision, patch)

    def _find_stamp(self) -> Any:
        build = self._runtime().build
        for stamp in getattr(build, "sourcestamps", None) or ():
            if stamp.codebase == self.codebase:
                return stamp
        return None

    def updateSourceProperty(self, name: str, value: Any, source: str = "") -> None:
        """Set ``name``; with a codebase the property is a dict by codebase (Buildbot's way,
        so that several source steps of one build each keep their own)."""
        source = source or type(self).__name__
        current = self.getProperty(name, None)
        if self.codebase != "":
            if isinstance(current, str):
                raise RuntimeError(
                    f"source step {self.name} has a codebase, other source steps do not"
                )
            by_codebase = dict(current) if isinstance(current, dict) else {}
            by_codebase[self.codebase] = value
            self.setProperty(name, by_codebase, source)
        else:
            if isinstance(current, dict):
                raise RuntimeError(
                    f"source step {self.name} does not have a codebase, other source steps do"
                )
            self.setProperty(name, value, source)

    # -- patches -------------------------------------------------------------------------------

    def path_module(self) -> ModuleType:
        """How the worker joins paths."""
        return ntpath if self._runtime().conn.windows else posixpath

    async def sourcedirIsPatched(self) -> bool:
        return await self.pathExists(self.path_module().join(self.workdir, ".buildbot-patched"))

    async def patch(self, patch: Patch) -> int:
        """Apply a source stamp's patch in the checkout (in its subdirectory, if it has one
        inside the checkout), and leave a marker so that the next build cleans the tree."""
        _, diff, root = patch
        paths = self.path_module()
        if root:
            inside = paths.normpath(paths.join(self.workdir, root))
            base = paths.normpath(self.workdir)
            if inside == base or inside.startswith(base.rstrip(paths.sep) + paths.sep):
                self.workdir = inside
        await self.downloadFileContentToWorker(".buildbot-diff", diff)
        await self.downloadFileContentToWorker(".buildbot-patched", "patched\n")
        await self.applyPatch(patch)
        await self.runRmdir(paths.join(self.workdir, ".buildbot-diff"))
        return 0

    async def applyPatch(self, patch: Patch) -> int:
        """Apply the downloaded ``.buildbot-diff`` with ``patch`` (VC steps override this)."""
        command = [
            "patch",
            f"-p{patch[0]}",
            "--remove-empty-files",
            "--force",
            "--forward",
            "-i",
            ".buildbot-diff",
        ]
        cmd = RemoteShellCommand(
            self.workdir, command, env=self.env, logEnviron=self.logEnviron, timeout=self.timeout
        )
        if self.rc_log is not None:
            cmd.useLog(self.rc_log, False, "stdio")
        await self.runCommand(cmd)
        if cmd.didFail():
            raise BuildStepFailed("the patch did not apply")
        return cmd.rc or 0
