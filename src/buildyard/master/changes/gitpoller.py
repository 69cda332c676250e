"""``changes.GitPoller``: watch a remote git repository by polling it with the ``git`` command.

:class:`GitPoller` is what master.cfg writes (Buildbot 4.3's keywords); :class:`GitPollerService`
runs it. Every ``pollInterval`` seconds (and on :meth:`GitPollerService.force`) one poll:

1. ``git init --bare <workdir>``: the local repository the poller fetches into (idempotent);
2. ``git ls-remote``: the refs to watch (the listed branches, all branches, the refs a callable
   accepts, the tags, or else the branch the remote ``HEAD`` names);
3. ``git fetch`` of those refs into private refs of the workdir, one namespace per repository
   (``refs/buildyard/<repourl quoted>/heads/main``), so pollers may share a workdir (their
   ``init`` and ``fetch`` take turns);
4. for each ref, the commits that are new: ``git log --first-parent <new head> ^<every head
   known so far>``, oldest first, one change each (a merge is one change: the merged branch's
   own commits are not listed); a commit already reported for another branch is not reported
   again;
5. the heads go to the state ``lastRev`` of the object ``(name, "GitPoller")``, as Buildbot keeps
   them, so a restarted master reports the commits made while it was down, and only those.

The first poll ever only records the heads: no change for history already there. A ref the
poller sees for the first time later on reports its commits that no known head contains.

Polls never overlap (one lock); a failed poll (unknown repository, network, git error) is logged
with git's message and the next one happens as scheduled. Changes are written only after every
``git`` command of the poll succeeded, together with the new ``lastRev``; stopping the service
waits for that write, so a stop between a change and the state that covers it cannot repeat the
change after a restart.

May import: buildyard.master.data (through changes.base) and buildyard.common.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import random
import shutil
import tempfile
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import structlog

from buildyard.common.config_object import is_placeholder
from buildyard.common.errors import BuildyardError, config_error
from buildyard.master.changes.base import ChangeSource, ChangeSourceConfig, ChangeSourceContext
from buildyard.master.model.gitcredentials import GitCredentialOptions, with_user_password
from buildyard.master.model.projectconfig import Codebase
from buildyard.master.model.properties import (
    Properties,
    RenderError,
    SecretsOnly,
    is_renderable,
    render,
)

__all__ = ["GitError", "GitPoller", "GitPollerService"]

log = structlog.get_logger(__name__)

#: The class name under which pollers keep their state (Buildbot's, so its databases carry over).
STATE_CLASS = "GitPoller"
STATE_KEY = "lastRev"
DEFAULT_WORKDIR = "gitpoller-work"

BranchSelection = Sequence[str] | Literal[True] | Callable[[str], bool] | None


class GitError(BuildyardError):
    """A ``git`` command failed (or could not be started); the message has git's stderr."""


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_tags(ref: str) -> bool:
    return ref.startswith("refs/tags/")


_LABEL = "GitPoller"


def _branches(
    branches: Any, branch: Any, *, only_tags: bool
) -> list[str] | Literal[True] | Callable[[str], bool] | None:
    """What the poll watches: Buildbot's checks and normalisation of branch / branches /
    only_tags."""
    if only_tags and (branch or branches):
        config_error(f"{_LABEL}: can't specify only_tags and branch/branches")
    if branch and branches:
        config_error(f"{_LABEL}: can't specify both branch and branches")
    if branch and not isinstance(branch, str):
        config_error(f"{_LABEL}: 'branch' argument must be a str")
    if branches is not None and not (
        (isinstance(branches, list | tuple) and all(isinstance(b, str) for b in branches))
        or branches is True
        or callable(branches)
    ):
        config_error(
            f"{_LABEL}: 'branches' argument must be one of "
            "list of str, True, or Callable[[str], bool]"
        )
        branches = None
    if branch and isinstance(branch, str):
        return [branch]
    if branches is True or callable(branches):
        return branches  # type: ignore[no-any-return]
    if branches:
        # Buildbot 4.3 prefixes each name with refs/heads/; older Buildbots also took the full
        # ref, which 4.3 silently never finds: accept both
        return [b.removeprefix("refs/heads/") for b in branches]
    return _is_tags if only_tags else None


