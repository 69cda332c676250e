"""A worker as master.cfg declares it: ``worker.Worker("name", "password", ...)``.

The constructor takes Buildbot's keywords and checks them with
:func:`~buildyard.common.errors.config_error`, so a bad worker is reported at the master.cfg line
that built it; the attributes are snake_case.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from buildyard.common.config_object import ConfigObject, is_placeholder
from buildyard.common.errors import ConfigError, ConfigErrors, config_error
from buildyard.master.model.properties import (
    Properties,
    RenderError,
    SecretsOnly,
    is_renderable,
    render,
)

__all__ = ["AbstractLatentWorker", "LocalLatentWorker", "LocalWorker", "Worker"]

#: Buildbot's identifier rule: letters (any script), digits, "_" and "-", not starting with a digit.
_IDENTIFIER = re.compile(r"^(?!\d)[\w-]+$")
_RESERVED_NAMES = frozenset({"debug", "change", "status"})
_MAX_NAME_LENGTH = 50


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Worker(ConfigObject):
    """A worker that connects to this master with ``name`` and ``password``.

    ``password`` is a string, or a renderable of the master's secrets (``util.Secret("name")``,
    ``util.Interpolate("%(secret:name)s")``), rendered through ``c['secretsProviders']`` each
    time the master takes the configuration (at start and at each reconfig:
    :func:`render_passwords`), as Buildbot does; the worker logs in with
    :attr:`login_password`. ``max_builds`` limits concurrent
    builds (None: no limit); ``notify_on_missing`` lists addresses told when the worker has been
    gone for ``missing_timeout`` seconds; ``properties`` and ``defaultProperties`` apply to its
    builds; ``keepalive_interval`` is in seconds; ``machine_name`` ties it to a ``c['machines']``
    entry.
    """

    _secret_arguments = frozenset({"password"})

    def __init__(  # noqa: PLR0917 - Buildbot accepts these positionally
        self,
        name: str,
        password: object,
        max_builds: int | None = None,
        notify_on_missing: str | Sequence[str] | None = None,
        missing_timeout: float | None = None,
        properties: Mapping[str, object] | None = None,
        defaultProperties: Mapping[str, object] | None = None,  # noqa: N803 - Buildbot's keyword
        locks: Sequence[object] | None = None,
        keepalive_interval: float | None = None,
        machine_name: str | None = None,
    ) -> None:
        self.name: str = name if isinstance(name, str) else str(name)
        # as in Buildbot, ``password`` becomes what a secret rendered to (a latent worker's
        # subclass reads self.password); the configuration keeps what was written
        self.password: object = password
        self._password_given = password
        self.max_builds = max_builds
        self.notify_on_missing: tuple[str, ...] = ()
        self.missing_timeout = missing_timeout
        self.properties: dict[str, object] = {}
        self.default_properties: dict[str, object] = {}
        self.locks: tuple[object, ...] = ()
        self.keepalive_interval = keepalive_interval
        self.machine_name = machine_name

        self._check_name(name)
        label = f"worker {self.name!r}"
        if not (isinstance(password, str) or is_renderable(password) or is_placeholder(password)):
            config_error(
                f"{label}: password must be a string or a secret (util.Secret, "
                f"util.Interpolate), not {type(password).__name__}"
            )
        if max_builds is not None and (
            not isinstance(max_builds, int) or isinstance(max_builds, bool) or max_builds < 1
        ):
            config_error(f"{label}: max_builds must be a positive integer or None")
        self.notify_on_missing = self._addresses(label, notify_on_missing)
        for keyword, seconds in (
            ("missing_timeout", missing_timeout),
            ("keepalive_interval", keepalive_interval),
        ):
            if seconds is not None and (not _is_number(seconds) or seconds < 0):
                config_error(f"{label}: {keyword} must be a number of seconds or None")
        self.properties = self._mapping(label, "properties", properties)
        self.default_properties = self._mapping(label, "defaultProperties", defaultProperties)
        if locks is not None:
            if isinstance(locks, list | tuple):
                self.locks = tuple(locks)
            else:
                config_error(f"{label}: locks must be a list")
        self._check_optional_str(label, "machine_name", machine_name)
        if isinstance(machine_name, str):
            # as Buildbot: builds on this worker carry its machine's name
            self.properties["machine_name"] = machine_name

    @property
    def login_password(self) -> str | None:
        """The password the worker logs in with; None while a password given as a secret has
        not been rendered (:func:`render_passwords`), when no login can succeed."""
        password = self.password
        return password if isinstance(password, str) else None

    async def render_password(self, lookup: Callable[[str], Awaitable[str | None]]) -> None:
        """Render a password given as a secret with ``lookup`` (the secret providers);
        :class:`~buildyard.common.errors.ConfigError` naming this worker and the failure
        (a secret no provider knows, a value that is not a non-empty string)."""
        given = self._password_given
        if not is_renderable(given):
            return
        props = Properties()
        props.build = SecretsOnly(lookup)
        label = f"worker {self.name!r}"
        where = self.defined_at
        try:
            value = await render(given, props)
        except RenderError as exc:  # names the secret, never a value
            raise ConfigError(
                f"{label}: its password {given!r} cannot be rendered: {exc}",
                location=where,
            ) from None
        except Exception as exc:  # user code: its message may hold the value, left out
            raise ConfigError(
                f"{label}: its password {given!r} cannot be rendered: "
                f"{type(exc).__name__} raised while rendering it",
                location=where,
            ) from None
        if not isinstance(value, str) or not value:
            kind = "an empty string" if value == "" else type(value).__name__
            raise ConfigError(
                f"{label}: its password {given!r} rendered to {kind}, not a non-empty string",
                location=where,
            )
        self.password = value

    @property
    def workername(self) -> str:
        """Buildbot's name for :attr:`name` (configs write ``[w.workername for w in ...]``)."""
        return self.name

    @staticmethod
    def _check_name(name: object) -> None:
        if not isinstance(name, str):
            config_error(f"worker name must be a string, not {type(name).__name__}")
            return
        if not name:
            config_error("worker name cannot be an empty string")
        elif name in _RESERVED_NAMES:
            config_error(f"worker name {name!r} is reserved")
        elif not _IDENTIFIER.match(name):
            config_error(
                f"worker name {name!r} is not an identifier (letters, digits, '_' and '-', "
                "not starting with a digit)"
            )
        elif len(name) > _MAX_NAME_LENGTH:
            config_error(f"worker name {name!r} is longer than {_MAX_NAME_LENGTH} characters")

    @staticmethod
    def _check_optional_str(label: str, keyword: str, value: object) -> None:
        if value is not None and not isinstance(value, str):
            config_error(f"{label}: {keyword} must be a string or None")

    @staticmethod
    def _addresses(label: str, value: object) -> tuple[str, ...]:
        if value is None:
            return ()
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            config_error(f"{label}: notify_on_missing must be a string or a list of strings")
            return ()
        for item in items:
            if not isinstance(item, str):
                config_error(f"{label}: notify_on_missing entry {item!r} is not a string")
        return tuple(i for i in items if isinstance(i, str))

    @staticmethod
    def _mapping(label: str, keyword: str, value: object) -> dict[str, object]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            config_error(f"{label}: {keyword} must be a dictionary")
            return {}
        for key in value:
            if not isinstance(key, str):
                config_error(f"{label}: {keyword} key {key!r} is not a string")
        return dict(value)


