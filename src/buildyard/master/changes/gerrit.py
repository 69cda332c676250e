"""Gerrit's change sources: ``changes.GerritChangeSource`` (``gerrit stream-events`` over ssh,
optionally caught up through the events-log plugin's HTTP API) and
``changes.GerritEventLogPoller`` (the events-log plugin's HTTP API alone).

Both turn Gerrit events (one JSON object a line, as ``gerrit stream-events`` prints them) into
changes as Buildbot 4.3 does:

- only the event types of ``handled_events`` (default ``patchset-created`` and ``ref-updated``);
- properties: the event flattened under ``event.`` (``event.change.number``,
  ``event.patchSet.ref``, ...; lists stay lists; ``event.eventCreatedOn`` left out), plus
  ``event.source`` (the class name) and, for ``patchset-created`` and ``comment-added``,
  ``target_branch`` (the change's branch);
- ``ref-updated``: author ``gerrit`` (or the submitter), the ``refUpdate``'s project,
  repository ``<gitBaseURL>/<project>``, branch ``refName`` without ``refs/heads/``, revision
  ``newRev``, comments ``Gerrit: commit(s) pushed.``, files ``["unknown"]``; skipped for a
  ``refs/changes/...`` ref when ``patchset-created`` is handled (that event builds it);
- any other event with a ``change`` and a ``patchSet``: author from the change's owner
  (``name <email>``), its project and repository, branch the patch set's ref
  (``refs/changes/..``) for ``patchset-created`` and ``comment-added`` and the change's branch
  otherwise, revision the patch set's, revlink the change's URL, comments its subject, files
  ``["unknown"]`` (or the patch set's files with ``get_files``), category the event type.

An event is dropped when it was already turned into a change: both sources remember the time
of the newest event (``eventCreatedOn``) and the hashes of the events of that second, in the
state Buildbot keeps (``last_event_ts``, ``last_event_hashes``), across restarts.

May import: buildyard.master.data (through changes.base), model and buildyard.common.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import datetime
import hashlib
import json
import time
from collections import deque
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
import structlog

from buildyard.common.errors import config_error
from buildyard.master.changes.base import ChangeSource, ChangeSourceConfig, ChangeSourceContext
from buildyard.master.model.properties import (
    Properties,
    RenderError,
    SecretsOnly,
    is_renderable,
    render,
)

__all__ = [
    "GerritChangeSource",
    "GerritEventLogPoller",
    "event_hash",
    "event_properties",
]

log = structlog.get_logger(__name__)

DEFAULT_EVENTS = ("patchset-created", "ref-updated")
#: properties never made from an event (they differ between two sends of one event)
PROPERTY_DENYLIST = frozenset({"event.eventCreatedOn"})

# the stream's reconnection: a connection that lasted this long was good (reconnect at once);
# otherwise wait, from MIN growing by EXPONENT up to MAX
STREAM_GOOD_CONNECTION_TIME = 120.0
STREAM_BACKOFF_MIN = 0.5
STREAM_BACKOFF_EXPONENT = 1.5
STREAM_BACKOFF_MAX = 60.0
#: how many of the stream's last output lines a failure log shows
DEBUG_LINES = 20
#: how long one ssh query or HTTP request may take
REQUEST_TIMEOUT = 60.0


# -- events -----------------------------------------------------------------------------------


def event_properties(event: Mapping[str, Any], base: str = "event") -> dict[str, Any]:
    """The event's properties: each leaf under its dotted path (``event.change.owner.name``);
    dicts are walked, everything else (lists included) is one property."""
    found: dict[str, Any] = {}

    def walk(prefix: str, value: Mapping[str, Any]) -> None:
        for key, item in value.items():
            name = f"{prefix}.{key}"
            if name in PROPERTY_DENYLIST:
                continue
            if isinstance(item, Mapping):
                walk(name, item)
            else:
                found[name] = item

    walk(base, event)
    return found


def event_hash(event: Mapping[str, Any]) -> str:
    """The hash the sources remember an event by (SHA-1 of its JSON with sorted keys, as
    Buildbot keeps it in ``last_event_hashes``)."""
    return hashlib.sha1(json.dumps(event, sort_keys=True).encode()).hexdigest()


def _valid(event: object) -> bool:
    return isinstance(event, dict) and "type" in event and "eventCreatedOn" in event


def _canonical(event: dict[str, Any]) -> dict[str, Any]:
    """The events-log gives a change's project as ``{"name": ...}``; the stream as a string."""
    change = event.get("change")
    if isinstance(change, dict) and isinstance(change.get("project"), dict):
        project = change["project"]
        if "name" in project:
            event = copy.deepcopy(event)
            event["change"]["project"] = project["name"]
    return event


