"""steps.Git: check out a Git repository on the worker (Buildbot's ``steps.Git``).

Modes and methods, as Buildbot 4.3 has them:

- ``incremental`` (default): clone if the directory holds no repository yet, otherwise fetch
  ``branch`` and check out the revision (or what was fetched); untracked files stay.
- ``full`` with ``method``:
    - ``fresh`` (default): ``git clean -f -f -d -x`` (untracked and ignored files go), then as
      incremental;
    - ``clean``: ``git clean -f -f -d`` (ignored files stay), then as incremental;
    - ``clobber``: remove the directory and clone afresh (the only method ``shallow`` goes
      with in mode full);
    - ``copy``: update a repository kept in ``source`` incrementally, then copy it over a
      fresh ``workdir``.

A directory that exists but holds files and no ``.git`` is removed and cloned into. After the
checkout the step sets ``got_revision`` (by codebase, ``{codebase: sha}``, when the step has a
codebase) and with ``getDescription`` ``commit-description`` from ``git describe``. Every git
command is a ``git`` argv run on the worker, its output in the step's ``stdio`` log; a git that
is missing or fails makes the step FAILURE.

Authentication, as Buildbot 4.3 has it: ``sshPrivateKey`` (with ``sshHostKey`` or
``sshKnownHosts`` to check the server), ``auth_credentials`` (a (username, password) pair for
HTTP(S)) and ``git_credentials`` (``util.GitCredentialOptions``), each a string or a renderable
(``util.Secret``). Before the first command that reaches the repository, the step writes them
on the worker into a directory of their own beside the work directory,
``<worker basedir>/.<workerbuilddir>.<workdir>.buildbot`` (``ssh-key`` and ``ssh-known-hosts``
readable by the worker's user only; ``.git-credentials`` through ``git credential approve``), and
every git command of the step uses them (``-c core.sshCommand=ssh -i ...`` or
``GIT_SSH_COMMAND``; ``-c credential.helper=store --file=...``, other helpers unset). The
directory is removed when the step ends, whatever its result. See docs/git-credentials.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from buildyard.common.errors import config_error
from buildyard.master.model.gitcredentials import GitCredentialOptions, with_user_password
from buildyard.master.model.properties import render
from buildyard.master.steps.base import BuildStepFailed
from buildyard.master.steps.remotecommand import RemoteCommand, RemoteShellCommand
from buildyard.master.steps.source.base import Patch, Source

__all__ = ["Git", "check_ssh_config", "scp_style_to_url_syntax", "ssh_command"]

_MODES = ("full", "incremental")
_FULL_METHODS = ("clean", "fresh", "clobber", "copy", None)
# SHA-1 and SHA-256 object names
_HASH_RE = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
# read (and written) by the worker's user only
_PRIVATE_FILE_MODE = 0o400


def _number_flag(option: str) -> Callable[[Any], list[str] | None]:
    # 0 counts (``abbrev=0``); False and None do not
    def flag(value: Any) -> list[str] | None:
        if value or (isinstance(value, int) and value is not False):
            return [f"--{option}={value}"]
        return None

    return flag


def _switch(option: str) -> Callable[[Any], list[str] | None]:
    return lambda value: [f"--{option}"] if value else None


def _dirty(value: Any) -> list[str] | None:
    if value is True or value == "":
        return ["--dirty"]
    if value:
        return [f"--dirty={value}"]
    return None


# ``getDescription`` as a dict: its keys and the ``git describe`` options they give
_DESCRIBE: list[tuple[str, Callable[[Any], list[str] | None]]] = [
    *[
        (name, _switch(name))
        for name in (
            "all",
            "always",
            "contains",
            "debug",
            "long",
            "exact-match",
            "tags",
            "first-parent",
        )
    ],
    ("match", lambda v: ["--match", v] if v else None),
    ("exclude", lambda v: ["--exclude", v] if v else None),
    ("abbrev", _number_flag("abbrev")),
    ("candidates", _number_flag("candidates")),
    ("dirty", _dirty),
]


def scp_style_to_url_syntax(address: str, port: int = 22, scheme: str = "ssh") -> str:
    """``host:path`` as ``ssh://host:port/path`` (so that ``port`` applies); URLs and local
    paths unchanged."""
    if "://" in address or ":\\" in address or ":" not in address:
        return address
    host, path = address.split(":", 1)
    return f"{scheme}://{host}:{port}/{path}"


def check_ssh_config(name: str, key: Any, host_key: Any, known_hosts: Any) -> None:
    """Buildbot's rules: a host key or known hosts only with a private key, and not both."""
    if host_key is not None and key is None:
        config_error(f"{name}: sshPrivateKey must be provided in order use sshHostKey")
    if known_hosts is not None and key is None:
        config_error(f"{name}: sshPrivateKey must be provided in order use sshKnownHosts")
    if host_key is not None and known_hosts is not None:
        config_error(f"{name}: only one of sshKnownHosts and sshHostKey can be provided")


