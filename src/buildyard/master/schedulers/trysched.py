"""``schedulers.Try_Userpass``: ``buildbot try --connect=pb`` against this master, and
``schedulers.Try_Jobdir``: the job files ``buildbot try --connect=ssh`` leaves in a directory
(see :class:`Try_Jobdir`).

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

``buildbot try --wait`` follows the buildset through :class:`RemoteBuildRequest` and
:class:`RemoteBuild` (results and state string; no step-by-step reports).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from buildyard.common.errors import config_error
from buildyard.common.ports import Listen, parse_port
from buildyard.master.schedulers.arguments import SchedulerBase
from buildyard.master.schedulers.base import SchedulerContext
from buildyard.master.schedulers.service import BuildsetScheduler
from buildyard.protocol.errors import ConnectionLost, RemoteError
from buildyard.protocol.pb import CallFailed, Referenceable, RemoteReference
from buildyard.protocol.portal import Registration

log = structlog.get_logger(__name__)

__all__ = ["Try_Jobdir", "Try_Userpass"]

# how often Try_Jobdir looks into its new/ directory
JOBDIR_POLL_INTERVAL = 1.0
# the largest job file read (Buildbot's limit is Twisted's 99,999-byte netstring)
MAX_JOB_FILE = 16 * 1024 * 1024
_V1_KEYS = ("jobid", "branch", "baserev", "patch_level", "patch_body")
_KEYS = {
    "1": _V1_KEYS,
    "2": (*_V1_KEYS, "repository", "project"),
    "3": (*_V1_KEYS, "repository", "project", "who"),
    "4": (*_V1_KEYS, "repository", "project", "who", "comment"),
}


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


class TryService(BuildsetScheduler):
    """What both try schedulers do with a job: :meth:`try_job`."""

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
        external_idstring: str | None = None,
    ) -> dict[str, int] | None:
        """The build requests of one try job's buildset (by builder name), or None when no
        builder asked for is ours."""
        wanted = [n for n in builder_names if n in self.config.builder_names]
        if not wanted:
            log.info("try_job_refused", scheduler=self.name, user=user, builders=builder_names)
            return None
        reason = "'try' job"
        if who:
            reason += f" by user {who}"
        if comment and external_idstring is None:  # Buildbot's jobdir reason has no comment
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
            external_idstring=external_idstring,
        )
        log.info("try_job_added", scheduler=self.name, user=user, bsid=ids.bsid)
        names = {}
        for builderid, brid in ids.brids.items():
            names[await self.queries.builder_name(builderid) or str(builderid)] = brid
        return names


class TryUserpassService(TryService):
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
        ids = await self._scheduler.try_job(
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
        if ids is None:
            return None
        return RemoteBuildSetStatus(self._scheduler, ids)

    def remote_getAvailableBuilderNames(self) -> list[str]:
        return list(self._scheduler.config.builder_names)


class RemoteBuildSetStatus(Referenceable):
    """The try client's handle on its buildset (``buildbot try --wait``)."""

    def __init__(self, scheduler: TryService, brids: Mapping[str, int]) -> None:
        self._scheduler, self._brids = scheduler, brids

    def remote_getBuildRequests(self) -> list[tuple[str, Referenceable]]:
        return [(n, RemoteBuildRequest(self._scheduler, n, b)) for n, b in self._brids.items()]


class RemoteBuildRequest(Referenceable):
    """One builder's request: ``subscribe(subscriber)`` has ``subscriber.newbuild(build,
    builder_name)`` called for each of its builds, those started already first."""

    def __init__(self, scheduler: TryService, builder_name: str, brid: int) -> None:
        self._scheduler, self._builder, self._brid = scheduler, builder_name, brid
        self._follow: asyncio.Task[None] | None = None

    async def remote_subscribe(self, subscriber: Any) -> None:
        if not isinstance(subscriber, RemoteReference):
            raise CallFailed("subscribe takes the client's subscriber", "builtins.TypeError")
        if self._follow is None:
            sub = self._scheduler.ctx.mq.subscribe(("builds", None, "new"))
            self._follow = self._scheduler.spawn(
                self._report(sub, subscriber), name=f"try-request:{self._brid}"
            )

    async def _report(self, sub: Any, subscriber: RemoteReference) -> None:
        seen: set[int] = set()
        try:
            async with sub:
                for build in await self._scheduler.queries.builds_of_request(self._brid):
                    await self._new(build["buildid"], seen, subscriber)
                async for _key, body in sub:
                    if subscriber.broker.closed:
                        return  # the client went away
                    if body.get("buildrequestid") == self._brid:
                        await self._new(int(body["buildid"]), seen, subscriber)
        except (ConnectionLost, RemoteError):
            pass  # the client went away

    async def _new(self, buildid: int, seen: set[int], subscriber: RemoteReference) -> None:
        if buildid not in seen:
            seen.add(buildid)
            build = RemoteBuild(self._scheduler, buildid)
            await subscriber.call("newbuild", build, self._builder)

    def remote_unsubscribe(self, subscriber: Any = None) -> None:
        if self._follow is not None:
            self._follow.cancel()
            self._follow = None


