"""The scale benchmark (bench/scale.py) with tiny numbers, on buildyard only, so that it cannot
rot: it starts real masters, fills their databases through the reflected schema, reads the REST
API and prints its tables. No figure is checked (speed belongs in bench/), only that every
workload ran and reported a number."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run_bench(script: str, args: list[str], *, timeout: float) -> str:
    """Run ``bench/<script>`` in its own process group (if it hangs, the masters it started
    end with it); its output, once it exited 0."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    return out


# six master starts: seconds on a quiet machine, minutes on a loaded one
@pytest.mark.timeout(900)
def test_scale_benchmark_runs_and_prints_its_tables() -> None:
    args = ["--only", "buildyard", "--builders", "20", "--workers", "2", "--rest-builders", "5"]
    args += ["--builds", "100", "--small", "20", "--log-lines", "2500", "--rounds", "1"]
    args += ["--idle", "0"]
    out = _run_bench("scale.py", args, timeout=840)
    assert "load before:" in out and "load after:" in out
    assert "## 20 builders, 2 workers" in out
    rows = {}
    for line in out.splitlines():
        if line.startswith("| ") and not line.startswith(("| figure", "| request")):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    assert set(rows) == {
        "cold start",
        "warm start",
        "idle RSS",
        "builds newest 200",
        "builds of a builder",
        "build requests newest 50",
        "changes newest 30",
        "log: last 1000 lines",
    }
    for name, cells in rows.items():
        # a figure for the small and the big history and their ratio (a time or a size for
        # the start-up rows): every workload completed
        numbers = [float(re.sub(r" (s|MiB)$", "", c)) for c in cells]
        assert numbers and all(not math.isnan(x) and x > 0 for x in numbers), (name, cells)


# four master starts on small databases: seconds on a quiet machine
@pytest.mark.timeout(600)
def test_expire_benchmark_runs_and_the_silent_masters_builds_are_finished() -> None:
    """bench/expire.py with a small history: both databases are made and started, and the
    table says the silent master's running builds were finished (RETRY) by the start."""
    args = ["--only", "buildyard", "--builds", "200", "--running", "2", "--rounds", "1"]
    out = _run_bench("expire.py", args, timeout=540)
    assert "load before:" in out and "load after:" in out
    # the starts' table, then the cleanup's alone
    rows = [line for line in out.splitlines() if line.startswith("| buildyard |")]
    assert len(rows) == 2, out
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[-1] == "2 of 2", cells
    cpu_history, cpu_baseline = (float(c.removesuffix(" s")) for c in cells[1:3])
    assert cpu_history > 0 and cpu_baseline > 0, cells
    cells = [c.strip() for c in rows[1].strip("|").split("|")]
    assert all(c.endswith(" ms") and float(c.removesuffix(" ms")) >= 0 for c in cells[1:3]), cells
