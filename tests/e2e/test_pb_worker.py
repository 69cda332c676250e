"""The PB listener against the stock buildbot-worker 4.3.0 created with its defaults, and
against peers that break the protocol. (Commands and transfers over PB are covered with the
other workers in test_worker_commands.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from buildyard.master.config.loader import load_master_config
from buildyard.master.db import migrate
from buildyard.master.master import BuildMaster
from buildyard.master.model.results import Results
from buildyard.master.workers.pb import PbWorkerConnection
from buildyard.protocol import banana, pb
from buildyard.protocol.jelly import jelly
from buildyard.testing.masters import add_plain_buildset
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import end_popen, eventually
from buildyard.testing.workers import STOCK_PB, start_worker
from tests.protocol.test_portal import second_guess_is_refused

pytestmark = pytest.mark.e2e

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w1", "pw"), worker.Worker("w2", "pw2")]
c['protocols'] = {{'pb': {{'port': 'tcp:{port}:interface=127.0.0.1'}}}}
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1", "w2"],
                                    factory=util.BuildFactory())]
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
"""

# what a Twisted client sends first: its choice of dialect, then the PB version
HELLO = b"\x02\x82pb" + b"\x02\x80\x13\x87\x06\x81"


@pytest.fixture
async def master(tmp_path: Path) -> AsyncIterator[BuildMaster]:
    basedir = tmp_path / "master"
    basedir.mkdir()
    (basedir / "master.cfg").write_text(CONFIG.format(port=free_port()))
    m = BuildMaster(basedir, config=load_master_config(basedir))
    await migrate.upgrade(m.db)
    await m.start()
    try:
        yield m
    finally:
        await m.stop()


def _launch(
    master: BuildMaster,
    workdir: Path,
    name: str = "w1",
    password: str = "pw",
    *options: str,
) -> subprocess.Popen[bytes]:
    port = master.workers.listener.pb_port
    assert port is not None
    return start_worker(STOCK_PB, workdir, port, name, password, create_options=options)


def _refused(workdir: Path) -> bool:
    return "unauthorized login; check worker name and password" in _twistd_log(workdir)


def _twistd_log(workdir: Path) -> str:
    path = workdir / "twistd.log"
    return path.read_text(errors="replace") if path.exists() else ""


async def test_a_refused_login_is_answered_as_twisted_does(
    master: BuildMaster, tmp_path: Path
) -> None:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with structlog.testing.capture_logs() as logs:
            wrong = tmp_path / "wrong"
            procs.append(await asyncio.to_thread(_launch, master, wrong, "w1", "nope"))
            unknown = tmp_path / "unknown"
            procs.append(await asyncio.to_thread(_launch, master, unknown, "w9", "pw"))
            # the stock worker recognises Twisted's UnauthorizedLogin by its class name
            for workdir in (wrong, unknown):
                await eventually(lambda w=workdir: _refused(w), within=60)  # type: ignore[misc]
        refusals = {
            (e.get("worker"), e.get("reason")) for e in logs if e["event"] == "worker_refused"
        }
        assert ("w1", "wrong password") in refusals
        assert ("w9", "unknown worker name") in refusals
        assert master.workers.listener.connections == {}
    finally:
        for proc in procs:
            end_popen(proc)


async def test_a_duplicate_is_refused_while_the_first_answers(
    master: BuildMaster, tmp_path: Path
) -> None:
    listener = master.workers.listener
    first = await asyncio.to_thread(_launch, master, tmp_path / "first")
    second: subprocess.Popen[bytes] | None = None
    try:
        await eventually(lambda: "w1" in listener.connections, within=60)
        conn = listener.connections["w1"]
        with structlog.testing.capture_logs() as logs:
            second = await asyncio.to_thread(_launch, master, tmp_path / "second")
            # as against Buildbot, the refused worker logs the failure and exits
            assert await asyncio.to_thread(second.wait, 60) is not None
        assert "rejecting duplicate worker" in _twistd_log(tmp_path / "second")
        assert any(e["event"] == "worker_duplicate_refused" for e in logs)
        assert listener.connections["w1"] is conn
        result = await conn.run_command(
            "shell", {"workdir": str(tmp_path), "command": "echo still here", "logEnviron": False}
        )
        assert result.text("stdout") == "still here\n"
    finally:
        if second is not None:
            end_popen(second)
        end_popen(first)


