"""bench/deep_queue.py runs (a smoke run, buildyard only, tiny numbers) so it cannot rot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "deep_queue.py"


def test_deep_queue_bench_drains_a_small_queue_and_prints_its_table(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--pending",
            "6",
            "--combinations",
            "buildyard",
            "--drain-within",
            "120",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [row] = [line for line in done.stdout.splitlines() if line.startswith("| 6 |")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    # every forced request was pending, and the drain finished (not cut short)
    assert cells[1] == "buildyard + buildyard-worker"
    assert cells[2].startswith("6 (")
    assert cells[4].endswith("/s"), row
    assert float(cells[4].removesuffix("/s")) > 0
