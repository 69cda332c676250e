"""bench/multimaster.py run with tiny numbers, so that it cannot rot: one and two masters,
a handful of builds of each kind, a few latency ticks; it reports a rate for each run and a
latency for each tick at both /ws clients. Speed itself is not asserted (that is the
benchmark's job, on a machine whose load is known)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from buildyard.testing.postgres import PostgresServer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postgres,
    pytest.mark.timeout(300),
    pytest.mark.xdist_group("multimaster-scale"),
]

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bench_multimaster", ROOT / "bench/multimaster.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_multimaster"] = module
    spec.loader.exec_module(module)
    return module


async def test_the_benchmark_runs_with_tiny_numbers(
    postgres_server: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _bench()
    argv = ["--rounds", "1", "--masters", "1,2", "--workers", "2"]
    argv += ["--forced", "2", "--changes", "2", "--parents", "1", "--within", "120"]
    argv += ["--latency-builds", "1", "--ticks", "3", "--gap", "0.01"]
    report = await bench.main(argv, server=postgres_server)
    assert [(r.masters, r.builds) for r in report.runs] == [(1, 7), (2, 7)]
    assert all(r.seconds > 0 for r in report.runs)
    assert len(report.on_a) == len(report.on_b) == 3
    assert all(x >= 0 for x in report.on_a + report.on_b)
    out = capsys.readouterr().out
    assert "round 1: 1: " in out and "2: " in out and "(1.00x)" in out
    assert "latency to B's /ws: p50" in out
