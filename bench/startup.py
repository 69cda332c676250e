"""Start-up time with many builders, buildyard vs stock Buildbot 4.3.0, side by side.

Each round starts both masters (alternating which goes first) on SQLite with N builders and
W workers, from process start to the moment the master says it is running, then stops it.
Reports each side's median and the ratio Buildbot/buildyard (>1 means buildyard is faster).

    .venv/bin/python bench/startup.py --builders 1000 --rounds 3
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from buildyard.testing.stock import buildbot_venv

CONFIG = """\
from {package}.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w%d" % i, "pass") for i in range({workers})]
c['protocols'] = {{{protocols}}}
c['builders'] = [
    util.BuilderConfig(name="b%d" % i, workernames=["w%d" % (i % {workers})],
                       factory=util.BuildFactory())
    for i in range({builders})
]
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['buildbotNetUsageData'] = None
{extra}
"""

# Buildbot halts on builders that no scheduler drives; buildyard's schedulers come with issue 4,
# so only the Buildbot side gets one (it only adds work there).
BUILDBOT_EXTRA = (
    "c['schedulers'] = [schedulers.ForceScheduler(name='force', "
    "builderNames=[b.name for b in c['builders']])]"
)


def _wait_for(log: Path, marker: str, proc: subprocess.Popen[bytes], timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if log.exists() and marker in log.read_text(errors="replace"):
            return time.monotonic()
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}: {log.read_text()[-2000:]}")
        time.sleep(0.02)
    raise RuntimeError(f"no {marker!r} in {log} after {timeout}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def time_buildyard(basedir: Path) -> float:
    log = basedir / "out.log"
    log.unlink(missing_ok=True)
    with log.open("wb") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "buildyard.cli.main", "start", "--nodaemon", str(basedir)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        return _wait_for(log, "master_started", proc, 600) - t0
    finally:
        _stop(proc)


def time_buildbot(basedir: Path) -> float:
    log = basedir / "twistd.log"
    log.unlink(missing_ok=True)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [str(buildbot_venv() / "bin" / "buildbot"), "start", "--nodaemon", str(basedir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        return _wait_for(log, "BuildMaster is running", proc, 600) - t0
    finally:
        _stop(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builders", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="buildyard-bench-"))
    try:
        ours, theirs = root / "buildyard", root / "buildbot"
        subprocess.run(
            [sys.executable, "-m", "buildyard.cli.main", "create-master", "-q", str(ours)],
            check=True,
        )
        subprocess.run(
            [str(buildbot_venv() / "bin" / "buildbot"), "create-master", "-q", str(theirs)],
            check=True,
        )
        shape = {"workers": args.workers, "builders": args.builders}
        (ours / "master.cfg").write_text(
            CONFIG.format(package="buildyard", protocols="", extra="", **shape)
        )
        (theirs / "master.cfg").write_text(
            CONFIG.format(
                package="buildbot",
                protocols="'pb': {'port': 'tcp:0:interface=127.0.0.1'}",
                extra=BUILDBOT_EXTRA,
                **shape,
            )
        )
        # a first start of each registers the builders; the rounds measure an ordinary restart
        time_buildyard(ours)
        time_buildbot(theirs)
        results: dict[str, list[float]] = {"buildyard": [], "buildbot": []}
        for i in range(args.rounds):
            order = [("buildyard", time_buildyard, ours), ("buildbot", time_buildbot, theirs)]
            for name, run, basedir in order if i % 2 == 0 else reversed(order):
                results[name].append(run(basedir))
        ours_s = statistics.median(results["buildyard"])
        theirs_s = statistics.median(results["buildbot"])
        print(f"builders={args.builders} workers={args.workers} rounds={args.rounds}")
        print(
            f"buildyard start: median {ours_s:.2f}s  {[round(x, 2) for x in results['buildyard']]}"
        )
        print(
            f"buildbot  start: median {theirs_s:.2f}s  {[round(x, 2) for x in results['buildbot']]}"
        )
        print(f"ratio buildbot/buildyard: {theirs_s / ours_s:.1f}x")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
