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

Every svn command but ``svn --version`` and the final ``svn info`` gets ``--non-interactive
--no-auth-cache``, ``--username``, the password, ``--depth`` and ``extra_args``, as in
Buildbot. The password never appears in the step's log: on a PB connection to a worker whose
``shell`` is 2.16 or newer it travels as Buildbot's obfuscated word (the worker shows
``XXXXXX``); otherwise (msgpack connections, where the stock worker cannot tell an obfuscated
word from a list, and older workers, to which Buildbot would show it) svn reads it from its
standard input (``--password-from-stdin``, svn 1.10 or newer on the worker).
"""

from __future__ import annotations

import asyncio
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar
from urllib.parse import quote, unquote, urlparse, urlunparse

from buildyard.common.errors import config_error
from buildyard.master.steps.base import BuildStepFailed
from buildyard.master.steps.remotecommand import RemoteShellCommand
from buildyard.master.steps.source.base import Patch, Source

__all__ = ["SVN", "canonical_svn_url", "unversioned_files"]

_MODES = ("full", "incremental")
_METHODS = ("clean", "fresh", "clobber", "copy", "export", None)
_MASK = "XXXXXX"


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

    # -- the step ------------------------------------------------------------------------------

    async def run_vc(self, branch: Any, revision: str | None, patch: Patch | None) -> int:
        self.revision = None if revision is None else str(revision)
        self.method = self._getMethod()
        await self.addLogForRemoteCommands("stdio")
        rt = self._runtime()
        # Buildbot's obfuscated word where it arrives as one (see the module docstring)
        self._password_on_stdin = self.password is not None and (
            getattr(rt.conn, "protocol", "") != "pb"
            or self.workerVersionIsOlderThan("shell", "2.16")
        )
        if not await self.checkSvn():
            raise RuntimeError("SVN is not installed on worker")
        if await self.sourcedirIsPatched():
            await self.purge(False)
        if self.mode == "full":
            await self.mode_full()
        else:
            await self.mode_incremental()
        if patch:
            await self.patch(patch)
        return await self.parseGotRevision()

    def _getMethod(self) -> str | None:
        if self.mode == "incremental":
            return None
        if self.method is not None:
            return str(self.method)
        return "fresh" if self.mode == "full" else None

    async def mode_full(self) -> None:
        if self.method == "clobber":
            await self.clobber()
            return
        if self.method in ("copy", "export"):
            await self.copy_checkout()
            return
        if not await self._sourcedirIsUpdatable():
            await self.clobber()
        elif self.method == "clean":
            await self.clean()
        else:
            await self.fresh()

    async def mode_incremental(self) -> None:
        if not await self._sourcedirIsUpdatable():
            await self.clobber()
            return
        await self._dovccmd(["update", *self._revision_words()])

    async def clobber(self) -> None:
        await self.runRmdir(self.workdir, timeout=self.timeout)
        await self._checkout()

    async def fresh(self) -> None:
        await self.purge(True)
        await self._dovccmd(["update", *self._revision_words()])

    async def clean(self) -> None:
        await self.purge(False)
        await self._dovccmd(["update", *self._revision_words()])

    async def copy_checkout(self) -> None:
        """Methods copy and export (Buildbot's ``SVN.copy``, renamed: ``copy`` makes a step's
        per-build copy here): an incremental working copy in ``source``, then copied or
        exported into a fresh ``workdir``."""
        await self.runRmdir(self.workdir, timeout=self.timeout)
        checkout_dir = self._checkout_dir()
        target = self.workdir
        self.workdir = checkout_dir
        try:
            await self.mode_incremental()
        finally:
            self.workdir = target
        if self.method == "copy":
            await self.runRemoteCommand(
                "cpdir",
                {
                    "fromdir": checkout_dir,
                    "todir": self.workdir,
                    "logEnviron": self.logEnviron,
                    "timeout": self.timeout,
                },
            )
            return
        words = ["export", *self._revision_words(), *self._auth_words(), *self.extra_args]
        await self._svn("", [*words, checkout_dir, str(self.workdir)])

    def _checkout_dir(self) -> str:
        """Where methods copy and export keep their working copy."""
        if self.codebase:
            return str(self.path_module().join("source", str(self.codebase)))
        return "source"

    async def _checkout(self) -> None:
        command = ["checkout", str(self.repourl), ".", *self._revision_words()]
        last_try = self.retry is None or self.retry[1] <= 0
        cmd = await self._dovccmd(command, abandonOnFailure=last_try)
        if self.retry is None or self.stopped or not cmd.didFail():
            return
        delay, repeats = self.retry
        if repeats > 0:
            self.retry = (delay, repeats - 1)
            await asyncio.sleep(delay)
            if self._stopped_meanwhile():
                return
            await self.runRmdir(self.workdir, timeout=self.timeout)
            await self._checkout()

    def _stopped_meanwhile(self) -> bool:
        # the build may be stopped while the step waits
        return self.stopped

    def _revision_words(self) -> list[str]:
        return ["--revision", self.revision] if self.revision else []

    # -- what is there -------------------------------------------------------------------------

    async def _sourcedirIsUpdatable(self) -> bool:
        if not await self.pathExists(self.path_module().join(self.workdir, ".svn")):
            return False
        cmd = await self._dovccmd(
            ["info", "--xml"], collectStdout=True, collectStderr=True, abandonOnFailure=False
        )
        # svn: E155037: Previous operation has not finished; run 'cleanup' if interrupted
        if "E155037:" in (cmd.stderr or ""):
            return False
        try:
            found = ET.fromstring(cmd.stdout or "").find("./entry/url")  # svn's own output
        except ET.ParseError as exc:
            self._corrupt_xml()
            raise BuildStepFailed("svn info gave output that is not XML") from exc
        if found is None or not found.text:
            self._corrupt_xml()
            raise BuildStepFailed("svn info named no URL")
        return found.text == canonical_svn_url(str(self.repourl))

    async def parseGotRevision(self) -> int:
        # export leaves no working copy in workdir: the one it exported from says
        directory = self._checkout_dir() if self.method == "export" else self.workdir
        cmd = RemoteShellCommand(
            str(directory),
            ["svn", "info", "--xml"],
            env=self.env,
            logEnviron=self.logEnviron,
            timeout=self.timeout,
            collectStdout=True,
        )
        if self.rc_log is not None:
            cmd.useLog(self.rc_log, False, "stdio")
        await self.runCommand(cmd)
        try:
            info = ET.fromstring(cmd.stdout or "")  # svn's own output
        except ET.ParseError as exc:
            self._corrupt_xml()
            raise BuildStepFailed("svn info gave output that is not XML") from exc
        revision = None
        if self.preferLastChangedRev:
            commit = info.find("./entry/commit")
            revision = None if commit is None else commit.get("revision")
        if revision is None:
            entry = info.find("./entry")
            revision = None if entry is None else entry.get("revision")
        if revision is None:
            raise BuildStepFailed("svn info named no revision")
        if self.rc_log is not None:
            self.rc_log.add_header(f"Got SVN revision {revision}\n")
        self.updateSourceProperty("got_revision", revision)
        return cmd.rc or 0

    def _corrupt_xml(self) -> None:
        if self.rc_log is not None:
            self.rc_log.add_header("Corrupted xml, aborting step\n")

    async def purge(self, ignore_ignores: bool) -> None:
        """Remove what ``svn status`` lists as not versioned (and ignored, with
        ``ignore_ignores``), except ``keep_on_purge``."""
        command = ["status", "--xml"]
        if ignore_ignores:
            command.append("--no-ignore")
        cmd = await self._dovccmd(command, collectStdout=True)
        try:
            names = list(unversioned_files(cmd.stdout or "", self.keep_on_purge))
        except ET.ParseError as exc:
            self._corrupt_xml()
            raise BuildStepFailed("svn status gave output that is not XML") from exc
        paths = self.path_module()
        files = [paths.join(self.workdir, name) for name in names]
        if not files:
            return
        if self.workerVersionIsOlderThan("rmdir", "2.14"):
            for path in files:
                if await self.runRmdir(path, abandonOnFailure=False, timeout=self.timeout):
                    raise BuildStepFailed(f"could not remove {path}")
        elif await self.runRmdir(files, abandonOnFailure=False, timeout=self.timeout):
            raise BuildStepFailed("could not remove the unversioned files")

    async def checkSvn(self) -> bool:
        cmd = RemoteShellCommand(
            str(self.workdir),
            ["svn", "--version"],
            env=self.env,
            logEnviron=self.logEnviron,
            timeout=self.timeout,
        )
        if self.rc_log is not None:
            cmd.useLog(self.rc_log, False, "stdio")
        await self.runCommand(cmd)
        return cmd.rc == 0

    def computeSourceRevision(self, changes: Sequence[Any]) -> str | None:
        """The highest revision of the build's changes (None if one has none)."""
        revisions = [getattr(c, "revision", None) for c in changes]
        if not revisions or None in revisions:
            return None
        try:
            return str(max(int(str(r)) for r in revisions))
        except ValueError:
            return None

    # -- running svn ---------------------------------------------------------------------------

    def _auth_words(self) -> list[Any]:
        words: list[Any] = []
        if self.username:
            words += ["--username", str(self.username)]
        if self.password is not None:
            if self._password_on_stdin:
                words.append("--password-from-stdin")
            else:
                words += ["--password", ("obfuscated", str(self.password), _MASK)]
        return words

    async def _dovccmd(
        self,
        command: list[str],
        collectStdout: bool = False,
        collectStderr: bool = False,
        abandonOnFailure: bool = True,
    ) -> RemoteShellCommand:
        """``svn <command>`` in the work directory with the common options (Buildbot's)."""
        words: list[Any] = [*command, "--non-interactive", "--no-auth-cache"]
        words += self._auth_words()
        if self.depth:
            words += ["--depth", str(self.depth)]
        words += self.extra_args
        return await self._svn(
            str(self.workdir),
            words,
            collectStdout=collectStdout,
            collectStderr=collectStderr,
            abandonOnFailure=abandonOnFailure,
        )

    async def _svn(
        self,
        workdir: str,
        words: list[Any],
        *,
        collectStdout: bool = False,
        collectStderr: bool = False,
        abandonOnFailure: bool = True,
    ) -> RemoteShellCommand:
        stdin = None
        if self.password is not None and "--password-from-stdin" in words:
            stdin = f"{self.password}\n"
        cmd = RemoteShellCommand(
            workdir,
            ["svn", *words],
            env=self.env,
            logEnviron=self.logEnviron,
            timeout=self.timeout,
            collectStdout=collectStdout,
            collectStderr=collectStderr,
            initialStdin=stdin,
        )
        if self.rc_log is not None:
            cmd.useLog(self.rc_log, False, "stdio")
        await self.runCommand(cmd)
        if abandonOnFailure and cmd.didFail():
            raise BuildStepFailed(f"svn {words[0] if words else ''} failed")
        return cmd


def unversioned_files(status_xml: str, keep_on_purge: Sequence[str] = ()) -> Iterator[str]:
    """The paths of ``svn status --xml`` to remove: every entry but externals, missing
    files, the working copy itself and ``keep_on_purge`` (ParseError on bad XML)."""
    root = ET.fromstring(status_xml)  # svn's own output
    for entry in root.iter("entry"):
        status = entry.find("wc-status")
        item = "" if status is None else status.get("item", "")
        if item in ("external", "missing"):
            continue
        path = entry.get("path", "")
        if path == "" or path in keep_on_purge:
            continue
        yield path


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
