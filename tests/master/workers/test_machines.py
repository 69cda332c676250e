"""Machines (c['machines']): the actions with real commands (a local command recording its
arguments, Debian's ``wakeonlan`` sending its magic packet to a loopback UDP socket, ssh against a
real sshd, an HTTP request to a local server), a latent machine's states (one start for many
wakes, stopped after build_wait_timeout and after missing_timeout, never while building), and
the configuration's checks."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from buildyard.common.errors import ConfigError, ConfigErrors
from buildyard.master.config.loader import load_master_config
from buildyard.master.model.properties import Interpolate, Properties, Secret
from buildyard.master.workers.config import LocalLatentWorker
from buildyard.master.workers.latent import LatentBuild, LatentWorkers, State
from buildyard.master.workers.machines import (
    AbstractLatentMachine,
    GenericLatentMachine,
    HttpAction,
    LocalWakeAction,
    LocalWOLAction,
    MachineRuntime,
    RemoteSshSuspendAction,
    RemoteSshWakeAction,
    States,
)
from buildyard.testing.gitservers import SSHD, ssh_git_server
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import eventually

SECRETS = {"token": "s3cr3t-token"}


async def lookup(name: str) -> str | None:
    return SECRETS.get(name)


def recorder(path: Path) -> list[str]:
    """A command that appends its arguments (as one JSON line) to ``path``."""
    code = "import json,sys; open(sys.argv[1],'a').write(json.dumps(sys.argv[2:])+'\\n')"
    return [sys.executable, "-c", code, str(path)]


def calls(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def machine(start: Any, stop: Any, **kwargs: Any) -> GenericLatentMachine:
    m = GenericLatentMachine("host1", start_action=start, stop_action=stop, **kwargs)
    m.secret_lookup = lookup
    return m


# -- actions ------------------------------------------------------------------------------------


async def test_local_wake_action_runs_its_command_with_secrets(tmp_path: Path) -> None:
    log = tmp_path / "calls"
    action = LocalWakeAction(
        [*recorder(log), "wake", Secret("token"), Interpolate("%(secret:token)s")]
    )
    m = machine(action, action)
    assert await action.perform(m) is True
    assert calls(log) == [["wake", "s3cr3t-token", "s3cr3t-token"]]
    # a command that fails (exit 3), or cannot run, is a failed action
    assert await LocalWakeAction([sys.executable, "-c", "raise SystemExit(3)"]).perform(m) is False
    assert await LocalWakeAction([str(tmp_path / "missing")]).perform(m) is False


def test_actions_refuse_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="command must be a list"):
        LocalWakeAction("wakeonlan 00:11:22:33:44:55")
    with pytest.raises(ConfigError, match="remoteCommand must be a list"):
        RemoteSshWakeAction("host", "reboot")
    with pytest.raises(ConfigError, match="method must be one of"):
        HttpAction("http://x/", "patch")
    with pytest.raises(ConfigError, match="start_action must be a machine action"):
        GenericLatentMachine("m", start_action="wake", stop_action=LocalWakeAction(["true"]))
    with pytest.raises(ConfigError, match="build_wait_timeout must be a number"):
        GenericLatentMachine(
            "m", LocalWakeAction(["true"]), LocalWakeAction(["true"]), build_wait_timeout="1"
        )
    assert RemoteSshSuspendAction("host").remote_command == ["systemctl", "suspend"]


@pytest.mark.skipif(shutil.which("wakeonlan") is None, reason="Debian's wakeonlan not installed")
async def test_local_wol_action_sends_the_magic_packet(tmp_path: Path) -> None:
    # wakeonlan sends to the broadcast address by default: a wrapper given as wolBin points it at
    # a loopback socket this test reads (as a site would give its own network's address)
    port = free_port()
    wrapper = tmp_path / "wol"
    wrapper.write_text(f'#!/bin/sh\nexec wakeonlan -i 127.0.0.1 -p {port} "$@"\n')
    wrapper.chmod(0o755)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", port))
        sock.settimeout(30)
        action = LocalWOLAction("00:11:22:aa:bb:cc", wolBin=str(wrapper))
        assert await action.perform(machine(action, action)) is True
        packet = await asyncio.to_thread(sock.recv, 1024)
    mac = bytes.fromhex("001122aabbcc")
    assert packet == b"\xff" * 6 + mac * 16


@pytest.mark.skipif(not SSHD.exists(), reason="no sshd")
async def test_remote_ssh_actions_against_a_real_sshd(tmp_path: Path) -> None:
    with ssh_git_server(tmp_path / "sshd") as server:
        # the fixture's key may run git only: give this test's key a shell
        public = (tmp_path / "sshd" / "client_key.pub").read_text().strip()
        (tmp_path / "sshd" / "authorized_keys").write_text(f"restrict {public}\n")
        SECRETS["ssh_key"] = server.client_key
        woken = tmp_path / "woken"
        host = f"ssh://root@127.0.0.1:{server.port}"
        wake = RemoteSshWakeAction(
            host,
            ["sh", "-c", f"'echo up >> {woken}'"],
            sshKey=Secret("ssh_key"),
            sshHostKey=server.host_key,
        )
        m = machine(wake, wake)
        assert await wake.perform(m) is True
        assert woken.read_text() == "up\n"
        # the key was written to a private directory removed afterwards
        left = await asyncio.to_thread(
            lambda: list(Path(tempfile.gettempdir()).glob("buildyard-ssh-*"))
        )
        assert not left

        # the wrong host key: ssh refuses the host (batch mode asks nothing)
        wrong = RemoteSshSuspendAction(
            host,
            remoteCommand=["sh", "-c", f"'echo down >> {woken}'"],
            sshKey=Secret("ssh_key"),
            sshHostKey=server.other_public,
        )
        assert await wrong.perform(m) is False
        assert woken.read_text() == "up\n"


async def test_http_action_sends_its_request(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    status = {"code": 200}

    async def handle(request: web.Request) -> web.Response:
        seen.append(
            {
                "method": request.method,
                "path": request.path_qs,
                "auth": request.headers.get("Authorization"),
                "body": await request.text(),
            }
        )
        return web.Response(status=status["code"], text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        action = HttpAction(
            f"http://127.0.0.1:{port}/power/on",
            "post",
            params={"outlet": "3"},
            json={"state": "on"},
            auth=("admin", Secret("token")),
        )
        m = machine(action, action)
        assert await action.perform(m) is True
        assert seen == [
            {
                "method": "POST",
                "path": "/power/on?outlet=3",
                "auth": "Basic YWRtaW46czNjcjN0LXRva2Vu",  # admin:s3cr3t-token
                "body": '{"state": "on"}',
            }
        ]
        status["code"] = 500
        assert await action.perform(m) is False
    finally:
        await runner.cleanup()
    # nothing listening: a failed action, not an exception
    assert await HttpAction(f"http://127.0.0.1:{free_port()}/", "get").perform(m) is False


# -- a latent machine's states ------------------------------------------------------------------


class Recorded(AbstractLatentMachine):
    """A latent machine whose start waits for the test's go-ahead and records its calls."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.events: list[str] = []
        self.go = asyncio.Event()
        self.result = True

    async def start_machine(self) -> bool:
        self.events.append("start")
        await self.go.wait()
        return self.result

    async def stop_machine(self) -> None:
        self.events.append("stop")