def _author(account: Mapping[str, Any], default: str = "unknown") -> str:
    name = account.get("name", account.get("username", default))
    if "email" in account:
        name = f"{name} <{account['email']}>"
    return str(name)


def _seconds(keyword: str, value: Any, *, none_ok: bool, label: str) -> int | None:
    if value is None and none_ok:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    config_error(f"{label}: {keyword} must be an int{' or None' if none_ok else ''}, not {value!r}")
    return None


def _handled_events(value: Any, label: str) -> tuple[str, ...]:
    if isinstance(value, list | tuple) and all(isinstance(e, str) for e in value):
        return tuple(value)
    config_error(f"{label}: handled_events must be a list of event type names")
    return DEFAULT_EVENTS


def _auth(value: Any, keyword: str, label: str) -> Any:
    """Basic authentication: a (user, password) pair, either of them a renderable."""
    if value is None:
        return None
    if isinstance(value, list | tuple) and len(value) == 2:
        return tuple(value)
    if is_renderable(value):
        return value
    config_error(f"{label}: {keyword} must be a (user, password) pair or None")
    return None


class _Common(ChangeSourceConfig):
    """What both Gerrit sources take: Buildbot's ``gitBaseURL``, ``handled_events``, ``debug``,
    ``get_files``."""

    label = "Gerrit"

    def _common(self, gitBaseURL: Any, handled_events: Any, debug: Any, get_files: Any) -> None:
        if gitBaseURL is not None and not isinstance(gitBaseURL, str):
            config_error(f"{self.label}: gitBaseURL must be a string")
        self.git_base_url: str | None = gitBaseURL if isinstance(gitBaseURL, str) else None
        self.handled_events = _handled_events(handled_events, self.label)
        self.debug = bool(debug)
        self.get_files = bool(get_files)