def _timing(
    interval: Any, delay_min: Any, delay_max: Any, *, label: str = _LABEL
) -> tuple[float, float, float]:
    """``pollInterval`` and the random delays, checked as Buildbot does (in its words)."""
    values: list[float] = []
    for keyword, seconds, default in (
        ("pollInterval", interval, 600.0),
        ("pollRandomDelayMin", delay_min, 0.0),
        ("pollRandomDelayMax", delay_max, 0.0),
    ):
        if _is_number(seconds):
            values.append(float(seconds))
        else:
            config_error(f"{label}: {keyword} must be a number of seconds")
            values.append(default)
    every, low, high = values
    if every < 0:
        config_error(f"interval must be >= 0: {interval}")
    if low < 0:
        config_error(f"min random delay must be >= 0: {delay_min}")
    if high < 0:
        config_error(f"max random delay must be >= 0: {delay_max}")
    if low > high:
        config_error(f"min random delay must be <= {delay_max}: {delay_min}")
    if high >= every:
        config_error(f"max random delay must be < {interval}: {delay_max}")
    return every, low, high


def _text(keyword: str, value: Any, default: str) -> str:
    if isinstance(value, str) and value:
        return value
    config_error(f"{_LABEL}: {keyword} must be a non-empty string")
    return default


def _ssh(key: Any, host_key: Any, known_hosts: Any) -> tuple[Any, Any, Any]:
    """The ssh settings, checked as Buildbot's check_ssh_config does: strings or renderables
    (a ``util.Secret``), rendered at each poll."""
    if host_key is not None and key is None:
        config_error(f"{_LABEL}: sshPrivateKey must be provided in order use sshHostKey")
    if known_hosts is not None and key is None:
        config_error(f"{_LABEL}: sshPrivateKey must be provided in order use sshKnownHosts")
    if host_key is not None and known_hosts is not None:
        config_error(f"{_LABEL}: only one of sshKnownHosts and sshHostKey can be provided")
    checked: list[Any] = []
    for keyword, value in (
        ("sshPrivateKey", key),
        ("sshHostKey", host_key),
        ("sshKnownHosts", known_hosts),
    ):
        if value is None or _is_text(value):
            checked.append(value)
        else:
            config_error(f"{_LABEL}: {keyword} must be a string or a renderable (util.Secret)")
            checked.append(None)
    return checked[0], checked[1], checked[2]


def _is_text(value: Any) -> bool:
    return isinstance(value, str) or is_renderable(value)


def _credentials(value: Any) -> tuple[Any, Any] | None:
    if value is None:
        return None
    if isinstance(value, list | tuple) and len(value) == 2 and all(map(_is_text, value)):
        return (value[0], value[1])
    config_error(
        f"{_LABEL}: auth_credentials must be a (username, password) pair of strings or "
        "renderables (util.Secret)"
    )
    return None


def _git_credentials(value: Any) -> GitCredentialOptions | None:
    if value is None or is_placeholder(value):
        return None
    if isinstance(value, GitCredentialOptions):
        return value
    config_error(f"{_LABEL}: git_credentials must be a util.GitCredentialOptions")
    return None


