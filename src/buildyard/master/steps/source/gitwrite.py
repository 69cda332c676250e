"""``steps.GitCommit``, ``steps.GitTag`` and ``steps.GitPush``: change a checkout on the worker
and publish it (Buildbot 4.3's steps, keywords and ``git`` commands).

Each runs ``git`` in its work directory (a checkout made before, by ``steps.Git``), every
command and its output in the ``stdio`` log; a command that fails makes the step FAILURE, and a
worker without git makes it fail saying so.

- :class:`GitCommit`: ``git symbolic-ref HEAD`` (a detached HEAD fails the step: there is no
  branch to commit to), ``git add -- <paths>``, ``git commit -m <message>...``. ``emptyCommits``:
  ``"disallow"`` (git's refusal fails the step), ``"create-empty-commit"`` (``--allow-empty``),
  ``"ignore"`` (no commit, and success, when ``git status`` shows nothing staged).
  ``no_verify`` skips the hooks.
- :class:`GitTag`: ``git tag <tagName>``, or ``git tag -a <tagName> -m <message>...`` with
  ``annotated``; ``--force`` with ``force``.
- :class:`GitPush`: ``git push <repourl> <branch>`` (``--force`` with ``force``), with the
  same authentication as ``steps.Git`` (``sshPrivateKey``, ``sshHostKey``, ``sshKnownHosts``,
  ``auth_credentials``, ``git_credentials``; files removed when the step ends).

A ``tagName``, ``branch`` or ``repourl`` that starts with ``-`` fails the step (git would read it
as an option: ``--receive-pack=<command>`` runs a command); paths come after ``--``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from buildyard.common.errors import config_error
from buildyard.master.model.gitcredentials import GitCredentialOptions, with_user_password
from buildyard.master.model.properties import is_renderable
from buildyard.master.steps.base import BuildStep, BuildStepFailed, WorkerSetupError
from buildyard.master.steps.source.git import (
    GitStepMixin,
    check_ssh_config,
    scp_style_to_url_syntax,
)

__all__ = ["GitCommit", "GitPush", "GitTag"]

_EMPTY_COMMITS = ("disallow", "create-empty-commit", "ignore")


class _GitWriteStep(GitStepMixin):
    """What the three share: the settings every git step takes, and the start of ``run``."""

    def _git_settings(self, env: Any, timeout: Any, logEnviron: Any, config: Any) -> None:
        self.env = env
        self.timeout = timeout
        self.logEnviron = bool(logEnviron)
        if config is not None and not isinstance(config, dict):
            config_error(f"{type(self).__name__}: config must be a dict.")
        self.config = dict(config) if isinstance(config, dict) else None
        self._reset_git_state()

    async def _start(self) -> None:
        """Open the ``stdio`` log and check that the worker has git."""
        if self.workdir is None:
            self.workdir = self._runtime().workdir
        self._reset_git_state()
        await self.addLogForRemoteCommands("stdio")
        if not await self.checkFeatureSupport():
            raise WorkerSetupError("git is not installed on worker")

    def _not_an_option(self, what: str, value: str) -> str:
        """``value``, which git takes as a name (a tag, a branch, a remote): one starting with
        ``-`` would be read as an option (``--receive-pack=<command>`` for a push) and fails
        the step, the ``stdio`` log naming it."""
        if value.startswith("-"):
            message = (
                f"{type(self).__name__}: {what} {value!r} starts with '-', which git would "
                "take as an option; refused"
            )
            if self.rc_log is not None:
                self.rc_log.add_stderr(message + "\n")
            raise BuildStepFailed(message)
        return value


class GitCommit(_GitWriteStep):
    name = "gitcommit"
    renderables: ClassVar[Sequence[str]] = (*BuildStep.renderables, "paths", "messages", "env")

    def __init__(
        self,
        workdir: Any = None,
        paths: Any = None,
        messages: Any = None,
        env: Any = None,
        timeout: float = 20 * 60,
        logEnviron: bool = True,
        emptyCommits: str = "disallow",
        config: Any = None,
        no_verify: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(workdir=workdir, **kwargs)
        self._git_settings(env, timeout, logEnviron, config)
        self.paths: Any = paths
        self.messages: Any = messages
        self.emptyCommits = emptyCommits
        self.no_verify = bool(no_verify)
        if not messages:
            config_error("GitCommit: must provide messages")
        elif not isinstance(messages, list) and not _is_renderable(messages):
            config_error("GitCommit: messages must be a list")
        if not paths:
            config_error("GitCommit: must provide paths")
        elif not isinstance(paths, list) and not _is_renderable(paths):
            config_error("GitCommit: paths must be a list")
        if emptyCommits not in _EMPTY_COMMITS:
            config_error(
                'GitCommit: emptyCommits must be one of "disallow", '
                '"create-empty-commit" and "ignore"'
            )

    async def run(self) -> int:
        await self._start()
        on_branch = await self._git(["symbolic-ref", "HEAD"], abandonOnFailure=False)
        if on_branch.didFail():
            if self.rc_log is not None:
                self.rc_log.add_stderr("You are in detached HEAD")
            raise BuildStepFailed("GitCommit: the checkout is on a detached HEAD")
        # (after '--', a path starting with '-' is a path, never an option of git add)
        await self._git(["add", "--", *[str(p) for p in self.paths]])
        if self.emptyCommits == "ignore" and not await self._has_staged():
            return 0
        command = ["commit"]
        for message in self.messages:
            command += ["-m", str(message)]
        if self.emptyCommits == "create-empty-commit":
            command.append("--allow-empty")
        if self.no_verify:
            command.append("--no-verify")
        await self._git(command)
        return 0

    async def _has_staged(self) -> bool:
        status = await self._git(["status", "--porcelain=v1"], collectStdout=True)
        # the first column: what is staged (Buildbot's test)
        return any(line[:1] and line[:1] in "MADRCU" for line in status.stdout.splitlines())


class GitTag(_GitWriteStep):
    name = "gittag"
    renderables: ClassVar[Sequence[str]] = (*BuildStep.renderables, "tagName", "messages", "env")

    def __init__(
        self,
        workdir: Any = None,
        tagName: Any = None,
        annotated: bool = False,
        messages: Any = None,
        force: bool = False,
        env: Any = None,
        timeout: float = 20 * 60,
        logEnviron: bool = True,
        config: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(workdir=workdir, **kwargs)
        self._git_settings(env, timeout, logEnviron, config)
        self.tagName: Any = tagName
        self.annotated = bool(annotated)
        self.messages: Any = messages
        self.force = bool(force)
        if not tagName:
            config_error("GitTag: must provide tagName")
        if annotated and not messages:
            config_error("GitTag: must provide messages in case of annotated tag")
        if not annotated and messages:
            config_error("GitTag: messages are required only in case of annotated tag")
        if messages and not isinstance(messages, list) and not _is_renderable(messages):
            config_error("GitTag: messages should be a list")

    async def run(self) -> int:
        await self._start()
        tag = self._not_an_option("tagName", str(self.tagName))
        command = ["tag"]
        if self.annotated:
            command += ["-a", tag]
            for message in self.messages:
                command += ["-m", str(message)]
        else:
            command.append(tag)
        if self.force:
            command.append("--force")
        await self._git(command)
        return 0


class GitPush(_GitWriteStep):
    name = "gitpush"
    renderables: ClassVar[Sequence[str]] = (
        *BuildStep.renderables,
        "repourl",
        "branch",
        "env",
        "sshPrivateKey",
        "sshHostKey",
        "sshKnownHosts",
    )

    def __init__(
        self,
        workdir: Any = None,
        repourl: Any = None,
        port: int = 22,
        branch: Any = None,
        force: bool = False,
        env: Any = None,
        timeout: float = 20 * 60,
        logEnviron: bool = True,
        sshPrivateKey: Any = None,
        sshHostKey: Any = None,
        sshKnownHosts: Any = None,
        auth_credentials: Any = None,
        git_credentials: Any = None,
        config: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(workdir=workdir, **kwargs)
        self._git_settings(env, timeout, logEnviron, config)
        self.repourl: Any = repourl
        self.port = port
        self.branch: Any = branch
        self.force = bool(force)
        check_ssh_config("GitPush", sshPrivateKey, sshHostKey, sshKnownHosts)
        self.sshPrivateKey = sshPrivateKey
        self.sshHostKey = sshHostKey
        self.sshKnownHosts = sshKnownHosts
        if git_credentials is not None and not isinstance(git_credentials, GitCredentialOptions):
            config_error("GitPush: git_credentials must be a util.GitCredentialOptions")
            git_credentials = None
        if auth_credentials is not None:
            if isinstance(auth_credentials, list | tuple) and len(auth_credentials) == 2:
                git_credentials = with_user_password(auth_credentials, repourl, git_credentials)
            else:
                config_error("GitPush: auth_credentials must be a (username, password) pair")
        self.git_credentials = git_credentials
        if not repourl:
            config_error("GitPush: must provide repourl")
        if not branch:
            config_error("GitPush: must provide branch")

    async def run(self) -> int:
        await self._start()
        self._not_an_option("repourl", str(self.repourl))
        branch = self._not_an_option("branch", str(self.branch))
        self.repourl = scp_style_to_url_syntax(str(self.repourl), self.port)
        auth_dir = self._auth_data_path()
        try:
            await self._write_auth_files(auth_dir)
            command = ["push", self.repourl, branch]
            if self.force:
                command.append("--force")
            await self._git(command)
        finally:
            self._auth_options, self._auth_env = [], {}
            if self._auth_dir_made:
                await self._remove_auth_files(auth_dir)
        return 0


def _is_renderable(value: Any) -> bool:
    return is_renderable(value)
