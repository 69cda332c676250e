"""Perspective Broker: remote method calls between objects over banana + jelly.

Messages (banana lists; the first word is a ``pb`` vocab word):

* ``[version, 6]``: each end sends it once the dialect is agreed;
* ``[message, request_id, object_id, name, answer_required, args, kwargs]``: call method
  ``name`` of the receiver's object ``object_id`` (``b"root"`` for the root object, else a
  number the receiver handed out as ``[remote, id]``); ``args`` is a jellied tuple, ``kwargs``
  a jellied dict;
* ``[answer, request_id, result]`` / ``[error, request_id, failure]``: its outcome;
* ``[decref, object_id]``: the peer dropped one reference to our object;
* ``[cachemessage, ...]``, ``[decache, ...]``, ``[uncache, ...]``: Twisted's cached objects,
  which nothing in Buildbot's conversation uses (a cachemessage is answered with an error).

:class:`Broker` is one connection's end. It does not own the socket: the transport calls
:meth:`Broker.feed` with the bytes it reads and :meth:`Broker.close` when the socket is gone;
``write`` sends bytes: the messages of one pass of the event loop in one write
(:meth:`Broker.flush`), a call of ours at once, and answers the peer does not wait for with
the next write. Each incoming call runs in its own task (a method may await), started in
arrival order; :meth:`close` cancels those tasks and fails every call waiting for an answer
with ConnectionLost.

Our objects are :class:`Referenceable` subclasses; the peer may call their ``remote_<name>``
methods (plain or async). Its objects reach us as :class:`RemoteReference`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import itertools
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from buildyard.protocol import banana
from buildyard.protocol.errors import ConnectionLost, ProtocolError, RemoteError
from buildyard.protocol.jelly import CopiedFailure, JellyError, failure, jelly, unjelly

log = structlog.get_logger(__name__)

PB_VERSION = 6
# objects of ours the peer may hold at once (Twisted allows 1024 too)
MAX_LOCAL_OBJECTS = 1024
# late answers remembered at most (a peer that never answers is dropped by keepalive)
MAX_ABANDONED = 1024
# calls the peer may have running on our side at once
MAX_RUNNING_CALLS = 256
# how long an answer the peer does not wait for may wait for another message to travel with
# (Referenceable.lazy_answers): at most this late, and usually with the next message we send
LAZY_DELAY = 0.1

NO_SUCH_METHOD = "twisted.spread.flavors.NoSuchMethod"

# the message kinds counted by name in Broker.received (any other counts as "other")
_KINDS = {
    kind: kind.decode()
    for kind in (
        b"version",
        b"message",
        b"cachemessage",
        b"answer",
        b"error",
        b"decref",
        b"decache",
        b"uncache",
        b"didNotUnderstand",
    )
}


class Referenceable:
    """An object of ours the peer can call: ``remote_<name>`` methods, plain or async.

    Raising :class:`CallFailed` answers the call with that failure; any other exception is
    logged and answered as a failure naming its type."""

    # the methods whose answers the peer does not wait for (it only watches them for an
    # error): their answers may wait a little for another message to share a write with
    # (Broker.flush), which saves the peer a wake-up and us a write
    lazy_answers: frozenset[str] = frozenset()


class CallFailed(Exception):
    """Raised by a remote_ method: the call is answered with this failure."""

    def __init__(
        self,
        value: str,
        type_name: str = "twisted.spread.pb.Error",
        parents: tuple[str, ...] = (),
    ) -> None:
        super().__init__(value)
        # parents: the qualified names the peer's ``failure.check()`` matches
        self.failure = failure(type_name, value, parents or (type_name, "builtins.Exception"))


class RemoteReference:
    """One of the peer's objects."""

    def __init__(self, broker: Broker, luid: int | bytes) -> None:
        self.broker = broker
        self.luid = luid

    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``name`` on the object and wait for the answer; RemoteError with the peer's
        failure if it raised, ConnectionLost if the connection ends first."""
        return await self.broker.call(self, name, args, kwargs)

    def __repr__(self) -> str:
        return f"<RemoteReference {self.luid!r} of {self.broker.name}>"


class Broker:
    def __init__(
        self,
        *,
        write: Callable[[bytes], None],
        root: Referenceable | None,
        name: str,
        server: bool = True,
    ) -> None:
        self._write = write
        self.name = name
        self._server = server
        self.decoder = banana.Decoder()
        self._dialect_agreed = False
        self._version_seen = False
        self._next_request = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._abandoned: set[int] = set()
        # ours: id -> [object, references the peer holds]
        self._local: dict[int | bytes, list[Any]] = {}
        self._luids: dict[int, int] = {}  # id(object) -> luid
        self._next_luid = itertools.count(1)
        if root is not None:
            self._local[b"root"] = [root, 1]
        # the peer's: luid -> our RemoteReference for it (one per luid)
        self._remote: dict[int | bytes, RemoteReference] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # messages sent and not yet written (see flush); whether a flush is due at the end
        # of this pass of the loop, and the timer of lazy answers waiting for company
        self._out: list[bytes] = []
        self._soon: asyncio.Handle | None = None
        self._later: asyncio.TimerHandle | None = None
        # writes to the socket (each carries every message sent since the one before)
        self.writes = 0
        self.closed = False
        # PB messages sent and received, by their first word ("message", "answer", ...)
        self.sent: collections.Counter[str] = collections.Counter()
        self.received: collections.Counter[str] = collections.Counter()
        # set once the dialect is agreed and the peer's version seen: calls may go out
        self.ready = asyncio.Event()

    # -- start ------------------------------------------------------------------------------

    def start(self) -> None:
        """The server speaks first: the dialects it offers."""
        if self._server:
            self._send([b"pb", b"none"], pb=False)

    def root(self) -> RemoteReference:
        """The peer's root object."""
        return self._remote_for(b"root")

    # -- sending ----------------------------------------------------------------------------

    def _send(self, sexp: Any, *, pb: bool = True, lazy: bool = False, now: bool = False) -> None:
        """Encode and queue one message: it is written at the end of this pass of the event
        loop, with the others sent in it (:meth:`flush`). A ``lazy`` one (an answer the peer
        does not wait for, see :attr:`Referenceable.lazy_answers`) may instead wait up to
        :data:`LAZY_DELAY` for another message to travel with; one sent ``now`` is written
        at once, with whatever waits before it."""
        if self.closed:
            raise ConnectionLost(f"connection to {self.name} is closed")
        data = banana.encode(sexp, pb=pb)
        if pb:
            self.sent[sexp[0].decode()] += 1
        self._out.append(data)
        if now:
            self.flush()
            return
        if self._soon is not None:
            return  # a flush is due at the end of this pass already
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a caller driving the broker by hand)
            self.flush()
            return
        if not lazy:
            self._soon = loop.call_soon(self.flush)
        elif self._later is None:
            self._later = loop.call_later(LAZY_DELAY, self.flush)

    def flush(self) -> None:
        """Write what was sent since the last flush, in one write, in the order it was sent.
        Messages go out at the end of the event loop's pass in which they were sent (flush
        is scheduled then), so the answers to the calls of one read leave together: one
        segment, one wake-up of the peer, instead of one each. Lazy answers wait for the next
        such write, or :data:`LAZY_DELAY` at most: the answers to a stock worker's updates
        and ``complete`` ride with the next ``startCommand``. Call it before closing the
        socket gracefully."""
        if self._soon is not None:
            self._soon.cancel()  # flushed before its time (a caller, or close)
            self._soon = None
        if self._later is not None:
            self._later.cancel()
            self._later = None
        out, self._out = self._out, []
        if out and not self.closed:
            self.writes += 1
            self._write(out[0] if len(out) == 1 else b"".join(out))

    async def call(
        self, target: RemoteReference, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if self.closed:
            raise ConnectionLost(f"connection to {self.name} is closed")
        request_id = next(self._next_request)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        message = [
            b"message",
            request_id,
            target.luid,
            name.encode("utf-8"),
            1,
            jelly(args, self),
            jelly(kwargs, self),
        ]
        self._waiting[request_id] = future
        try:
            # A call of ours (a startCommand) leaves at once rather than at the end of this
            # pass of the loop: on a busy master the rest of the pass (other builds' steps
            # and statements, web requests) held it back by milliseconds, while the worker
            # sat idle. The answers waiting to be written go with it, in front.
            self._send(message, now=True)
            return await future
        finally:
            self._waiting.pop(request_id, None)
            if not future.done() or future.cancelled():  # the caller gave up
                future.cancel()
                if len(self._abandoned) < MAX_ABANDONED:
                    self._abandoned.add(request_id)

    # -- jelly's references (jelly.References) ------------------------------------------------

    def jelly_local(self, obj: object) -> int | None:
        if not isinstance(obj, Referenceable):
            return None
        luid = self._luids.get(id(obj))
        if luid is None:
            if len(self._local) >= MAX_LOCAL_OBJECTS:
                raise ProtocolError(f"{self.name} holds {MAX_LOCAL_OBJECTS} of our objects")
            luid = next(self._next_luid)
            self._luids[id(obj)] = luid
            self._local[luid] = [obj, 0]
        self._local[luid][1] += 1
        return luid

    def jelly_remote(self, obj: object) -> int | None:
        if isinstance(obj, RemoteReference) and obj.broker is self and isinstance(obj.luid, int):
            return obj.luid
        return None

    def unjelly_remote(self, luid: int) -> object:
        return self._remote_for(luid)

    def unjelly_local(self, luid: int) -> object:
        entry = self._local.get(luid)
        if entry is None:
            raise JellyError(f"reference to unknown object {luid}")
        return entry[0]

    def _remote_for(self, luid: int | bytes) -> RemoteReference:
        ref = self._remote.get(luid)
        if ref is None:
            if len(self._remote) >= MAX_LOCAL_OBJECTS:
                raise ProtocolError(f"{self.name} sent over {MAX_LOCAL_OBJECTS} objects")
            ref = self._remote[luid] = RemoteReference(self, luid)
        return ref

    # -- receiving ---------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Take the bytes of one read; ProtocolError (naming the fault) ends the connection."""
        items = self.decoder.feed(data)
        while items:
            for sexp in items:
                self._received(sexp)
            # before the dialect was agreed the decoder stops after each element
            items = self.decoder.feed(b"") if self.decoder.buffered else []

    def _received(self, sexp: Any) -> None:
        if not self._dialect_agreed:
            if self._server:
                if sexp != b"pb":
                    raise ProtocolError(f"the peer chose dialect {sexp!r}, not b'pb'")
            elif not (isinstance(sexp, list) and b"pb" in sexp):
                raise ProtocolError("the peer does not offer the pb dialect")
            else:
                self._send(b"pb", pb=False)
            self._dialect_agreed = True
            self.decoder.pb = True
            self._send([b"version", PB_VERSION])
            return
        if not isinstance(sexp, list) or not sexp or not isinstance(sexp[0], bytes):
            raise ProtocolError("a PB message must be a list headed by a word")
        kind, body = sexp[0], sexp[1:]
        self.received[_KINDS.get(kind, "other")] += 1
        if kind == b"version":
            if body != [PB_VERSION]:
                raise ProtocolError(f"PB version {body!r}, not {PB_VERSION}")
            self._version_seen = True
            self.ready.set()
            return
        if not self._version_seen:
            raise ProtocolError(f"{kind!r} before the PB version")
        if kind in (b"message", b"cachemessage"):
            self._message(kind, body)
        elif kind in (b"answer", b"error"):
            self._answer(kind, body)
        elif kind == b"decref":
            if len(body) != 1:
                raise ProtocolError("decref takes one object id")
            self._decref(body[0])
        elif kind in (b"decache", b"uncache"):
            pass  # we never send cached objects
        elif kind == b"didNotUnderstand":
            log.warning("pb_peer_did_not_understand", peer=self.name, what=repr(body)[:80])
        else:
            log.warning("pb_unknown_message", peer=self.name, kind=repr(kind)[:80])
            self._send([b"didNotUnderstand", kind])

    def _message(self, kind: bytes, body: list[Any]) -> None:
        if len(body) != 6:
            raise ProtocolError(f"a PB {kind.decode()} has 6 fields, not {len(body)}")
        request_id, object_id, name_bytes, answer_required, net_args, net_kwargs = body
        if not isinstance(request_id, int) or not isinstance(name_bytes, bytes):
            raise ProtocolError("a PB message needs an integer request id and a method name")
        if len(self._tasks) >= MAX_RUNNING_CALLS:
            raise ProtocolError(f"{self.name} has over {MAX_RUNNING_CALLS} calls running")
        name = name_bytes.decode("utf-8", "replace")
        # The target and the arguments are resolved now, in arrival order: a decref right
        # behind the call (Twisted sends one as soon as it drops its reference) must not
        # remove the object before the call finds it.
        call: Callable[[], Any] | None = None
        plain = lazy = False
        try:
            call, plain, lazy = self._resolve(kind, object_id, name, net_args, net_kwargs)
            error = None
        except CallFailed as exc:
            error = exc.failure
        except JellyError as exc:
            error = failure("builtins.ValueError", str(exc))
        if call is not None and plain and not self._tasks:
            # A plain method, and no call of the peer's still running: it runs and is answered
            # now, without a task of its own (the stock worker's updates and completions).
            # Otherwise a task, started in arrival order.
            self._call_now(request_id, name, bool(answer_required), call, lazy)
            return
        self._start(self._run_call(request_id, name, bool(answer_required), call, error, lazy=lazy))

    def _call_now(
        self,
        request_id: int,
        name: str,
        answer_required: bool,
        call: Callable[[], Any],
        lazy: bool,
    ) -> None:
        try:
            result = call()
        except Exception as exc:
            self._answer_failed(request_id, name, answer_required, exc)
            return
        if inspect.isawaitable(result):  # a plain method may still return an awaitable
            # awaited inside the call's own task, so closing the broker cancels it with it
            self._start(
                self._run_call(request_id, name, answer_required, lambda: result, None, lazy=lazy)
            )
            return
        self._reply(request_id, answer_required, [b"answer", request_id, result], lazy=lazy)

    def _start(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _resolve(
        self, kind: bytes, object_id: Any, name: str, net_args: Any, net_kwargs: Any
    ) -> tuple[Callable[[], Any], bool, bool]:
        """The call, whether its method is a plain one (not a coroutine function), and
        whether its answer is a lazy one (:attr:`Referenceable.lazy_answers`)."""
        known = kind == b"message" and isinstance(object_id, int | bytes)
        entry = self._local.get(object_id) if known else None
        if entry is None:
            raise CallFailed("Invalid Object ID")
        args = unjelly(net_args, self)
        kwargs = unjelly(net_kwargs, self)
        if not isinstance(args, tuple | list) or not isinstance(kwargs, dict):
            raise CallFailed("arguments must be a tuple and a dictionary")
        if not all(isinstance(k, str | bytes) for k in kwargs):
            raise CallFailed("keyword argument names must be strings")
        method = getattr(entry[0], f"remote_{name}", None) if name.isidentifier() else None
        if method is None:
            raise CallFailed(f"No such method: remote_{name}", NO_SUCH_METHOD)
        kw = {k.decode() if isinstance(k, bytes) else k: v for k, v in kwargs.items()}

        def call() -> Any:
            try:
                return method(*args, **kw)
            except TypeError as exc:
                # most likely the wrong arguments: the caller's fault, said as Python says it
                raise CallFailed(str(exc), "builtins.TypeError") from None

        lazy = name in getattr(entry[0], "lazy_answers", ())
        return call, not inspect.iscoroutinefunction(method), lazy

    async def _run_call(
        self,
        request_id: int,
        name: str,
        answer_required: bool,
        call: Callable[[], Any] | None,
        error: CopiedFailure | None,
        *,
        lazy: bool = False,
    ) -> None:
        try:
            if call is None:
                assert error is not None
                self._reply(request_id, answer_required, [b"error", request_id, error])
                return
            result = call()
            if inspect.isawaitable(result):
                result = await result
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._answer_failed(request_id, name, answer_required, exc)
            return
        self._reply(request_id, answer_required, [b"answer", request_id, result], lazy=lazy)

    def _answer_failed(
        self, request_id: int, name: str, answer_required: bool, exc: Exception
    ) -> None:
        """Answer a call whose method raised: CallFailed's failure, or the exception's type
        (logged: it is our bug or the peer's bad arguments)."""
        if isinstance(exc, CallFailed):
            value = exc.failure
        else:
            log.exception("pb_call_failed", peer=self.name, method=name, exc_info=exc)
            qual = f"{type(exc).__module__}.{type(exc).__qualname__}"
            value = failure(qual, str(exc))
        self._reply(request_id, answer_required, [b"error", request_id, value])

    def _reply(
        self, request_id: int, answer_required: bool, answer: list[Any], *, lazy: bool = False
    ) -> None:
        """Send ``[answer|error, request_id, value]`` (value jellied here) if it is wanted; a
        value jelly cannot carry is answered as the error it raised. An error always leaves
        at once; an answer that is ``lazy`` may wait (:meth:`_send`)."""
        if not answer_required or self.closed:
            return
        try:
            answer[2] = jelly(answer[2], self)
        except Exception as exc:
            log.exception("pb_answer_unjellyable", peer=self.name, exc_info=exc)
            qual = f"{type(exc).__module__}.{type(exc).__qualname__}"
            answer = [b"error", request_id, jelly(failure(qual, str(exc)), self)]
        with contextlib.suppress(ConnectionError, ConnectionLost):
            self._send(answer, lazy=lazy and answer[0] == b"answer")

    def _answer(self, kind: bytes, body: list[Any]) -> None:
        if len(body) != 2 or not isinstance(body[0], int):
            raise ProtocolError(f"a PB {kind.decode()} has a request id and a value")
        request_id, net_result = body
        future = self._waiting.get(request_id)
        if future is None:
            if request_id in self._abandoned:
                self._abandoned.discard(request_id)
                return
            raise ProtocolError(f"{kind.decode()} to unknown request {request_id}")
        if future.done():
            return
        try:
            result = unjelly(net_result, self)
        except JellyError as exc:
            future.set_exception(RemoteError(f"undecodable {kind.decode()}: {exc}"))
            return
        if kind == b"answer":
            future.set_result(result)
        else:
            future.set_exception(
                RemoteError(str(result) if isinstance(result, CopiedFailure) else repr(result))
            )

    def _decref(self, luid: Any) -> None:
        entry = self._local.get(luid) if isinstance(luid, int) else None
        if entry is None:
            return  # Twisted would fail here; a stray decref harms nothing
        entry[1] -= 1
        if entry[1] <= 0:
            del self._local[luid]
            self._luids.pop(id(entry[0]), None)

    # -- the end ------------------------------------------------------------------------------

    def close(self, reason: str = "connection lost") -> None:
        if self.closed:
            return
        # what was sent in this pass of the loop (answers to the last read, before an EOF
        # read at once) still goes, if the transport takes it
        with contextlib.suppress(OSError, RuntimeError):
            self.flush()
        self.closed = True
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionLost(f"{self.name}: {reason}"))
        for task in self._tasks:
            task.cancel()
        self._local.clear()
        self._luids.clear()

    def statistics(self) -> dict[str, int]:
        return {
            "waiting": len(self._waiting),
            "running_calls": len(self._tasks),
            "local_objects": len(self._local),
            "remote_objects": len(self._remote),
            "buffered": self.decoder.buffered,
            **{f"sent_{kind}": n for kind, n in self.sent.items()},
            **{f"received_{kind}": n for kind, n in self.received.items()},
        }