# A LocalWorker's password: derived from this key, made once per master process, so that a
# reconfig (which builds the worker again) gives the running worker process the same password.
_LOCAL_KEY = secrets.token_bytes(32)


class LocalWorker(Worker):
    """A worker the master runs itself: ``worker.LocalWorker("name", **worker_keywords)``.

    Buildbot's arguments: the name, ``workdir`` (the worker's directory under
    ``<master basedir>/workers``, or an absolute path; the name by default) and the
    :class:`Worker` keywords; no password (one is generated). The master starts a
    buildyard-worker process for it that connects to its worker port over loopback (see
    :mod:`buildyard.master.workers.local`).
    """

    def __init__(self, name: str, workdir: str | None = None, **kwargs: Any) -> None:
        if "password" in kwargs:
            config_error(f"worker {name!r}: a LocalWorker takes no password (one is generated)")
            kwargs.pop("password")
        key = name.encode() if isinstance(name, str) else repr(name).encode()
        password = hmac.new(_LOCAL_KEY, key, hashlib.sha256).hexdigest()
        super().__init__(name, password, **kwargs)
        self.workdir: str = self.name
        if workdir is not None:
            # as in Buildbot: joined to <basedir>/workers, so an absolute path is taken as is
            if isinstance(workdir, str) and workdir:
                self.workdir = workdir
            else:
                config_error(f"worker {self.name!r}: workdir must be a non-empty string")


