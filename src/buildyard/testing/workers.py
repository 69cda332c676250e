"""Running a worker of any kind: buildyard-worker, the stock buildbot-worker 4.3.0 (msgpack or
PB) or the stock buildbot-worker of the 3.x line (PB, its default)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from buildyard.testing.stock import buildbot_venv, worker3_venv

KINDS = ("stock", "buildyard")
# the stock worker created with its defaults, so speaking PB (to the master's 'pb' port)
STOCK_PB = "stock-pb"
# the newest stock worker of the 3.x line (stock.WORKER3_VERSION), created with its defaults: PB
STOCK3_PB = "stock3-pb"


def _commands(kind: str) -> tuple[list[str], list[str]]:
    if kind == "stock":
        exe = str(buildbot_venv() / "bin" / "buildbot-worker")
        return [exe, "create-worker", "--protocol=msgpack_experimental_v7"], [exe, "start"]
    if kind == STOCK_PB:
        exe = str(buildbot_venv() / "bin" / "buildbot-worker")
        return [exe, "create-worker"], [exe, "start"]
    if kind == STOCK3_PB:
        exe = str(worker3_venv() / "bin" / "buildbot-worker")
        return [exe, "create-worker"], [exe, "start"]
    if kind == "buildyard":
        module = [sys.executable, "-m", "buildyard.worker.cli"]
        return [*module, "create-worker"], [*module, "start"]
    raise ValueError(f"no worker kind {kind!r}; one of {(*KINDS, STOCK_PB, STOCK3_PB)}")


def start_worker(
    kind: str,
    basedir: Path,
    port: int,
    name: str,
    password: str,
    *,
    create_options: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Create a worker in ``basedir`` for 127.0.0.1:``port`` (with ``create_options`` of its
    create-worker) and start it in the foreground (output in ``basedir``.log); end it with
    ``processes.end_popen``. ``env``, when given, is the whole environment of both commands."""
    create, start = _commands(kind)
    subprocess.run(
        [*create, *create_options, str(basedir), f"127.0.0.1:{port}", name, password],
        check=True,
        capture_output=True,
        timeout=120,
        env=env,
    )
    with basedir.with_suffix(".log").open("ab") as out:
        return subprocess.Popen(
            [*start, "--nodaemon", str(basedir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