class GitPoller(ChangeSourceConfig):
    """Buildbot's ``changes.GitPoller(repourl, **kwargs)``; see the module docstring.

    ``branches`` is a list of branch names, ``True`` for every branch, or a callable given each
    remote ref (``"refs/heads/main"``, ``"refs/tags/v1"``...) that says whether to watch it;
    ``branch`` is the older single-branch form; without either, the branch of the remote
    ``HEAD``. ``only_tags`` watches the tags instead. ``category`` is a string or a callable
    given the change as a dict. The change source's ``name`` defaults to ``repourl`` (as in
    Buildbot). ``sshPrivateKey``, ``sshHostKey``, ``sshKnownHosts``, ``auth_credentials`` and
    ``git_credentials`` (``util.GitCredentialOptions``) may be strings or renderables such as
    ``util.Secret``, rendered (from ``c['secretsProviders']``) at each poll.
    """

    _secret_arguments = frozenset({"sshPrivateKey", "auth_credentials", "git_credentials"})

    def __init__(
        self,
        repourl: str | None = None,
        *,
        branches: BranchSelection = None,
        branch: str | None = None,
        workdir: str | None = None,
        pollInterval: float = 10 * 60,
        gitbin: str = "git",
        usetimestamps: bool = True,
        category: str | Callable[[dict[str, Any]], str | None] | None = None,
        codebase: object = None,
        project: str | None = None,
        fetch_refspec: object = None,
        encoding: str = "utf-8",
        name: str | None = None,
        pollAtLaunch: bool = False,
        buildPushesWithNoCommits: bool = False,
        only_tags: bool = False,
        sshPrivateKey: Any = None,
        sshHostKey: Any = None,
        sshKnownHosts: Any = None,
        pollRandomDelayMin: float = 0,
        pollRandomDelayMax: float = 0,
        auth_credentials: tuple[Any, Any] | None = None,
        git_credentials: GitCredentialOptions | None = None,
    ) -> None:
        # master.cfg may pass anything: each value is checked as what it is, not as annotated
        given: dict[str, Any] = dict(locals())
        self.repourl: str = given["repourl"] if isinstance(given["repourl"], str) else ""
        if not self.repourl:
            config_error(f"{_LABEL}: repourl must be given, as a non-empty string")
        self.name: str = self.repourl
        if isinstance(given["name"], str):
            self.name = given["name"]
        elif name is not None:
            config_error(f"{_LABEL}: name must be a string, not {type(name).__name__}")

        self.branches = _branches(given["branches"], given["branch"], only_tags=only_tags)
        self.only_tags = bool(only_tags)
        if fetch_refspec is not None:
            config_error(
                f"{_LABEL}: fetch_refspec is no longer supported. "
                "Instead, only the given branches are downloaded."
            )
        self.codebase: Codebase | None = None
        if isinstance(codebase, Codebase):
            self.codebase = codebase
        elif codebase is not None and not is_placeholder(codebase):
            config_error(
                f"{_LABEL}: codebase must be None or instance of Codebase (util.Codebase), "
                f"not {codebase!r} "
                "(a codebase name for the changes is set by c['codebaseGenerator'])"
            )

        self.poll_interval, self.poll_random_delay_min, self.poll_random_delay_max = _timing(
            given["pollInterval"], given["pollRandomDelayMin"], given["pollRandomDelayMax"]
        )
        self.poll_at_launch = bool(pollAtLaunch)

        self.workdir: str = DEFAULT_WORKDIR
        if isinstance(given["workdir"], str | os.PathLike):
            self.workdir = os.fspath(given["workdir"])
        elif workdir is not None:
            config_error(f"{_LABEL}: workdir must be a string or None")
        self.gitbin = _text("gitbin", given["gitbin"], "git")
        self.encoding = _text("encoding", given["encoding"], "utf-8")
        self.category: str | Callable[[dict[str, Any]], str | None] | None = None
        if isinstance(given["category"], str) or callable(given["category"]):
            self.category = category
        elif category is not None:
            config_error(f"{_LABEL}: category must be a string, a callable or None")
        self.project: str = ""
        if isinstance(given["project"], str):
            self.project = given["project"]
        elif project is not None:
            config_error(f"{_LABEL}: project must be a string or None")
        self.usetimestamps = bool(usetimestamps)
        self.build_pushes_with_no_commits = bool(buildPushesWithNoCommits)

        self.ssh_private_key, self.ssh_host_key, self.ssh_known_hosts = _ssh(
            given["sshPrivateKey"], given["sshHostKey"], given["sshKnownHosts"]
        )
        self.auth_credentials = _credentials(given["auth_credentials"])
        self.git_credentials = _git_credentials(given["git_credentials"])

    def make_service(self, name: str, ctx: ChangeSourceContext) -> GitPollerService:
        return GitPollerService(name, self, ctx)