# A latent worker's generated password: as for a LocalWorker, the same for a name throughout
# one master process (a reconfig keeps it), and new after a restart, so an instance an earlier
# run of the master left behind cannot log in.
def generated_password(name: object) -> str:
    key = name.encode() if isinstance(name, str) else repr(name).encode()
    return hmac.new(_LOCAL_KEY, b"latent:" + key, hashlib.sha256).hexdigest()[:32]


async def render_passwords(
    workers: Iterable[object], lookup: Callable[[str], Awaitable[str | None]]
) -> None:
    """Render the passwords of ``workers`` given as secrets, all of them;
    :class:`~buildyard.common.errors.ConfigErrors` listing every worker whose password cannot
    be rendered. The values are never part of a message."""
    errors = ConfigErrors()
    for worker in workers:
        if isinstance(worker, Worker):
            try:
                await worker.render_password(lookup)
            except ConfigError as error:
                errors.errors.append(error)
    if errors:
        raise errors


class LatentWorkerFailedToSubstantiate(Exception):
    """A latent worker's start that failed: the worker goes into quarantine."""


class LatentWorkerCannotSubstantiate(LatentWorkerFailedToSubstantiate):
    """A start that cannot succeed as configured (a missing image, ...)."""


class AbstractLatentWorker(Worker):
    """A worker the master starts when a build needs it and stops when it is no longer needed:
    Buildbot's ``AbstractLatentWorker``, subclassed in master.cfg.

    A subclass defines ``async def start_instance(self, build)`` (start the machine or
    container; return True, or raise to fail the start) and ``async def stop_instance(self,
    fast=False)``, and may define ``async def check_instance(self)`` returning ``(ok,
    message)`` (asked every ``check_instance_interval`` seconds while the master waits for the
    worker to connect: ``(False, why)`` fails the start). ``build`` offers ``render(value)``,
    ``getProperty(name)`` and ``properties``: the properties of the build request the instance
    is started for.

    ``build_wait_timeout``: seconds an idle instance is kept for the next build (0: stopped
    after each build; negative: never stopped by the master). ``missing_timeout``: seconds the
    master waits, after a start, for the worker to connect before it counts the start as
    failed. The password may be None: one is generated (:meth:`getRandomPass`).
    """

    #: seconds of the first quarantine after a failed start; doubled at each failure in a row
    quarantine_initial_timeout = 10.0
    quarantine_max_timeout = 3600.0
    #: the missing_timeout when none is given
    default_missing_timeout = 3600.0

    def __init__(
        self,
        name: str,
        password: object = None,
        *,
        build_wait_timeout: float = 600,
        check_instance_interval: float = 10,
        **kwargs: Any,
    ) -> None:
        if password is None:
            password = generated_password(name)
        super().__init__(name, password, **kwargs)
        self.build_wait_timeout = build_wait_timeout
        self.check_instance_interval = check_instance_interval
        label = f"worker {self.name!r}"
        if not _is_number(build_wait_timeout):
            config_error(f"{label}: build_wait_timeout must be a number of seconds")
        if not _is_number(check_instance_interval) or check_instance_interval <= 0:
            config_error(f"{label}: check_instance_interval must be a positive number of seconds")
        #: what the master tells the instance about itself; set before each start
        self.master_info: LatentMasterInfo | None = None

    def getRandomPass(self) -> str:  # noqa: N802 - Buildbot's name
        """A password for the instance to log in with (Buildbot's name); the same for this
        worker's name throughout this master process."""
        return generated_password(self.name)

    async def start_instance(self, build: Any) -> bool:
        raise NotImplementedError(
            f"{type(self).__name__} must define 'async def start_instance(self, build)'"
        )

    async def stop_instance(self, fast: bool = False) -> None:
        raise NotImplementedError(
            f"{type(self).__name__} must define 'async def stop_instance(self, fast=False)'"
        )

    async def check_instance(self) -> tuple[bool, str]:
        return True, ""

    async def while_starting(self) -> None:
        """Run while the master waits for the started instance to connect, cancelled when it
        connects (a subclass may follow the instance's start-up log here)."""

    async def cleanup_orphans(self) -> int:
        """Stop the instances of this worker that an earlier run of this master left (they
        carry :attr:`LatentMasterInfo.identity`); returns how many. Called once when the
        master takes the worker into its configuration, before any start."""
        return 0


