"""steps.Mercurial: check out a Mercurial repository on the worker (Buildbot's ``steps.Mercurial``).

Branches come in two kinds, ``branchType``:

- ``dirname`` (default): each branch is a repository of its own, at ``repourl`` followed by
  the branch name (the source stamp's branch, else ``defaultBranch``; nothing appended when
  neither is set);
- ``inrepo``: branches are named branches of the one repository at ``repourl``; the build
  updates to the stamp's branch, else ``defaultBranch``, else ``default``.

Modes and methods, as Buildbot 4.3 has them:

- ``incremental`` (default): clone (``hg clone --noupdate``) if the work directory holds no
  repository yet, otherwise ``hg pull`` (of the stamp's revision, or with ``inrepo`` of the
  branch); then ``hg update --clean`` to the revision (or the branch's tip). Files added but not
  committed are removed; other untracked files stay.
- ``full`` with ``method``:
    - ``fresh`` (default): ``hg purge --all`` (untracked and ignored files go), then as
      incremental;
    - ``clean``: ``hg purge`` (ignored files stay), then as incremental;
    - ``clobber``: remove the work directory and clone afresh.

``clobberOnBranchChange`` (default True): when the working directory is on another branch
than the build needs (``inrepo``: ``hg identify --branch``; ``dirname``: the build's branch
differs from ``defaultBranch``, as Buildbot compares them), the directory is clobbered and
cloned again instead of updated.

A source stamp's patch is applied with ``hg import --no-commit``; the next build on that
directory first removes every file hg does not track (``purge --all``, as the Git step cleans
a patched tree; Buildbot 4.3's Mercurial step leaves them).

After the checkout the step sets ``got_revision`` to the full changeset hash (by codebase when
the step has one). Every hg command runs on the worker through ``shell`` remote commands (the
stock buildbot-worker's and buildyard's), its output in the step's ``stdio`` log; a failing
command makes the step FAILURE, a worker without hg EXCEPTION ("Mercurial is not installed on
worker" in its ``err.text`` log), as in Buildbot.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any, ClassVar

from buildyard.common.errors import config_error
from buildyard.master.steps.base import BuildStepFailed, WorkerSetupError
from buildyard.master.steps.remotecommand import RemoteShellCommand
from buildyard.master.steps.source.base import Patch, Source

__all__ = ["Mercurial"]

_MODES = ("incremental", "full")
_METHODS = (None, "clean", "fresh", "clobber")
_BRANCH_TYPES = ("inrepo", "dirname")
_NODE_RE = re.compile(r"[0-9a-f]{40}")


class Mercurial(Source):
    name = "hg"
    renderables: ClassVar[Sequence[str]] = (*Source.renderables, "repourl")

    def __init__(
        self,
        repourl: Any = None,
        mode: Any = "incremental",
        method: Any = None,
        defaultBranch: Any = None,
        branchType: Any = "dirname",
        clobberOnBranchChange: bool = True,
        baseURL: Any = None,
        **kwargs: Any,
    ) -> None:
        self.repourl: Any = repourl
        self.defaultBranch: Any = defaultBranch
        self.branch = defaultBranch
        self.branchType: Any = branchType
        self.method: Any = method
        self.mode: Any = mode
        self.clobberOnBranchChange = bool(clobberOnBranchChange)
        super().__init__(mode=mode, **kwargs)
        if baseURL is not None:
            # older Buildbots' keyword; 4.3 refuses it as an unknown argument
            config_error(
                "Mercurial: baseURL is not an argument of Buildbot 4.3's Mercurial step; "
                "give the base URL as repourl (with branchType='dirname')"
            )
        if isinstance(mode, str) and mode not in _MODES:
            config_error(f"Mercurial: mode {mode} is not one of {list(_MODES)}")
        if (method is None or isinstance(method, str)) and method not in _METHODS:
            config_error(f"Mercurial: method {method} is not one of {_METHODS}")
        if isinstance(branchType, str) and branchType not in _BRANCH_TYPES:
            config_error(f"Mercurial: branchType {branchType} is not one of {_BRANCH_TYPES}")
        elif not isinstance(branchType, str):
            config_error(f"Mercurial: branchType must be one of {_BRANCH_TYPES}")
        if repourl is None:
            config_error("Mercurial: you must provide a repourl")
        # per build
        self.revision: str | None = None
        self.update_branch: str | None = None
        self._url = ""

    # -- the step ------------------------------------------------------------------------------

    def computeSourceRevision(self, changes: Sequence[Any]) -> str | None:
        """The last change's revision (the changes come oldest first)."""
        if not changes:
            return None
        revision = getattr(changes[-1], "revision", None)
        return str(revision) if revision else None

    async def run_vc(self, branch: Any, revision: str | None, patch: Patch | None) -> int:
        self.revision = revision
        self.method = self._method()
        await self.addLogForRemoteCommands("stdio")
        version = await self._hg(["--version"], abandonOnFailure=False)
        if version.didFail():
            # Buildbot's WorkerSetupError: the step ends EXCEPTION, saying why
            raise WorkerSetupError("Mercurial is not installed on worker")
        if self.branchType == "dirname":
            self._url = str(self.repourl) + (str(branch) if branch else "")
            self.update_branch = str(branch) if branch else None
        else:
            self._url = str(self.repourl)
            self.update_branch = str(branch) if branch else "default"
        if self.mode == "full" and self.method == "clobber":
            await self.clobber()
        elif not await self.pathExists(self.path_module().join(self.workdir, ".hg")):
            await self._clone()
            await self._remove_added_and_update()
        else:
            purge = ["--config", "extensions.purge=", "purge"]
            # a patched tree (the last build applied a patch) is cleaned whatever the mode
            if self.method == "fresh" or await self.sourcedirIsPatched():
                await self._hg([*purge, "--all"])
            elif self.method == "clean":
                await self._hg(purge)
            await self._pull()
            await self._update_or_clobber()
        if patch:
            await self.patch(patch)
        await self.parseGotRevision()
        return 0

    def _method(self) -> str | None:
        if self.mode != "full":
            return None
        return str(self.method) if self.method is not None else "fresh"

    async def clobber(self) -> None:
        if await self.runRmdir(self.workdir, timeout=self.timeout, abandonOnFailure=False):
            raise BuildStepFailed(f"could not remove {self.workdir}")
        await self._clone()
        await self._update()

    async def _pull(self) -> None:
        command = ["pull", self._url]
        if self.revision:
            command += ["--rev", self.revision]
        elif self.branchType == "inrepo" and self.update_branch:
            command += ["--rev", self.update_branch]
        await self._hg(command)

    async def _update_or_clobber(self) -> None:
        if self.branchType == "dirname":
            current = self.defaultBranch
        else:
            identify = await self._hg(["identify", "--branch"], collectStdout=True)
            current = identify.stdout.strip()
        if current != self.update_branch and self.clobberOnBranchChange:
            await self.addCompleteLog(
                "branch",
                f"the working directory is on branch {current!r}, the build needs "
                f"{self.update_branch!r}: clobbered\n",
            )
            await self.clobber()
            return
        await self._remove_added_and_update()

    async def _remove_added_and_update(self) -> None:
        """Remove the files added but not committed (``update --clean`` would leave them),
        then update."""
        listed = await self._hg(
            ["files", "--config", "ui.relative-paths=no", "set:added()"],
            collectStdout=True,
            abandonOnFailure=False,
        )
        if listed.rc not in (0, 1):  # 1: no file matched
            raise BuildStepFailed("hg files failed")
        paths = self.path_module()
        added = [paths.join(self.workdir, name) for name in listed.stdout.splitlines() if name]
        if added:
            await self.runRmdir(added, timeout=self.timeout)
        await self._update()

    async def _update(self) -> None:
        command = ["update", "--clean"]
        if self.revision:
            command += ["--rev", self.revision]
        elif self.branchType == "inrepo" and self.update_branch:
            command += ["--rev", self.update_branch]
        await self._hg(command)

    async def _clone(self) -> None:
        """``hg clone --noupdate`` into the work directory, with ``retry``."""
        while True:
            last_try = self.retry is None or self.retry[1] <= 0
            cloned = await self._hg(
                ["clone", "--noupdate", self._url, "."], abandonOnFailure=last_try
            )
            if not cloned.didFail():
                return
            if self.stopped or self.retry is None:
                raise BuildStepFailed("hg clone failed")
            delay, repeats = self.retry
            self.retry = (delay, repeats - 1)
            await asyncio.sleep(delay)
            if self.stopped:
                raise BuildStepFailed("hg clone failed")
            await self.runRmdir(self.workdir, timeout=self.timeout, abandonOnFailure=False)

    async def parseGotRevision(self) -> None:
        cmd = await self._hg(["log", "-r", ".", "--template", "{node}"], collectStdout=True)
        revision = cmd.stdout.strip()
        if not _NODE_RE.fullmatch(revision):
            raise BuildStepFailed(f"hg log -r . gave {revision!r}, not a changeset hash")
        self.updateSourceProperty("got_revision", revision)

    async def applyPatch(self, patch: Patch) -> int:
        level, diff, _ = patch
        cmd = await self._hg(
            ["import", "--no-commit", "-p", str(level), "-"],
            initialStdin=diff.decode("utf-8", errors="replace"),
        )
        return cmd.rc or 0

    async def _hg(
        self,
        command: list[str],
        abandonOnFailure: bool = True,
        collectStdout: bool = False,
        initialStdin: str | None = None,
    ) -> RemoteShellCommand:
        """Run ``hg <command>`` in the work directory, its output in the stdio log; a failure
        fails the step when ``abandonOnFailure``."""
        cmd = RemoteShellCommand(
            self.workdir,
            ["hg", *command],
            env=self.env,
            logEnviron=self.logEnviron,
            timeout=self.timeout,
            collectStdout=collectStdout,
            initialStdin=initialStdin,
        )
        if self.rc_log is not None:
            cmd.useLog(self.rc_log, False, "stdio")
        await self.runCommand(cmd)
        if abandonOnFailure and cmd.didFail():
            raise BuildStepFailed(f"hg {command[0] if command else ''} failed")
        return cmd

    async def _dovccmd(
        self,
        command: list[str],
        collectStdout: bool = False,
        initialStdin: str | None = None,
        abandonOnFailure: bool = True,
    ) -> Any:
        """Buildbot's name, for subclasses: the output with ``collectStdout``, else the rc."""
        cmd = await self._hg(command, abandonOnFailure, collectStdout, initialStdin)
        return cmd.stdout if collectStdout else cmd.rc
