"""``changes.SVNPoller``: watch a Subversion URL by polling it with the ``svn`` command.

:class:`SVNPoller` is what master.cfg writes (Buildbot 4.3's keywords); :class:`SVNPollerService`
runs it. Every ``pollInterval`` seconds (and on :meth:`SVNPollerService.force`) one poll:

1. ``svn info --xml <repourl>``, once per configuration: the repository's root, and so the
   prefix that ``repourl`` adds to it (``project/trunk`` for ``<root>/project/trunk``);
2. ``svn log --xml --verbose --limit=<histmax> <repourl>``: the newest revisions that touched
   the URL, newest first, with the paths each one changed;
3. the revisions after the last one seen become changes, oldest first. Each changed path
   (relative to the repository root) must be under the prefix; the rest of it goes to
   ``split_file`` (:mod:`buildyard.master.changes.svnsplit`), which says which branch it
   belongs to (and optionally the project, repository or codebase), or None to leave it out.
   A revision that touched several branches is one change per branch; the deletion of a
   whole branch is no change;
4. the newest revision goes to the state ``last_change`` of the object ``(name,
   "SVNPoller")``, in the same go as the changes, so that a restarted master reports what was
   committed while it was down, and only that (Buildbot keeps it only in ``cachepath``, a file,
   when one is given; buildyard also writes that file, and reads it when the database has no
   state yet).

The first poll ever only records the newest revision: no change for history already there (a
URL whose history is empty records revision 0, so its first commit is reported).

The changes carry Buildbot's fields: the revision as a string, the author (``unknown`` when svn
names none), the log message as comments, the files relative to the branch, the branch from
``split_file`` (None: the default branch), ``revlink`` from ``revlinktmpl % quoted revision``,
``category``, ``project``, ``repository`` (``repourl`` without its trailing slash), ``src``
``"svn"``, and the time of the poll as ``when_timestamp`` (as in Buildbot, which does not use
svn's dates).

``svnuser`` and ``svnpasswd`` (strings or renderables such as ``util.Secret``) are rendered at
each poll. The password goes to ``svn`` on its standard input (``--password-from-stdin``), never
on its command line, and no message of the poller shows it; with either set, svn is told not to
cache credentials (``--no-auth-cache``).

Polls never overlap; a failed poll (unknown URL, network, svn error) is logged with svn's message
and the next one happens as scheduled.

May import: buildyard.master.data (through changes.base) and buildyard.common.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import structlog

from buildyard.common.errors import BuildyardError, config_error
from buildyard.master.changes.base import ChangeSource, ChangeSourceConfig, ChangeSourceContext
from buildyard.master.changes.gitpoller import _is_number, _is_text, _timing
from buildyard.master.changes.svnsplit import split_file_alwaystrunk
from buildyard.master.model.properties import (
    Properties,
    RenderError,
    SecretsOnly,
    render,
)

__all__ = ["SVNError", "SVNPoller", "SVNPollerService"]

log = structlog.get_logger(__name__)

#: The class name under which pollers keep their state.
STATE_CLASS = "SVNPoller"
STATE_KEY = "last_change"

_LABEL = "SVNPoller"

SplitFile = Callable[[str], Any]


class SVNError(BuildyardError):
    """An ``svn`` command failed (or could not be started), or its output made no sense."""


def _split_file(value: Any) -> SplitFile:
    if callable(value):
        return value  # type: ignore[no-any-return]
    if value is not None:
        config_error(
            f"{_LABEL}: split_file must be a callable (such as util.svn.split_file_branches) "
            "or None"
        )
    return split_file_alwaystrunk


def _credential(keyword: str, value: Any) -> Any:
    if value is None or _is_text(value):
        return value
    config_error(f"{_LABEL}: {keyword} must be a string or a renderable (util.Secret)")
    return None


def _histmax(value: Any) -> int:
    if _is_number(value) and int(value) == value > 0:
        return int(value)
    config_error(f"{_LABEL}: histmax must be a positive whole number, not {value!r}")
    return 100


def _revlinktmpl(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        config_error(f"{_LABEL}: revlinktmpl must be a string")
        return ""
    if value:
        try:
            _ = value % "1"
        except (TypeError, ValueError) as exc:
            config_error(f"{_LABEL}: revlinktmpl must hold one %s for the revision: {exc}")
            return ""
    return value


class SVNPoller(ChangeSourceConfig):
    """Buildbot's ``changes.SVNPoller(repourl, **kwargs)``; see the module docstring.

    ``split_file`` is a callable given each changed path relative to ``repourl`` (default:
    ``util.svn.split_file_alwaystrunk``); ``category`` a string or a callable given the change
    as a dict; ``extra_args`` words added to every svn command; ``cachepath`` a file that keeps
    the last revision (relative paths are under the master's base directory). The change
    source's ``name`` defaults to ``repourl`` (as in Buildbot).
    """

    _secret_arguments = frozenset({"svnpasswd"})

    def __init__(
        self,
        repourl: str | None = None,
        split_file: SplitFile | None = None,
        svnuser: Any = None,
        svnpasswd: Any = None,
        pollInterval: float = 10 * 60,
        histmax: int = 100,
        svnbin: str = "svn",
        revlinktmpl: str = "",
        category: str | Callable[[dict[str, Any]], str | None] | None = None,
        project: str = "",
        cachepath: str | None = None,
        extra_args: Sequence[str] | None = None,
        name: str | None = None,
        pollAtLaunch: bool = False,
        pollRandomDelayMin: float = 0,
        pollRandomDelayMax: float = 0,
    ) -> None:
        # master.cfg may pass anything: each value is checked as what it is, not as annotated
        given: dict[str, Any] = dict(locals())
        url = given["repourl"]
        if not isinstance(url, str) or not url:
            config_error(f"{_LABEL}: repourl must be given, as a non-empty string")
            url = ""
        # Buildbot strips one trailing slash; the changes' repository is the URL without it
        self.repourl: str = url.removesuffix("/")
        self.name: str = url
        if isinstance(given["name"], str):
            self.name = given["name"]
        elif name is not None:
            config_error(f"{_LABEL}: name must be a string, not {type(name).__name__}")

        self.split_file: SplitFile = _split_file(given["split_file"])
        self.svnuser: Any = _credential("svnuser", given["svnuser"])
        self.svnpasswd: Any = _credential("svnpasswd", given["svnpasswd"])
        self.poll_interval, self.poll_random_delay_min, self.poll_random_delay_max = _timing(
            given["pollInterval"],
            given["pollRandomDelayMin"],
            given["pollRandomDelayMax"],
            label=_LABEL,
        )
        self.poll_at_launch = bool(pollAtLaunch)

        self.histmax = _histmax(given["histmax"])
        self.svnbin = "svn"
        if isinstance(given["svnbin"], str) and given["svnbin"]:
            self.svnbin = given["svnbin"]
        else:
            config_error(f"{_LABEL}: svnbin must be a non-empty string")
        self.revlinktmpl = _revlinktmpl(given["revlinktmpl"])
        self.category: str | Callable[[dict[str, Any]], str | None] | None = None
        if isinstance(given["category"], str) or callable(given["category"]):
            self.category = category
        elif category is not None:
            config_error(f"{_LABEL}: category must be a string, a callable or None")
        self.project = ""
        if isinstance(given["project"], str):
            self.project = given["project"]
        elif project is not None:
            config_error(f"{_LABEL}: project must be a string")
        self.cachepath: str | None = None
        if isinstance(given["cachepath"], str | os.PathLike):
            self.cachepath = os.fspath(given["cachepath"])
        elif cachepath is not None:
            config_error(f"{_LABEL}: cachepath must be a file name or None")
        self.extra_args: tuple[str, ...] = ()
        extra = given["extra_args"]
        if isinstance(extra, list | tuple) and all(isinstance(a, str) for a in extra):
            self.extra_args = tuple(extra)
        elif extra is not None:
            config_error(f"{_LABEL}: extra_args must be a list of strings")

    def make_service(self, name: str, ctx: ChangeSourceContext) -> SVNPollerService:
        return SVNPollerService(name, self, ctx)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _NewChange:
    """A change to report, as ``updates.add_change`` takes it."""

    author: str
    files: tuple[str, ...]
    comments: str
    revision: str
    branch: str | None
    revlink: str
    category: str | None
    repository: str
    project: str
    codebase: str | None

    def arguments(self) -> dict[str, Any]:
        found = dataclasses.asdict(self)
        found["files"] = list(self.files)
        # as Buildbot's: the changes come from svn (their authors become users)
        found["src"] = "svn"
        return found


@dataclasses.dataclass(frozen=True, slots=True)
class _LogEntry:
    """One ``<logentry>`` of ``svn log --xml --verbose``."""

    revision: int
    author: str
    message: str
    # (path without its leading slash, kind, action); None: the entry had no <paths>
    paths: tuple[tuple[str, str, str], ...] | None


def _text_of(element: ET.Element, tag: str) -> str:
    """The text of the first ``tag`` child; ``unknown`` when there is none (as Buildbot)."""
    found = element.find(tag)
    if found is None:
        return "unknown"
    return "".join(found.itertext())


def parse_log(output: str) -> list[_LogEntry]:
    """The entries of ``svn log --xml --verbose``, as svn lists them (newest first)."""
    try:
        root = ET.fromstring(output)  # svn's own output
    except ET.ParseError as exc:
        raise SVNError(f"svn log gave output that is not XML ({exc}): {output[:200]!r}") from exc
    entries: list[_LogEntry] = []
    for element in root.iter("logentry"):
        number = element.get("revision", "")
        if not number.isdigit():
            raise SVNError(f"svn log gave a log entry without a revision: {number!r}")
        listed = element.find("paths")
        paths = None
        if listed is not None:
            paths = tuple(
                (
                    "".join(path.itertext()).removeprefix("/"),
                    path.get("kind", ""),
                    path.get("action", ""),
                )
                for path in listed.iter("path")
            )
        entries.append(
            _LogEntry(int(number), _text_of(element, "author"), _text_of(element, "msg"), paths)
        )
    return entries


def parse_root(output: str) -> str | None:
    """The repository root that ``svn info --xml`` names (None when it names none)."""
    try:
        root = ET.fromstring(output)  # svn's own output
    except ET.ParseError as exc:
        raise SVNError(f"svn info gave output that is not XML ({exc}): {output[:200]!r}") from exc
    found = root.find("./entry/repository/root")
    return None if found is None else "".join(found.itertext())


class SVNPollerService(ChangeSource):
    """One :class:`SVNPoller` at work. :meth:`activate` starts the poll loop (a task of this
    service; stopping the service waits for a write of changes under way); :meth:`poll` and
    :meth:`force` poll now."""

    config: SVNPoller

    def __init__(self, name: str, config: SVNPoller, ctx: ChangeSourceContext) -> None:
        super().__init__(name, config, ctx)
        self._poll_lock = asyncio.Lock()
        self._forced = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        # what repourl adds to the repository root (None: ask svn info first)
        self._prefix: str | None = None
        # the last revision seen (None: read the state first)
        self._last_change: int | None = None
        self._objectid: int | None = None
        self._cache_broken = False
        self._writing: asyncio.Event | None = None
        self._stopping = False
        self._polls = 0
        self._failed_polls = 0

    # -- lifecycle -----------------------------------------------------------------------------

    async def activate(self) -> None:
        self._stopping = False
        self._last_change = None  # another master may have polled while this one did not
        self._start_loop()

    def _start_loop(self) -> None:
        self._loop = self.spawn(self._poll_loop(), name="poll")

    async def stop(self) -> None:
        # Changes and the revision covering them are written together: let a write under way
        # finish rather than cancel it in between, which would repeat changes after a restart.
        self._stopping = True
        while self._writing is not None:
            await self._writing.wait()
        await super().stop()

    async def reconfigure(self, config: Any) -> None:
        """Take the new settings from the next poll on; a new interval or random delay
        restarts the schedule."""
        async with self._poll_lock:
            old = self.config
            self.config = config
            self._prefix = None
            self._last_change = None
            self._cache_broken = False
            timing = ("poll_interval", "poll_random_delay_min", "poll_random_delay_max")
            running = self._loop is not None and not self._loop.done()
            if running and any(getattr(old, k) != getattr(config, k) for k in timing):
                assert self._loop is not None
                self._loop.cancel()
                _ = await asyncio.wait([self._loop])
                self._start_loop()

    def force(self) -> None:
        """Poll as soon as possible; ignored while this master does not run the poller."""
        if self._loop is None or self._loop.done():
            log.info("svnpoller_force_ignored", changesource=self.name, reason="not active")
            return
        self._forced.set()

    def statistics(self) -> dict[str, int]:
        return {**super().statistics(), "polls": self._polls, "failed_polls": self._failed_polls}

    async def _poll_loop(self) -> None:
        """Poll at ``start + k * pollInterval`` (+ a random delay each time); a poll that runs
        past its successor's time skips it."""
        clock = self.ctx.clock
        start = clock.monotonic()
        first = True
        while True:
            config = self.config
            extra = random.uniform(config.poll_random_delay_min, config.poll_random_delay_max)
            if first and config.poll_at_launch:
                wait = extra
            else:
                interval = config.poll_interval
                elapsed = clock.monotonic() - start
                wait = (interval - elapsed % interval if interval > 0 else 0.0) + extra
            first = False
            await self._sleep_unless_forced(wait)
            self._forced.clear()
            await self.poll()

    async def _sleep_unless_forced(self, seconds: float) -> None:
        if self._forced.is_set():
            return
        async with asyncio.TaskGroup() as group:
            sleeping = group.create_task(self.ctx.clock.sleep(seconds))
            forced = group.create_task(self._forced.wait())
            sleeping.add_done_callback(lambda _: forced.cancel())
            forced.add_done_callback(lambda _: sleeping.cancel())

    # -- one poll ------------------------------------------------------------------------------

    async def poll(self) -> None:
        """Poll now, after the poll under way if any. A failure is logged, not raised."""
        async with self._poll_lock:
            self._polls += 1
            with structlog.contextvars.bound_contextvars(
                changesource=self.name, repourl=self.config.repourl
            ):
                try:
                    await self._poll()
                except SVNError as exc:
                    self._failed_polls += 1
                    log.warning("svnpoller_poll_failed", error=str(exc))
                except Exception:
                    self._failed_polls += 1
                    log.exception("svnpoller_poll_crashed")

    async def _poll(self) -> None:
        credentials = await self._credentials()
        if self._prefix is None:
            self._prefix = await self._get_prefix(credentials)
        config = self.config
        output = await self._svn(
            "log",
            "--xml",
            "--verbose",
            f"--limit={config.histmax}",
            config.repourl,
            credentials=credentials,
        )
        entries = parse_log(output)
        newest = max((e.revision for e in entries), default=0)
        last = await self._previous()
        if last is None:
            log.info("svnpoller_starting", revision=newest)
            changes: list[_NewChange] = []
        else:
            fresh = sorted((e for e in entries if e.revision > last), key=lambda e: e.revision)
            changes = [change for entry in fresh for change in self._changes(entry)]
            newest = max(newest, last)
        if self._stopping:
            return  # nothing written: the next poll (after a restart) does it all again
        await self._record(changes, newest)

    async def _previous(self) -> int | None:
        """The last revision seen: the state's, else the cache file's, else None."""
        if self._last_change is None:
            if self._objectid is None:
                self._objectid = await self.ctx.updates.get_object_id(self.name, STATE_CLASS)
            stored = await self.ctx.updates.get_state(self._objectid, STATE_KEY, None)
            if isinstance(stored, int) and not isinstance(stored, bool) and stored >= 0:
                self._last_change = stored
            elif stored is not None:
                log.warning("svnpoller_state_ignored", state=repr(stored)[:200])
            if self._last_change is None:
                self._last_change = await self._read_cache()
        return self._last_change

    async def _record(self, changes: Sequence[_NewChange], newest: int) -> None:
        """Write the changes, oldest first, then the revision that covers them. A write that
        fails part way saves the last revision whose changes were all written, so the next poll
        reports the rest (and again the branches of a revision it had only partly written)."""
        assert self._objectid is not None
        self._writing = asyncio.Event()
        try:
            try:
                for index, change in enumerate(changes):
                    await self.ctx.updates.add_change(**change.arguments())
                    # the next change may be another branch of the same revision
                    following = changes[index + 1] if index + 1 < len(changes) else None
                    if following is None or following.revision != change.revision:
                        self._last_change = int(change.revision)
            except BaseException:
                if changes and self._last_change is not None:
                    with contextlib.suppress(Exception):
                        await self.ctx.updates.set_state(
                            self._objectid, STATE_KEY, self._last_change
                        )
                self._last_change = None
                raise
            await self.ctx.updates.set_state(self._objectid, STATE_KEY, newest)
            self._last_change = newest
            await self._write_cache(newest)
        finally:
            self._writing.set()
            self._writing = None

    def _changes(self, entry: _LogEntry) -> list[_NewChange]:
        """One change per branch that ``entry`` touched (Buildbot's rules)."""
        config = self.config
        if entry.paths is None:
            log.info("svnpoller_revision_without_paths", revision=entry.revision)
            return []
        revision = str(entry.revision)
        revlink = config.revlinktmpl % quote_plus(revision) if config.revlinktmpl else ""
        branches: dict[str | None, dict[str, Any]] = {}
        for listed, kind, action in entry.paths:
            # a directory ends with "/", which split_file may look at (as in Buildbot)
            path = listed + "/" if kind == "dir" and not listed.endswith("/") else listed
            where = self._where(path)
            if where is None:
                continue
            branch = where.get("branch")
            name = str(where["path"])
            info = branches.setdefault(
                branch, {"files": [], "directories": 0, "action": action, "where": {}}
            )
            if name == "" or name.endswith("/"):
                info["directories"] += 1
                name = name.removesuffix("/")
            info["files"].append(name)
            for key in ("repository", "project", "codebase"):
                if key in where:
                    info["where"][key] = where[key]
        found: list[_NewChange] = []
        for branch, info in branches.items():
            files: list[str] = info["files"]
            if info["action"] == "D" and info["directories"] == 1 and files == [""]:
                log.info("svnpoller_branch_deleted", branch=branch, revision=revision)
                continue
            where = info["where"]
            repository = str(where.get("repository", config.repourl))
            project = str(where.get("project", config.project))
            codebase = where.get("codebase")
            category = config.category
            if callable(category):
                category = category(
                    {
                        "author": entry.author,
                        "committer": None,
                        "files": list(files),
                        "comments": entry.message,
                        "revision": revision,
                        "when_timestamp": None,
                        "branch": branch,
                        "revlink": revlink,
                        "properties": {},
                        "repository": repository,
                        "project": project,
                    }
                )
            found.append(
                _NewChange(
                    author=entry.author,
                    files=tuple(files),
                    comments=entry.message,
                    revision=revision,
                    branch=None if branch is None else str(branch),
                    revlink=revlink,
                    category=None if category is None else str(category),
                    repository=repository,
                    project=project,
                    codebase=None if codebase is None else str(codebase),
                )
            )
        return found

    def _where(self, path: str) -> dict[str, Any] | None:
        """What ``split_file`` says of ``path`` (relative to the root), as a dict with
        ``path``; None when the path is outside ``repourl`` or split_file leaves it out."""
        prefix = self._prefix or ""
        if prefix:
            if path != prefix and not path.startswith(prefix.rstrip("/") + "/"):
                return None
            path = path[len(prefix) :].removeprefix("/")
        try:
            where = self.config.split_file(path)
        except Exception as exc:
            raise SVNError(f"split_file failed on {path!r}: {type(exc).__name__}: {exc}") from exc
        if not where:
            return None
        if isinstance(where, tuple) and len(where) == 2:
            return {"branch": where[0], "path": where[1]}
        if isinstance(where, dict) and isinstance(where.get("path"), str):
            return where
        raise SVNError(
            f"split_file gave {where!r} for {path!r}: it must give None, a (branch, path) pair "
            "or a dict with 'path'"
        )

    # -- the cache file ------------------------------------------------------------------------

    def _cache_file(self) -> Path | None:
        if self.config.cachepath is None or self._cache_broken:
            return None
        path = Path(self.config.cachepath)
        return path if path.is_absolute() else self.ctx.basedir / path

    async def _read_cache(self) -> int | None:
        path = self._cache_file()
        if path is None:
            return None
        try:
            text = await asyncio.to_thread(_read_if_there, path)
        except OSError as exc:
            self._cache_unusable(path, str(exc))
            return None
        if text is None:
            return None
        if not text.strip().isdigit():
            self._cache_unusable(path, f"it holds {text[:40]!r}, not a revision")
            return None
        return int(text.strip())

    async def _write_cache(self, revision: int) -> None:
        path = self._cache_file()
        if path is None:
            return
        try:
            await asyncio.to_thread(path.write_text, f"{revision}\n", encoding="utf-8")
        except OSError as exc:
            self._cache_unusable(path, str(exc))

    def _cache_unusable(self, path: Path, why: str) -> None:
        # as Buildbot: a cache file that cannot be read or written is not used any more
        self._cache_broken = True
        log.warning("svnpoller_cachepath_unusable", cachepath=str(path), reason=why)

    # -- svn -----------------------------------------------------------------------------------

    async def _credentials(self) -> tuple[str | None, str | None]:
        config = self.config
        if config.svnuser is None and config.svnpasswd is None:
            return None, None
        props = Properties()
        props.build = SecretsOnly(self.ctx.secret)
        try:
            user, password = await render((config.svnuser, config.svnpasswd), props)
        except RenderError as exc:
            raise SVNError(f"cannot render svnuser/svnpasswd: {exc}") from exc
        return (
            None if user is None else str(user),
            None if password is None else str(password),
        )

    async def _get_prefix(self, credentials: tuple[str | None, str | None]) -> str:
        repourl = self.config.repourl
        output = await self._svn("info", "--xml", repourl, credentials=credentials)
        root = parse_root(output)
        if root is None:
            return ""
        if not repourl.startswith(root):
            raise SVNError(
                f"svn info names the repository root {root!r}, which does not begin the "
                f"configured repourl {repourl!r}"
            )
        prefix = repourl[len(root) :].removeprefix("/")
        log.info("svnpoller_prefix", root=root, prefix=prefix)
        return prefix

    async def _svn(self, *args: str, credentials: tuple[str | None, str | None]) -> str:
        """Run ``svn args`` (with the credentials and extra_args) without blocking the loop;
        its stdout. Cancelling kills the process."""
        config = self.config
        user, password = credentials
        command = [config.svnbin, *args[:1], "--non-interactive"]
        if user is not None or password is not None:
            command.append("--no-auth-cache")
        if user:
            command.append(f"--username={user}")
        if password is not None:
            command.append("--password-from-stdin")
        command += [*config.extra_args, *args[1:]]
        shown = f"svn {args[0]}"
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE
                if password is not None
                else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise SVNError(f"cannot run {config.svnbin!r}: {exc}") from exc
        try:
            stdout, stderr = await process.communicate(
                f"{password}\n".encode() if password is not None else None
            )
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            _ = await asyncio.shield(process.wait())
            raise
        if process.returncode != 0:
            message = stderr.decode("utf-8", errors="replace").strip()
            if password:
                message = message.replace(password, "<svnpasswd>")
            raise SVNError(f"{shown} failed with exit code {process.returncode}: {message}")
        return stdout.decode("utf-8", errors="replace")


def _read_if_there(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
