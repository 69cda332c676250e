"""Checks across BuildmasterConfig keys: names that must be unique, names that must exist.

Each mistake is reported where the offending object was built (its ``defined_at``), else at the
key's line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping

from buildyard.common.config_object import ConfigObject, placeholder_name
from buildyard.common.errors import Location, config_error, config_warning
from buildyard.common.ports import msgpack_listen
from buildyard.master.builds.builder import BuilderConfig
from buildyard.master.changes.base import ChangeSourceConfig
from buildyard.master.changes.pb import PBChangeSource
from buildyard.master.config.assignments import KeyLines
from buildyard.master.schedulers.base import SchedulerConfig
from buildyard.master.schedulers.trysched import Try_Userpass
from buildyard.master.workers.config import AbstractLatentWorker, LocalWorker, Worker
from buildyard.master.workers.machines import Machine

__all__ = ["check_references"]


def _where(obj: object, lines: KeyLines, key: str) -> Location:
    defined_at = obj.defined_at if isinstance(obj, ConfigObject) else None
    return defined_at or lines.location(key)


def _worker_names(workers: Iterable[object], lines: KeyLines) -> set[str]:
    """Every configured worker's name (latent ones still stand-ins), duplicates reported."""
    names: set[str] = set()
    for worker in workers:
        name = worker.name if isinstance(worker, Worker) else placeholder_name(worker)
        if name is None:
            continue
        if name in names:
            config_error(
                f"duplicate worker name {name!r}", location=_where(worker, lines, "workers")
            )
        names.add(name)
    return names


def _check_builders(
    builders: Iterable[BuilderConfig], worker_names: set[str], lines: KeyLines
) -> None:
    seen_names: set[str] = set()
    seen_dirs: set[str] = set()
    for builder in builders:
        where = _where(builder, lines, "builders")
        unknown = [n for n in builder.workernames if n not in worker_names]
        if unknown:
            listed = ", ".join(repr(n) for n in unknown)
            noun = "worker" if len(unknown) == 1 else "workers"
            config_error(f"builder {builder.name!r} uses unknown {noun} {listed}", location=where)
        if builder.name in seen_names:
            config_error(f"duplicate builder name {builder.name!r}", location=where)
        elif builder.builddir in seen_dirs:
            config_error(f"duplicate builder builddir {builder.builddir!r}", location=where)
        seen_names.add(builder.name)
        seen_dirs.add(builder.builddir)


def _check_ports(
    protocols: Mapping[str, Mapping[str, object]], has_workers: bool, lines: KeyLines
) -> None:
    ports: set[str] = set()
    for name, options in protocols.items():
        port = options.get("port")
        if name == "null" or port is None:
            continue
        key = f"tcp:{port}" if isinstance(port, int) else str(port)
        if key in ports:
            config_error(
                "two entries of c['protocols'] use the same port",
                location=lines.location("protocols"),
            )
        ports.add(key)
    if has_workers and not ports and "null" not in protocols:
        # An error in Buildbot; a warning here, so a master can run before its workers do.
        config_warning(
            "workers are configured, but c['protocols'] gives them no port to connect to",
            location=lines.location("protocols"),
        )


def _check_schedulers(
    schedulers: Iterable[object], builder_names: set[str], lines: KeyLines
) -> None:
    seen: set[str] = set()
    for scheduler in schedulers:
        if not isinstance(scheduler, SchedulerConfig):
            continue
        where = _where(scheduler, lines, "schedulers")
        if scheduler.name in seen:
            config_error(f"duplicate scheduler name {scheduler.name!r}", location=where)
        seen.add(scheduler.name)
        for name in getattr(scheduler, "builderNames", ()) or ():
            if isinstance(name, str) and name not in builder_names:
                config_error(
                    f"scheduler {scheduler.name!r} uses unknown builder {name!r}", location=where
                )


