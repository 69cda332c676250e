"""steps.SVN: check out a Subversion URL on the worker (Buildbot's ``steps.SVN``).

Modes and methods, as Buildbot 4.3 has them:

- ``incremental`` (default): ``svn update`` (to the revision, if the build names one) when the
  directory is a working copy of ``repourl``; otherwise the directory is removed and checked out
  afresh;
- ``full`` with ``method``:
    - ``fresh`` (default): remove what ``svn status --no-ignore`` lists as unversioned or
      ignored, then update;
    - ``clean``: remove what ``svn status`` lists as unversioned (ignored files stay), then
      update;
    - ``clobber``: remove the directory and check out afresh;
    - ``copy``: update a working copy kept in ``source`` (``source/<codebase>`` with a
      codebase) incrementally, then copy it over a fresh ``workdir``;
    - ``export``: the same, but ``svn export`` from ``source`` into ``workdir`` (no ``.svn``).

``keep_on_purge`` names paths (as ``svn status`` shows them) that fresh and clean leave alone.
A directory is a working copy of ``repourl`` when it holds ``.svn`` and ``svn info --xml``
names the same URL (after Buildbot's canonicalisation of both); an interrupted operation
(svn's ``E155037``) makes it not one. The step checks out the build's revision for its codebase
(without one, the newest; with changes and no revision, the highest of their revisions). As in
Buildbot 4.3, the stamp's branch is not used: render the branch into ``repourl`` instead
(``util.Interpolate('svn://host/repo/%(src::branch)s')``).

Afterwards ``got_revision`` is the working copy's revision from ``svn info --xml`` (with
``preferLastChangedRev``, its last changed revision), by codebase when the step has one.

The svn commands that reach the repository get ``--non-interactive --no-auth-cache``,
``--username``, the password, ``--depth`` and ``extra_args`` (``svn export`` only the user
name, the password and ``extra_args``), as in Buildbot. The password never appears in the
step's log: on a PB connection to a worker whose ``shell`` is 2.16 or newer it travels as
Buildbot's obfuscated word (the worker shows ``XXXXXX``); otherwise (msgpack connections, where
the stock worker cannot tell an obfuscated word from a list, and older workers, to which
Buildbot would show it) svn reads it from its standard input (``--password-from-stdin``, svn
1.10 or newer on the worker).

A worker without svn (``svn --version`` fails) ends the step EXCEPTION, with "SVN is not
installed on worker" in its ``err.text`` log, as in Buildbot.
"""

from __future__ import annotations

import asyncio
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from urllib.parse import quote, unquote, urlparse, urlunparse

from buildyard.common.errors import config_error
from buildyard.master.steps.base import BuildStepFailed, WorkerSetupError
from buildyard.master.steps.remotecommand import RemoteShellCommand
from buildyard.master.steps.source.base import Patch, Source

__all__ = ["SVN", "canonical_svn_url", "unversioned_files"]

_MODES = ("full", "incremental")
_METHODS = ("clean", "fresh", "clobber", "copy", "export", None)
_MASK = "XXXXXX"


@dataclass(frozen=True)
class _Recipe:
    """How one method gets the build's tree into the work directory."""

    #: update a working copy of ``repourl`` that is already there (else remove and check out)
    reuse: bool = True
    #: before that update, remove what svn does not version: ``"unversioned"`` (ignored files
    #: stay) or ``"all"`` (ignored files go too)
    sweep: Literal["unversioned", "all"] | None = None
    #: the working copy lives in a separate directory and reaches the work directory by
    #: ``"cpdir"`` (the worker copies it) or ``"export"`` (``svn export``, no ``.svn``)
    staged: Literal["cpdir", "export"] | None = None


# the method chosen for the build (None: mode incremental) -> what it does
_RECIPES: dict[str | None, _Recipe] = {
    None: _Recipe(),
    "fresh": _Recipe(sweep="all"),
    "clean": _Recipe(sweep="unversioned"),
    "clobber": _Recipe(reuse=False),
    "copy": _Recipe(staged="cpdir"),
    "export": _Recipe(staged="export"),
}