async def test_builders_added_by_reconfig_reach_the_worker(
    master: BuildMaster, tmp_path: Path
) -> None:
    listener = master.workers.listener
    proc = await asyncio.to_thread(_launch, master, tmp_path / "w1")
    try:
        await eventually(lambda: "w1" in listener.connections, within=60)
        conn = listener.connections["w1"]
        cfg = master.basedir / "master.cfg"
        cfg.write_text(
            cfg.read_text()
            + "c['builders'].append(util.BuilderConfig(name='c', workernames=['w1'],"
            + " factory=util.BuildFactory()))\n"
        )
        assert await master.reconfig() is True
        assert isinstance(conn, PbWorkerConnection)
        await eventually(lambda: "c" in conn.builders, within=60)
        assert (tmp_path / "w1" / "c").is_dir()
        result = await conn.run_command(
            "shell",
            {"workdir": str(tmp_path / "w1" / "c"), "command": "pwd", "logEnviron": False},
            builder_name="c",
        )
        assert result.text("stdout") == f"{tmp_path / 'w1' / 'c'}\n"
    finally:
        end_popen(proc)


async def test_the_worker_asks_to_shut_down(master: BuildMaster, tmp_path: Path) -> None:
    """``buildbot-worker create-worker --allow-shutdown=file``, then touching its
    ``shutdown.stamp``: the worker calls ``shutdown`` on the master, which marks it graceful
    and, as it runs no build, tells it to shut down; it exits."""
    listener = master.workers.listener
    workdir = tmp_path / "w1"
    proc = await asyncio.to_thread(_launch, master, workdir, "w1", "pw", "--allow-shutdown=file")
    try:
        await eventually(lambda: "w1" in listener.connections, within=60)
        (workdir / "shutdown.stamp").touch()
        # the worker polls for its stamp file every 10 s
        assert await asyncio.to_thread(proc.wait, 90) is not None
        worker = await master.db.workers.get_worker(name="w1")
        assert worker is not None and worker.graceful
    finally:
        end_popen(proc)


ONE_AT_A_TIME = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w1", "pw")]
c['protocols'] = {{'pb': {{'port': {port}, 'interface': '127.0.0.1'}}}}
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=util.BuildFactory([
    steps.ShellCommand(command="sleep 1"),
]))]
c['collapseRequests'] = False
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
"""


async def test_a_worker_runs_one_build_of_a_builder_at_a_time(tmp_path: Path) -> None:
    """Two requests waiting when the worker connects: as in Buildbot, they run one after the
    other (a PB worker runs one command per builder: a second would interrupt the first)."""
    basedir = tmp_path / "master"
    basedir.mkdir()
    (basedir / "master.cfg").write_text(ONE_AT_A_TIME.format(port=free_port()))
    m = BuildMaster(basedir, config=load_master_config(basedir))
    await migrate.upgrade(m.db)
    await m.start()
    proc: subprocess.Popen[bytes] | None = None
    try:
        updates = m.data.updates
        builderid = await updates.find_builder_id("b")
        brids = []
        for _ in range(2):
            _bsid, ids = await add_plain_buildset(updates, builderid)
            brids.append(ids[builderid])
        proc = await asyncio.to_thread(_launch, m, tmp_path / "w1")

        async def finished() -> bool:
            requests = [await m.db.buildrequests.get_buildrequest(b) for b in brids]
            return all(r is not None and r.complete for r in requests)

        await eventually(finished, within=120)
        builds = [b for brid in brids for b in await m.db.builds.get_builds(buildrequestid=brid)]
        assert [b.results for b in builds] == [Results.SUCCESS, Results.SUCCESS]
        first, second = sorted(builds, key=lambda b: b.id)
        assert first.complete_at is not None and second.started_at >= first.complete_at
    finally:
        if proc is not None:
            end_popen(proc)
        await m.stop()


def _message(request_id: Any, object_id: Any, name: Any, args: Any, kwargs: Any) -> bytes:
    return banana.encode([b"message", request_id, object_id, name, 1, args, kwargs])


BAD_SESSIONS: list[tuple[str, bytes]] = [
    ("unknown type byte", b"\x01\x99"),
    ("truncated string", b"\x10\x82abc"),
    ("huge string", b"\x7f\x7f\x7f\x7f\x82"),
    ("huge list", b"\x7f\x7f\x7f\x7f\x80"),
    ("long header", b"\x01" * 100),
    ("deep nesting", b"\x01\x80" * 100),
    ("vocab before dialect", b"\x1b\x87"),
    ("other dialect", b"\x04\x82none"),
    ("wrong version", b"\x02\x82pb" + banana.encode([b"version", 5])),
    ("not a list", HELLO + banana.encode(7)),
    ("unknown message", HELLO + banana.encode([b"frobnicate", 1])),
    ("answer to nothing", HELLO + banana.encode([b"answer", 99, 1])),
    ("message of 3 fields", HELLO + banana.encode([b"message", 1, b"root"])),
    (
        "message id not an int",
        HELLO + _message(b"x", b"root", b"login", [b"tuple"], [b"dictionary"]),
    ),
    ("login with an int", HELLO + _message(1, b"root", b"login", [b"tuple", 5], [b"dictionary"])),
    ("login, no args", HELLO + _message(1, b"root", b"login", [b"tuple"], [b"dictionary"])),
    ("unknown object", HELLO + _message(1, 999, b"login", [b"tuple"], [b"dictionary"])),
    ("object id a list", HELLO + _message(1, [b"list"], b"x", [b"tuple"], [b"dictionary"])),
    ("no such method", HELLO + _message(1, b"root", b"__init__", [b"tuple"], [b"dictionary"])),
    ("args not jelly", HELLO + _message(1, b"root", b"login", [b"instance", b"os.system"], [])),
    ("kwargs a list", HELLO + _message(1, b"root", b"login", [b"tuple"], [b"list"])),
    ("decref of a list", HELLO + banana.encode([b"decref", [1]])),
    ("decref of root", HELLO + banana.encode([b"decref", b"root"])),
    (
        "respond with garbage",
        HELLO
        + _message(1, b"root", b"login", jelly(("w1",)), jelly({}))
        + _message(2, 1, b"respond", jelly((5, None)), jelly({})),
    ),
    (
        "respond without a mind",
        HELLO
        + _message(1, b"root", b"login", jelly(("w1",)), jelly({}))
        + _message(2, 1, b"respond", jelly((b"x" * 16,)), jelly({})),
    ),
]


async def _session(port: int, data: bytes, *, listen: float = 0.5) -> bytes:
    """Send ``data`` on a new connection; what the master answered before closing it or
    within ``listen`` seconds (not a timing assertion: how long we read before leaving)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = b""
    try:
        writer.write(data)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(listen):
                while chunk := await reader.read(65536):
                    received += chunk
    finally:
        writer.transport.abort()
    return received