class _CommitRecorder:
    """Records a ref's new changes as commits of a codebase (Buildbot 4's codebase history),
    each linked to the one before it (the first to its parent, when that is recorded), then
    moves the branch to the last one. Does nothing without a codebase. A commit that cannot be
    recorded is logged and the others carry on: the changes, already stored, matter more."""

    def __init__(self, ctx: ChangeSourceContext, codebaseid: int | None, branch: str) -> None:
        self._ctx = ctx
        self._codebaseid = codebaseid
        self._branch = branch
        self._last: int | None = None

    async def start_after(self, parent: str) -> None:
        assert self._codebaseid is not None
        self._last = await self._ctx.updates.commit_id(codebaseid=self._codebaseid, revision=parent)

    async def add(self, change: _NewChange) -> None:
        if self._codebaseid is None:
            return
        updates = self._ctx.updates
        try:
            # a revision already recorded (a push that only moved the branch) is not added
            # twice: the branch moves to it
            known = await updates.commit_id(codebaseid=self._codebaseid, revision=change.revision)
            self._last = known or await updates.add_commit(
                codebaseid=self._codebaseid,
                author=change.author,
                committer=change.committer,
                comments=change.comments,
                when_timestamp=change.commit_timestamp,
                revision=change.revision,
                parent_commitid=self._last,
            )
        except Exception as exc:
            log.warning(
                "gitpoller_commit_not_recorded",
                revision=change.revision,
                error=f"{type(exc).__name__}: {exc}",
            )

    async def finish(self) -> None:
        if self._codebaseid is None or self._last is None:
            return
        try:
            await self._ctx.updates.update_branch(
                codebaseid=self._codebaseid,
                name=self._branch,
                commitid=self._last,
                last_timestamp=int(self._ctx.clock.now()),
            )
        except Exception as exc:
            log.warning(
                "gitpoller_branch_not_recorded",
                branch=self._branch,
                error=f"{type(exc).__name__}: {exc}",
            )


# -- the running poller -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _NewChange:
    """A commit to report, as ``updates.add_change`` takes it."""

    author: str
    committer: str
    files: tuple[str, ...]
    comments: str
    revision: str
    when_timestamp: int | None
    branch: str
    category: str | None
    repository: str
    project: str
    # the commit's own time, which a codebase's commit keeps even without usetimestamps
    commit_timestamp: int = dataclasses.field(default=0, compare=False)

    def arguments(self) -> dict[str, Any]:
        """The keyword arguments of ``updates.add_change``."""
        found = dataclasses.asdict(self)
        del found["commit_timestamp"]
        # Buildbot's GitPoller says its changes come from git: their authors become users
        found["src"] = "git"
        return found


@dataclasses.dataclass(frozen=True, slots=True)
class _RefReport:
    """One watched ref after the git part of a poll: its state key, head, new changes, and
    the first parent of the first of them (for the codebase's commits; None without one)."""

    key: str
    head: str
    changes: tuple[_NewChange, ...]
    parent: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class _GitAuth:
    """What ``ls-remote`` and ``fetch`` need for ssh keys and credentials: ``-c`` options."""

    options: tuple[str, ...] = ()


def _quote_component(text: str) -> str:
    """``text`` as one valid component of a ref name (no ``/``, ``.``, ``~`` or spaces)."""
    quoted = quote(text, safe="").replace(".", "%2E").replace("~", "%7E")
    if len(quoted) > 120:  # a loose ref is a file: keep well below file-name limits
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        quoted = f"{quoted[:100]}-{digest}"
    return quoted


def tracker_ref(repourl: str, ref: str) -> str:
    """The workdir's private ref into which ``ref`` of ``repourl`` is fetched."""
    namespace = _quote_component(repourl)
    if ref.startswith("refs/"):
        return f"refs/buildyard/{namespace}/{ref.removeprefix('refs/')}"
    return f"refs/buildyard-raw/{namespace}/{ref}"


# Pollers may share a workdir (by default they all do): the git commands that write to it (init,
# fetch) take turns. One table per event loop, as asyncio locks belong to one loop.
_workdir_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Path, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _workdir_lock(workdir: Path) -> asyncio.Lock:
    locks = _workdir_locks.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(workdir, asyncio.Lock())


def _describe(args: Sequence[str]) -> str:
    """A git command line for messages: without its ``-c`` options (they may name key files),
    and cut short (a fetch may list thousands of refs)."""
    shown: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "-c":
            skip = True
        else:
            shown.append(arg)
    return f"git {' '.join(shown[:3])}{' ...' if len(shown) > 3 else ''}"


def _short_branch(ref: str) -> str:
    """A change's branch: ``refs/heads/main`` becomes ``main``; other refs stay whole."""
    return ref.removeprefix("refs/heads/")


