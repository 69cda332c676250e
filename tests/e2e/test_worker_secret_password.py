"""A worker's password given as a secret (``util.Secret``, ``util.Interpolate('%(secret:)s')``)
from a ``SecretInAFile`` directory: real workers (stock buildbot-worker 4.3.0 over PB and over
msgpack, buildyard-worker) log in with the value, a wrong one is refused, a reconfig that
changes the file takes the new value, a secret no provider knows is an error naming the worker
and the secret, and no value reaches the master's log.

As Buildbot 4.3.0, the password is rendered each time the master takes a configuration (at
start and at each reconfig). Where it cannot be rendered Buildbot's master does not start, and
its reconfig goes on half-applied ("configuration update partially applied"); buildyard's
start fails the same way, and its reconfig is refused as a whole, the running configuration
unchanged (as for any configuration it cannot apply).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from structlog.processors import format_exc_info
from structlog.testing import capture_logs

from buildyard.common.errors import ConfigErrors
from buildyard.common.logging import redact_secrets
from buildyard.master.config.loader import load_master_config
from buildyard.master.db import migrate
from buildyard.master.master import BuildMaster
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import buildyard, end_popen, eventually
from buildyard.testing.stock import buildbot_venv
from buildyard.testing.workers import STOCK_PB, start_worker

pytestmark = pytest.mark.e2e

# no lowercase: no name or word of the logs holds them
VALUES = {
    "pb_pass": "K4PB7QX2ZW9M",
    "mp_pass": "R8MP3LV6TN2J",
    "by_pass": "H5BY9CW4QD7S",
    "late_pass": "F2LT8XK5PV3N",
}
NEW_LATE = "Z9NW4RT6YB2C"
NEW_BY = "M3NB8QW5XK7D"

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['secretsProviders'] = [secrets.SecretInAFile({secrets_dir!r})]
c['workers'] = [
    worker.Worker("pbw", util.Secret("pb_pass")),
    worker.Worker("mpw", util.Interpolate("%(secret:mp_pass)s")),
    worker.Worker("byw", util.Secret("by_pass")),
    worker.Worker("late", util.Secret("late_pass")),
]
c['protocols'] = {{
    'msgpack_experimental_v7': {{'port': {port}, 'interface': '127.0.0.1'}},
    'pb': {{'port': {pb_port}, 'interface': '127.0.0.1'}},
}}
c['builders'] = [util.BuilderConfig(name="b", workernames=["pbw", "mpw", "byw", "late"],
                                    factory=util.BuildFactory())]
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
"""


def _write_secret(directory: Path, name: str, value: str) -> None:
    path = directory / name
    path.write_text(value + "\n")
    path.chmod(0o600)


async def _master(basedir: Path) -> BuildMaster:
    master = BuildMaster(basedir, config=load_master_config(basedir))
    await migrate.upgrade(master.db)
    await master.start()
    return master


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "secrets"
    directory.mkdir()
    for name, value in VALUES.items():
        _write_secret(directory, name, value)
    return directory


@pytest.fixture
def basedir(tmp_path: Path, secrets_dir: Path) -> Path:
    basedir = tmp_path / "master"
    basedir.mkdir()
    (basedir / "master.cfg").write_text(
        CONFIG.format(secrets_dir=str(secrets_dir), port=free_port(), pb_port=free_port())
    )
    return basedir


@pytest.fixture
async def procs() -> AsyncIterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for proc in started:
            end_popen(proc)


def _refused(logs: Sequence[Mapping[str, Any]], worker: str) -> int:
    """How many logins of ``worker`` were refused for a wrong password."""
    return sum(
        1
        for e in logs
        if e["event"] == "worker_refused"
        and e.get("worker") == worker
        and e.get("reason") == "wrong password"
    )


