"""Machines (``c['machines']``): the hosts that latent workers run on, powered on by the master
before one of their workers is needed and powered off once none has been building for the
machine's ``build_wait_timeout``.

master.cfg's vocabulary, with Buildbot's names and arguments (``buildbot.machine.*``):

- :class:`Machine`: a named host with no power control (its workers are ordinary).
- :class:`AbstractLatentMachine`: a host the master wakes; a subclass defines ``start_machine()``
  (True when the host is up) and ``stop_machine()``. ``build_wait_timeout`` (default 0: right
  after the last build) and ``missing_timeout`` (default 20 minutes: a woken host on which no
  build started is put back to sleep).
- :class:`GenericLatentMachine`: a latent machine whose start and stop are *actions*:
  :class:`LocalWakeAction` (a command run on the master's host), :class:`LocalWOLAction` (the
  ``wakeonlan`` program sending the host's magic packet), :class:`RemoteSshWakeAction`,
  :class:`RemoteSshWOLAction` and :class:`RemoteSshSuspendAction` (a command run on another
  host through ssh, with an optional key and host key, which may be secrets) and
  :class:`HttpAction` (an HTTP request, for a power switch or a management controller's API).
  An action succeeds when its command exits with 0 (or its request gets a status below 400).

:class:`MachineRuntime` is the state of one configured latent machine in a running master
(stopped, starting, started, stopping); :class:`~buildyard.master.workers.latent.LatentWorkers`
owns one per machine and asks it to wake the host before it starts a worker placed on it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import os
import re
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import structlog

from buildyard.common.awaitables import resolve
from buildyard.common.config_object import ConfigObject
from buildyard.common.errors import config_error
from buildyard.master.model.properties import Properties, SecretsOnly
from buildyard.master.secrets.redaction import Redactor

log = structlog.get_logger(__name__)

__all__ = [
    "AbstractLatentMachine",
    "GenericLatentMachine",
    "HttpAction",
    "LocalWOLAction",
    "LocalWakeAction",
    "Machine",
    "MachineRuntime",
    "RemoteSshSuspendAction",
    "RemoteSshWOLAction",
    "RemoteSshWakeAction",
    "States",
]

SecretLookup = Callable[[str], Awaitable[str | None]]

#: the most of a failed request's response body a log line shows
MAX_LOGGED_BODY = 1000
_URL_QUERY = re.compile(r"""(\w+://[^\s?#'"]*)\?[^\s#'"]*""")


def _without_queries(text: str) -> str:
    """``text`` with the query string of each URL in it hidden (it may carry a token)."""
    return _URL_QUERY.sub(r"\1?<query hidden>", text)


class States(enum.Enum):
    """A latent machine's states, with Buildbot's names."""

    STOPPED = 0
    STARTING = 1
    STARTED = 2
    STOPPING = 3


class Machine(ConfigObject):
    """A host named ``name`` that workers name in their ``machine_name``."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        if not isinstance(name, str) or not name:
            config_error(f"a machine's name must be a non-empty string, not {name!r}")
        if kwargs:
            config_error(f"machine {name!r}: unknown arguments {', '.join(sorted(kwargs))}")
        self.name = str(name)
        #: set by the master: how ``renderSecrets`` finds secrets
        self.secret_lookup: SecretLookup | None = None
        #: the secret values ``renderSecrets`` gave, hidden as ``<name>`` in what actions log
        self.redactor = Redactor()

    async def renderSecrets(self, *values: Any) -> Any:  # noqa: N802 - Buildbot's name
        """``values`` with their secrets (``util.Secret``, ``util.Interpolate('%(secret:..)s')``)
        rendered: one value gives that value, several a tuple (Buildbot's ``renderSecrets``)."""
        props = Properties()
        props.build = SecretsOnly(self._redacted_lookup)
        rendered = [await props.render(v) for v in values]
        return rendered[0] if len(rendered) == 1 else tuple(rendered)

    async def _redacted_lookup(self, name: str) -> str | None:
        """The master's secret ``name``; its value is hidden from then on in what this
        machine's actions log."""
        value = None if self.secret_lookup is None else await self.secret_lookup(name)
        if value is not None:
            self.redactor.add(str(value), name)
        return value

    @property
    def is_latent(self) -> bool:
        return False


class AbstractLatentMachine(Machine):
    """A host the master powers on when one of its workers is needed, and off after."""

    DEFAULT_MISSING_TIMEOUT = 20 * 60

    def __init__(
        self,
        name: str,
        build_wait_timeout: float = 0,
        missing_timeout: float = DEFAULT_MISSING_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, **kwargs)
        for keyword, value in (
            ("build_wait_timeout", build_wait_timeout),
            ("missing_timeout", missing_timeout),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                config_error(f"machine {self.name!r}: {keyword} must be a number of seconds")
        self.build_wait_timeout = build_wait_timeout
        self.missing_timeout = missing_timeout

    @property
    def is_latent(self) -> bool:
        return True

    async def start_machine(self) -> bool:
        raise NotImplementedError(
            f"{type(self).__name__} must define 'async def start_machine(self)' returning True "
            "when the machine is up"
        )

    async def stop_machine(self) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} must define 'async def stop_machine(self)'"
        )


class GenericLatentMachine(AbstractLatentMachine):
    """A latent machine started by ``start_action`` and stopped by ``stop_action``: any object
    with ``perform(machine)`` returning (or resolving to) True on success."""

    def __init__(self, name: str, start_action: Any, stop_action: Any, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        for keyword, action in (("start_action", start_action), ("stop_action", stop_action)):
            if not callable(getattr(action, "perform", None)):
                config_error(
                    f"machine {self.name!r}: {keyword} must be a machine action (an object "
                    f"with perform(machine)), not {action!r}"
                )
        self.start_action = start_action
        self.stop_action = stop_action

    async def start_machine(self) -> bool:
        return bool(await resolve(self.start_action.perform(self)))

    async def stop_machine(self) -> Any:
        return await resolve(self.stop_action.perform(self))


# -- actions ------------------------------------------------------------------------------------


async def _run(args: Sequence[Any], what: str, redact: Callable[[str], str]) -> bool:
    """Run ``args``; True when it exits with 0, otherwise the failure is logged with its
    output (the secrets in it hidden by ``redact``)."""
    argv = [str(a) for a in args]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        log.error(
            "machine_action_failed", action=what, command=redact(argv[0]), error=redact(str(exc))
        )
        return False
    try:
        stdout, stderr = await proc.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        log.error(
            "machine_action_failed",
            action=what,
            command=redact(argv[0]),
            code=proc.returncode,
            stdout=redact(stdout.decode(errors="replace"))[-2000:],
            stderr=redact(stderr.decode(errors="replace"))[-2000:],
        )
        return False
    return True


class LocalWakeAction(ConfigObject):
    """Run ``command`` (a list: the program and its arguments, secrets allowed) on the master's
    host."""

    def __init__(self, command: Sequence[Any]) -> None:
        if not isinstance(command, list):
            config_error(f"LocalWakeAction: command must be a list, not {command!r}")
            command = []
        self.command = list(command)

    async def perform(self, manager: Machine) -> bool:
        args = await manager.renderSecrets(self.command)
        what = f"{type(self).__name__} of machine {manager.name!r}"
        return await _run(args, what, _redaction(manager))


class LocalWOLAction(LocalWakeAction):
    """Wake-on-LAN from the master's host: runs ``wolBin wakeMac`` (by default Debian's
    ``wakeonlan``, which sends the host's magic packet)."""

    def __init__(self, wakeMac: str, wolBin: str = "wakeonlan") -> None:  # noqa: N803
        super().__init__([wolBin, wakeMac])


class RemoteSshWakeAction(ConfigObject):
    """Run ``remoteCommand`` (a list) on ``host`` through ``sshBin``, in batch mode; ``sshKey``
    (a private key's text) and ``sshHostKey`` (the host's public key, ``type base64``) may be
    secrets, and are written for ssh to a private directory removed afterwards."""

    _secret_arguments = frozenset({"sshKey"})

    def __init__(
        self,
        host: str,
        remoteCommand: Sequence[Any],  # noqa: N803 - Buildbot's keywords
        sshBin: str = "ssh",  # noqa: N803
        sshKey: Any = None,  # noqa: N803
        sshHostKey: Any = None,  # noqa: N803
    ) -> None:
        self._setup(host, remoteCommand, sshBin, sshKey, sshHostKey)

    def _setup(
        self, host: Any, remote_command: Any, ssh_bin: Any, ssh_key: Any, ssh_host_key: Any
    ) -> None:
        label = type(self).__name__
        if not isinstance(ssh_bin, str):
            config_error(f"{label}: sshBin must be a string, not {ssh_bin!r}")
        if not isinstance(host, str):
            config_error(f"{label}: host must be a string, not {host!r}")
        if not isinstance(remote_command, list):
            config_error(f"{label}: remoteCommand must be a list, not {remote_command!r}")
            remote_command = []
        self.host = host
        self.remote_command = list(remote_command)
        self.ssh_bin = ssh_bin
        self.ssh_key = ssh_key
        self.ssh_host_key = ssh_host_key

    async def perform(self, manager: Machine) -> bool:
        host, command = await manager.renderSecrets(self.host, self.remote_command)
        what = f"{type(self).__name__} of machine {manager.name!r}"
        with tempfile.TemporaryDirectory(prefix="buildyard-ssh-") as tmp:
            args = [self.ssh_bin, "-o", "BatchMode=yes"]
            if self.ssh_key is not None:
                key = str(await manager.renderSecrets(self.ssh_key))
                if not key.endswith("\n"):
                    key += "\n"  # ssh refuses a key without its final newline
                key_path = Path(tmp) / "ssh-key"
                _write_private(key_path, key)
                args += ["-i", str(key_path)]
            if self.ssh_host_key is not None:
                host_key = str(await manager.renderSecrets(self.ssh_host_key)).strip()
                known = Path(tmp) / "ssh-known-hosts"
                known.write_text(f"* {host_key}\n")
                args += ["-o", f"UserKnownHostsFile={known}"]
            return await _run([*args, host, *command], what, _redaction(manager))


def _redaction(manager: Machine) -> Callable[[str], str]:
    """How an action of ``manager`` hides the secrets it rendered in what it logs."""
    redactor = getattr(manager, "redactor", None)
    return redactor.redact if isinstance(redactor, Redactor) else (lambda text: text)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    with os.fdopen(fd, "w") as out:
        out.write(text)


class RemoteSshWOLAction(RemoteSshWakeAction):
    """Wake-on-LAN sent from ``host`` (on the target's network): ``wolBin wakeMac`` over ssh."""

    def __init__(  # noqa: PLR0917 - Buildbot accepts these positionally
        self,
        host: str,
        wakeMac: str,  # noqa: N803 - Buildbot's keywords
        wolBin: str = "wakeonlan",  # noqa: N803
        sshBin: str = "ssh",  # noqa: N803
        sshKey: Any = None,  # noqa: N803
        sshHostKey: Any = None,  # noqa: N803
    ) -> None:
        self._setup(host, [wolBin, wakeMac], sshBin, sshKey, sshHostKey)


class RemoteSshSuspendAction(RemoteSshWakeAction):
    """Suspend ``host`` over ssh: ``remoteCommand``, by default ``systemctl suspend``."""

    def __init__(
        self,
        host: str,
        remoteCommand: Sequence[Any] | None = None,  # noqa: N803 - Buildbot's keywords
        sshBin: str = "ssh",  # noqa: N803
        sshKey: Any = None,  # noqa: N803
        sshHostKey: Any = None,  # noqa: N803
    ) -> None:
        command = ["systemctl", "suspend"] if remoteCommand is None else remoteCommand
        self._setup(host, command, sshBin, sshKey, sshHostKey)


_HTTP_METHODS = ("get", "put", "delete", "post")


class HttpAction(ConfigObject):
    """An HTTP request (``method`` one of get, put, delete, post) to ``url``; the arguments
    are those of a ``requests`` call and may hold secrets. Succeeds on a status below 400."""

    _secret_arguments = frozenset({"auth", "headers", "cookies"})

    def __init__(  # noqa: PLR0917 - Buildbot accepts these positionally
        self,
        url: Any,
        method: str,
        params: Any = None,
        data: Any = None,
        json: Any = None,
        headers: Any = None,
        cookies: Any = None,
        files: Any = None,
        auth: Any = None,
        timeout: Any = None,
        allow_redirects: Any = None,
        proxies: Any = None,
    ) -> None:
        if method not in _HTTP_METHODS:
            config_error(f"HttpAction: method must be one of {', '.join(_HTTP_METHODS)}")
        if files is not None:
            config_error("HttpAction: files is not supported by buildyard (send data instead)")
        self.url = url
        self.method = method
        self.arguments = {
            "params": params,
            "data": data,
            "json": json,
            "headers": headers,
            "cookies": cookies,
            "auth": auth,
            "timeout": timeout,
            "allow_redirects": allow_redirects,
            "proxies": proxies,
        }

    async def perform(self, manager: Machine) -> bool:
        url, args = await manager.renderSecrets(self.url, dict(self.arguments))
        what = f"HttpAction of machine {manager.name!r}"
        redact = _redaction(manager)
        shown_url = redact(_without_queries(str(url)))
        auth = args["auth"]
        timeout = args["timeout"]
        proxies = args["proxies"] or {}
        headers = dict(args["headers"] or {})
        if auth:
            user, password = auth
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        kwargs: dict[str, Any] = {
            "params": args["params"],
            "data": args["data"],
            "json": args["json"],
            "headers": headers,
            "allow_redirects": True if args["allow_redirects"] is None else args["allow_redirects"],
            "proxy": proxies.get(str(url).split(":", 1)[0]),
        }
        import aiohttp  # (on first use: a master without HTTP machine actions never loads it)

        client_timeout = aiohttp.ClientTimeout(total=float(timeout) if timeout else 300)
        try:
            async with (
                aiohttp.ClientSession(cookies=args["cookies"], timeout=client_timeout) as session,
                session.request(self.method.upper(), str(url), **kwargs) as response,
            ):
                body = await response.text(errors="replace")
                if response.status >= 400:
                    shown = redact(body)
                    if len(shown) > MAX_LOGGED_BODY:
                        shown = shown[:MAX_LOGGED_BODY] + f"... ({len(shown)} characters)"
                    log.error(
                        "machine_action_failed",
                        action=what,
                        url=shown_url,
                        status=response.status,
                        body=_without_queries(shown),
                    )
                    return False
                return True
        except (aiohttp.ClientError, TimeoutError) as exc:
            # aiohttp's errors name the whole URL, query included
            error = redact(_without_queries(f"{type(exc).__name__}: {exc}"))
            log.error("machine_action_failed", action=what, url=shown_url, error=error)
            return False


# -- the running state of a latent machine -----------------------------------------------------


class MachineRuntime:
    """One latent machine in a running master.

    :meth:`wake` powers the host on (once, however many workers ask at the same time; a wake
    that comes while the host is being stopped waits for the stop to end and then starts it
    again). Once woken, the host is stopped again when no build started on it within its
    ``missing_timeout``, or ``build_wait_timeout`` seconds after its last build ended; its
    workers are stopped first (``stop_workers``). ``building()`` tells whether one of its
    workers runs a build, ``substantiating()`` whether one is starting: a timer that ends while
    a worker starts does not power the host off (it looks again after ``missing_timeout``), and
    a wake of a host already up cancels its pending timer (a fresh ``missing_timeout`` starts).
    """

    def __init__(
        self,
        config: AbstractLatentMachine,
        *,
        spawn: Callable[..., asyncio.Task[Any]],
        stop_workers: Callable[[str], Awaitable[None]],
        building: Callable[[str], bool],
        substantiating: Callable[[str], bool] = lambda name: False,
    ) -> None:
        self.config = config
        self.state = States.STOPPED
        self._spawn = spawn
        self._stop_workers = stop_workers
        self._building = building
        self._substantiating = substantiating
        self._start: asyncio.Future[bool] | None = None
        self._stopped = asyncio.Event()
        self._stopped.set()
        self._timer: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.config.name

    async def wake(self) -> bool:
        """Power the machine on, if it is not; True once it is up."""
        if self.state is States.STOPPING:
            await self._stopped.wait()
        if self.state is States.STARTED:
            # a worker is about to start on it: a pending build_wait_timeout (or missing_timeout)
            # must not power it off under that worker; it gets a fresh missing_timeout instead
            self._cancel_timer()
            if not self._building(self.name):
                self._set_timer(float(self.config.missing_timeout), "missing_timeout")
            return True
        if self.state is States.STARTING:
            assert self._start is not None
            return await asyncio.shield(self._start)
        self.state = States.STARTING
        self._start = asyncio.get_running_loop().create_future()
        log.info("machine_starting", machine=self.name)
        try:
            ok = bool(await resolve(self.config.start_machine()))
        except asyncio.CancelledError:
            self.state = States.STOPPED
            self._start.set_result(False)
            raise
        except Exception as exc:
            log.error(
                "machine_start_failed", machine=self.name, error=f"{type(exc).__name__}: {exc}"
            )
            ok = False
        self.state = States.STARTED if ok else States.STOPPED
        if ok:
            log.info("machine_started", machine=self.name)
            self._set_timer(float(self.config.missing_timeout), "missing_timeout")
        else:
            log.warning("machine_not_started", machine=self.name)
        self._start.set_result(ok)
        return ok

    def build_started(self) -> None:
        self._cancel_timer()

    def build_finished(self) -> None:
        if self._building(self.name):
            self._cancel_timer()
        elif self.state is States.STARTED:
            self._set_timer(float(self.config.build_wait_timeout), "build_wait_timeout")

    def _set_timer(self, seconds: float, why: str) -> None:
        self._cancel_timer()
        self._timer = self._spawn(self._after(seconds, why), name=f"machine:{self.name}")

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer is not asyncio.current_task():
            self._timer.cancel()
        self._timer = None

    async def _after(self, seconds: float, why: str) -> None:
        await asyncio.sleep(seconds)
        self._timer = None
        if self._substantiating(self.name):
            # one of its workers is still starting: powering off now would fail that start;
            # look again after missing_timeout (at least a second, so that 0 does not spin)
            again = max(float(self.config.missing_timeout), 1.0)
            log.info("machine_stop_deferred", machine=self.name, timeout=why, seconds=again)
            self._set_timer(again, "missing_timeout")
            return
        log.info("machine_idle", machine=self.name, timeout=why, seconds=seconds)
        await self.stop()

    async def stop(self) -> None:
        """Power the machine off (its workers stopped first), unless a build runs on it or it
        is starting."""
        if self._building(self.name) or self.state in (States.STARTING, States.STOPPED):
            return
        if self.state is States.STOPPING:
            await self._stopped.wait()
            return
        self._cancel_timer()
        self.state = States.STOPPING
        self._stopped.clear()
        try:
            with contextlib.suppress(Exception):
                await self._stop_workers(self.name)
            try:
                await resolve(self.config.stop_machine())
                log.info("machine_stopped", machine=self.name)
            except Exception as exc:
                log.error(
                    "machine_stop_failed", machine=self.name, error=f"{type(exc).__name__}: {exc}"
                )
        finally:
            self.state = States.STOPPED
            self._stopped.set()