class SVN(Source):
    """Buildbot's ``steps.SVN``; see the module docstring."""

    name = "svn"
    renderables: ClassVar[Sequence[str]] = (*Source.renderables, "repourl", "password", "username")

    def __init__(
        self,
        repourl: Any = None,
        mode: Any = "incremental",
        method: Any = None,
        username: Any = None,
        password: Any = None,
        extra_args: Any = None,
        keep_on_purge: Any = None,
        depth: Any = None,
        preferLastChangedRev: bool = False,
        **kwargs: Any,
    ) -> None:
        self.repourl: Any = repourl
        self.mode: Any = mode
        self.method: Any = method
        self.username: Any = username
        self.password: Any = password
        self.extra_args: list[str] = []
        self.keep_on_purge: list[str] = []
        self.depth: Any = depth
        self.preferLastChangedRev = bool(preferLastChangedRev)
        super().__init__(**kwargs)
        if mode not in _MODES:
            config_error(f"SVN: mode {mode!r} is not one of {list(_MODES)}")
        if method not in _METHODS:
            config_error(f"SVN: method {method!r} is not one of {_METHODS}")
        if repourl is None:
            config_error("SVN: you must provide repourl")
        if isinstance(extra_args, list | tuple) and all(isinstance(a, str) for a in extra_args):
            self.extra_args = list(extra_args)
        elif extra_args is not None:
            config_error("SVN: extra_args must be a list of strings")
        if isinstance(keep_on_purge, list | tuple) and all(
            isinstance(a, str) for a in keep_on_purge
        ):
            self.keep_on_purge = list(keep_on_purge)
        elif keep_on_purge is not None:
            config_error("SVN: keep_on_purge must be a list of paths")
        if depth is not None and not isinstance(depth, str):
            config_error("SVN: depth must be one of empty, files, immediates, infinity")
        # per build
        self.revision: str | None = None
        self._password_on_stdin = False

    def computeSourceRevision(self, changes: Sequence[Any]) -> str | None:
        """The highest revision of the build's changes (None if one has none)."""
        numbers = [getattr(change, "revision", None) for change in changes]
        if not numbers or any(n is None for n in numbers):
            return None
        try:
            return str(max(int(str(n)) for n in numbers))
        except ValueError:
            return None

    # -- the step ------------------------------------------------------------------------------

    async def run_vc(self, branch: Any, revision: str | None, patch: Patch | None) -> int:
        self.revision = None if revision is None else str(revision)
        # mode full without a method means fresh; mode incremental has none
        self.method = (self.method or "fresh") if self.mode == "full" else None
        recipe = _RECIPES[self.method]
        await self.addLogForRemoteCommands("stdio")
        conn = self._runtime().conn
        # Buildbot's obfuscated word where it arrives as one (see the module docstring)
        self._password_on_stdin = self.password is not None and (
            getattr(conn, "protocol", "") != "pb" or self.workerVersionIsOlderThan("shell", "2.16")
        )
        target = str(self.workdir)
        probe = await self._svn(target, ["--version"], must_succeed=False)
        if probe.rc != 0:
            # the step ends EXCEPTION, the reason in its err.text log
            raise WorkerSetupError("SVN is not installed on worker")
        if await self.sourcedirIsPatched():
            # what the last build's patch added goes, whatever the method
            await self._sweep(target, ignored_too=False)
        tree = self._staging_dir() if recipe.staged else target
        if recipe.staged:
            await self.runRmdir(target, timeout=self.timeout)
        if recipe.reuse and await self._is_working_copy(tree):
            if recipe.sweep:
                await self._sweep(tree, ignored_too=recipe.sweep == "all")
            await self._svn_remote(tree, ["update", *self._revision_option()])
        else:
            await self._check_out_afresh(tree)
        if recipe.staged == "cpdir":
            await self.runRemoteCommand(
                "cpdir",
                {
                    "fromdir": tree,
                    "todir": target,
                    "logEnviron": self.logEnviron,
                    "timeout": self.timeout,
                },
            )
        elif recipe.staged == "export":
            # svn export gets the credentials and extra_args, not the other common options
            exported = [*self._revision_option(), *self._credentials(), *self.extra_args]
            await self._svn("", ["export", *exported, tree, target])
        if patch:
            await self.patch(patch)
        return await self._record_revision()

    def _staging_dir(self) -> str:
        """The working copy that methods copy and export keep between builds."""
        if self.codebase:
            return str(self.path_module().join("source", str(self.codebase)))
        return "source"

    def _revision_option(self) -> list[str]:
        return ["--revision", self.revision] if self.revision else []

    async def _check_out_afresh(self, where: str) -> None:
        """Remove ``where`` and ``svn checkout`` into it; with ``retry``, a failed checkout
        is tried again (the directory removed again first) while tries remain."""
        await self.runRmdir(where, timeout=self.timeout)
        words = ["checkout", str(self.repourl), ".", *self._revision_option()]
        while True:
            tries_left = self.retry is not None and self.retry[1] > 0
            done = await self._svn_remote(where, words, must_succeed=not tries_left)
            if self.retry is None or self.stopped or not done.didFail():
                return
            pause, count = self.retry
            self.retry = (pause, count - 1)
            if not await self._wait_to_retry(pause):
                return
            await self.runRmdir(where, timeout=self.timeout)

    async def _wait_to_retry(self, pause: float) -> bool:
        """Sleep ``pause`` seconds before another try; False if the build was stopped
        meanwhile (then no more tries)."""
        await asyncio.sleep(pause)
        return not self.stopped

    # -- what is on the worker -----------------------------------------------------------------

    async def _is_working_copy(self, where: str) -> bool:
        """Whether ``where`` holds a usable working copy of ``repourl``."""
        if not await self.pathExists(self.path_module().join(where, ".svn")):
            return False
        info = await self._svn_remote(
            where, ["info", "--xml"], collect_stdout=True, collect_stderr=True, must_succeed=False
        )
        # E155037: an earlier svn command was cut short and the copy awaits "svn cleanup";
        # a new checkout replaces it
        if "E155037:" in (info.stderr or ""):
            return False
        url = self._xml_of(info, "svn info").findtext("./entry/url")
        if not url:
            self._note_bad_xml()
            raise BuildStepFailed("svn info named no URL")
        return url == canonical_svn_url(str(self.repourl))

    async def _sweep(self, where: str, *, ignored_too: bool) -> None:
        """Remove from ``where`` the files svn does not version (and, with ``ignored_too``,
        those it ignores), but not those in ``keep_on_purge``."""
        words = ["status", "--xml", *(["--no-ignore"] if ignored_too else [])]
        status = await self._svn_remote(where, words, collect_stdout=True)
        listed = self._xml_of(status, "svn status")
        paths = self.path_module()
        doomed = [paths.join(where, name) for name in _removable(listed, self.keep_on_purge)]
        if not doomed:
            return
        if not self.workerVersionIsOlderThan("rmdir", "2.14"):
            # workers from 2.14 on remove a list of paths in one command
            if await self.runRmdir(doomed, abandonOnFailure=False, timeout=self.timeout):
                raise BuildStepFailed("could not remove the unversioned files")
            return
        for path in doomed:
            if await self.runRmdir(path, abandonOnFailure=False, timeout=self.timeout):
                raise BuildStepFailed(f"could not remove {path}")

    async def _record_revision(self) -> int:
        """Set ``got_revision`` from ``svn info --xml`` of the checkout; its rc."""
        # export leaves no .svn in the work directory: ask the copy it exported from
        where = self._staging_dir() if self.method == "export" else str(self.workdir)
        info = await self._svn(where, ["info", "--xml"], collect_stdout=True, must_succeed=False)
        entry = self._xml_of(info, "svn info").find("./entry")
        found = None
        if entry is not None:
            last_change = entry.find("commit") if self.preferLastChangedRev else None
            if last_change is not None:
                found = last_change.get("revision")
            if found is None:
                found = entry.get("revision")
        if found is None:
            raise BuildStepFailed("svn info named no revision")
        if self.rc_log is not None:
            self.rc_log.add_header(f"Got SVN revision {found}\n")
        self.updateSourceProperty("got_revision", found)
        return info.rc or 0

    def _xml_of(self, cmd: RemoteShellCommand, what: str) -> ET.Element:
        """The XML that ``what`` printed (svn's own output); a step failure if it is not."""
        try:
            return ET.fromstring(cmd.stdout or "")
        except ET.ParseError as exc:
            self._note_bad_xml()
            raise BuildStepFailed(f"{what} gave output that is not XML") from exc

    def _note_bad_xml(self) -> None:
        if self.rc_log is not None:
            self.rc_log.add_header("Corrupted xml, aborting step\n")

    # -- running svn on the worker -------------------------------------------------------------

    def _credentials(self) -> list[Any]:
        """The user name and the password options (the password never in clear in the log)."""
        words: list[Any] = ["--username", str(self.username)] if self.username else []
        if self.password is None:
            return words
        if self._password_on_stdin:
            return [*words, "--password-from-stdin"]
        return [*words, "--password", ("obfuscated", str(self.password), _MASK)]

    async def _svn_remote(
        self,
        where: str,
        words: list[str],
        *,
        collect_stdout: bool = False,
        collect_stderr: bool = False,
        must_succeed: bool = True,
    ) -> RemoteShellCommand:
        """``svn <words>`` with the options of every command that talks to the repository:
        no prompts, no cached credentials, the credentials, ``depth`` and ``extra_args``."""
        full: list[Any] = [*words, "--non-interactive", "--no-auth-cache", *self._credentials()]
        if self.depth:
            full += ["--depth", str(self.depth)]
        return await self._svn(
            where,
            [*full, *self.extra_args],
            collect_stdout=collect_stdout,
            collect_stderr=collect_stderr,
            must_succeed=must_succeed,
        )

    async def _svn(
        self,
        where: str,
        words: list[Any],
        *,
        collect_stdout: bool = False,
        collect_stderr: bool = False,
        must_succeed: bool = True,
    ) -> RemoteShellCommand:
        """Run ``svn <words>`` in ``where`` on the worker, its output in the stdio log; a
        failure fails the step when ``must_succeed``."""
        wants_stdin = self.password is not None and "--password-from-stdin" in words
        cmd = RemoteShellCommand(
            where,
            ["svn", *words],
            env=self.env,
            logEnviron=self.logEnviron,
            timeout=self.timeout,
            collectStdout=collect_stdout,
            collectStderr=collect_stderr,
            initialStdin=f"{self.password}\n" if wants_stdin else None,
        )
        if self.rc_log is not None:
            cmd.useLog(self.rc_log, False, "stdio")
        await self.runCommand(cmd)
        if must_succeed and cmd.didFail():
            raise BuildStepFailed(f"svn {words[0] if words else ''} failed")
        return cmd

    async def _dovccmd(
        self,
        command: list[str],
        collectStdout: bool = False,
        collectStderr: bool = False,
        abandonOnFailure: bool = True,
    ) -> RemoteShellCommand:
        """Buildbot's name, for subclasses: ``svn <command>`` in the work directory with the
        common options; the finished command."""
        return await self._svn_remote(
            str(self.workdir),
            command,
            collect_stdout=collectStdout,
            collect_stderr=collectStderr,
            must_succeed=abandonOnFailure,
        )