async def test_workers_log_in_with_the_secret_and_a_reconfig_takes_a_new_one(
    tmp_path: Path,
    basedir: Path,
    secrets_dir: Path,
    procs: list[subprocess.Popen[bytes]],
) -> None:
    with capture_logs(processors=[format_exc_info, redact_secrets]) as logs:
        master = await _master(basedir)
        try:
            listener = master.workers.listener
            port, pb_port = listener.port, listener.pb_port
            assert port is not None and pb_port is not None

            async def launch(kind: str, name: str, password: str, on: int) -> None:
                workdir = tmp_path / f"{name}-{kind}-{len(procs)}"
                procs.append(
                    await asyncio.to_thread(start_worker, kind, workdir, on, name, password)
                )

            await launch(STOCK_PB, "pbw", VALUES["pb_pass"], pb_port)
            await launch("stock", "mpw", VALUES["mp_pass"], port)
            await launch("buildyard", "byw", VALUES["by_pass"], port)
            await eventually(lambda: {"pbw", "mpw", "byw"} <= set(listener.connections), within=90)
            # wrong passwords, over both protocols: refused
            await launch(STOCK_PB, "late", "WRONG", pb_port)
            await eventually(lambda: _refused(logs, "late") >= 1, within=60)
            end_popen(procs[-1])  # (it would try again and again)
            before = _refused(logs, "late")
            await launch("buildyard", "late", VALUES["by_pass"], port)
            await eventually(lambda: _refused(logs, "late") > before, within=60)
            assert "late" not in listener.connections
            for proc in procs[3:]:
                end_popen(proc)

            # the secret's file changes; a reconfig reads it again and takes the new value
            _write_secret(secrets_dir, "late_pass", NEW_LATE)
            assert await master.reconfig()
            before = _refused(logs, "late")
            await launch("buildyard", "late", VALUES["late_pass"], port)  # the old value
            await eventually(lambda: _refused(logs, "late") > before, within=60)
            assert "late" not in listener.connections
            await launch("buildyard", "late", NEW_LATE, port)
            await eventually(lambda: "late" in listener.connections, within=60)

            # a connected worker whose password changes stays connected (asked at its next login)
            connection = listener.connections["byw"]
            _write_secret(secrets_dir, "by_pass", NEW_BY)
            assert await master.reconfig()
            assert listener.connections["byw"] is connection

            # a secret no provider knows: the reconfig is refused, naming worker and secret
            (secrets_dir / "late_pass").unlink()
            assert not await master.reconfig()
            assert set(listener.connections) == {"pbw", "mpw", "byw", "late"}
        finally:
            await master.stop()
    [failed] = [e for e in logs if e["event"] == "reconfig_failed"]
    assert "worker 'late'" in str(failed["reason"])
    assert "secret 'late_pass' is not found in any provider" in str(failed["reason"])
    text = repr(logs)
    for value in (*VALUES.values(), NEW_LATE, NEW_BY):
        assert value not in text


async def test_a_secret_no_provider_knows_stops_the_start(basedir: Path, secrets_dir: Path) -> None:
    (secrets_dir / "by_pass").unlink()
    (secrets_dir / "mp_pass").write_text("")  # renders to an empty string
    master = BuildMaster(basedir, config=load_master_config(basedir))
    await migrate.upgrade(master.db)
    with pytest.raises(ConfigErrors) as raised:
        await master.start()
    messages = [e.message for e in raised.value.errors]
    assert messages == [
        "worker 'mpw': its password Interpolate('%(secret:mp_pass)s') rendered to an empty "
        "string, not a non-empty string",
        "worker 'byw': its password Secret('by_pass') cannot be rendered: secret 'by_pass' "
        "is not found in any provider",
    ]
    assert not master.running


def test_buildyard_start_says_which_worker_and_secret(basedir: Path, secrets_dir: Path) -> None:
    (secrets_dir / "late_pass").unlink()
    assert buildyard("upgrade-master", str(basedir)).returncode == 0
    done = buildyard("start", str(basedir))  # ends the master it started when it fails
    assert done.returncode == 1
    assert "the master did not start" in done.stderr
    assert (
        "worker 'late': its password Secret('late_pass') cannot be rendered: secret "
        "'late_pass' is not found in any provider" in done.stderr
    )
    assert not (basedir / "buildyard.pid").exists()
    for value in VALUES.values():
        assert value not in done.stdout + done.stderr