class LocalLatentWorker(AbstractLatentWorker):
    """A worker that runs on a latent machine (``machine_name``) and starts by itself when
    that machine is powered on (Buildbot's ``buildbot.worker.latent.LocalLatentWorker``): the
    master starts nothing but the machine, waits for the worker to connect, and never stops it
    itself (its ``build_wait_timeout`` is -1): the machine's own ``build_wait_timeout`` powers
    the host off."""

    #: it connects when its machine wakes, without a start of its own
    starts_without_substantiate = True

    def __init__(self, name: str, password: object, **kwargs: Any) -> None:
        kwargs.pop("build_wait_timeout", None)
        super().__init__(name, password, build_wait_timeout=-1, **kwargs)
        if self.machine_name is None:
            config_error(f"worker {self.name!r}: a LocalLatentWorker needs a machine_name")

    async def start_instance(self, build: Any) -> bool:
        return True  # its machine's start is its start

    async def stop_instance(self, fast: bool = False) -> None:
        return None  # its machine's stop is its stop


def worker_environment(
    info: LatentMasterInfo, *, fqdn: str, protocol: str, name: str, password: object
) -> dict[str, str]:
    """The environment Buildbot's worker images read to reach the master (``BUILDMASTER``,
    ``BUILDMASTER_PORT``, ``BUILDMASTER_PROTOCOL``, ``WORKERNAME``, ``WORKERPASS``), shared by
    the container engines; a ``masterFQDN`` of ``host:port`` names the port itself.
    :class:`LatentWorkerCannotSubstantiate` when neither names a port for ``protocol``."""
    port = info.pb_port if protocol == "pb" else info.msgpack_port
    env = {
        "BUILDMASTER": fqdn,
        "BUILDMASTER_PROTOCOL": protocol,
        "WORKERNAME": name,
        "WORKERPASS": str(password),
    }
    if port is not None:
        env["BUILDMASTER_PORT"] = str(port)
    if ":" in fqdn:
        env["BUILDMASTER"], env["BUILDMASTER_PORT"] = fqdn.rsplit(":", 1)
    if "BUILDMASTER_PORT" not in env:
        raise LatentWorkerCannotSubstantiate(
            f"master_protocol {protocol!r}: the master has no such port (c['protocols']) and "
            "masterFQDN names none"
        )
    return env


class LatentMasterInfo:
    """What a latent worker's instance needs to know of the master that starts it."""

    def __init__(
        self, *, name: str, host: str, msgpack_port: int | None, pb_port: int | None
    ) -> None:
        self.name = name
        self.host = host
        self.msgpack_port = msgpack_port
        self.pb_port = pb_port
        #: a short stable hash of the master's name: Buildbot's ``masterhash``
        self.masterhash = hashlib.sha1(name.encode()).hexdigest()[:6]
        #: the label value instances carry, to find them after the master restarts
        self.identity = hashlib.sha256(name.encode()).hexdigest()[:24]