class RemoteBuild(Referenceable):
    """One build of a try request: ``waitUntilFinished``, ``getResults``, ``getText``.
    (``subscribe`` is accepted; step-by-step reports are not sent.)"""

    def __init__(self, scheduler: TryService, buildid: int) -> None:
        self._scheduler, self._buildid = scheduler, buildid

    def remote_subscribe(self, subscriber: Any, interval: Any = None) -> None:
        """Step reports are not sent (the client only shows them while it waits)."""

    def remote_unsubscribe(self, subscriber: Any = None) -> None:
        pass

    async def _build(self) -> dict[str, Any]:
        build = await self._scheduler.queries.get_build(self._buildid)
        if build is None:
            raise CallFailed(f"build {self._buildid} is gone", "builtins.KeyError")
        return build

    async def remote_waitUntilFinished(self) -> RemoteBuild:
        key = ("builds", str(self._buildid), "finished")
        async with self._scheduler.ctx.mq.subscribe(key) as sub:
            if not (await self._build())["complete"]:
                async for _message in sub:
                    break
        return self

    async def remote_getResults(self) -> Any:
        return (await self._build())["results"]

    async def remote_getText(self) -> list[str]:
        return [(await self._build())["state_string"]]


# -- Try_Jobdir ---------------------------------------------------------------------------------


class BadJobfile(ValueError):
    pass


def _netstrings(data: bytes) -> list[bytes]:
    """The netstrings (``LEN:DATA,``) of a job file, all complete; BadJobfile otherwise."""
    strings: list[bytes] = []
    at = 0
    while at < len(data):
        colon = data.find(b":", at, at + 21)
        length = data[at:colon]
        if colon < 0 or not length.isdigit():
            raise BadJobfile(f"unable to parse netstrings: no length at byte {at}")
        start = colon + 1
        end = start + int(length)
        if data[end : end + 1] != b",":
            raise BadJobfile(f"unable to parse netstrings: the one at byte {at} is cut short")
        strings.append(data[start:end])
        at = end + 1
    return strings


def parse_job(data: bytes) -> dict[str, Any]:
    """A job file of Buildbot's try client, versions 1 to 6 (netstrings; JSON from 5 on)."""
    strings = _netstrings(data)
    if not strings:
        raise BadJobfile("could not find any complete netstrings")
    version = strings.pop(0).decode("utf-8", "replace")
    job: Any = {}
    if version in _KEYS:
        keys = _KEYS[version]
        if len(strings) < len(keys):
            raise BadJobfile(f"a version {version} job has {len(keys)} fields at least")
        for key, value in zip(keys, strings, strict=False):
            job[key] = value if key == "patch_body" else value.decode("utf-8", "replace")
        job["builderNames"] = [n.decode("utf-8", "replace") for n in strings[len(keys) :]]
    elif version in ("5", "6"):
        try:
            job = json.loads(strings[0].decode("utf-8")) if strings else None
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadJobfile(f"unable to parse JSON: {exc}") from None
        if not isinstance(job, dict):
            raise BadJobfile("the JSON of the job is not an object")
        try:
            if version == "5":
                job["patch_body"] = str(job["patch_body"]).encode("utf-8")
            else:
                job["patch_body"] = base64.b64decode(job.pop("patch_body_base64"))
        except (KeyError, ValueError) as exc:
            raise BadJobfile(f"the job's patch is missing or malformed: {exc}") from None
    else:
        raise BadJobfile(f"unknown version {version!r}")
    try:
        job["patch_level"] = int(job.get("patch_level") or 0)
    except (TypeError, ValueError):
        raise BadJobfile(f"patch_level {job.get('patch_level')!r} is not a number") from None
    for key in ("jobid", "repository", "project", "who", "comment"):
        job[key] = str(job.get(key) or "")
    job["branch"] = job.get("branch") or None
    job["baserev"] = job.get("baserev") or None
    names = job.get("builderNames")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BadJobfile("builderNames must be a list of builder names")
    if not isinstance(job.get("properties") or {}, dict):
        raise BadJobfile("properties must be an object")
    job["properties"] = job.get("properties") or {}
    return dict(job)