async def test_malformed_pb_leaves_the_master_and_a_connected_worker_alone(
    master: BuildMaster, tmp_path: Path
) -> None:
    listener = master.workers.listener
    port = listener.pb_port
    assert port is not None
    proc = await asyncio.to_thread(_launch, master, tmp_path / "w1")
    try:
        await eventually(lambda: "w1" in listener.connections, within=60)
        conn = listener.connections["w1"]
        assert isinstance(conn, PbWorkerConnection)
        with structlog.testing.capture_logs() as logs:
            for _what, data in BAD_SESSIONS:
                await _session(port, data)
            # a list that never closes: before login the master drops it at 64 KiB
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            chunk = (b"\x00\x00\x01\x82" + b"x" * 2**14) * 64  # strings of 16 KiB
            sent = 0
            with contextlib.suppress(ConnectionError):
                writer.write(HELLO + b"\x68\x07\x80")  # a list of 1000 elements
                while sent < 64 * 2**20:
                    writer.write(chunk)
                    await writer.drain()
                    sent += len(chunk)
            writer.transport.abort()
            assert sent < 64 * 2**20
            # random mutations of a good login
            rng = random.Random(1234)
            good = HELLO + _message(1, b"root", b"login", jelly(("w1",)), jelly({}))
            for _ in range(100):
                mutated = bytearray(good)
                for _ in range(rng.randint(1, 4)):
                    mutated[rng.randrange(len(mutated))] = rng.randrange(256)
                await _session(port, bytes(mutated[: rng.randint(1, len(mutated))]), listen=0)

        faults = [e for e in logs if e["event"] == "worker_protocol_fault"]
        assert any(
            "string declares 268435455 bytes, over the limit 655360" in e["fault"] for e in faults
        )
        assert any("one message is over 65536 bytes" in e["fault"] for e in faults)
        # each fault names the peer that made it
        assert all(str(e["peer"]).startswith("127.0.0.1:") for e in faults)
        assert not [e for e in logs if e.get("log_level") == "error"]
        # every one of those connections is gone; the worker is the same, and works
        await eventually(lambda: len(listener._pb_writers) == 1, within=30)
        assert listener.connections == {"w1": conn}
        assert conn.broker.statistics()["buffered"] == 0
        # a logged-in worker has the full limits
        assert conn.broker.decoder.max_message == banana.MAX_MESSAGE
        assert conn.broker.decoder.max_nodes == banana.MAX_NODES
        result = await conn.run_command(
            "shell", {"workdir": str(tmp_path), "command": "echo fine", "logEnviron": False}
        )
        assert (result.rc, result.text("stdout")) == (0, "fine\n")
        # and another worker still logs in
        other = await asyncio.to_thread(_launch, master, tmp_path / "w2", "w2", "pw2")
        try:
            await eventually(lambda: "w2" in listener.connections, within=60)
        finally:
            end_popen(other)
    finally:
        end_popen(proc)