def _check_change_sources(
    sources: Iterable[object],
    lines: KeyLines,
    protocols: Mapping[str, Mapping[str, object]],
    worker_names: Iterable[str],
) -> None:
    seen: set[str] = set()
    for source in sources:
        if not isinstance(source, ChangeSourceConfig):
            continue
        if isinstance(source, PBChangeSource) and source.port is None:
            where = _where(source, lines, "change_source")
            if "pb" not in protocols:
                config_error(
                    "No port specified for PBChangeSource, and no worker port configured "
                    "(c['protocols']['pb'])",
                    location=where,
                )
        if source.name in seen:
            config_error(
                f"duplicate change source name {source.name!r}",
                location=_where(source, lines, "change_source"),
            )
        seen.add(source.name)


def _check_pb_users(
    services: Iterable[object],
    lines: KeyLines,
    protocols: Mapping[str, Mapping[str, object]],
    worker_names: Iterable[str],
) -> None:
    """One user name per PB port: the workers on the worker PB port, PBChangeSource's user and
    Try_Userpass's users wherever they listen (Buildbot's PB manager refuses the same)."""
    worker_port: int | None = None
    with contextlib.suppress(ValueError):  # a bad port is reported with c['protocols']
        if "pb" in protocols:
            worker_port = msgpack_listen(protocols["pb"]).port
    taken: dict[tuple[int | None, str], str] = {}
    if worker_port:
        taken.update({(worker_port, name): f"worker {name!r}" for name in worker_names})
    for service in services:
        if isinstance(service, PBChangeSource):
            listen, users, key = service.listen, [service.user], "change_source"
            owner = f"change source {service.name!r}"
        elif isinstance(service, Try_Userpass):
            listen, users, key = service.listen, [u for u, _ in service.userpass], "schedulers"
            owner = f"scheduler {service.name!r}"
        else:
            continue
        port = listen.port if listen is not None else worker_port
        for user in users:
            other = taken.setdefault((port, user), owner)
            if other != owner:
                config_error(
                    f"{owner}: user name {user!r} on PB port {port} is taken by {other}: "
                    "choose another user or another port",
                    location=_where(service, lines, key),
                )


def check_references(
    *,
    workers: Iterable[object],
    builders: Iterable[BuilderConfig],
    schedulers: Iterable[object] = (),
    change_sources: Iterable[object] = (),
    machines: Iterable[object],
    protocols: Mapping[str, Mapping[str, object]],
    multi_master: bool,
    lines: KeyLines,
) -> None:
    """Report every cross-key mistake. ``workers`` and ``machines`` are as master.cfg gave
    them, stand-ins included, so a latent worker's name counts before its class exists."""
    workers = list(workers)
    builders = list(builders)
    worker_names = _worker_names(workers, lines)
    _check_builders(builders, worker_names, lines)
    _check_schedulers(schedulers, {b.name for b in builders}, lines)
    _check_change_sources(change_sources, lines, protocols, worker_names)
    _check_pb_users([*change_sources, *schedulers], lines, protocols, worker_names)
    # a LocalWorker needs no port of c['protocols']: the master serves it on loopback
    remote = [w for w in workers if not isinstance(w, LocalWorker)]
    _check_ports(protocols, bool(remote), lines)

    machines = list(machines)
    machine_names = {m.name if isinstance(m, Machine) else placeholder_name(m) for m in machines}
    latent_machines = {m.name for m in machines if isinstance(m, Machine) and m.is_latent}
    for worker in workers:
        if not isinstance(worker, Worker) or worker.machine_name is None:
            continue
        if worker.machine_name not in machine_names:
            config_error(
                f"worker {worker.name!r} uses unknown machine {worker.machine_name!r}",
                location=_where(worker, lines, "workers"),
            )
        elif worker.machine_name in latent_machines and not isinstance(
            worker, AbstractLatentWorker
        ):
            # the master powers the machine on only to start a latent worker
            config_error(
                f"worker {worker.name!r} is on latent machine {worker.machine_name!r} but is not "
                "a latent worker (use worker.LocalLatentWorker for a worker that starts with its "
                "machine)",
                location=_where(worker, lines, "workers"),
            )

    if not multi_master:
        # One master runs everything, so it must have something to run.
        if not worker_names:
            config_error("no workers are configured", location=lines.location("workers"))
        if not builders:
            config_error("no builders are configured", location=lines.location("builders"))
