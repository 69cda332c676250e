"""``schedulers.Try_Userpass``: ``buildbot try --connect=pb`` against this master.

Each ``(user, password)`` of ``userpass`` logs in on ``port`` (one port may serve the worker PB
port's workers, a PBChangeSource and several try schedulers: logins are routed by user name,
see :mod:`buildyard.protocol.portal`). The client then calls, on its perspective:

* ``try(branch, revision, patch, repository, project, builderNames, who, comment,
  properties)``: ``patch`` is ``(patch_level, diff)``; the builders asked for that this
  scheduler has are given one buildset on a source stamp (codebase ``''``) carrying the patch,
  which the Git step applies after its checkout. Properties come with the source
  ``try build``. The answer is a reference to the buildset (``getBuildRequests``), or None when
  none of the builders asked for is this scheduler's (Buildbot's answer).
* ``getAvailableBuilderNames()``: this scheduler's builders.

Waiting for the builds (``buildbot try --wait``) needs the build request and build status
objects over PB; they are not implemented yet and calling them says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog

from buildyard.common.errors import config_error
from buildyard.common.ports import Listen, parse_port
from buildyard.master.schedulers.arguments import SchedulerBase
from buildyard.master.schedulers.base import SchedulerContext
from buildyard.master.schedulers.service import BuildsetScheduler
from buildyard.protocol.pb import CallFailed, Referenceable
from buildyard.protocol.portal import Registration

log = structlog.get_logger(__name__)

__all__ = ["Try_Userpass"]

NOT_IMPLEMENTED = "not implemented yet in buildyard: waiting for try builds over PB (try --wait)"


class Try_Userpass(SchedulerBase):
    buildbot_class = "buildbot.schedulers.trysched.Try_Userpass"

    def __init__(
        self,
        name: str,
        builderNames: Sequence[str],
        port: int | str,
        userpass: Sequence[tuple[str, str]],
        *,
        properties: Mapping[str, Any] | None = None,
        priority: Any = None,
    ) -> None:
        label = self._common(name, builderNames, properties, None, priority)
        self.reason = "'try' job"
        self.port = port
        self.listen: Listen | None = None
        try:
            self.listen = parse_port(port)
        except ValueError as exc:
            config_error(f"{label}: {exc}")
        self.userpass: tuple[tuple[str, str], ...] = ()
        pairs: object = userpass
        if not isinstance(pairs, list | tuple) or not all(
            isinstance(p, list | tuple) and len(p) == 2 and all(isinstance(s, str) and s for s in p)
            for p in pairs
        ):
            config_error(f"{label}: userpass must be a list of (user, password) string pairs")
        else:
            self.userpass = tuple((str(u), str(p)) for u, p in pairs)
            users = [u for u, _ in self.userpass]
            if len(set(users)) < len(users):
                config_error(f"{label}: userpass names a user twice")

    def make_service(self, name: str, ctx: SchedulerContext) -> TryUserpassService:
        return TryUserpassService(name, self, ctx)


class TryUserpassService(BuildsetScheduler):
    config: Try_Userpass

    def __init__(self, name: str, config: Try_Userpass, ctx: SchedulerContext) -> None:
        super().__init__(name, config, ctx)
        self._registrations: list[Registration] = []

    async def start_work(self) -> None:
        ports = self.ctx.pb_ports
        if ports is None:
            raise RuntimeError(f"Try_Userpass {self.name!r}: this master serves no PB")
        try:
            for user, password in self.config.userpass:
                registration = Registration(
                    owner=f"try scheduler {self.name!r}",
                    username=user,
                    password=password,
                    perspective=self._perspective_of(user),
                )
                await ports.register(self.config.listen, registration)
                self._registrations.append(registration)
        except BaseException:
            await self._unregister()
            raise
        log.info("try_scheduler_listening", scheduler=self.name, port=self.config.listen)

    def _perspective_of(self, user: str) -> Callable[[str], Referenceable]:
        return lambda peer: TryPerspective(self, user, peer)

    async def _unregister(self) -> None:
        registrations, self._registrations = self._registrations, []
        if self.ctx.pb_ports is not None:
            for registration in registrations:
                await self.ctx.pb_ports.unregister(registration)

    async def _stop_work(self) -> None:
        await super()._stop_work()
        await self._unregister()

    async def try_job(
        self,
        *,
        user: str,
        branch: str | None,
        revision: str | None,
        patch: tuple[int, bytes],
        repository: str,
        project: str,
        builder_names: Sequence[str],
        who: str,
        comment: str,
        properties: Mapping[str, Any],
    ) -> int | None:
        """The buildset of one try job (its id), or None when no builder asked for is ours."""
        wanted = [n for n in builder_names if n in self.config.builder_names]
        if not wanted:
            log.info("try_job_refused", scheduler=self.name, user=user, builders=builder_names)
            return None
        reason = "'try' job"
        if who:
            reason += f" by user {who}"
        if comment:
            reason += f" ({comment})"
        level, body = patch
        stamp = {
            "codebase": "",
            "branch": branch,
            "revision": revision,
            "repository": repository,
            "project": project,
            "patch_level": level,
            "patch_body": body,
            "patch_subdir": "",
            "patch_author": who,
            "patch_comment": comment,
        }
        ids = await self.add_buildset_for_sourcestamps_with_defaults(
            reason=reason,
            sourcestamps=[stamp],
            properties={k: (v, "try build") for k, v in properties.items()},
            builder_names=wanted,
            priority=self.config.priority,
        )
        log.info("try_job_added", scheduler=self.name, user=user, bsid=ids.bsid)
        return ids.bsid


def _text(value: Any, what: str, *, optional: bool = False) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise CallFailed(f"try: {what} must be a string", "builtins.TypeError")
    return value


class TryPerspective(Referenceable):
    """What a try user may call after login (Buildbot's ``perspective_*``)."""

    def __init__(self, scheduler: TryUserpassService, user: str, peer: str) -> None:
        self._scheduler, self._user, self._peer = scheduler, user, peer

    async def remote_try(
        self,
        branch: Any,
        revision: Any,
        patch: Any,
        repository: Any,
        project: Any,
        builderNames: Any,
        who: Any = "",
        comment: Any = "",
        properties: Any = None,
    ) -> Referenceable | None:
        if not (isinstance(patch, list | tuple) and len(patch) == 2 and isinstance(patch[0], int)):
            raise CallFailed("try: patch must be (patch_level, diff)", "builtins.TypeError")
        body = patch[1]
        if isinstance(body, str):
            body = body.encode("utf-8")
        if body is None:
            body = b""
        if not isinstance(body, bytes):
            raise CallFailed("try: the diff must be text", "builtins.TypeError")
        if not isinstance(builderNames, list | tuple):
            raise CallFailed("try: builderNames must be a list", "builtins.TypeError")
        if properties is None:
            properties = {}
        if not isinstance(properties, dict):
            raise CallFailed("try: properties must be a dict", "builtins.TypeError")
        bsid = await self._scheduler.try_job(
            user=self._user,
            branch=_text(branch, "branch", optional=True),
            revision=_text(revision, "revision", optional=True),
            patch=(patch[0], body),
            repository=_text(repository or "", "repository"),
            project=_text(project or "", "project"),
            builder_names=[_text(n, "a builder name") for n in builderNames],
            who=_text(who or "", "who"),
            comment=_text(comment or "", "comment"),
            properties={_text(k, "a property name"): v for k, v in properties.items()},
        )
        return None if bsid is None else RemoteBuildSetStatus(bsid)

    def remote_getAvailableBuilderNames(self) -> list[str]:
        return list(self._scheduler.config.builder_names)


class RemoteBuildSetStatus(Referenceable):
    """The try client's handle on its buildset."""

    def __init__(self, bsid: int) -> None:
        self.bsid = bsid

    def remote_getBuildRequests(self) -> None:
        raise CallFailed(NOT_IMPLEMENTED, "builtins.NotImplementedError")