def _rss_peak() -> int:
    """The process's peak resident size in bytes (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


async def test_empty_lists_before_login_are_refused_before_they_take_memory(
    master: BuildMaster,
) -> None:
    # one byte of wire each, some 60 bytes each once decoded: 16 MiB of them were ~1 GB
    listener = master.workers.listener
    port = listener.pb_port
    assert port is not None
    before = _rss_peak()
    with structlog.testing.capture_logs() as logs:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        local = _local(writer)
        chunk = b"\x80" * 2**16
        sent = 0
        with contextlib.suppress(ConnectionError):
            writer.write(HELLO + b"\x7f\x7f\x01\x80")
            while sent < 16 * 2**20:
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
        writer.transport.abort()
        assert sent < 16 * 2**20
        await eventually(lambda: not listener._pb_writers, within=30)
    faults = [e for e in logs if e["event"] == "worker_protocol_fault"]
    assert [e["peer"] for e in faults] == [local]
    assert (
        "over the limit 1024" in faults[0]["fault"] or "over 1024 elements" in (faults[0]["fault"])
    )
    assert _rss_peak() - before < 100 * 2**20


async def test_the_longest_pending_pb_connection_is_closed_over_the_cap(
    master: BuildMaster,
) -> None:
    listener = master.workers.listener
    port = listener.pb_port
    assert port is not None
    listener._pb_pending.cap = 3
    with structlog.testing.capture_logs() as logs:
        clients = []
        for _ in range(4):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(HELLO)
            await writer.drain()
            clients.append((reader, writer))
            await eventually(lambda: len(listener._pb_writers) == min(len(clients), 3), within=30)
        first_reader, first_writer = clients[0]
        local = _local(first_writer)
        with contextlib.suppress(ConnectionError):
            while await first_reader.read(4096):
                pass
        await eventually(lambda: len(listener._pb_writers) == 3, within=30)
        assert len(listener._pb_pending) == 3
        for _reader, writer in clients:
            writer.transport.abort()
    refused = [e for e in logs if e.get("reason") == "over_max_pending"]
    assert [e["peer"] for e in refused] == [local]


def _local(writer: asyncio.StreamWriter) -> str:
    host, port = writer.get_extra_info("sockname")[:2]
    return f"{host}:{port}"


async def test_one_password_guess_per_connection(master: BuildMaster) -> None:
    port = master.workers.listener.pb_port
    assert port is not None
    await second_guess_is_refused(port, "w1")
    await second_guess_is_refused(port, "nobody")
    await eventually(lambda: not master.workers.listener._pb_writers, within=30)


ONE_STEP = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w1", "pw")]
c['protocols'] = {{'pb': {{'port': {port}, 'interface': '127.0.0.1'}}}}
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=util.BuildFactory([
    steps.ShellCommand(command=["true"]),
]))]
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
"""


