"""bench/latent.py runs (one round, no warm-up): both masters build on the LocalWorker and on a
fresh container of the Docker Engine stand-in, and the split adds up (the engine's share is
inside the total, the master's share is what remains)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_latent_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "samples.json"
    argv = [sys.executable, str(ROOT / "bench" / "latent.py"), "--rounds", "1", "--warmup", "0"]
    done = subprocess.run(
        [*argv, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "load average" in done.stdout and "ratio" in done.stdout
    seen = json.loads(out.read_text())
    for kind in ("buildyard", "buildbot"):
        (local,) = seen["local"][kind]["total"]
        assert 0 < local < 300
        docker = seen["docker"][kind]
        (total,), (engine,), (ours,) = docker["total"], docker["engine"], docker["ours"]
        assert 0 < engine < total < 300
        assert ours == pytest.approx(total - engine)