class Try_Jobdir(SchedulerBase):
    """``buildbot try --connect=ssh``'s master side: job files in ``jobdir``/new (relative to
    the master's directory; ``tmp``, ``new`` and ``cur`` are made if missing), read every
    :data:`JOBDIR_POLL_INTERVAL` seconds, each one moved to ``cur`` once handled."""

    buildbot_class = "buildbot.schedulers.trysched.Try_Jobdir"

    def __init__(
        self,
        name: str,
        builderNames: Sequence[str],
        jobdir: str,
        *,
        properties: Mapping[str, Any] | None = None,
        priority: Any = None,
    ) -> None:
        label = self._common(name, builderNames, properties, None, priority)
        self.reason = "'try' job"
        given: object = jobdir
        if not isinstance(given, str | os.PathLike) or not os.fspath(given):
            config_error(f"{label}: jobdir must be a directory name, not {jobdir!r}")
            given = ""
        self.jobdir = os.fspath(given)

    def make_service(self, name: str, ctx: SchedulerContext) -> TryJobdirService:
        return TryJobdirService(name, self, ctx)


class TryJobdirService(TryService):
    config: Try_Jobdir

    def _jobdir(self) -> Path:
        if self.ctx.basedir is None:
            raise RuntimeError(f"Try_Jobdir {self.name!r}: the master's directory is not known")
        return self.ctx.basedir / self.config.jobdir

    async def start_work(self) -> None:
        jobdir = self._jobdir()
        await asyncio.to_thread(_make_jobdir, jobdir)
        log.info("try_jobdir_watched", scheduler=self.name, jobdir=str(jobdir))
        _ = self.spawn_work(self._watch(jobdir), name="jobdir")

    async def _watch(self, jobdir: Path) -> None:
        while True:
            for name in await asyncio.to_thread(_new_jobs, jobdir):
                await self.handle_job_file(jobdir, name)
            await self.ctx.clock.sleep(JOBDIR_POLL_INTERVAL)

    async def handle_job_file(self, jobdir: Path, name: str) -> None:
        """Read job file ``new/NAME``, add its buildset (unless it is bad, or adding it fails:
        logged with the file and the reason), and move it to ``cur`` in any case."""
        path = jobdir / "new" / name
        try:
            job = parse_job(await asyncio.to_thread(_read_job, path))
        except (OSError, BadJobfile) as exc:
            log.error("try_bad_jobfile", scheduler=self.name, file=str(path), reason=str(exc))
        else:
            try:
                await self._add_job(job)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one bad job must not stop the watch of the others
                log.error(
                    "try_job_failed",
                    scheduler=self.name,
                    file=str(path),
                    reason=f"{type(exc).__name__}: {exc}",
                )
        try:
            await asyncio.to_thread(path.replace, jobdir / "cur" / name)
        except OSError as exc:  # gone, or cur/ unwritable: the watch goes on
            log.error("try_jobfile_not_moved", scheduler=self.name, file=str(path), reason=str(exc))

    async def _add_job(self, job: dict[str, Any]) -> None:
        await self.try_job(
            user=job["who"],
            branch=job["branch"],
            revision=job["baserev"],
            patch=(job["patch_level"], job["patch_body"]),
            repository=job["repository"],
            project=job["project"],
            builder_names=job["builderNames"],
            who=job["who"],
            comment=job["comment"],
            properties=job["properties"],
            external_idstring=job["jobid"],
        )


def _make_jobdir(jobdir: Path) -> None:
    for sub in ("tmp", "new", "cur"):
        (jobdir / sub).mkdir(parents=True, exist_ok=True)


def _new_jobs(jobdir: Path) -> list[str]:
    return sorted(p.name for p in (jobdir / "new").iterdir() if p.is_file())


def _read_job(path: Path) -> bytes:
    with path.open("rb") as f:
        data = f.read(MAX_JOB_FILE + 1)
    if len(data) > MAX_JOB_FILE:
        raise BadJobfile(f"the job file is over {MAX_JOB_FILE} bytes")
    return data
