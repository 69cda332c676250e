"""``changes.HgPoller``: watch a remote Mercurial repository by polling it with the ``hg`` command.

:class:`HgPoller` is what master.cfg writes (Buildbot 4.3's keywords); :class:`HgPollerService`
runs it, on the schedule of :class:`~buildyard.master.changes.gitpoller.GitPollerService` (whose
loop, forced polls, reconfiguration and stop it shares). One poll:

1. ``hg init <workdir>`` if the workdir holds no repository yet (``workdir`` is required, as in
   Buildbot; a relative one is under the master's basedir);
2. ``hg pull -b <branch>... -B <bookmark>... <repourl>``: only the watched branches and
   bookmarks come in;
3. for each branch, its head (``hg heads <branch>``); a branch with several heads is skipped
   with an error in the log and keeps its old head until it has one again (as in Buildbot);
   for each bookmark, the changeset it names;
4. for a branch or bookmark seen before, the changesets from its old head to its new one
   (the revset ``old::new``, oldest first, the old head left out), one change each; when the
   old head is not an ancestor of the new one any more (a strip), the new head alone;
5. the heads go to the state ``lastRev`` of the object ``(name, "HgPoller")``, a dict by
   branch or bookmark name, as Buildbot keeps it (so its databases carry over). buildyard
   stores full changeset hashes where Buildbot stores the workdir's local revision numbers;
   a number read from Buildbot's state still works in the same workdir.

The first time a branch or bookmark is seen, its head is only recorded: no change for history
already there. A failed ``hg`` command (missing ``hg``, unknown repository or branch, network)
fails the poll with hg's message in the log; the next poll happens as scheduled. Each change is
written before the state that covers it, so a failure or stop in between repeats no change and
loses none.

May import: buildyard.master.data (through changes.base) and buildyard.common.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

from buildyard.common.errors import BuildyardError, config_error
from buildyard.master.changes.base import ChangeSourceConfig, ChangeSourceContext
from buildyard.master.changes.gitpoller import GitPollerService, _timing, _workdir_lock

__all__ = ["HgError", "HgPoller", "HgPollerService"]

log = structlog.get_logger(__name__)

#: The class name under which the poller keeps its state (Buildbot's).
STATE_CLASS = "HgPoller"
STATE_KEY = "lastRev"
_LABEL = "HgPoller"


class HgError(BuildyardError):
    """An ``hg`` command failed (or could not be started); the message has hg's stderr."""


def _names(keyword: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple) and all(isinstance(v, str) and v for v in value):
        return list(value)
    config_error(f"{_LABEL}: {keyword} must be a list of names (strings)")
    return []


def _text(keyword: str, value: Any, default: str) -> str:
    if isinstance(value, str) and value:
        return value
    config_error(f"{_LABEL}: {keyword} must be a non-empty string")
    return default


class HgPoller(ChangeSourceConfig):
    """Buildbot's ``changes.HgPoller(repourl, **kwargs)``; see the module docstring.

    ``branches`` (or the single ``branch``) are named branches to watch and ``bookmarks``
    bookmarks; with neither, the branch ``default``. ``revlink`` is a callable given the
    branch and the changeset hash that returns the change's link. ``category`` is a string or
    a callable given the change as a dict. The change source's ``name`` defaults to
    ``repourl``, followed by ``_`` and the bookmarks, then ``_`` and the branches, as in
    Buildbot.
    """

    def __init__(  # master.cfg may pass anything: each value is checked as what it is
        self,
        repourl: Any = None,
        *,
        branch: Any = None,
        branches: Any = None,
        bookmarks: Any = None,
        workdir: Any = None,
        pollInterval: Any = 10 * 60,
        hgbin: Any = "hg",
        usetimestamps: bool = True,
        category: Any = None,
        project: Any = "",
        encoding: Any = "utf-8",
        name: Any = None,
        pollAtLaunch: bool = False,
        revlink: Any = None,
        pollRandomDelayMin: Any = 0,
        pollRandomDelayMax: Any = 0,
    ) -> None:
        given: dict[str, Any] = dict(locals())
        self.repourl: str = repourl if isinstance(repourl, str) else ""
        if not self.repourl:
            config_error(f"{_LABEL}: repourl must be given, as a non-empty string")
        if branch and branches:
            config_error(f"{_LABEL}: can't specify both branch and branches")
        if branch is not None and not isinstance(branch, str):
            config_error(f"{_LABEL}: branch must be a string")
        chosen = [branch] if isinstance(branch, str) and branch else _names("branches", branches)
        self.bookmarks: list[str] = _names("bookmarks", bookmarks)
        if isinstance(name, str) and name:
            self.name: str = name
        else:
            if name is not None:
                config_error(f"{_LABEL}: name must be a string")
            self.name = self.repourl
            if self.bookmarks:
                self.name += "_" + "_".join(self.bookmarks)
            if chosen:
                self.name += "_" + "_".join(chosen)
        self.branches: list[str] = chosen or ([] if self.bookmarks else ["default"])

        if workdir is None:
            config_error(f"{_LABEL}: workdir is mandatory (as in Buildbot)")
        elif not isinstance(workdir, str | os.PathLike):
            config_error(f"{_LABEL}: workdir must be a string")
        self.workdir: str = os.fspath(workdir) if isinstance(workdir, str | os.PathLike) else ""

        self.poll_interval, self.poll_random_delay_min, self.poll_random_delay_max = _timing(
            given["pollInterval"],
            given["pollRandomDelayMin"],
            given["pollRandomDelayMax"],
            label=_LABEL,
        )
        self.poll_at_launch = bool(pollAtLaunch)
        self.hgbin = _text("hgbin", hgbin, "hg")
        self.encoding = _text("encoding", encoding, "utf-8")
        self.usetimestamps = bool(usetimestamps)
        self.category: str | Callable[[dict[str, Any]], str | None] | None = None
        if isinstance(category, str) or callable(category):
            self.category = category
        elif category is not None:
            config_error(f"{_LABEL}: category must be a string, a callable or None")
        self.project: str = ""
        if isinstance(project, str):
            self.project = project
        elif project is not None:
            config_error(f"{_LABEL}: project must be a string")
        self.revlink: Callable[[str, str], str] | None = None
        if callable(revlink):
            self.revlink = revlink
        elif revlink is not None:
            config_error(f"{_LABEL}: You need to provide a valid callable for revlink")
        # what GitPollerService's schedule and reconfiguration read
        self.codebase = None

    def make_service(self, name: str, ctx: ChangeSourceContext) -> HgPollerService:
        return HgPollerService(name, self, ctx)