class _EventsService(ChangeSource):
    """Turns events into changes (see the module docstring) and remembers which it did."""

    state_class = "Gerrit"

    def __init__(self, name: str, config: Any, ctx: ChangeSourceContext) -> None:
        super().__init__(name, config, ctx)
        self._objectid: int | None = None
        self.last_event_ts: int | None = None
        # the events of the second last_event_ts (or, from the state, only their hashes)
        self._last_second: list[dict[str, Any]] = []
        self._last_hashes: set[str] = set()
        self._state_loaded = False
        self.events_seen = 0
        self.bad_lines = 0

    @property
    def git_base_url(self) -> str:
        raise NotImplementedError

    async def _load_state(self) -> None:
        if self._state_loaded:
            return
        self._objectid = await self.ctx.updates.get_object_id(self.name, self.state_class)
        ts = await self.ctx.updates.get_state(self._objectid, "last_event_ts", None)
        hashes = await self.ctx.updates.get_state(self._objectid, "last_event_hashes", None)
        self.last_event_ts = int(ts) if isinstance(ts, int | float) else None
        self._last_hashes = set(hashes) if isinstance(hashes, list) else set()
        self._state_loaded = True

    def already_seen(self, event: dict[str, Any]) -> bool:
        ts = event["eventCreatedOn"]
        if self.last_event_ts is None or ts > self.last_event_ts:
            return False
        if ts < self.last_event_ts:
            return True
        return event_hash(event) in self._last_hashes

    async def _remember(self, event: dict[str, Any]) -> None:
        ts = event["eventCreatedOn"]
        if self.last_event_ts is None or ts > self.last_event_ts:
            self.last_event_ts = ts
            self._last_hashes = set()
        if ts == self.last_event_ts:
            self._last_hashes.add(event_hash(event))
        assert self._objectid is not None
        await self.ctx.updates.set_state(self._objectid, "last_event_ts", self.last_event_ts)
        await self.ctx.updates.set_state(
            self._objectid, "last_event_hashes", sorted(self._last_hashes)
        )

    def parse_line(self, line: bytes | str) -> dict[str, Any] | None:
        """The event on one line, or None (logged, naming this source) when it is none."""
        text = line.decode(errors="replace") if isinstance(line, bytes) else line
        if not text.strip():
            return None
        try:
            event = json.loads(text)
        except ValueError:
            self.bad_lines += 1
            log.warning("gerrit_bad_json_line", changesource=self.name, line=text[:500])
            return None
        if not _valid(event):
            self.bad_lines += 1
            log.warning("gerrit_not_an_event", changesource=self.name, line=text[:500])
            return None
        return event  # type: ignore[no-any-return]

    async def take_event(self, event: dict[str, Any]) -> None:
        """One new event: a change (or none), then remembered as done. A change that cannot be
        made from it is logged, naming this source and the event, and the next one goes on."""
        if self.already_seen(event):
            return
        self.events_seen += 1
        try:
            await self.event_received(event)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # a field the change needs is missing or of another type
            log.error(
                "gerrit_event_unusable",
                changesource=self.name,
                event_type=event.get("type"),
                error=f"{type(exc).__name__}: {exc}",
                payload=json.dumps(event)[:1000],
            )
        except Exception as exc:  # one event's failure must not stop the source
            # anything else (the database, a subprocess): logged, the next event goes on
            log.error(
                "gerrit_event_failed",
                changesource=self.name,
                event_type=event.get("type"),
                error=f"{type(exc).__name__}: {exc}",
                payload=json.dumps(event)[:1000],
            )
        await self._remember(event)

    async def event_received(self, event: dict[str, Any]) -> None:
        config = self.config
        kind = event["type"]
        if kind not in config.handled_events:
            if config.debug:
                log.info("gerrit_event_not_handled", changesource=self.name, event_type=kind)
            return
        properties = event_properties(event)
        properties["event.source"] = type(config).__name__
        if kind in ("patchset-created", "comment-added") and "change" in event:
            properties["target_branch"] = event["change"]["branch"]
        if kind == "ref-updated":
            await self._ref_updated(properties, event)
            return
        if "change" not in event or "patchSet" not in event:
            if config.debug:
                log.info("gerrit_event_unsupported", changesource=self.name, event_type=kind)
            return
        event = _canonical(event)
        change = event["change"]
        patchset = event["patchSet"]
        files: list[str] = ["unknown"]
        if config.get_files:
            files = await self.get_files(change["number"], patchset["number"])
        branch = patchset["ref"] if kind in ("patchset-created", "comment-added") else None
        await self.ctx.updates.add_change(
            author=_author(change["owner"]),
            project=str(change["project"]),
            repository=f"{self.git_base_url}/{change['project']}",
            branch=branch or change["branch"],
            revision=patchset["revision"],
            revlink=change["url"],
            comments=change["subject"],
            files=files,
            category=kind,
            properties={k: (v, "Change") for k, v in properties.items()},
        )

    async def _ref_updated(self, properties: dict[str, Any], event: dict[str, Any]) -> None:
        ref = event["refUpdate"]
        author = _author(event["submitter"], "gerrit") if "submitter" in event else "gerrit"
        name: str = ref["refName"]
        if "patchset-created" in self.config.handled_events and name.startswith("refs/changes/"):
            return
        await self.ctx.updates.add_change(
            author=author,
            project=ref["project"],
            repository=f"{self.git_base_url}/{ref['project']}",
            branch=name.removeprefix("refs/heads/"),
            revision=ref["newRev"],
            comments="Gerrit: commit(s) pushed.",
            files=["unknown"],
            category=event["type"],
            properties={k: (v, "Change") for k, v in properties.items()},
        )

    async def get_files(self, change: Any, patchset: Any) -> list[str]:
        raise NotImplementedError

    async def _rendered(self, value: Any) -> Any:
        """``value`` with its secrets rendered (``util.Secret`` and friends)."""
        if value is None:
            return None
        props = Properties()
        props.build = SecretsOnly(self.ctx.secret)
        return await render(value, props)


# -- the events-log plugin's HTTP API ----------------------------------------------------------