STOCK_CONFIG = """\
from buildbot.plugins import schedulers, secrets, util, worker
c = BuildmasterConfig = {{}}
c['buildbotNetUsageData'] = None
c['secretsProviders'] = [secrets.SecretInAFile({secrets_dir!r})]
c['workers'] = [worker.Worker("pbw", util.Secret("pb_pass")),
                worker.Worker("late", util.Interpolate("%(secret:late_pass)s"))]
c['protocols'] = {{'pb': {{'port': 'tcp:{pb_port}:interface=127.0.0.1'}}}}
c['builders'] = [util.BuilderConfig(name="b", workernames=["pbw", "late"],
                                    factory=util.BuildFactory())]
c['schedulers'] = [schedulers.ForceScheduler(name="f", builderNames=["b"])]
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
"""


def _stock_or_ours(
    kind: str, basedir: Path, secrets_dir: Path, pb_port: int
) -> tuple[subprocess.Popen[bytes], Path, str]:
    """Create and start (in the foreground) a master of ``kind`` with :data:`STOCK_CONFIG`:
    its process, its log and the line that says it started."""
    if kind == "buildbot":
        exe = str(buildbot_venv() / "bin" / "buildbot")
        create, start = [exe, "create-master", "-q"], [exe, "start", "--nodaemon"]
        log, marker = basedir / "twistd.log", "BuildMaster is running"
    else:
        cli = [sys.executable, "-m", "buildyard.cli.main"]
        create, start = [*cli, "create-master", "-q"], [*cli, "start", "--nodaemon"]
        log, marker = basedir / "out.log", "master_started"
    subprocess.run([*create, str(basedir)], check=True, capture_output=True, timeout=300)
    (basedir / "master.cfg").write_text(
        STOCK_CONFIG.format(secrets_dir=str(secrets_dir), pb_port=pb_port)
    )
    with (basedir / "out.log").open("ab") as out:
        proc = subprocess.Popen(
            [*start, str(basedir)],
            cwd=basedir,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return proc, log, marker


@pytest.mark.parametrize("kind", ["buildbot", "buildyard"])
def test_side_by_side_with_stock_buildbot(
    kind: str, tmp_path: Path, secrets_dir: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """The same master.cfg under stock Buildbot 4.3.0 and buildyard: the stock PB worker logs
    in with the secret's value and is refused with a wrong one."""
    pb_port = free_port()
    proc, log, marker = _stock_or_ours(kind, tmp_path / kind, secrets_dir, pb_port)
    procs.append(proc)
    deadline = time.monotonic() + 300
    while marker not in (log.read_text(errors="replace") if log.exists() else ""):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    right, wrong = tmp_path / "right", tmp_path / "wrong"
    procs.append(start_worker(STOCK_PB, right, pb_port, "pbw", VALUES["pb_pass"]))
    procs.append(start_worker(STOCK_PB, wrong, pb_port, "late", "WRONG"))

    def worker_log(workdir: Path) -> str:
        path = workdir / "twistd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    deadline = time.monotonic() + 90
    while not (
        "worker is ready" in worker_log(right)
        and "unauthorized login; check worker name and password" in worker_log(wrong)
    ):
        assert time.monotonic() < deadline, worker_log(right) + worker_log(wrong)
        time.sleep(0.2)
    assert "unauthorized" not in worker_log(right)


@pytest.mark.parametrize("kind", ["buildbot", "buildyard"])
def test_side_by_side_a_missing_secret_stops_the_start(
    kind: str, tmp_path: Path, secrets_dir: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """Neither master starts when a worker's password is a secret no provider knows; each
    names the secret (Buildbot: in a KeyError's traceback; buildyard: with the worker)."""
    (secrets_dir / "late_pass").unlink()
    proc, log, marker = _stock_or_ours(kind, tmp_path / kind, secrets_dir, free_port())
    procs.append(proc)
    assert proc.wait(timeout=300) is not None
    text = log.read_text(errors="replace") + (tmp_path / kind / "out.log").read_text()
    assert marker not in text
    if kind == "buildbot":
        assert "BuildMaster startup failed" in text
        assert "secret key late_pass is not found in any provider" in text
    else:
        assert proc.returncode == 1
        assert (
            "worker 'late': its password Interpolate('%(secret:late_pass)s') cannot be "
            "rendered: secret 'late_pass' is not found in any provider" in text
        )
