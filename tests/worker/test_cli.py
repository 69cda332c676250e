"""buildyard-worker's command line: create-worker, start (background), stop, restart."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from buildyard.testing.postgres import free_port
from buildyard.testing.processes import end_process, wait_for
from buildyard.worker.cli import PIDFILE, SETTINGS, parse_master


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "buildyard.worker.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_parse_master() -> None:
    assert parse_master("example.org") == ("example.org", 9989)
    assert parse_master("example.org:1234") == ("example.org", 1234)
    assert parse_master("[::1]:99") == ("::1", 99)
    with pytest.raises(ValueError, match="not a URL"):
        parse_master("http://example.org")


def test_create_start_stop_restart(tmp_path: Path) -> None:
    basedir = tmp_path / "w"
    port = free_port()  # nobody listens: the worker keeps retrying
    made = cli("create-worker", str(basedir), f"127.0.0.1:{port}", "w1", "pw", "--maxretries", "50")
    assert made.returncode == 0, made.stderr
    settings = json.loads((basedir / SETTINGS).read_text())
    assert settings["workername"] == "w1"
    assert settings["master_port"] == port
    assert settings["maxretries"] == 50
    assert stat.S_IMODE((basedir / SETTINGS).stat().st_mode) == 0o600
    assert "Your Name Here" in (basedir / "info" / "admin").read_text()
    assert (basedir / "info" / "host").read_text()

    pids: list[int] = []
    try:
        started = cli("start", str(basedir))
        assert started.returncode == 0, started.stderr
        pid = int((basedir / PIDFILE).read_text())
        pids.append(pid)
        assert cli("start", str(basedir)).returncode == 1  # already running
        assert wait_for(
            lambda: "connect_failed" in (basedir / "buildyard-worker.log").read_text(), timeout=30
        )
        restarted = cli("restart", str(basedir))
        assert restarted.returncode == 0, restarted.stderr
        new_pid = int((basedir / PIDFILE).read_text())
        pids.append(new_pid)
        assert new_pid != pid
        stopped = cli("stop", str(basedir))
        assert stopped.returncode == 0, stopped.stderr
        assert not (basedir / PIDFILE).exists()
        for p in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(p, 0)
    finally:
        for p in pids:
            end_process(p)


def test_create_worker_help_describes_every_argument() -> None:
    """A newcomer reads what each of create-worker's arguments is for: which master port,
    that name and password are master.cfg's, that --keepalive does nothing here."""
    from buildyard.worker.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    create = sub.choices["create-worker"]  # type: ignore[index]
    undescribed = [
        a.dest for a in create._actions if a.dest != "help" and not (a.help and a.help.strip())
    ]
    assert undescribed == []
    text = create.format_help()
    assert "msgpack_experimental_v7" in text and "worker.Worker(name" in text
    assert "unused" in text  # --keepalive