def _removable(status: ET.Element, keep: Sequence[str]) -> Iterator[str]:
    """The paths in parsed ``svn status --xml`` that a sweep removes."""
    for entry in status.iter("entry"):
        state = entry.find("wc-status")
        if state is not None and state.get("item", "") in ("external", "missing"):
            continue  # not ours to remove: another checkout, or already gone
        path = entry.get("path", "")
        if path and path not in keep:  # "" is the working copy itself
            yield path


def unversioned_files(status_xml: str, keep_on_purge: Sequence[str] = ()) -> Iterator[str]:
    """The paths of ``svn status --xml`` to remove: every entry but externals, missing
    files, the working copy itself and ``keep_on_purge`` (ParseError on bad XML)."""
    return _removable(ET.fromstring(status_xml), keep_on_purge)


# the schemes whose paths svn resolves "." and ".." in, and their default ports
_DEFAULT_PORTS = {"http": "80", "https": "443", "svn": "3690"}
# what svn leaves unescaped in a URL's path
_PATH_SAFE = "!$&'()*+,-./:=@_~"
_DOTS = re.compile(r"[^/]+/\.\./?|/\./|//|/\.$|/\.\.$|^/\.\.")


def canonical_svn_url(url: str) -> str:
    """``url`` as svn writes it (what ``svn info`` names): lower-case scheme and host, no
    default port, no ``.``/``..``/empty segments (http, https, svn), the path escaped as svn
    escapes it, and no trailing slash. Buildbot's rules, so that the same checkouts count as
    working copies of the same URL."""
    if not url or url == "/":
        return url
    parts = urlparse(url)
    scheme = parts.scheme.lower()
    netloc = parts.netloc
    if netloc:
        user, at, hostport = netloc.partition("@")
        if not at:
            user, hostport = "", netloc
        host, colon, port = hostport.partition(":")
        if not host or (colon and not port):
            return url  # not a host[:port] svn would have written
        host = host.removesuffix(".").lower()
        netloc = f"{user}{at}{host}"
        if port and port != _DEFAULT_PORTS.get(scheme):
            netloc += f":{port}"
    path = parts.path
    if scheme in _DEFAULT_PORTS:
        for _ in range(len(path) + 1):
            shorter = _DOTS.sub("/", path, count=1)
            if shorter == path:
                break
            path = shorter
    # (Buildbot escapes in latin-1, which fails or differs from svn beyond ASCII: UTF-8 here)
    path = quote(unquote(path), safe=_PATH_SAFE)
    canonical = urlunparse((scheme, netloc, path, parts.params, parts.query, parts.fragment))
    if canonical != "/" and canonical.endswith("/") and not canonical.endswith("//"):
        canonical = canonical[:-1]
    return canonical