class Harness:
    def __init__(self, config: AbstractLatentMachine) -> None:
        self.building = 0
        self.worker_stops = 0
        self.tasks: list[asyncio.Task[Any]] = []
        self.runtime = MachineRuntime(
            config, spawn=self.spawn, stop_workers=self.stop_workers, building=self.is_building
        )

    def spawn(self, coro: Any, *, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.append(task)
        return task

    async def stop_workers(self, name: str) -> None:
        self.worker_stops += 1

    def is_building(self, name: str) -> bool:
        return self.building > 0

    async def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def state_of(h: Harness) -> States:
    return h.runtime.state  # a call, so that mypy does not narrow it across awaits


async def test_many_wakes_start_the_machine_once_and_it_stops_after_build_wait_timeout() -> None:
    config = Recorded("host1", build_wait_timeout=0.2)
    h = Harness(config)
    wakes = [asyncio.ensure_future(h.runtime.wake()) for _ in range(3)]
    await eventually(lambda: config.events == ["start"], within=10)
    assert state_of(h) is States.STARTING
    config.go.set()
    assert await asyncio.gather(*wakes) == [True, True, True]
    assert config.events == ["start"]
    assert state_of(h) is States.STARTED

    h.building = 1
    h.runtime.build_started()
    # a build ends while another still runs on the machine: it stays up
    h.runtime.build_finished()
    assert h.runtime._timer is None
    h.building = 0
    h.runtime.build_finished()
    await eventually(lambda: config.events == ["start", "stop"], within=10)
    assert state_of(h) is States.STOPPED
    assert h.worker_stops == 1  # its workers were stopped first
    await h.cancel()


async def test_a_machine_no_build_used_stops_after_missing_timeout() -> None:
    config = Recorded("host1", missing_timeout=0.2, build_wait_timeout=100)
    config.go.set()
    h = Harness(config)
    assert await h.runtime.wake() is True
    await eventually(lambda: config.events == ["start", "stop"], within=10)
    assert state_of(h) is States.STOPPED
    await h.cancel()


async def test_a_machine_is_not_stopped_while_building_and_a_failed_start_says_so() -> None:
    config = Recorded("host1")
    config.go.set()
    h = Harness(config)
    assert await h.runtime.wake()
    h.building = 1
    h.runtime.build_started()
    await h.runtime.stop()
    assert config.events == ["start"]
    assert state_of(h) is States.STARTED
    h.building = 0
    await h.runtime.stop()
    assert config.events == ["start", "stop"]

    config.result = False
    assert await h.runtime.wake() is False
    assert state_of(h) is States.STOPPED

    class Broken(AbstractLatentMachine):
        async def start_machine(self) -> bool:
            raise OSError("no power")

    assert await Harness(Broken("host2")).runtime.wake() is False
    await h.cancel()


async def test_a_wake_during_a_stop_waits_and_starts_again() -> None:
    class SlowStop(Recorded):
        async def stop_machine(self) -> None:
            self.events.append("stopping")
            await asyncio.sleep(0.2)
            self.events.append("stopped")

    config = SlowStop("host1")
    config.go.set()
    h = Harness(config)
    assert await h.runtime.wake()
    stopping = asyncio.ensure_future(h.runtime.stop())
    await eventually(lambda: "stopping" in config.events, within=10)
    assert await h.runtime.wake() is True
    await stopping
    assert config.events == ["start", "stopping", "stopped", "start"]
    await h.cancel()


# -- configuration ------------------------------------------------------------------------------

BASE = """\
from buildbot.plugins import util, steps, worker
from buildbot.worker.latent import LocalLatentWorker
from buildbot.machine.generic import GenericLatentMachine, LocalWakeAction, LocalWOLAction
c = BuildmasterConfig = {}
c['protocols'] = {'pb': {'port': 9989}}
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'],
                 factory=util.BuildFactory([steps.ShellCommand(command='true')]))]
"""


def _load(tmp_path: Path, text: str) -> Any:
    (tmp_path / "master.cfg").write_text(BASE + text)
    return load_master_config(tmp_path)


def test_c_machines_is_read_and_checked(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        "c['machines'] = [GenericLatentMachine('host1', LocalWOLAction('00:11:22:33:44:55'),\n"
        "    LocalWakeAction(['true']), build_wait_timeout=60)]\n"
        "c['workers'] = [LocalLatentWorker('w1', 'pw', machine_name='host1')]\n",
    )
    (m,) = config.machines
    assert m.name == "host1" and m.build_wait_timeout == 60
    (w,) = config.workers
    assert w.machine_name == "host1" and w.build_wait_timeout == -1
    assert w.properties["machine_name"] == "host1"

    errors = [
        (
            "c['machines'] = [GenericLatentMachine('h', LocalWakeAction(['true']), "
            "LocalWakeAction(['true']))] * 2\n"
            "c['workers'] = [worker.Worker('w1', 'pw')]\n",
            "duplicate machine name 'h'",
        ),
        (
            "c['workers'] = [worker.Worker('w1', 'pw', machine_name='nowhere')]\n",
            "worker 'w1' uses unknown machine 'nowhere'",
        ),
        (
            "c['machines'] = [GenericLatentMachine('h', LocalWakeAction(['true']), "
            "LocalWakeAction(['true']))]\n"
            "c['workers'] = [worker.Worker('w1', 'pw', machine_name='h')]\n",
            "worker 'w1' is on latent machine 'h' but is not a latent worker",
        ),
        ("c['machines'] = [object()]\nc['workers'] = [worker.Worker('w1', 'pw')]\n", "machines"),
    ]
    for text, message in errors:
        with pytest.raises(ConfigErrors) as info:
            _load(tmp_path, text)
        assert any(message in e.message for e in info.value.errors), info.value.errors


async def test_the_master_powers_its_machines_off_when_it_stops() -> None:
    class Listener:
        attach_hooks: list[Any] = []
        detach_hooks: list[Any] = []
        connections: dict[str, Any] = {}

    latent = LatentWorkers(updates=None, listener=Listener(), master_name="m")  # type: ignore[arg-type]
    config = Recorded("host1", build_wait_timeout=3600)
    config.go.set()
    asleep = Recorded("host2")
    latent.configure_machines([config, asleep])
    await latent.start()
    assert await latent.machines["host1"].wake()
    await latent.stop()
    assert config.events == ["start", "stop"]
    assert asleep.events == []  # never woken, not "stopped" again


class _Listener:
    """What LatentWorkers asks of the worker listener: its hooks, connections and address."""

    def __init__(self) -> None:
        self.attach_hooks: list[Any] = []
        self.detach_hooks: list[Any] = []
        self.connections: dict[str, Any] = {}
        self.host = "127.0.0.1"
        self.port = 1
        self.pb_port = None


async def test_a_worker_on_a_machine_wakes_it_and_the_machine_sleeps_it() -> None:
    """The glue in LatentWorkers: a start wakes the machine first; the machine's sleep after
    build_wait_timeout stops its worker first; a machine that does not start quarantines the
    worker; a reconfig that removes a machine powers it off."""
    listener = _Listener()
    latent = LatentWorkers(updates=None, listener=listener, master_name="m")  # type: ignore[arg-type]
    host = Recorded("host1", build_wait_timeout=0.1)
    host.go.set()
    broken = Recorded("host2")
    broken.go.set()
    broken.result = False
    latent.configure_machines([host, broken])
    await latent.start()
    try:
        await latent.configure(
            {
                "w1": LocalLatentWorker("w1", "pw", machine_name="host1"),
                "w2": LocalLatentWorker("w2", "pw", machine_name="host2"),
            }
        )
        latent.substantiate("w1", LatentBuild(Properties(), builder_name="b"))
        latent.substantiate("w2", LatentBuild(Properties(), builder_name="b"))
        await eventually(lambda: host.events == ["start"], within=10)
        assert latent.state("w1") is State.SUBSTANTIATING  # waits for its worker to connect
        for hook in listener.attach_hooks:
            hook("w1")
        await eventually(lambda: latent.state("w1") is State.SUBSTANTIATED, within=10)

        await eventually(lambda: latent.in_quarantine("w2"), within=10)
        assert broken.events == ["start"]
        assert latent.state("w2") is State.NOT_SUBSTANTIATED

        latent.build_started("w1")
        latent.build_finished("w1")
        await eventually(lambda: host.events == ["start", "stop"], within=10)
        assert latent.state("w1") is State.NOT_SUBSTANTIATED  # stopped with its machine

        # woken again, then removed by a reconfig: powered off
        latent.substantiate("w1", LatentBuild(Properties(), builder_name="b"))
        await eventually(lambda: host.events == ["start", "stop", "start"], within=10)
        latent.configure_machines([broken])
        await eventually(lambda: host.events == ["start", "stop", "start", "stop"], within=10)
    finally:
        await latent.stop()


async def test_a_wake_of_a_started_machine_cancels_its_pending_timer() -> None:
    """A build ended and build_wait_timeout runs; a new worker wakes the (still up) machine:
    the timer that would power it off under the starting worker is cancelled."""
    config = Recorded("host1", build_wait_timeout=3600, missing_timeout=7200)
    config.go.set()
    h = Harness(config)
    assert await h.runtime.wake()
    h.building = 1
    h.runtime.build_started()
    h.building = 0
    h.runtime.build_finished()
    pending = h.runtime._timer
    assert pending is not None
    assert await h.runtime.wake() is True
    await asyncio.wait({pending}, timeout=10)
    assert pending.cancelled()
    # a fresh missing_timeout runs instead (the machine still sleeps if no build comes)
    assert h.runtime._timer is not None and h.runtime._timer is not pending
    await h.cancel()


async def test_a_timer_does_not_power_off_a_machine_while_a_worker_starts() -> None:
    from structlog.testing import capture_logs

    config = Recorded("host1", missing_timeout=0.1)
    config.go.set()
    h = Harness(config)
    booting = {"now": True}
    h.runtime._substantiating = lambda name: booting["now"]
    with capture_logs() as logs:
        assert await h.runtime.wake()
        await eventually(
            lambda: any(e["event"] == "machine_stop_deferred" for e in logs), within=10
        )
        assert config.events == ["start"]
        assert state_of(h) is States.STARTED
        # the worker's start ended without a build: the re-armed timer powers it off
        booting["now"] = False
        await eventually(lambda: config.events == ["start", "stop"], within=10)
    await h.cancel()


async def test_latent_workers_tell_their_machine_a_worker_is_starting() -> None:
    listener = _Listener()
    latent = LatentWorkers(updates=None, listener=listener, master_name="m")  # type: ignore[arg-type]
    host = Recorded("host1")
    host.go.set()
    latent.configure_machines([host])
    await latent.start()
    try:
        await latent.configure({"w1": LocalLatentWorker("w1", "pw", machine_name="host1")})
        assert not latent._machine_substantiating("host1")
        latent.substantiate("w1", LatentBuild(Properties(), builder_name="b"))
        assert latent._machine_substantiating("host1")
        assert not latent._machine_substantiating("host2")
    finally:
        await latent.stop()


async def test_actions_never_log_the_secrets_they_rendered(tmp_path: Path) -> None:
    """A secret in an HttpAction's URL query (echoed by the server's error body, and named by
    aiohttp's error on a redirect loop) and in a failing command's output is hidden in the
    log; a long error body is cut."""
    from structlog.testing import capture_logs

    async def handle(request: web.Request) -> web.Response:
        if request.path == "/loop":
            raise web.HTTPFound(location=request.path_qs)
        return web.Response(status=500, text=f"bad request {request.path_qs} " + "x" * 5000)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    secret = SECRETS["token"]
    try:
        with capture_logs() as logs:
            for path in ("power", "loop"):
                url = Interpolate(f"http://127.0.0.1:{port}/{path}?token=%(secret:token)s")
                action = HttpAction(url, "get")
                assert await action.perform(machine(action, action)) is False
            out = LocalWakeAction(
                [
                    sys.executable,
                    "-c",
                    "import sys; print(sys.argv[1]); sys.stderr.write(sys.argv[1]); sys.exit(2)",
                    Secret("token"),
                ]
            )
            assert await out.perform(machine(out, out)) is False
    finally:
        await runner.cleanup()
    failed = [e for e in logs if e["event"] == "machine_action_failed"]
    assert len(failed) == 3, logs
    assert secret not in repr(logs)
    body_line, loop_line, command_line = failed
    assert body_line["status"] == 500
    assert body_line["url"] == f"http://127.0.0.1:{port}/power?<query hidden>"
    assert len(body_line["body"]) < 1100 and body_line["body"].endswith("characters)")
    assert "TooManyRedirects" in loop_line["error"]
    assert command_line["stdout"].strip() == "<token>"
    assert command_line["stderr"] == "<token>"
