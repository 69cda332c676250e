"""``ReporterBase``: a service that turns mq events into reports and sends them.

Ownership and ordering: the reporter's subscription is read by one task that only hands each
event on; every event is then handled (generators, then ``sendMessage``) in a task of its own,
so a slow HTTP server or a formatter that raises never holds up the queue, a build, or the
other reporters. Events of one build request (its ``buildrequests`` and ``builds`` events) are
handled one after the other, in the order they came, as in Buildbot; others run side by side.
A failure is logged with the reporter's name, the event and the build, and is otherwise
dropped: reports never change a build's result.

Stopping the reporter gives the events in hand ``STOP_GRACE`` seconds to be reported; those
still unsent are kept in the master's state table (under the reporter's name) and reported
when a reporter of that name starts again, here or on another master sharing the database,
so a restart loses no report. Reports are made from the database when they are sent, so a
replayed event reports the build as it is then.

A report that could not be delivered after the reporter's own retries (``sendMessage`` raised
a delivery error: the HTTP client's ``HttpError``, a connection or timeout error) is not
dropped either: its event is kept in the state table as given up (:data:`GIVEN_UP_STATE`, with
the error and the time), logged as ``reporter_report_kept``, and tried again when a reporter of
that name next starts: one after the other in the order they came, each forgotten only once
delivered (a stop or crash during the replay keeps the rest). At most :data:`MAX_GIVEN_UP` are
kept per reporter; beyond, the oldest are dropped (``reporter_report_dropped``). ``buildyard
reports`` lists what is kept and drops it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import structlog

from buildyard.common.errors import config_error
from buildyard.master.mq.base import Body, Key, Pattern, Subscription
from buildyard.master.mq.keys import matches
from buildyard.master.reporters import details
from buildyard.master.reporters.httpclient import HttpError, dumps
from buildyard.master.reporters.service import BuildbotService, ReporterEnvironment, maybe_await

log = structlog.get_logger(__name__)

__all__ = ["ReporterBase"]

#: how long a stopping reporter waits for the reports in hand
STOP_GRACE = 10.0
#: the state value holding the events a stopped reporter had not reported
PENDING_STATE = "pending_reports"
#: the state value holding the reports given up after their retries (``buildyard reports``)
GIVEN_UP_STATE = "given_up_reports"
#: the most given-up reports kept per reporter (beyond, the oldest are dropped)
MAX_GIVEN_UP = 1000
#: what ``sendMessage`` raises when a report could not be delivered (kept, tried at next start)
DELIVERY_ERRORS: tuple[type[BaseException], ...] = (HttpError, OSError, aiohttp.ClientError)


def _event_fields(key: Key, body: Body) -> dict[str, Any]:
    """What names the event in a log line: the build, request, buildset or worker."""
    fields: dict[str, Any] = {"mq_event": "/".join(key)}
    for name in ("buildid", "number", "builderid", "buildrequestid", "bsid", "workerid", "name"):
        if name in body:
            fields["build_" + name if name == "number" else name] = body[name]
    return fields


class ReporterBase(BuildbotService):
    """``buildbot.reporters.base.ReporterBase``: subclasses implement ``sendMessage(reports)``
    (sync or ``async def``) and call ``super().checkConfig(generators=...)`` and
    ``super().reconfigService(generators=...)``."""

    name = None

    def checkConfig(self, generators: Any = None, **kwargs: Any) -> Any:
        owner = type(self).__name__
        if kwargs:
            config_error(f"{owner}: unexpected arguments {', '.join(sorted(kwargs))}")
        if not isinstance(generators, list):
            config_error(f"{owner}: generators must be a list of report generators")
            return
        for g in generators:
            if not callable(getattr(g, "generate", None)) or not hasattr(g, "wanted_event_keys"):
                config_error(f"{owner}: {g!r} is not a report generator")
                continue
            check = getattr(g, "check", None)
            if callable(check):
                check()
        if self.name is None:
            name = owner
            for g in generators:
                generate_name = getattr(g, "generate_name", None)
                name += "_" + (generate_name() if callable(generate_name) else type(g).__name__)
            self.name = name

    def reconfigService(self, generators: Any = None, **kwargs: Any) -> Any:
        self.generators: list[Any] = list(generators or [])
        wanted: set[Pattern] = set()
        for g in self.generators:
            wanted.update(tuple(k) for k in g.wanted_event_keys)
        if wanted == getattr(self, "_wanted", None):
            return None
        self._wanted = wanted
        old = getattr(self, "_follower", None)
        if old is not None:
            old.cancel()
        env = self._env
        assert env is not None, "reconfigService before the service was started"
        first = not hasattr(self, "_chains")
        if first:
            self._chains: dict[tuple[str, int], asyncio.Task[None]] = {}
            self._in_hand: dict[asyncio.Task[None], tuple[Key, Body]] = {}
        # this master's events only: with a queue shared by several masters, each build is
        # reported once, by the master that ran it
        subscription = env.mq.subscribe(*sorted(wanted, key=str), local_only=True)
        self._follower: asyncio.Task[None] | None = self.spawn(
            self._follow(subscription, replay=first), name="events"
        )
        return None

    async def _state_id(self) -> int | None:
        env = self._env
        if env is None or env.state is None:
            return None
        return await env.state.get_object_id(
            str(self.name), f"buildyard.reporters.{type(self).__qualname__}"
        )

    async def _take_pending(self) -> list[tuple[Key, Body]]:
        """The events a reporter of this name left unreported when it stopped (and forget
        them)."""
        objectid = await self._state_id()
        if objectid is None:
            return []
        assert self._env is not None
        assert self._env.state is not None
        saved = await self._env.state.get_state(objectid, PENDING_STATE, [])
        if not saved:
            return []
        await self._env.state.set_state(objectid, PENDING_STATE, [])
        return [(tuple(str(k) for k in key), dict(body)) for key, body in saved]

    async def _keep_pending(self, events: list[tuple[Key, Body]]) -> None:
        objectid = await self._state_id()
        if objectid is None or not events:
            return
        assert self._env is not None
        assert self._env.state is not None
        saved = list(await self._env.state.get_state(objectid, PENDING_STATE, []) or [])
        saved += [[list(key), json.loads(dumps(body))] for key, body in events]
        await self._env.state.set_state(objectid, PENDING_STATE, saved)
        log.info("reporter_reports_kept", reporter=self.name, events=len(events))

    def _given_up_guard(self) -> asyncio.Lock:
        if not hasattr(self, "_given_up_lock"):
            self._given_up_lock = asyncio.Lock()
        return self._given_up_lock

    async def _keep_given_up(self, key: Key, body: Body, error: str) -> bool:
        """Keep an event whose report was given up; False when there is no state to keep it.
        At most ``MAX_GIVEN_UP`` are kept per reporter: the oldest go first."""
        objectid = await self._state_id()
        if objectid is None:
            return False
        assert self._env is not None
        assert self._env.state is not None
        async with self._given_up_guard():  # one read-modify-write at a time
            saved = list(await self._env.state.get_state(objectid, GIVEN_UP_STATE, []) or [])
            number = max((int(e.get("id", 0)) for e in saved), default=0) + 1
            saved.append(
                {
                    "id": number,
                    "key": list(key),
                    "body": json.loads(dumps(body)),
                    "error": error[:500],
                    "at": int(time.time()),
                }
            )
            dropped = len(saved) - MAX_GIVEN_UP
            if dropped > 0:
                saved = saved[dropped:]
            await self._env.state.set_state(objectid, GIVEN_UP_STATE, saved)
        if dropped > 0:
            log.warning(
                "reporter_report_dropped",
                reporter=self.name,
                count=dropped,
                kept=MAX_GIVEN_UP,
                why=f"more than {MAX_GIVEN_UP} reports given up; the oldest are dropped",
            )
        return True

    async def _given_up(self) -> list[tuple[int, Key, Body]]:
        """The given-up events (their number, key and body), oldest first; they stay kept until
        each is delivered (:meth:`_forget_given_up`)."""
        objectid = await self._state_id()
        if objectid is None:
            return []
        assert self._env is not None
        assert self._env.state is not None
        saved = await self._env.state.get_state(objectid, GIVEN_UP_STATE, [])
        return [
            (int(e.get("id", 0)), tuple(str(k) for k in e["key"]), dict(e["body"]))
            for e in saved or []
        ]

    async def _forget_given_up(self, number: int) -> None:
        objectid = await self._state_id()
        if objectid is None:
            return
        assert self._env is not None
        assert self._env.state is not None
        async with self._given_up_guard():
            saved = list(await self._env.state.get_state(objectid, GIVEN_UP_STATE, []) or [])
            left = [e for e in saved if int(e.get("id", 0)) != number]
            if len(left) != len(saved):
                await self._env.state.set_state(objectid, GIVEN_UP_STATE, left)

    async def _replay_given_up(self) -> None:
        """Send the given-up reports again, one after the other in the order they came; each
        leaves the state once delivered, so a stop or crash on the way keeps the rest, and one
        that fails again stays kept (with its first error)."""
        try:
            kept = await self._given_up()
        except Exception as exc:
            log.error(
                "reporter_kept_reports_unreadable",
                reporter=self.name,
                error=f"{type(exc).__name__}: {exc}",
            )
            return
        if not kept:
            return
        log.info("reporter_given_up_retried", reporter=self.name, events=len(kept))
        for number, key, body in kept:
            try:
                delivered = await self._report(key, body, keep=False)
            except Exception as exc:  # a reporter's bug: kept, for ``buildyard reports``
                log.error(
                    "reporter_failed",
                    reporter=self.name,
                    error=f"{type(exc).__name__}: {exc}",
                    exc_info=exc,
                    **_event_fields(key, body),
                )
                continue
            if delivered:
                await self._forget_given_up(number)

    async def stopService(self) -> None:
        replay = getattr(self, "_replay", None)
        if replay is not None and not replay.done():
            # the replay forgets each report it delivered: let the one in flight finish (those
            # it did not reach stay kept)
            _done, late = await asyncio.wait({replay}, timeout=STOP_GRACE)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        in_hand = dict(getattr(self, "_in_hand", {}))
        if not in_hand:
            return
        _done, late = await asyncio.wait(set(in_hand), timeout=STOP_GRACE)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
            # in the order they came (the dict keeps it)
            unsent = [event for t, event in in_hand.items() if t in late]
            try:
                await self._keep_pending(unsent)
            except Exception as exc:
                log.error(
                    "reporter_reports_lost",
                    reporter=self.name,
                    events=len(unsent),
                    error=f"{type(exc).__name__}: {exc}",
                )

    def statistics(self) -> dict[str, int]:
        """Events being reported now, and build requests with reports queued in order."""
        return {
            "in_hand": len(getattr(self, "_in_hand", ())),
            "chains": len(getattr(self, "_chains", ())),
        }

    def sendMessage(self, reports: Sequence[dict[str, Any]]) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement sendMessage(reports)")

    def getResponsibleUsersForBuild(self, master: Any, buildid: int) -> Any:
        """Who is responsible for the build: its changes' authors and its owners."""
        assert self._env is not None
        return details.responsible_users_for_build(self._env, buildid)

    async def responsible_users(self, env: ReporterEnvironment, buildid: int) -> list[str]:
        return list(await maybe_await(self.getResponsibleUsersForBuild(self.master, buildid)))

    # -- events --------------------------------------------------------------------------------

    async def _follow(self, subscription: Subscription, *, replay: bool) -> None:
        async with subscription:
            if replay:
                self._replay: asyncio.Task[None] | None = self.spawn(
                    self._replay_given_up(), name="replay given-up reports"
                )
                try:
                    pending = await self._take_pending()
                except Exception as exc:  # the live events still get reported
                    log.error(
                        "reporter_kept_reports_unreadable",
                        reporter=self.name,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                    pending = []
                for key, body in pending:
                    self._dispatch(key, body)
            async for key, body in subscription:
                self._dispatch(key, body)

    def _dispatch(self, key: Key, body: Body) -> None:
        chain: tuple[str, int] | None = None
        if key[0] in ("builds", "buildrequests") and "buildrequestid" in body:
            chain = ("buildrequestid", int(body["buildrequestid"]))
        before = self._chains.get(chain) if chain is not None else None
        task = self.spawn(self._handle(key, body, before), name=f"report {'/'.join(key)}")
        self._in_hand[task] = (key, body)
        task.add_done_callback(self._forget)
        if chain is not None:
            self._chains[chain] = task

            def forget(done: asyncio.Task[None], chain: tuple[str, int] = chain) -> None:
                if self._chains.get(chain) is done:
                    del self._chains[chain]

            task.add_done_callback(forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        # a task cancelled at stop stays until stopService has kept its event
        if not task.cancelled():
            self._in_hand.pop(task, None)

    async def _handle(self, key: Key, body: Body, before: asyncio.Task[None] | None) -> None:
        if before is not None:
            await asyncio.wait({before})  # its failure is its own, already logged
        try:
            await self._report(key, body)
        except Exception as exc:  # a reporter's bug never reaches the master's failures
            log.error(
                "reporter_failed",
                reporter=self.name,
                error=f"{type(exc).__name__}: {exc}",
                exc_info=exc,
                **_event_fields(key, body),
            )

    async def _report(self, key: Key, body: Body, *, keep: bool = True) -> bool:
        """Report the event; False when the report could not be delivered (kept as given up
        when ``keep``)."""
        env = self._env
        assert env is not None
        fields = _event_fields(key, body)
        reports = []
        for g in self.generators:
            if not any(matches(tuple(p), key) for p in g.wanted_event_keys):
                continue
            try:
                report = await maybe_await(g.generate(env, self, key, dict(body)))
            except Exception as exc:
                log.error(
                    "reporter_generator_failed",
                    reporter=self.name,
                    generator=type(g).__name__,
                    error=f"{type(exc).__name__}: {exc}",
                    exc_info=exc,
                    **fields,
                )
                continue
            if report is not None:
                reports.append(report)
        if not reports:
            return True
        try:
            await maybe_await(self.sendMessage(reports))
        except DELIVERY_ERRORS as exc:
            error = f"{type(exc).__name__}: {exc}"
            # a replayed report is still kept: it leaves the state only once delivered
            kept = await self._keep_given_up(key, body, error) if keep else True
            log.error(
                "reporter_report_kept" if kept else "reporter_send_failed",
                reporter=self.name,
                error=error,
                **fields,
            )
            return False
        except Exception as exc:
            log.error(
                "reporter_send_failed",
                reporter=self.name,
                error=f"{type(exc).__name__}: {exc}",
                exc_info=exc,
                **fields,
            )
            return False
        return True