class GitPollerService(ChangeSource):
    """One :class:`GitPoller` at work. :meth:`activate` starts the poll loop (a task of this
    service; stopping the service cancels it, after any write of changes under way); :meth:`poll`
    and :meth:`force` poll now."""

    config: GitPoller

    def __init__(self, name: str, config: GitPoller, ctx: ChangeSourceContext) -> None:
        super().__init__(name, config, ctx)
        self._poll_lock = asyncio.Lock()
        self._forced = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        # the heads of the last poll (None: read them from the state first)
        self._last_rev: dict[str, str] | None = None
        self._objectid: int | None = None
        # set while a poll writes its changes and state; stop() waits for it
        self._writing: asyncio.Event | None = None
        self._stopping = False
        self._polls = 0
        self._failed_polls = 0
        # the id of config.codebase, found at the first poll that needs it
        self._codebaseid: int | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def activate(self) -> None:
        self._stopping = False
        self._last_rev = None  # another master may have polled while this one did not
        self._start_loop()

    def _start_loop(self) -> None:
        self._loop = self.spawn(self._poll_loop(), name="poll")

    async def stop(self) -> None:
        # Changes and the lastRev covering them are written together: let a write under way
        # finish rather than cancel it in between, which would repeat changes after a restart.
        self._stopping = True
        while self._writing is not None:
            await self._writing.wait()
        await super().stop()

    async def reconfigure(self, config: Any) -> None:
        """Take the new settings; they apply from the next poll on (never to one under way).
        A new interval or random delay restarts the schedule (polling at once if
        ``pollAtLaunch``), as Buildbot does on a new interval."""
        async with self._poll_lock:
            old = self.config
            self.config = config
            self._last_rev = None
            self._codebaseid = None
            timing = ("poll_interval", "poll_random_delay_min", "poll_random_delay_max")
            running = self._loop is not None and not self._loop.done()
            if running and any(getattr(old, k) != getattr(config, k) for k in timing):
                assert self._loop is not None
                self._loop.cancel()
                _ = await asyncio.wait([self._loop])
                self._start_loop()

    def force(self) -> None:
        """Poll as soon as possible: now, or right after the poll under way. Ignored while this
        master does not run the change source (as in Buildbot)."""
        if self._loop is None or self._loop.done():
            log.info("gitpoller_force_ignored", changesource=self.name, reason="not active")
            return
        self._forced.set()

    def statistics(self) -> dict[str, int]:
        return {**super().statistics(), "polls": self._polls, "failed_polls": self._failed_polls}

    # -- schedule ------------------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        """Poll at ``start + k * pollInterval`` (+ a random delay each time); a poll that runs
        past its successor's time skips it, as Buildbot's poller does."""
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
        """Poll now, after the poll under way if any (polls never overlap). A failure is logged,
        not raised: the next poll tries again."""
        async with self._poll_lock:
            self._polls += 1
            with structlog.contextvars.bound_contextvars(
                changesource=self.name, repourl=self.config.repourl
            ):
                try:
                    await self._poll()
                except GitError as exc:
                    self._failed_polls += 1
                    log.warning("gitpoller_poll_failed", error=str(exc))
                except Exception:
                    self._failed_polls += 1
                    log.exception("gitpoller_poll_crashed")

    async def _poll(self) -> None:
        config = self.config
        workdir = self._workdir()
        async with _workdir_lock(workdir):
            await self._git("init", "--bare", str(workdir))
        async with self._auth(workdir) as auth:
            refs, trim_heads = await self._watched_refs(auth)
            if not refs:
                log.info("gitpoller_nothing_to_watch")
                return
            refspecs = [f"+{ref}:{tracker_ref(config.repourl, ref)}" for ref in refs]
            async with _workdir_lock(workdir):
                await self._git(
                    *auth.options,
                    "fetch",
                    "--no-tags",
                    config.repourl,
                    *refspecs,
                    "--",
                    cwd=workdir,
                )
        heads = await self._tracked_heads(workdir)

        previous = await self._previous_heads()
        known = dict(previous)
        reports: list[_RefReport] = []
        new_state: dict[str, str] = {}
        for ref in refs:
            key = _short_branch(ref) if trim_heads else ref
            head = heads.get(tracker_ref(config.repourl, ref))
            if head is None:
                log.warning("gitpoller_ref_not_fetched", ref=ref)
                continue
            try:
                changes = await self._new_changes(key, head, previous, known, workdir)
            except Exception as exc:
                # This ref keeps its old head, so that the next poll tries its commits again.
                if key in previous:
                    new_state[key] = previous[key]
                if isinstance(exc, GitError):
                    log.warning("gitpoller_ref_failed", ref=ref, error=str(exc))
                else:
                    log.exception("gitpoller_ref_failed", ref=ref)
                continue
            parent = None
            if config.codebase is not None and changes:
                try:
                    parent = await self._first_parent(changes[0].revision, workdir)
                except GitError as exc:
                    log.warning("gitpoller_parent_unknown", ref=ref, error=str(exc))
            known[key] = head
            new_state[key] = head
            reports.append(_RefReport(key, head, changes, parent))

        if self._stopping:
            return  # nothing written: the next poll (after a restart) does it all again
        await self._record(reports, new_state, previous)

    async def _previous_heads(self) -> dict[str, str]:
        if self._last_rev is None:
            if self._objectid is None:
                self._objectid = await self.ctx.updates.get_object_id(self.name, STATE_CLASS)
            stored = await self.ctx.updates.get_state(self._objectid, STATE_KEY, {})
            if not isinstance(stored, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in stored.items()
            ):
                log.warning("gitpoller_state_ignored", state=repr(stored)[:200])
                stored = {}
            self._last_rev = dict(stored)
        return dict(self._last_rev)

    async def _new_changes(
        self,
        key: str,
        head: str,
        previous: Mapping[str, str],
        known: Mapping[str, str],
        workdir: Path,
    ) -> tuple[_NewChange, ...]:
        """The changes for ``key`` now at ``head``: its commits that no known head contains
        (the old head of every ref, and the new heads of the refs handled before it)."""
        config = self.config
        if not previous:
            return ()  # the first poll ever: history already there is not news
        old = previous.get(key)
        if old == head:
            return ()
        exclusions = "".join(f"^{rev}\n" for rev in sorted(set(known.values())))
        out = await self._git(
            "log",
            "--ignore-missing",
            "--first-parent",
            "--format=%H",
            "--stdin",
            head,
            "--",
            cwd=workdir,
            stdin=exclusions,
        )
        revisions = list(reversed(out.split()))
        if not revisions and config.build_pushes_with_no_commits and old != head:
            log.info(
                "gitpoller_push_without_commits",
                ref=key,
                revision=head,
                new_ref=old is None,
            )
            revisions = [head]
        if revisions:
            log.info("gitpoller_new_commits", ref=key, count=len(revisions))
        return tuple([await self._change(rev, key, workdir) for rev in revisions])

    async def _change(self, revision: str, key: str, workdir: Path) -> _NewChange:
        config = self.config
        meta = await self._git(
            "log",
            "--no-walk",
            "--format=%ct%x00%aN <%aE>%x00%cN <%cE>%x00%s%n%b",
            revision,
            "--",
            cwd=workdir,
        )
        fields = meta.split("\0", 3)
        if len(fields) != 4:
            raise GitError(f"unexpected output of git log for {revision}: {meta!r}")
        timestamp, author, committer, comments = (f.strip() for f in fields)
        if not author:
            raise GitError(f"could not get commit author for {revision}")
        if not committer:
            raise GitError(f"could not get commit committer for {revision}")
        listing = await self._git(
            "log",
            "-z",
            "--name-only",
            "--no-walk",
            "--format=",
            "-m",
            "--first-parent",
            revision,
            "--",
            cwd=workdir,
        )
        files = tuple(name.strip("\n") for name in listing.split("\0") if name.strip("\n"))
        when = int(timestamp) if config.usetimestamps else None
        branch = _short_branch(key)
        category = config.category
        if callable(category):
            # Buildbot hands the category callable the change as a dict (its default
            # preChangeGenerator)
            category = category(
                {
                    "author": author,
                    "committer": committer,
                    "files": list(files),
                    "comments": comments,
                    "revision": revision,
                    "when_timestamp": when,
                    "branch": branch,
                    "revlink": "",
                    "properties": {},
                    "repository": config.repourl,
                    "project": config.project,
                }
            )
        return _NewChange(
            author=author,
            committer=committer,
            files=files,
            comments=comments,
            revision=revision,
            when_timestamp=when,
            branch=branch,
            category=None if category is None else str(category),
            repository=config.repourl,
            project=config.project,
            commit_timestamp=int(timestamp),
        )

    async def _first_parent(self, revision: str, workdir: Path) -> str | None:
        out = await self._git("log", "--no-walk", "--format=%P", revision, "--", cwd=workdir)
        parents = out.split()
        return parents[0] if parents else None

    async def _record(
        self,
        reports: Sequence[_RefReport],
        new_state: dict[str, str],
        previous: Mapping[str, str],
    ) -> None:
        """Write the changes, oldest first, then the heads that cover them. If a write fails
        part way, the state saved covers exactly the changes written: none is repeated or
        lost by the next poll."""
        assert self._objectid is not None
        self._writing = asyncio.Event()
        try:
            written: dict[str, str] = {}
            try:
                for report in reports:
                    commits = await self._commits(report)
                    for change in report.changes:
                        await self.ctx.updates.add_change(**change.arguments())
                        written[report.key] = change.revision
                        await commits.add(change)
                    written[report.key] = report.head
                    await commits.finish()
            except BaseException:
                partial = dict(new_state)
                for report in reports:
                    if report.key in written:
                        partial[report.key] = written[report.key]
                    elif report.key in previous:
                        partial[report.key] = previous[report.key]
                    else:
                        del partial[report.key]
                self._last_rev = None
                with contextlib.suppress(Exception):
                    await self.ctx.updates.set_state(self._objectid, STATE_KEY, partial)
                raise
            await self.ctx.updates.set_state(self._objectid, STATE_KEY, new_state)
            self._last_rev = new_state
        finally:
            self._writing.set()
            self._writing = None

    async def _codebase_id(self) -> int | None:
        """The id of the configured codebase (found once per configuration); None without
        one, or when it cannot be found (logged: the changes are stored all the same)."""
        codebase = self.config.codebase
        if codebase is None:
            return None
        if self._codebaseid is None:
            try:
                self._codebaseid = await self.ctx.updates.codebase_id(
                    project=codebase.project, name=codebase.name
                )
            except LookupError as exc:
                log.error("gitpoller_codebase_unknown", codebase=codebase.name, error=str(exc))
        return self._codebaseid

    async def _commits(self, report: _RefReport) -> _CommitRecorder:
        """What records the report's changes as commits of the configured codebase."""
        codebaseid = await self._codebase_id() if report.changes else None
        recorder = _CommitRecorder(self.ctx, codebaseid, report.key)
        if codebaseid is not None and report.parent is not None:
            await recorder.start_after(report.parent)
        return recorder

    # -- git -----------------------------------------------------------------------------------

    def _workdir(self) -> Path:
        workdir = Path(self.config.workdir)
        return workdir if workdir.is_absolute() else self.ctx.basedir / workdir

    async def _watched_refs(self, auth: _GitAuth) -> tuple[list[str], bool]:
        """The remote refs to fetch, and whether their state keys drop ``refs/heads/``."""
        branches = self.config.branches
        if callable(branches):
            return [ref for ref in await self._ls_remote(auth) if branches(ref)], False
        if branches is True:
            return await self._ls_remote(auth, "refs/heads/*"), False
        if branches:
            wanted = {f"refs/heads/{b}" for b in branches}
            # ls-remote matches patterns on the refs' tails: keep only the exact names
            found = await self._ls_remote(auth, *sorted(wanted))
            return [ref for ref in found if ref in wanted], True
        return await self._remote_head(auth), False

    async def _ls_remote(self, auth: _GitAuth, *patterns: str) -> list[str]:
        out = await self._git(*auth.options, "ls-remote", "--refs", self.config.repourl, *patterns)
        refs: list[str] = []
        for row in out.splitlines():
            _, tab, ref = row.partition("\t")
            if tab:
                refs.append(ref)
        return refs

    async def _remote_head(self, auth: _GitAuth) -> list[str]:
        """The branch the remote ``HEAD`` names; ``HEAD`` itself when it is detached; nothing
        for an empty repository."""
        out = await self._git(*auth.options, "ls-remote", "--symref", self.config.repourl, "HEAD")
        parts = out.split(maxsplit=3)
        if len(parts) >= 3 and parts[0] == "ref:" and parts[2] == "HEAD":
            return [parts[1]]
        return ["HEAD"] if out.strip() else []

    async def _tracked_heads(self, workdir: Path) -> dict[str, str]:
        """Every private ref of this repository in the workdir, with the object it names."""
        namespace = _quote_component(self.config.repourl)
        out = await self._git(
            "for-each-ref",
            "--format=%(objectname) %(refname)",
            f"refs/buildyard/{namespace}",
            f"refs/buildyard-raw/{namespace}",
            cwd=workdir,
        )
        heads: dict[str, str] = {}
        for row in out.splitlines():
            objectname, _, refname = row.partition(" ")
            heads[refname] = objectname
        return heads

    @contextlib.asynccontextmanager
    async def _auth(self, workdir: Path) -> AsyncIterator[_GitAuth]:
        """The ssh key, known hosts and credentials in a private directory of the workdir, for
        the duration of ``ls-remote`` and ``fetch``; removed afterwards (and, if the master
        was killed meanwhile, by the next poll in that workdir: see :func:`_remove_stale_auth`)."""
        config = self.config
        options_given = config.git_credentials
        if config.auth_credentials is not None:
            options_given = with_user_password(
                config.auth_credentials, config.repourl, options_given
            )
        if config.ssh_private_key is None and options_given is None:
            yield _GitAuth()
            return
        props = Properties()
        props.build = SecretsOnly(self.ctx.secret)
        try:
            ssh = await render(
                (config.ssh_private_key, config.ssh_host_key, config.ssh_known_hosts), props
            )
            rendered = await render(list(options_given.credentials if options_given else []), props)
        except RenderError as exc:  # a secret no provider has: this poll fails, as git would
            raise GitError(f"cannot render the credentials: {exc}") from exc
        credentials = [str(text) for text in rendered if text]
        await asyncio.to_thread(_remove_stale_auth, workdir)
        directory = Path(
            await asyncio.to_thread(
                tempfile.mkdtemp, dir=workdir, prefix=f"{_AUTH_PREFIX}{os.getpid()}-"
            )
        )
        try:
            options: list[str] = []
            if ssh[0] is not None:
                options += await asyncio.to_thread(_write_ssh_files, directory, *ssh)
            if credentials:
                store = directory / ".git-credentials"
                options += [
                    "-c",
                    "credential.helper=",
                    "-c",
                    f'credential.helper=store "--file={store}"',
                ]
                use_http_path = options_given.use_http_path if options_given else None
                if use_http_path is not None:
                    options += ["-c", f"credential.useHttpPath={str(use_http_path).lower()}"]
                for text in credentials:
                    await self._git(*options, "credential", "approve", stdin=text)
            yield _GitAuth(tuple(options))
        finally:
            await asyncio.to_thread(shutil.rmtree, directory, True)

    async def _git(self, *args: str, cwd: Path | None = None, stdin: str | None = None) -> str:
        """Run ``git args`` without blocking the loop; its stdout, decoded. Cancelling kills
        the process."""
        config = self.config
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
        try:
            process = await asyncio.create_subprocess_exec(
                config.gitbin,
                *args,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise GitError(f"cannot run {config.gitbin!r}: {exc}") from exc
        try:
            stdout, stderr = await process.communicate(
                stdin.encode(config.encoding) if stdin is not None else None
            )
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            _ = await asyncio.shield(process.wait())
            raise
        if process.returncode != 0:
            message = stderr.decode(config.encoding, errors="replace").strip()
            raise GitError(
                f"{_describe(args)} failed with exit code {process.returncode}: {message}"
            )
        return stdout.decode(config.encoding, errors="replace")


def _write_private(path: Path, text: str) -> None:
    # created readable by this user only, before anything is written into it
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def _write_ssh_files(directory: Path, key_text: Any, host_key: Any, known_hosts: Any) -> list[str]:
    key = directory / "ssh-key"
    text = str(key_text)
    _write_private(key, text if text.endswith(("\n", "\r")) else text + "\n")
    ssh = ["ssh", "-o", "BatchMode=yes", "-i", str(key)]
    if known_hosts is None and host_key is not None:
        known_hosts = f"* {host_key}"
    if known_hosts is not None:
        hosts = directory / "ssh-known-hosts"
        _write_private(hosts, str(known_hosts))
        ssh += ["-o", f"UserKnownHostsFile={hosts}"]
    command = " ".join(f'"{a}"' if not a.replace("-", "").isalnum() else a for a in ssh)
    return ["-c", f"core.sshCommand={command}"]


# the private directories of polls' credentials: PREFIX<pid of the master>-<random>
_AUTH_PREFIX = ".buildyard-auth-"


def _remove_stale_auth(workdir: Path) -> None:
    """Remove the credential directories that a master killed mid-poll left in ``workdir`` (a
    private key, a password): those whose process is gone. The live ones of this master and of
    any other running process are left alone (pollers may share a workdir)."""
    for directory in workdir.glob(f"{_AUTH_PREFIX}*"):
        pid_text = directory.name[len(_AUTH_PREFIX) :].partition("-")[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _alive(int(pid_text)):
            continue
        shutil.rmtree(directory, ignore_errors=True)
        log.info("stale_git_credentials_removed", path=str(directory))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