class _EventsLog:
    """``GET <base>/plugins/events-log/events/?t1=<UTC time>``: the events since then, one JSON
    object a line; ``GET <base>/changes/<n>/revisions/<ps>/files/``: a patch set's files."""

    def __init__(self, source: str, base_url: str, auth: tuple[str, str] | None) -> None:
        self.source = source
        self.base_url = base_url.rstrip("/")
        self.headers: dict[str, str] = {}
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"

    async def _get(self, path: str, params: Mapping[str, str] | None = None) -> tuple[int, str]:
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(self.base_url + path, params=params, headers=self.headers) as response,
        ):
            return response.status, await response.text(errors="replace")

    async def events_since(self, ts: float) -> list[str] | None:
        """The lines the plugin gives for the events since ``ts`` (a Unix time); None (logged)
        when it does not answer 200."""
        since = datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
        try:
            status, text = await self._get("/plugins/events-log/events/", {"t1": since})
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.error(
                "gerrit_events_log_failed", changesource=self.source, url=self.base_url, error=exc
            )
            return None
        if status != 200:
            log.error(
                "gerrit_events_log_failed",
                changesource=self.source,
                url=self.base_url,
                status=status,
                answer=text[:500],
            )
            return None
        return text.splitlines()

    async def files(self, change: Any, patchset: Any) -> list[str]:
        """The files of the patch set (Gerrit's answer starts with the line ``)]}'``); [] when
        it cannot be had (logged)."""
        try:
            # both come from the event's JSON: quoted, so they stay one path segment each
            path = f"/changes/{_segment(change)}/revisions/{_segment(patchset)}/files/"
            status, text = await self._get(path)
            if status != 200:
                raise ValueError(f"HTTP {status}: {text[:200]}")
            return list(json.loads(text.splitlines()[1]))
        except (aiohttp.ClientError, TimeoutError, ValueError, IndexError) as exc:
            log.error(
                "gerrit_files_failed",
                changesource=self.source,
                change=change,
                patchset=patchset,
                error=str(exc),
            )
            return []


def _segment(value: Any) -> str:
    """``value`` as one URL path segment (``/``, ``?``, ``..`` and the like quoted)."""
    return quote(str(value), safe="")


