"""``buildyard-worker``: create, start, stop and restart a worker.

Exit codes: 0 success; 1 the action failed; 2 bad usage. ``start`` runs in the background
(pid in BASEDIR/buildyard-worker.pid, log in BASEDIR/buildyard-worker.log) unless ``--nodaemon``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog

import buildyard
from buildyard.common.pidfile import running_pid, signal_and_wait
from buildyard.worker.bot import WorkerConfig

SETTINGS = "buildyard-worker.json"
PIDFILE = "buildyard-worker.pid"
LOGFILE = "buildyard-worker.log"
DEFAULT_PORT = 9989
START_TIMEOUT = 15.0
STOP_TIMEOUT = 60.0
ADMIN_PLACEHOLDER = "Your Name Here <admin@youraddress.invalid>\n"
HOST_PLACEHOLDER = "Please put a description of this build host here\n"

log = structlog.get_logger(__name__)


def _fail(message: str) -> int:
    print(f"buildyard-worker: {message}", file=sys.stderr)
    return 1


def parse_master(value: str) -> tuple[str, int]:
    """``HOST[:PORT]`` or ``[v6addr]:PORT``; the port defaults to 9989."""
    if value.startswith("http:") or value.startswith("https:"):
        raise ValueError("the master address is HOST:PORT, not a URL")
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = value.rpartition(":") if ":" in value else (value, "", "")
    if not host:
        raise ValueError(f"no host in {value!r}")
    return host, int(port) if port else DEFAULT_PORT


def cmd_create_worker(args: argparse.Namespace) -> int:
    basedir = Path(args.basedir).resolve()
    try:
        host, port = parse_master(args.master)
    except ValueError as exc:
        return _fail(str(exc))
    if ":" in args.name:
        return _fail("a worker name must not contain ':'")
    settings = {
        "master_host": host,
        "master_port": port,
        "workername": args.name,
        "password": args.password,
        "keepalive": args.keepalive,
        "maxretries": args.maxretries,
        "numcpus": args.numcpus,
        "delete_leftover_dirs": args.delete_leftover_dirs,
        "path": "",
    }
    (basedir / "info").mkdir(parents=True, exist_ok=True)
    target = basedir / SETTINGS
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds the password
    with os.fdopen(fd, "w") as f:
        json.dump(settings, f, indent=2)
        f.write("\n")
    for name, text in (("admin", ADMIN_PLACEHOLDER), ("host", HOST_PLACEHOLDER)):
        path = basedir / "info" / name
        if not path.exists():
            path.write_text(text)
    if not args.quiet:
        print(f"worker configured in {basedir}; edit {basedir / 'info'}/admin and host")
    return 0


def load_config(basedir: Path) -> WorkerConfig:
    data = json.loads((basedir / SETTINGS).read_text())
    return WorkerConfig(
        basedir=basedir,
        host=str(data["master_host"]),
        port=int(data["master_port"]),
        name=str(data["workername"]),
        password=str(data["password"]),
        path=str(data.get("path") or ""),
        maxretries=data.get("maxretries"),
        numcpus=data.get("numcpus"),
        delete_leftover_dirs=bool(data.get("delete_leftover_dirs", False)),
        keepalive=int(data.get("keepalive") or 600),
    )


def _read_pid(basedir: Path) -> int | None:
    return running_pid(basedir / PIDFILE)


def _watch_stdin(loop: asyncio.AbstractEventLoop, shutdown: Callable[[], None]) -> None:
    """Shut down once stdin reaches its end: the process that started this worker (a master
    running it as a LocalWorker) holds the pipe's other end, which closes when it dies, even
    by SIGKILL."""
    fd = sys.stdin.fileno()
    os.set_blocking(fd, False)

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            log.info("worker_parent_gone", reason="stdin closed")
            shutdown()

    loop.add_reader(fd, readable)


def _run(basedir: Path, *, exit_with_stdin: bool = False) -> int:
    from buildyard.common.logging import configure
    from buildyard.worker.bot import Bot

    config = load_config(basedir)
    configure()
    os.chdir(basedir)

    async def main() -> int:
        bot = Bot(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, bot.request_shutdown)
        if exit_with_stdin:
            _watch_stdin(loop, bot.request_shutdown)
        pidfile = basedir / PIDFILE
        pidfile.write_text(f"{os.getpid()}\n")
        log.info("worker_started", worker=config.name, basedir=str(basedir), url=config.url)
        try:
            return await bot.run()
        finally:
            with contextlib.suppress(FileNotFoundError):
                pidfile.unlink()

    return asyncio.run(main())


def cmd_start(args: argparse.Namespace) -> int:
    basedir = Path(args.basedir).resolve()
    if not (basedir / SETTINGS).exists():
        return _fail(f"{basedir / SETTINGS} does not exist; run create-worker first")
    pid = _read_pid(basedir)
    if pid is not None:
        return _fail(f"a worker is already running in {basedir} (pid {pid})")
    if args.nodaemon:
        return _run(basedir, exit_with_stdin=args.exit_with_stdin)
    logfile = basedir / LOGFILE
    offset = logfile.stat().st_size if logfile.exists() else 0
    with logfile.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "buildyard.worker.cli", "start", "--nodaemon", str(basedir)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=basedir,
            start_new_session=True,
        )
    config = load_config(basedir)
    answer = _first_answer(logfile, offset, proc)
    tail = logfile.read_text(errors="replace")[offset:][-3000:]
    if answer == "refused":
        try:  # it stops by itself (Bot.run gives up on a first refusal)
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait(timeout=STOP_TIMEOUT)
        return _fail(
            f"the master at {config.host}:{config.port} refused worker {config.name!r}: wrong "
            f"name or password (see {basedir / SETTINGS}); the worker stopped"
        )
    if answer in ("exited", "silent") or proc.poll() is not None:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=STOP_TIMEOUT)
        return _fail(f"the worker did not start; the end of {logfile}:\n{tail}")
    print(f"buildyard-worker started in {basedir} (pid {proc.pid}); log: {logfile}")
    if answer == "connected":
        print(f"connected to the master at {config.host}:{config.port}")
    elif answer == "unanswered":
        print(
            f"warning: the master at {config.host}:{config.port} did not answer the first "
            f"attempt; the worker keeps trying (see {logfile})",
            file=sys.stderr,
        )
    else:
        print(
            f"warning: no answer from the master at {config.host}:{config.port} within "
            f"{START_TIMEOUT:.0f}s; the worker keeps trying (see {logfile})",
            file=sys.stderr,
        )
    return 0


def _first_answer(logfile: Path, offset: int, proc: subprocess.Popen[bytes]) -> str:
    """How the started worker's first connection attempt ended, from its log: "connected",
    "refused" (wrong name or password), "unanswered" (no master there, or an HTTP error),
    "exited" (the process ended first), "silent" (it did not even log that it started), or
    "waiting" when START_TIMEOUT ran out before an answer."""
    deadline = time.monotonic() + START_TIMEOUT
    started = False
    while True:
        with logfile.open("rb") as f:
            f.seek(offset)
            text = f.read()
        started = started or b"worker_started" in text
        if b"worker_refused" in text:
            return "refused"
        if b"] connected " in text:
            return "connected"
        if b"connect_failed" in text or b"handshake_refused" in text:
            return "unanswered"
        if proc.poll() is not None:
            return "exited"
        if time.monotonic() >= deadline:
            return "waiting" if started else "silent"
        time.sleep(0.1)


def _stop(basedir: Path) -> int:
    pid = _read_pid(basedir)
    if pid is None:
        print(f"no worker is running in {basedir}")
        return 0
    if signal_and_wait(pid, signal.SIGTERM, timeout=STOP_TIMEOUT):
        print(f"buildyard-worker in {basedir} stopped")
        return 0
    return _fail(f"the worker (pid {pid}) did not stop within {STOP_TIMEOUT:.0f}s")


def cmd_stop(args: argparse.Namespace) -> int:
    return _stop(Path(args.basedir).resolve())


def cmd_restart(args: argparse.Namespace) -> int:
    code = _stop(Path(args.basedir).resolve())
    if code != 0:
        return code
    args.nodaemon = False
    return cmd_start(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="buildyard-worker", description="Create, start, stop and restart a worker."
    )
    parser.add_argument(
        "--version", action="version", version=f"buildyard-worker {buildyard.__version__}"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("create-worker", help="write a worker's base directory")
    p.add_argument("basedir", help="the worker's directory (created if missing)")
    p.add_argument(
        "master",
        help="MASTERHOST[:PORT] of the master's msgpack_experimental_v7 port (9989 by default)",
    )
    p.add_argument("name", help="the worker's name, as in master.cfg's worker.Worker(name, ...)")
    p.add_argument("password", help="its password, as in worker.Worker(name, password)")
    p.add_argument(
        "--keepalive",
        type=int,
        default=600,
        help="accepted as buildbot-worker's option; unused (the master sends the keepalives)",
    )
    p.add_argument("--maxretries", type=int, default=None, help="give up after N failed tries")
    p.add_argument(
        "--numcpus",
        type=int,
        default=None,
        help="the CPU count the worker reports to the master (default: this machine's)",
    )
    p.add_argument(
        "--delete-leftover-dirs",
        action="store_true",
        help="have the master remove the directories in basedir that no builder uses, at connect",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=cmd_create_worker)
    p = sub.add_parser("start", help="start the worker (in the background unless --nodaemon)")
    p.add_argument("--nodaemon", action="store_true", help="run in the foreground")
    # with --nodaemon: stop when stdin ends (how a master's LocalWorker follows its master)
    p.add_argument("--exit-with-stdin", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("basedir")
    p.set_defaults(func=cmd_start)
    for name, func in (("stop", cmd_stop), ("restart", cmd_restart)):
        p = sub.add_parser(name, help=f"{name} the worker")
        p.add_argument("basedir")
        p.set_defaults(func=func, nodaemon=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