def ssh_command(key_path: str, known_hosts_path: str | None) -> str:
    """The ``ssh`` command line git runs: never asks, uses this key and these known hosts."""
    words = ["ssh", "-o", "BatchMode=yes", "-i", key_path]
    if known_hosts_path is not None:
        words += ["-o", f"UserKnownHostsFile={known_hosts_path}"]
    return " ".join(w if re.fullmatch(r"[A-Za-z0-9_-]+", w) else f'"{w}"' for w in words)


def _version(text: str) -> tuple[int, ...] | None:
    found = re.match(r"^git version (\d+(?:\.\d+)*)", text)
    if found is None:
        return None
    return tuple(int(p) for p in found.group(1).split("."))


class Git(Source):
    name = "git"
    renderables: ClassVar[Sequence[str]] = (
        *Source.renderables,
        "repourl",
        "reference",
        "branch",
        "codebase",
        "mode",
        "method",
        "origin",
        "sshPrivateKey",
        "sshHostKey",
        "sshKnownHosts",
    )

    def __init__(  # noqa: PLR0915  # Buildbot's many keywords, each checked
        self,
        repourl: Any = None,
        port: int = 22,
        branch: Any = "HEAD",
        mode: Any = "incremental",
        method: Any = None,
        reference: Any = None,
        submodules: bool = False,
        remoteSubmodules: bool = False,
        tags: bool = False,
        shallow: bool | int = False,
        filters: Sequence[str] | None = None,
        progress: bool = True,
        retryFetch: bool = False,
        clobberOnFailure: bool = False,
        getDescription: Any = False,
        config: Any = None,
        origin: Any = None,
        sshPrivateKey: Any = None,
        sshHostKey: Any = None,
        sshKnownHosts: Any = None,
        auth_credentials: Any = None,
        git_credentials: Any = None,
        **kwargs: Any,
    ) -> None:
        if not getDescription and not isinstance(getDescription, dict):
            getDescription = False
        self.repourl: Any = repourl
        self.port = port
        self.branch: Any = branch
        self.mode: Any = mode
        self.method: Any = method
        self.reference: Any = reference
        self.submodules = submodules
        self.remoteSubmodules = remoteSubmodules
        self.tags = tags
        self.shallow = shallow
        self.filters = [str(f) for f in filters] if filters else None
        self.prog = progress
        self.retryFetch = retryFetch
        self.clobberOnFailure = clobberOnFailure
        self.getDescription = getDescription
        self.config: dict[str, Any] | None = dict(config) if isinstance(config, dict) else None
        self.origin: Any = origin
        self.srcdir = "source"
        super().__init__(**kwargs)
        check_ssh_config("Git", sshPrivateKey, sshHostKey, sshKnownHosts)
        self.sshPrivateKey: Any = sshPrivateKey
        self.sshHostKey: Any = sshHostKey
        self.sshKnownHosts: Any = sshKnownHosts
        if git_credentials is not None and not isinstance(git_credentials, GitCredentialOptions):
            config_error("Git: git_credentials must be a util.GitCredentialOptions")
            git_credentials = None
        if auth_credentials is not None:
            if isinstance(auth_credentials, list | tuple) and len(auth_credentials) == 2:
                git_credentials = with_user_password(auth_credentials, repourl, git_credentials)
            else:
                config_error("Git: auth_credentials must be a (username, password) pair")
        self.git_credentials: GitCredentialOptions | None = git_credentials
        if not repourl:
            config_error("Git: must provide repourl.")
        if isinstance(mode, str):
            if mode not in _MODES:
                config_error(f"Git: mode must be {' or '.join(_MODES)}")
            if isinstance(method, str):
                if mode == "full" and method not in _FULL_METHODS:
                    config_error("Git: invalid method for mode 'full'.")
                if shallow and (mode != "full" or method != "clobber"):
                    config_error("Git: in mode 'full' shallow only possible with method 'clobber'.")
        if not isinstance(getDescription, bool | dict):
            config_error("Git: getDescription must be a boolean or a dict.")
        if config is not None and not isinstance(config, dict):
            config_error("Git: config must be a dict.")
        # per build
        self.revision: str | None = None
        self._git_version: tuple[int, ...] = ()
        # the options and environment that make git use the authentication files
        self._auth_options: list[str] = []
        self._auth_env: dict[str, str] = {}
        self._auth_dir_made = False

    # -- the step ------------------------------------------------------------------------------

    async def run_vc(self, branch: Any, revision: str | None, patch: Patch | None) -> int:
        self.repourl = scp_style_to_url_syntax(str(self.repourl), self.port)
        self.branch = branch or "HEAD"
        self.revision = revision
        self.method = self._getMethod()
        await self.addLogForRemoteCommands("stdio")
        auth_dir = self._auth_data_path()
        self._auth_dir_made = False
        try:
            if not await self.checkFeatureSupport():
                raise RuntimeError("git is not installed on worker")
            if await self.sourcedirIsPatched():
                await self._git(["clean", "-f", "-f", "-d", "-x"])
            await self._write_auth_files(auth_dir)
            if self.mode == "full":
                await self.mode_full()
            elif self.mode == "incremental":
                await self.mode_incremental()
            else:
                raise ValueError(f"Git: mode must be {' or '.join(_MODES)}, not {self.mode!r}")
            if patch:
                await self.patch(patch)
            await self.parseGotRevision()
            await self.parseCommitDescription()
        except BaseException:
            self._auth_options, self._auth_env = [], {}
            if self._auth_dir_made:
                # the step's own failure is the one to report
                with contextlib.suppress(Exception):
                    await self._remove_auth_files(auth_dir)
            raise
        self._auth_options, self._auth_env = [], {}
        if self._auth_dir_made:
            await self._remove_auth_files(auth_dir)
        return 0

    # -- authentication files ------------------------------------------------------------------

    def _auth_data_path(self) -> str:
        """Where the key and credentials go: ``.<workerbuilddir>.<workdir>.buildbot``, beside
        the work directory in the worker's base directory (as Buildbot puts them; not inside
        the work directory, where git clones)."""
        rt = self._runtime()
        paths = self.path_module()
        workdir = str(self.srcdir if self.method == "copy" else self.workdir).rstrip("/\\")
        config = getattr(rt.build, "config", None)
        builddir = str(getattr(config, "workerbuilddir", "") or paths.basename(rt.builder_dir))
        basedir = rt.conn.info.get("basedir")
        if paths.isabs(workdir):
            parent = paths.dirname(workdir)
        elif isinstance(basedir, str) and paths.isabs(basedir):
            parent = paths.join(basedir, paths.dirname(workdir))
        else:
            # git runs ssh from the work directory (and submodules' directories): the key's
            # path must be absolute, and this worker did not say where it lives
            return ""
        return str(paths.join(parent, f".{builddir}.{paths.basename(workdir)}.buildbot"))

    async def _write_auth_files(self, auth_dir: str) -> None:
        """Write the ssh key, known hosts and credentials (if any) into ``auth_dir`` on the
        worker and set the git options that use them."""
        credentials: list[str] = []
        if self.git_credentials is not None:
            props = self._runtime().properties
            for item in self.git_credentials.credentials:
                text = await render(item, props)
                if text:
                    credentials.append(str(text))
        if self.sshPrivateKey is None and not credentials:
            return
        if not auth_dir:
            raise BuildStepFailed("the worker did not give its base directory: no place for keys")
        paths = self.path_module()
        self._auth_dir_made = True  # removed at the end, however far this goes
        # a directory left by a worker that was lost mid-step is replaced
        await self.runRmdir(auth_dir, abandonOnFailure=False)
        await self.runMkdir(auth_dir)
        if self.sshPrivateKey is not None:
            key_path = paths.join(auth_dir, "ssh-key")
            key = str(self.sshPrivateKey)
            if not key.endswith("\n"):
                key += "\n"  # providers strip it; ssh refuses a key without it
            await self._download_private(key_path, key)
            known_hosts_path: str | None = None
            known_hosts = self.sshKnownHosts
            if known_hosts is None and self.sshHostKey is not None:
                known_hosts = f"* {self.sshHostKey}"
            if known_hosts is not None:
                known_hosts_path = paths.join(auth_dir, "ssh-known-hosts")
                await self._download_private(known_hosts_path, str(known_hosts))
            command = ssh_command(key_path, known_hosts_path)
            if self._supports(2, 10, 0):
                self._auth_options += ["-c", f"core.sshCommand={command}"]
            else:
                self._auth_env["GIT_SSH_COMMAND"] = command
        if credentials:
            store = paths.join(auth_dir, ".git-credentials")
            # only this store: not the user's or the system's helpers
            self._auth_options += ["-c", "credential.helper=", "-c"]
            self._auth_options.append(f'credential.helper=store "--file={store}"')
            use_http_path = self.git_credentials.use_http_path if self.git_credentials else None
            if use_http_path is not None:
                value = "true" if use_http_path else "false"
                self._auth_options += ["-c", f"credential.useHttpPath={value}"]
            for text in credentials:
                await self._git(["credential", "approve"], initialStdin=text)

    async def _download_private(self, path: str, text: str) -> None:
        if await self.downloadFileContentToWorker(path, text, mode=_PRIVATE_FILE_MODE) is None:
            raise BuildStepFailed(f"could not write {path} on the worker")

    async def _remove_auth_files(self, auth_dir: str) -> None:
        """Remove ``auth_dir`` on the worker, also when the build is being stopped (when
        :meth:`runCommand` runs nothing more)."""
        rt = self._runtime()
        cmd = RemoteCommand("rmdir", {"dir": auth_dir, "logEnviron": self.logEnviron})
        if self.rc_log is not None:
            cmd.useLog(self.rc_log, False, "stdio")
        await cmd.run(rt.conn, builder_name=rt.builder_name, builder_dir=rt.builder_dir)
        if cmd.didFail():
            raise BuildStepFailed(f"could not remove {auth_dir} on the worker")

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
        if self.method == "copy":
            await self.copy_checkout()
            return
        action = await self._sourcedirIsUpdatable()
        if action == "clobber":
            await self.clobber()
        elif action == "clone":
            await self._fullCloneOrFallback(self.shallow)
        elif self.method == "clean":
            await self.clean()
        elif self.method == "fresh":
            await self.fresh()
        else:
            raise ValueError(f"Git: invalid method for mode 'full': {self.method!r}")

    async def mode_incremental(self) -> None:
        action = await self._sourcedirIsUpdatable()
        if action == "clobber":
            await self.clobber()
            return
        if action == "clone":
            await self._fullCloneOrFallback(self.shallow)
            return
        await self._fetchOrFallback()
        await self._syncSubmodule()
        await self._updateSubmodule()

    async def clean(self) -> None:
        command = ["clean", "-f", "-f", "-d"]
        await self._git(command)
        await self._fetchOrFallback()
        await self._syncSubmodule()
        await self._updateSubmodule()
        await self._cleanSubmodule()
        if self.submodules:
            await self._git(command)

    async def fresh(self) -> None:
        command = ["clean", "-f", "-f", "-d", "-x"]
        cleaned = await self._git(command, abandonOnFailure=False)
        if not cleaned.didFail():
            await self._fetchOrFallback()
        else:
            await self._doClobber()
            await self._fullCloneOrFallback(self.shallow)
        await self._syncSubmodule()
        await self._updateSubmodule()
        await self._cleanSubmodule()
        if self.submodules:
            await self._git(command)

    async def clobber(self) -> None:
        await self._doClobber()
        if not await self._fullClone(self.shallow):
            raise BuildStepFailed("git clone failed")

    async def copy_checkout(self) -> None:
        """Method copy (Buildbot's ``Git.copy``, renamed: ``copy`` makes a step's per-build
        copy here): update ``source`` incrementally, then copy it to a fresh work directory."""
        await self.runRmdir(self.workdir, timeout=self.timeout, abandonOnFailure=False)
        target = self.workdir
        self.workdir = self.srcdir
        try:
            await self.mode_incremental()
            await self.runRemoteCommand(
                "cpdir",
                {
                    "fromdir": self.srcdir,
                    "todir": target,
                    "logEnviron": self.logEnviron,
                    "timeout": self.timeout,
                },
            )
        finally:
            self.workdir = target

    async def parseGotRevision(self) -> None:
        cmd = await self._git(["rev-parse", "HEAD"], collectStdout=True)
        revision = cmd.stdout.strip()
        if not _HASH_RE.fullmatch(revision):
            raise BuildStepFailed(f"git rev-parse HEAD gave {revision!r}")
        self.updateSourceProperty("got_revision", revision)

    async def parseCommitDescription(self) -> None:
        option = self.getDescription
        if option is False:
            return
        command = ["describe"]
        if isinstance(option, dict):
            for key, flag in _DESCRIBE:
                words = flag(option.get(key))
                if words:
                    command.extend(words)
        # every option takes a commit-ish, except --dirty
        if not any(word.startswith("--dirty") for word in command):
            command.append("HEAD")
        cmd = await self._git(command, abandonOnFailure=False, collectStdout=True)
        if not cmd.didFail():
            self.updateSourceProperty("commit-description", cmd.stdout.strip())

    async def applyPatch(self, patch: Patch) -> int:
        await self._git(["update-index", "--refresh"])
        level, diff, _ = patch
        cmd = await self._git(
            ["apply", "--index", "-p", str(level)],
            initialStdin=diff.decode("utf-8", errors="replace"),
        )
        return cmd.rc or 0

    # -- fetch and clone -----------------------------------------------------------------------

    async def _fetch(self, shallowClone: bool | int, abandonOnFailure: bool = True) -> bool:
        """Fetch (unless the revision is already there) and check out; True if it worked."""
        needed = True
        if not self.tags and self.revision:
            present = await self._git(["cat-file", "-e", self.revision], abandonOnFailure=False)
            needed = present.didFail()
        if needed:
            command = ["fetch", "-f"]
            if shallowClone:
                command += ["--depth", str(int(shallowClone))]
            if self.tags:
                command.append("--tags")
            if self.prog and self._supports(1, 7, 2):
                command.append("--progress")
            command += [self.repourl, self.branch]
            fetched = await self._git(command, abandonOnFailure=abandonOnFailure)
            if fetched.didFail():
                return False
        checkout = await self._git(
            ["checkout", "-f", self.revision or "FETCH_HEAD"], abandonOnFailure=abandonOnFailure
        )
        if checkout.didFail():
            return False
        if self.branch != "HEAD":
            # name the branch as fetched; failing that is no matter
            await self._git(["checkout", "-B", self.branch], abandonOnFailure=False)
        return True

    async def _fetchOrFallback(self) -> None:
        abandon = not self.retryFetch and not self.clobberOnFailure
        if await self._fetch(self.shallow, abandonOnFailure=abandon):
            return
        if self.retryFetch:
            await self._fetch(self.shallow)
        elif self.clobberOnFailure:
            await self.clobber()
        else:
            raise BuildStepFailed("git fetch failed")

    async def _clone(self, shallowClone: bool | int) -> bool:
        """``git clone`` into the work directory, with ``retry``; True if it worked."""
        command = ["clone"]
        switch_to_branch = self.branch != "HEAD"
        if self.branch != "HEAD" and self._supports(1, 6, 5):
            if str(self.branch).startswith("refs/"):
                # git clone cannot check out such a ref: fetch it after the clone
                command.append("--no-checkout")
            else:
                switch_to_branch = False
                command += ["--branch", self.branch]
        if shallowClone:
            command += ["--depth", str(int(shallowClone))]
        if self.reference:
            command += ["--reference", self.reference]
        if self.origin:
            command += ["--origin", self.origin]
        if self.filters and self._supports(2, 27, 0):
            for spec in self.filters:
                command += ["--filter", spec]
        command += [self.repourl, "."]
        if self.prog and self._supports(1, 7, 2):
            command.append("--progress")
        last_try = self.retry is None or self.retry[1] <= 0
        # Buildbot's rule: only a shallow clone's failure ends the step at once
        cloned = await self._git(command, abandonOnFailure=bool(last_try and shallowClone))
        ok = not cloned.didFail()
        if switch_to_branch:
            ok = await self._fetch(shallowClone)
        if self.retry is not None and not (ok or self.stopped):
            delay, repeats = self.retry
            if repeats > 0:
                self.retry = (delay, repeats - 1)
                await asyncio.sleep(delay)
                if self._stopped_meanwhile():
                    return False
                await self._doClobber()
                ok = await self._clone(shallowClone)
        return ok

    def _stopped_meanwhile(self) -> bool:
        # the build may be stopped while the step waits
        return self.stopped

    async def _fullClone(self, shallowClone: bool | int = False) -> bool:
        """Clone, check out the revision and the submodules; True if it all worked (a shallow
        clone's failure fails the step)."""
        if not await self._clone(shallowClone):
            return False
        ok = True
        if self.revision:
            checkout = await self._git(
                ["checkout", "-f", self.revision], abandonOnFailure=bool(shallowClone)
            )
            ok = not checkout.didFail()
        if self.submodules:
            command = ["submodule", "update", "--init", "--recursive"]
            if self.remoteSubmodules:
                command.append("--remote")
            if shallowClone:
                command += ["--depth", str(int(shallowClone))]
            updated = await self._git(command, abandonOnFailure=bool(shallowClone))
            ok = not updated.didFail()
        return ok

    async def _fullCloneOrFallback(self, shallowClone: bool | int) -> None:
        if await self._fullClone(shallowClone):
            return
        if not self.clobberOnFailure:
            raise BuildStepFailed("git clone failed")
        await self.clobber()

    async def _doClobber(self) -> None:
        if await self.runRmdir(self.workdir, timeout=self.timeout):
            raise RuntimeError("Failed to delete directory")

    async def _sourcedirIsUpdatable(self) -> str:
        """ "update" (a repository is there), "clone" (nothing is) or "clobber" (something
        else is)."""
        if self.workerVersionIsOlderThan("listdir", "2.16"):
            git_dir = self.path_module().join(self.workdir, ".git")
            return "update" if await self.pathExists(git_dir) else "clone"
        cmd = RemoteCommand("listdir", {"dir": self.workdir})
        if self.rc_log is not None:
            cmd.useLog(self.rc_log, False, "stdio")
        await self.runCommand(cmd)
        if "files" not in cmd.updates:
            return "clone"
        files = cmd.updates["files"][0]
        if ".git" in files:
            return "update"
        return "clobber" if files else "clone"

    async def _syncSubmodule(self) -> None:
        if self.submodules:
            await self._git(["submodule", "sync"])

    async def _updateSubmodule(self) -> None:
        if self.submodules:
            command = ["submodule", "update", "--init", "--recursive"]
            if self._supports(1, 7, 6):
                command.append("--force")
            if self._supports(1, 7, 8):
                command.append("--checkout")
            if self.remoteSubmodules:
                command.append("--remote")
            await self._git(command)

    async def _cleanSubmodule(self) -> None:
        if self.submodules:
            clean = "git clean -f -f -d"
            if self.mode == "full" and self.method == "fresh":
                clean += " -x"
            await self._git(["submodule", "foreach", "--recursive", clean])

    # -- running git ---------------------------------------------------------------------------

    async def checkFeatureSupport(self) -> bool:
        """Run ``git --version`` (a missing git fails the step); False if git's answer is not
        one."""
        cmd = await self._git(["--version"], collectStdout=True)
        version = _version(cmd.stdout)
        self._git_version = version or ()
        return version is not None

    def _supports(self, *version: int) -> bool:
        return self._git_version >= version

    async def _git(
        self,
        command: list[str],
        abandonOnFailure: bool = True,
        collectStdout: bool = False,
        initialStdin: str | None = None,
    ) -> RemoteShellCommand:
        """Run ``git <command>`` in the work directory, its output in the stdio log; a failure
        fails the step when ``abandonOnFailure``."""
        full = ["git"]
        for key, value in (self.config or {}).items():
            full += ["-c", f"{key}={value}"]
        full += self._auth_options
        full += [str(word) for word in command]
        # let git remove its lock files before it is killed, when the worker can
        sigterm: float | None = None
        signal: str | None = None
        if not self.workerVersionIsOlderThan("shell", "2.16"):
            sigterm = 1
        elif not self.workerVersionIsOlderThan("shell", "2.15"):
            signal = "TERM"
        cmd = RemoteShellCommand(
            self.workdir,
            full,
            env={**(dict(self.env) if self.env else {}), **self._auth_env},
            logEnviron=self.logEnviron,
            timeout=self.timeout,
            sigtermTime=sigterm,
            interruptSignal=signal,
            collectStdout=collectStdout,
            initialStdin=initialStdin,
        )
        if self.rc_log is not None:
            cmd.useLog(self.rc_log, False, "stdio")
        await self.runCommand(cmd)
        if abandonOnFailure and cmd.didFail():
            raise BuildStepFailed(f"git {command[0] if command else ''} failed")
        return cmd

    async def _dovccmd(
        self,
        command: list[str],
        abandonOnFailure: bool = True,
        collectStdout: bool = False,
        initialStdin: str | None = None,
    ) -> Any:
        """Buildbot's name, for subclasses: the output with ``collectStdout``, else the rc."""
        cmd = await self._git(command, abandonOnFailure, collectStdout, initialStdin)
        return cmd.stdout if collectStdout else cmd.rc


class GitHub(Git):
    """Buildbot's ``steps.GitHub``: the Git step for GitHub pull requests. A pull request's
    merge ref (a branch ending in ``/merge``) is rebuilt by GitHub as its base moves, so the
    revision a change recorded for it may be gone: for such a branch the revision is ignored
    and what the branch names now is checked out."""

    async def run_vc(self, branch: Any, revision: str | None, patch: Patch | None) -> int:
        if isinstance(branch, str) and branch.endswith("/merge"):
            revision = None
        return await super().run_vc(branch, revision, patch)