def _change_number(value: Any) -> str | None:
    """A change number from an event (an int, or a string of ASCII digits) as a string; None
    for anything else."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return value
    return None


# -- GerritChangeSource -------------------------------------------------------------------------


class GerritChangeSource(_Common):
    """Buildbot's ``changes.GerritChangeSource(gerritserver, username, gerritport=29418,
    identity_file=None, ssh_server_alive_interval_s=15, ssh_server_alive_count_max=3,
    http_url=None, http_auth=None, http_poll_interval=30, name=None, gitBaseURL=None,
    handled_events=("patchset-created", "ref-updated"), debug=False, get_files=False)``.

    Runs ``ssh -o BatchMode=yes [-o ServerAliveInterval=N] [-o ServerAliveCountMax=M]
    username@gerritserver -p gerritport [-i identity_file] gerrit stream-events`` and makes a
    change of each event it prints. When ssh ends (connection lost, refused, authentication
    failed) the source logs it with ssh's last lines and starts it again: at once after a
    connection that lasted two minutes, else after a wait growing from 0.5 s by half each time up
    to a minute. With ``http_url`` (``http_auth`` a (user, password) pair), each (re)connection
    first fetches from the events-log plugin (``<http_url>/a/plugins/events-log/events/``) the
    events since the last one handled, so those missed while disconnected or stopped still make
    changes; and when the stream is silent for ``http_poll_interval`` seconds the log is asked
    too, a newer event there meaning the stream broke (it is then restarted).
    """

    label = "GerritChangeSource"
    _secret_arguments = frozenset({"http_auth"})

    def __init__(
        self,
        gerritserver: Any = None,
        username: Any = None,
        gerritport: Any = 29418,
        identity_file: Any = None,
        ssh_server_alive_interval_s: Any = 15,
        ssh_server_alive_count_max: Any = 3,
        http_url: Any = None,
        http_auth: Any = None,
        http_poll_interval: Any = 30,
        name: Any = None,
        gitBaseURL: Any = None,
        handled_events: Any = DEFAULT_EVENTS,
        debug: Any = False,
        get_files: Any = False,
    ) -> None:
        label = self.label
        if not (isinstance(gerritserver, str) and gerritserver) and not is_renderable(gerritserver):
            config_error(f"{label}: gerritserver must be given, as a non-empty string")
        if not (isinstance(username, str) and username) and not is_renderable(username):
            config_error(f"{label}: username must be given, as a non-empty string")
        self.gerritserver: Any = gerritserver
        self.username: Any = username
        self.gerritport = _seconds("gerritport", gerritport, none_ok=False, label=label) or 29418
        if identity_file is not None and not (
            isinstance(identity_file, str) or is_renderable(identity_file)
        ):
            config_error(f"{label}: identity_file must be a path or None")
        self.identity_file: Any = identity_file
        self.alive_interval = _seconds(
            "ssh_server_alive_interval_s", ssh_server_alive_interval_s, none_ok=True, label=label
        )
        self.alive_count = _seconds(
            "ssh_server_alive_count_max", ssh_server_alive_count_max, none_ok=True, label=label
        )
        if http_url is not None and not (isinstance(http_url, str) or is_renderable(http_url)):
            config_error(f"{label}: http_url must be a URL or None")
        self.http_url: Any = http_url
        self.http_auth = _auth(http_auth, "http_auth", label)
        self.http_poll_interval = (
            _seconds("http_poll_interval", http_poll_interval, none_ok=False, label=label) or 30
        )
        self._common(gitBaseURL, handled_events, debug, get_files)
        self.name = f"GerritChangeSource:{username}@{gerritserver}:{self.gerritport}"
        if isinstance(name, str):
            self.name = name
        elif name is not None:
            config_error(f"{label}: name must be a string, not {type(name).__name__}")

    def make_service(self, name: str, ctx: ChangeSourceContext) -> GerritChangeSourceService:
        return GerritChangeSourceService(name, self, ctx)


class GerritChangeSourceService(_EventsService):
    """One :class:`GerritChangeSource` at work: the stream loop runs while this master holds
    the source."""

    config: GerritChangeSource
    state_class = "GerritChangeSource"
    #: the longest line read from ssh; a longer one is dropped (logged) and reading goes on
    line_limit = 16 * 1024 * 1024

    def __init__(self, name: str, config: GerritChangeSource, ctx: ChangeSourceContext) -> None:
        super().__init__(name, config, ctx)
        self._server = ""
        self._username = ""
        self._identity: str | None = None
        self._events_log: _EventsLog | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._lines: deque[str] = deque(maxlen=DEBUG_LINES)
        self._lock = asyncio.Lock()
        self.connections = 0
        self.connected = asyncio.Event()
        self._start_ts: float | None = None
        # why the stream was ended on purpose ("reconfigured", "stale"): it reconnects at once
        self._restart: str | None = None

    @property
    def git_base_url(self) -> str:
        return self.config.git_base_url or (
            f"ssh://{self._username}@{self._server}:{self.config.gerritport}"
        )

    async def activate(self) -> None:
        # before any event was handled, catching up starts from when the source first ran
        if self._start_ts is None:
            self._start_ts = self.ctx.clock.now()
        _ = self.spawn(self._run(), name="stream")

    async def reconfigure(self, config: Any) -> None:
        """New settings apply from the next connection on: the stream restarts now."""
        self.config = config
        self._restart = "reconfigured"
        await self._kill()

    async def _settings(self) -> None:
        config = self.config
        self._server = str(await self._rendered(config.gerritserver))
        self._username = str(await self._rendered(config.username))
        identity = await self._rendered(config.identity_file)
        self._identity = None if identity is None else str(identity)
        self._events_log = None
        if config.http_url is not None:
            url = str(await self._rendered(config.http_url)).rstrip("/")
            auth = await self._rendered(config.http_auth)
            pair = None if auth is None else (str(auth[0]), str(auth[1]))
            self._events_log = _EventsLog(self.name, url + "/a", pair)

    def ssh_command(self, *args: str) -> list[str]:
        """The ssh command running ``gerrit <args>`` on the server (as Buildbot builds it)."""
        config = self.config
        options = ["-o", "BatchMode=yes"]
        if config.alive_interval is not None:
            options += ["-o", f"ServerAliveInterval={config.alive_interval}"]
        if config.alive_count is not None:
            options += ["-o", f"ServerAliveCountMax={config.alive_count}"]
        command = ["ssh", *options, f"{self._username}@{self._server}"]
        command += ["-p", str(config.gerritport)]
        if self._identity is not None:
            command += ["-i", self._identity]
        return [*command, "gerrit", *args]

    async def _run(self) -> None:
        backoff = STREAM_BACKOFF_MIN
        while True:
            try:
                await self._load_state()
                await self._settings()
            except RenderError as exc:
                log.error("gerrit_settings_unrenderable", changesource=self.name, error=str(exc))
                await self.ctx.clock.sleep(STREAM_BACKOFF_MAX)
                continue
            except Exception as exc:  # e.g. the database: retried, not fatal
                log.error(
                    "gerrit_stream_error",
                    changesource=self.name,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in=round(backoff, 2),
                )
                await self.ctx.clock.sleep(backoff)
                backoff = min(backoff * STREAM_BACKOFF_EXPONENT, STREAM_BACKOFF_MAX)
                continue
            started = time.monotonic()
            self._take_restart()
            try:
                code = await self._stream_once()
            except Exception as exc:  # one round's failure must not stop the master
                self._lines.append(f"{type(exc).__name__}: {exc}")
                code = None
                log.error(
                    "gerrit_stream_error",
                    changesource=self.name,
                    error=f"{type(exc).__name__}: {exc}",
                )
            lasted = time.monotonic() - started
            if (why := self._take_restart()) is not None:
                # ended on purpose (new settings, or a stream found stale): no waiting
                log.info("gerrit_stream_restarted", changesource=self.name, why=why)
                continue
            if lasted >= STREAM_GOOD_CONNECTION_TIME:
                log.warning(
                    "gerrit_stream_lost", changesource=self.name, exit_code=code, reconnect="now"
                )
                backoff = STREAM_BACKOFF_MIN
                continue
            log.error(
                "gerrit_stream_failed",
                changesource=self.name,
                exit_code=code,
                retry_in=round(backoff, 2),
                last_lines=list(self._lines),
            )
            await self.ctx.clock.sleep(backoff)
            backoff = min(backoff * STREAM_BACKOFF_EXPONENT, STREAM_BACKOFF_MAX)

    def _take_restart(self) -> str | None:
        """Why the stream was ended on purpose, if it was; forgotten once asked."""
        why, self._restart = self._restart, None
        return why

    async def _stream_once(self) -> int | None:
        """One ``gerrit stream-events``: until ssh ends; its exit code."""
        self._lines.clear()
        command = self.ssh_command("stream-events")
        if self.config.debug:
            log.info("gerrit_stream_starting", changesource=self.name, command=command)
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=self.line_limit,
            )
        except OSError as exc:
            self._lines.append(f"cannot run ssh: {exc}")
            return None
        self._process = process
        self.connections += 1
        assert process.stdout is not None
        assert process.stderr is not None
        errors = asyncio.get_running_loop().create_task(self._stderr(process.stderr))
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        reader = asyncio.get_running_loop().create_task(self._stdout(process.stdout, queue))
        try:
            self.connected.set()
            if self._events_log is not None:
                # the stream runs first, so what happens from now on is in it; what happened
                # before is in the log (the stream's events wait in the queue meanwhile)
                await self._catch_up(queue)
            await self._take_stream(queue, reader)
            return await process.wait()
        finally:
            self.connected.clear()
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
            reader.cancel()
            errors.cancel()
            await asyncio.gather(reader, errors, return_exceptions=True)
            self._process = None

    async def _readline(self, stream: asyncio.StreamReader, what: str) -> bytes | None:
        """The next line; b"" at the end; None for a line over :attr:`line_limit` (dropped
        by the reader, logged here)."""
        try:
            return await stream.readline()
        except ValueError:
            log.warning(
                "gerrit_line_too_long", changesource=self.name, stream=what, limit=self.line_limit
            )
            return None

    async def _stdout(self, stream: asyncio.StreamReader, queue: asyncio.Queue[bytes]) -> None:
        try:
            while (line := await self._readline(stream, "stdout")) != b"":
                if line is None:
                    continue
                if self.config.debug:
                    log.info("gerrit_stream_stdout", changesource=self.name, line=line[:500])
                self._lines.append(line.decode(errors="replace").rstrip("\n")[:1000])
                queue.put_nowait(line)
        finally:
            queue.put_nowait(b"")  # the end

    async def _stderr(self, stream: asyncio.StreamReader) -> None:
        while (line := await self._readline(stream, "stderr")) != b"":
            if line is None:
                continue
            text = line.decode(errors="replace").rstrip("\n")
            if self.config.debug:
                log.info("gerrit_stream_stderr", changesource=self.name, line=text)
            self._lines.append(text[:1000])

    async def _take_stream(self, queue: asyncio.Queue[bytes], reader: asyncio.Task[None]) -> None:
        silence = float(self.config.http_poll_interval)
        while True:
            try:
                async with asyncio.timeout(silence if self._events_log is not None else None):
                    line = await queue.get()
            except TimeoutError:
                # a silent stream may be a broken one: the log tells
                if await self._log_has_newer():
                    log.warning("gerrit_stream_stale", changesource=self.name)
                    self._restart = "stale"
                    await self._kill()
                    return
                continue
            if not line:
                return
            event = self.parse_line(line)
            if event is not None:
                async with self._lock:
                    await self.take_event(event)

    async def _catch_up(self, queue: asyncio.Queue[bytes]) -> None:
        assert self._events_log is not None
        since = (
            self.last_event_ts
            if self.last_event_ts is not None
            else (self._start_ts or self.ctx.clock.now())
        )
        lines = await self._events_log.events_since(since)
        if lines is None:
            return
        events = [e for e in map(self.parse_line, lines) if e is not None]
        # the events the stream already gave (queued) are newer than those the log alone has
        queued: list[bytes] = []
        while not queue.empty():
            queued.append(queue.get_nowait())
        first_streamed = None
        for raw in queued:
            if raw and (streamed := self.parse_line_quiet(raw)) is not None:
                first_streamed = streamed["eventCreatedOn"]
                break
        events.sort(key=lambda e: e["eventCreatedOn"])
        async with self._lock:
            for event in events:
                if first_streamed is None or event["eventCreatedOn"] <= first_streamed:
                    await self.take_event(event)
        for raw in queued:
            queue.put_nowait(raw)

    def parse_line_quiet(self, line: bytes) -> dict[str, Any] | None:
        try:
            event = json.loads(line)
        except ValueError:
            return None
        return event if _valid(event) else None

    async def _log_has_newer(self) -> bool:
        """Whether the events-log has events the stream did not give (they are taken now)."""
        assert self._events_log is not None
        since = (
            self.last_event_ts
            if self.last_event_ts is not None
            else (self._start_ts or self.ctx.clock.now())
        )
        lines = await self._events_log.events_since(since)
        newer = False
        for event in sorted(
            (e for e in map(self.parse_line, lines or []) if e is not None),
            key=lambda e: e["eventCreatedOn"],
        ):
            if not self.already_seen(event):
                newer = True
                async with self._lock:
                    await self.take_event(event)
        return newer

    async def get_files(self, change: Any, patchset: Any) -> list[str]:
        """``gerrit query <change> --format JSON --files --patch-sets``: the patch set's files;
        ``["unknown"]`` when the query fails (logged)."""
        number = _change_number(change)
        if number is None:
            # it goes into the command the server's shell runs: only a change number may
            log.error(
                "gerrit_files_failed",
                changesource=self.name,
                change=str(change)[:100],
                patchset=patchset,
                error="the event's change number is not a number",
            )
            return ["unknown"]
        command = self.ssh_command("query", number, "--format", "JSON", "--files")
        command.append("--patch-sets")
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:  # no ssh, or it cannot be run
            log.error(
                "gerrit_files_failed",
                changesource=self.name,
                change=change,
                patchset=patchset,
                error=f"cannot run ssh: {exc}",
            )
            return ["unknown"]
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                out, err = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            out, err = b"", b"timed out"
        try:
            if process.returncode != 0:
                raise ValueError(err.decode(errors="replace")[:500])
            answer = json.loads(out.splitlines()[0])
            if answer.get("rowCount") == 0:
                return ["unknown"]
            for found in answer["patchSets"]:
                if int(found["number"]) == int(patchset):
                    return [f["file"] for f in found["files"]]
            raise ValueError(f"no patch set {patchset}")
        except (ValueError, IndexError, KeyError, TypeError) as exc:
            log.error(
                "gerrit_files_failed",
                changesource=self.name,
                change=change,
                patchset=patchset,
                error=str(exc),
            )
            return ["unknown"]

    async def _kill(self) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()

    async def stop(self) -> None:
        await self._kill()
        await super().stop()

    def describe(self) -> str:
        status = "" if self._process is not None else " [NOT CONNECTED - check log]"
        return (
            "GerritChangeSource watching the remote Gerrit repository "
            f"{self._username or self.config.username}@{self._server or self.config.gerritserver}"
            f"{status}"
        )


# -- GerritEventLogPoller ----------------------------------------------------------------------


class GerritEventLogPoller(_Common):
    """Buildbot's ``changes.GerritEventLogPoller(baseURL, auth, pollInterval=30,
    pollAtLaunch=True, firstFetchLookback=30, name=None, gitBaseURL=None,
    handled_events=("patchset-created", "ref-updated"), debug=False, get_files=False)``.

    Every ``pollInterval`` seconds, asks ``<baseURL>/plugins/events-log/events/?t1=<time>``
    for the events since the newest one handled (the first time: since ``firstFetchLookback``
    days ago) and makes their changes; ``get_files`` asks
    ``<baseURL>/changes/<n>/revisions/<ps>/files/``. ``auth`` is a (user, password) pair for
    HTTP Basic authentication (either may be a secret), or None.
    """

    label = "GerritEventLogPoller"
    _secret_arguments = frozenset({"auth"})

    def __init__(
        self,
        baseURL: Any = None,
        auth: Any = None,
        pollInterval: Any = 30,
        pollAtLaunch: Any = True,
        firstFetchLookback: Any = 30,
        name: Any = None,
        gitBaseURL: Any = None,
        handled_events: Any = DEFAULT_EVENTS,
        debug: Any = False,
        get_files: Any = False,
    ) -> None:
        label = self.label
        if not (isinstance(baseURL, str) and baseURL):
            config_error(f"{label}: baseURL must be given, as a URL")
        self.base_url: str = baseURL if isinstance(baseURL, str) else ""
        self.auth = _auth(auth, "auth", label)
        if not (isinstance(pollInterval, int | float) and not isinstance(pollInterval, bool)):
            config_error(f"{label}: pollInterval must be a number of seconds")
            pollInterval = 30
        self.poll_interval = float(pollInterval)
        self.poll_at_launch = bool(pollAtLaunch)
        self.first_fetch_lookback = (
            _seconds("firstFetchLookback", firstFetchLookback, none_ok=False, label=label) or 0
        )
        self._common(gitBaseURL, handled_events, debug, get_files)
        if self.git_base_url is None:
            # Buildbot checks it (its GerritChangeSource makes one from the ssh address)
            config_error(f"{label}: gitBaseURL must be specified")
        self.name = f"GerritEventLogPoller:{self.base_url}"
        if isinstance(name, str):
            self.name = name
        elif name is not None:
            config_error(f"{label}: name must be a string, not {type(name).__name__}")

    def make_service(self, name: str, ctx: ChangeSourceContext) -> GerritEventLogPollerService:
        return GerritEventLogPollerService(name, self, ctx)


class GerritEventLogPollerService(_EventsService):
    config: GerritEventLogPoller
    state_class = "GerritEventLogPoller"

    def __init__(self, name: str, config: GerritEventLogPoller, ctx: ChangeSourceContext) -> None:
        super().__init__(name, config, ctx)
        self._forced = asyncio.Event()
        self._poll_lock = asyncio.Lock()
        self._events_log: _EventsLog | None = None
        self.polls = 0

    @property
    def git_base_url(self) -> str:
        return self.config.git_base_url or ""

    async def activate(self) -> None:
        _ = self.spawn(self._loop(), name="poll")

    def force(self) -> None:
        self._forced.set()

    async def _loop(self) -> None:
        first = True
        while True:
            if not (first and self.config.poll_at_launch) and not self._forced.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.config.poll_interval):
                        await self._forced.wait()
            first = False
            self._forced.clear()
            await self.poll()

    async def poll(self) -> None:
        """One poll; a failure is logged (naming this source) and the next poll goes on."""
        async with self._poll_lock:
            self.polls += 1
            try:
                await self._load_state()
                auth = await self._rendered(self.config.auth)
                pair = None if auth is None else (str(auth[0]), str(auth[1]))
                self._events_log = _EventsLog(self.name, self.config.base_url, pair)
                since = self.last_event_ts
                if since is None:
                    since = int(self.ctx.clock.now()) - self.config.first_fetch_lookback * 86400
                lines = await self._events_log.events_since(since)
                events = [e for e in map(self.parse_line, lines or []) if e is not None]
                for event in sorted(events, key=lambda e: e["eventCreatedOn"]):
                    await self.take_event(event)
            except RenderError as exc:
                log.error("gerrit_settings_unrenderable", changesource=self.name, error=str(exc))
            except Exception as exc:  # one poll's failure must not stop the master
                log.error(
                    "gerrit_poll_failed",
                    changesource=self.name,
                    error=f"{type(exc).__name__}: {exc}",
                )

    async def get_files(self, change: Any, patchset: Any) -> list[str]:
        assert self._events_log is not None
        return await self._events_log.files(change, patchset)

    def describe(self) -> str:
        return f"GerritEventLogPoller watching the remote Gerrit repository {self.name}"