async def test_a_one_step_build_costs_one_call_to_the_stock_worker(tmp_path: Path) -> None:
    """The PB messages of one one-step build, counted at our end of a stock worker's
    connection: the master calls ``startCommand`` and nothing else (Buildbot 4.3.0 calls
    ``startBuild`` first, a no-op on the worker: one round trip we leave out); the worker's
    calls (its updates and ``complete``) each get one answer. And the socket is set for a
    conversation of small messages: Nagle off, each read acknowledged at once (Linux), so the
    worker, which keeps Nagle on, does not wait for our delayed ACK before sending its
    updates (buildyard.protocol.tcp)."""
    basedir = tmp_path / "master"
    basedir.mkdir()
    (basedir / "master.cfg").write_text(ONE_STEP.format(port=free_port()))
    m = BuildMaster(basedir, config=load_master_config(basedir))
    await migrate.upgrade(m.db)
    await m.start()
    proc: subprocess.Popen[bytes] | None = None
    try:
        listener = m.workers.listener
        proc = await asyncio.to_thread(_launch, m, tmp_path / "w1")
        await eventually(lambda: "w1" in listener.connections, within=60)
        conn = listener.connections["w1"]
        assert isinstance(conn, PbWorkerConnection)
        await eventually(lambda: conn.ready, within=60)
        updates = m.data.updates
        builderid = await updates.find_builder_id("b")
        broker = conn.broker

        async def one_build() -> tuple[dict[str, int], dict[str, int]]:
            sent0, received0 = dict(broker.sent), dict(broker.received)
            _bsid, ids = await add_plain_buildset(updates, builderid)

            async def finished() -> bool:
                request = await m.db.buildrequests.get_buildrequest(ids[builderid])
                # and every call of the worker answered
                calls = broker.received["message"] - received0.get("message", 0)
                return (
                    request is not None
                    and request.complete
                    and broker.sent["answer"] - sent0.get("answer", 0) == calls
                )

            await eventually(finished, within=60)
            builds = await m.db.builds.get_builds(buildrequestid=ids[builderid])
            assert [b.results for b in builds] == [Results.SUCCESS]
            sent = {k: n - sent0.get(k, 0) for k, n in broker.sent.items()}
            received = {k: n - received0.get(k, 0) for k, n in broker.received.items()}
            return {k: n for k, n in sent.items() if n}, {k: n for k, n in received.items() if n}

        for _ in range(2):
            sent, received = await one_build()
            assert sent.get("message") == 1  # startCommand
            assert received.get("answer") == 1  # its answer
            # buildbot-worker 4.3.0 running `true`: four updates (the header with the
            # command, rc, the header with its time, elapsed), then complete
            assert received["message"] == 5
            assert sent["answer"] == received["message"]
            assert set(sent) == {"message", "answer"}
        assert conn.tcp is not None and conn.tcp.nodelay
        sockets = [w.get_extra_info("socket") for w in listener._pb_writers]
        assert [s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in sockets] == [1]
        if hasattr(socket, "TCP_QUICKACK"):
            # every read of the two builds' messages was acknowledged at once
            assert conn.tcp.quickacks >= 4
    finally:
        if proc is not None:
            end_popen(proc)
        await m.stop()


TWO_STEPS = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w1", "pw")]
c['protocols'] = {{'pb': {{'port': {port}, 'interface': '127.0.0.1'}}}}
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=util.BuildFactory([
    steps.ShellCommand(name="one", command=["true"]),
    steps.ShellCommand(name="two", command=["true"]),
]))]
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
"""


async def test_the_answers_to_a_steps_updates_ride_with_the_next_startcommand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stock worker does not wait for the answers to its updates and ``complete``: they
    are not written on their own but in front of the next step's ``startCommand``, in one
    write (one wake-up of the worker per command), and the build still runs to the end.
    LAZY_DELAY is raised here so that the next command always comes first."""
    monkeypatch.setattr(pb, "LAZY_DELAY", 30.0)
    basedir = tmp_path / "master"
    basedir.mkdir()
    (basedir / "master.cfg").write_text(TWO_STEPS.format(port=free_port()))
    m = BuildMaster(basedir, config=load_master_config(basedir))
    await migrate.upgrade(m.db)
    await m.start()
    proc: subprocess.Popen[bytes] | None = None
    try:
        listener = m.workers.listener
        proc = await asyncio.to_thread(_launch, m, tmp_path / "w1")
        await eventually(lambda: "w1" in listener.connections, within=60)
        conn = listener.connections["w1"]
        assert isinstance(conn, PbWorkerConnection)
        await eventually(lambda: conn.ready, within=60)
        broker = conn.broker
        writes: list[bytes] = []
        write = broker._write

        def recording(data: bytes) -> None:
            writes.append(data)
            write(data)

        broker._write = recording
        updates = m.data.updates
        builderid = await updates.find_builder_id("b")
        _bsid, ids = await add_plain_buildset(updates, builderid)

        async def finished() -> bool:
            request = await m.db.buildrequests.get_buildrequest(ids[builderid])
            return request is not None and request.complete

        await eventually(finished, within=60)
        builds = await m.db.builds.get_builds(buildrequestid=ids[builderid])
        assert [b.results for b in builds] == [Results.SUCCESS]
        decoder = banana.Decoder()
        decoder.pb = True
        shapes = [
            [msg[0] if msg[0] != b"message" else msg[3] for msg in decoder.feed(data)]
            for data in writes
        ]
        # step one's startCommand alone; then the answers to its updates (as many as the
        # worker sent: its output buffering decides) and to its complete, in front of step
        # two's startCommand, in one write; step two's answers wait, or leave alone after
        # the delay if the test reads this late
        assert shapes[0] == [b"startCommand"]
        *answers, command = shapes[1]
        assert command == b"startCommand"
        assert len(answers) >= 2 and set(answers) == {b"answer"}
        assert all(set(later) == {b"answer"} for later in shapes[2:])
    finally:
        if proc is not None:
            end_popen(proc)
        await m.stop()