class HgPollerService(GitPollerService):
    """One :class:`HgPoller` at work: GitPollerService's schedule, hg's poll."""

    # the schedule reads only the timing attributes, which HgPoller has under the same names
    config: HgPoller  # type: ignore[assignment]

    def __init__(self, name: str, config: HgPoller, ctx: ChangeSourceContext) -> None:
        super().__init__(name, config, ctx)  # type: ignore[arg-type]

    async def poll(self) -> None:
        """Poll now, after the poll under way if any. A failure is logged, not raised."""
        async with self._poll_lock:
            self._polls += 1
            with structlog.contextvars.bound_contextvars(
                changesource=self.name, repourl=self.config.repourl
            ):
                try:
                    await self._poll()
                except HgError as exc:
                    self._failed_polls += 1
                    log.warning("hgpoller_poll_failed", error=str(exc))
                except Exception:
                    self._failed_polls += 1
                    log.exception("hgpoller_poll_crashed")

    def _workdir(self) -> Path:
        workdir = Path(self.config.workdir)
        return workdir if workdir.is_absolute() else self.ctx.basedir / workdir

    async def _poll(self) -> None:
        config = self.config
        workdir = self._workdir()
        async with _workdir_lock(workdir):
            if not await asyncio.to_thread((workdir / ".hg").is_dir):
                await self._hg("init", str(workdir))
            pull = ["pull"]
            for branch in config.branches:
                pull += ["-b", branch]
            for bookmark in config.bookmarks:
                pull += ["-B", bookmark]
            await self._hg(*pull, "--", config.repourl, cwd=workdir)
            heads: dict[str, str] = {}
            for branch in config.branches:
                head = await self._branch_head(branch, workdir)
                if head is not None:
                    heads[branch] = head
            for bookmark in config.bookmarks:
                nodes = await self._nodes(f"bookmark({_quote(bookmark)})", workdir)
                if nodes:
                    heads[bookmark] = nodes[-1]
            previous = await self._previous_state()
            state = dict(previous)
            found: list[tuple[str, str, list[dict[str, Any]]]] = []
            for key, head in heads.items():
                old = previous.get(key)
                if old is None:
                    log.info("hgpoller_first_head", name=key, revision=head)
                    state[key] = head
                    continue
                if old == head:
                    continue
                entries = await self._log(f"present({_quote(old)})::{head}", workdir)
                new = [e for e in entries if e.get("node") != old and str(e.get("rev")) != old]
                if not entries:
                    # the old head is gone or no longer an ancestor (a strip, a forced push)
                    new = await self._log(head, workdir)
                found.append((key, head, new))
        if self._stopping:
            return
        await self._record(found, state)

    async def _previous_state(self) -> dict[str, str]:
        if self._last_rev is None:
            if self._objectid is None:
                self._objectid = await self.ctx.updates.get_object_id(self.name, STATE_CLASS)
            stored = await self.ctx.updates.get_state(self._objectid, STATE_KEY, {})
            if not isinstance(stored, dict):
                log.warning("hgpoller_state_ignored", state=repr(stored)[:200])
                stored = {}
            # Buildbot stores local revision numbers (as strings); buildyard hashes
            self._last_rev = {str(k): str(v) for k, v in stored.items() if v is not None}
        return dict(self._last_rev)

    async def _record(  # type: ignore[override]
        self, found: Sequence[tuple[str, str, list[dict[str, Any]]]], state: dict[str, str]
    ) -> None:
        """Write each change, then the state that covers it: a failure part way repeats no
        change and loses none at the next poll."""
        assert self._objectid is not None
        self._writing = asyncio.Event()
        try:
            try:
                for key, head, entries in found:
                    if entries:
                        log.info("hgpoller_new_changesets", name=key, count=len(entries))
                    for entry in entries:
                        await self.ctx.updates.add_change(**self._change_arguments(key, entry))
                        state[key] = str(entry["node"])
                        await self.ctx.updates.set_state(self._objectid, STATE_KEY, state)
                    state[key] = head
                await self.ctx.updates.set_state(self._objectid, STATE_KEY, state)
                self._last_rev = state
            except BaseException:
                self._last_rev = None
                with contextlib.suppress(Exception):
                    await self.ctx.updates.set_state(self._objectid, STATE_KEY, state)
                raise
        finally:
            self._writing.set()
            self._writing = None

    def _change_arguments(self, key: str, entry: dict[str, Any]) -> dict[str, Any]:
        """``updates.add_change``'s arguments for one changeset of ``hg log -Tjson -v``."""
        config = self.config
        node = str(entry["node"])
        date = entry.get("date") or [0, 0]
        stamp = int(float(date[0])) if config.usetimestamps else None
        when = stamp or None  # Buildbot: a zero time is no time
        author = str(entry.get("user", "")).strip()
        files = [str(f) for f in entry.get("files") or ()]
        comments = str(entry.get("desc", "")).strip()
        revlink = ""
        if config.revlink is not None:
            try:
                revlink = str(config.revlink(key, node) or "")
            except Exception:
                log.exception("hgpoller_revlink_failed", revision=node)
        category = config.category
        if callable(category):
            category = category(
                {
                    "author": author,
                    "committer": None,
                    "files": files,
                    "comments": comments,
                    "revision": node,
                    "when_timestamp": when,
                    "branch": key,
                    "revlink": revlink,
                    "properties": {},
                    "repository": config.repourl,
                    "project": config.project,
                }
            )
        return {
            "author": author,
            "committer": None,
            "files": files,
            "comments": comments,
            "revision": node,
            "when_timestamp": when,
            "branch": key,
            "category": None if category is None else str(category),
            "revlink": revlink,
            "repository": config.repourl,
            "project": config.project,
            # Buildbot's HgPoller says its changes come from hg: their authors become users
            "src": "hg",
        }

    # -- hg ------------------------------------------------------------------------------------

    async def _branch_head(self, branch: str, workdir: Path) -> str | None:
        """The one head of ``branch``; None (logged) when it has none or several."""
        try:
            out = await self._hg("heads", branch, "--template", "{node}\\n", cwd=workdir)
        except HgError as exc:
            log.error("hgpoller_branch_unknown", branch=branch, error=str(exc))
            return None
        nodes = out.split()
        if len(nodes) > 1:
            log.error(
                "hgpoller_several_heads",
                branch=branch,
                heads=nodes,
                reason="staying at the previous head until the branch has one again",
            )
            return None
        return nodes[0] if nodes else None

    async def _nodes(self, revset: str, workdir: Path) -> list[str]:
        out = await self._hg("log", "-r", revset, "--template", "{node}\\n", cwd=workdir)
        return out.split()

    async def _log(self, revset: str, workdir: Path) -> list[dict[str, Any]]:
        out = await self._hg("log", "-r", revset, "--verbose", "--template", "json", cwd=workdir)
        try:
            entries = json.loads(out) if out.strip() else []
        except ValueError as exc:
            raise HgError(f"unexpected output of hg log -r {revset}: {out[:200]!r}") from exc
        if not isinstance(entries, list):
            raise HgError(f"unexpected output of hg log -r {revset}: {out[:200]!r}")
        return [e for e in entries if isinstance(e, dict) and "node" in e]

    async def _hg(self, *args: str, cwd: Path | None = None) -> str:
        """Run ``hg args`` without blocking the loop; its stdout, decoded. Cancelling kills
        the process."""
        config = self.config
        # HGPLAIN: the user's aliases and defaults do not change the output read here
        env = {**os.environ, "HGPLAIN": "1", "HGENCODING": config.encoding}
        try:
            process = await asyncio.create_subprocess_exec(
                config.hgbin,
                *args,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise HgError(
                f"cannot run {config.hgbin!r} (is Mercurial installed on the master?): {exc}"
            ) from exc
        try:
            stdout, stderr = await process.communicate()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            _ = await asyncio.shield(process.wait())
            raise
        if process.returncode != 0:
            message = stderr.decode(config.encoding, errors="replace").strip()
            raise HgError(
                f"hg {' '.join(args[:2])} failed with exit code {process.returncode}: {message}"
            )
        return stdout.decode(config.encoding, errors="replace")


def _quote(name: str) -> str:
    """``name`` as a revset string literal."""
    return "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"
