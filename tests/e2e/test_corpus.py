"""Real-world master.cfg files (tests/corpus/corpus.toml) through stock Buildbot 4.3.0 and
buildyard: each entry's recorded expectations (checkconfig pass/fail with its reason, a stock
worker connecting) are checked, so a regression, or a fix that makes one pass, shows.

The files are others' code and are not in this repository: scripts/fetch-corpus.py fetches them
at their commits into ~/.cache/buildyard/corpus ($BUILDYARD_CORPUS_DIR). This test runs it
first; where GitHub or PyPI cannot be reached the test skips and says so. A cache filled
beforehand (for instance with ``fetch --git-mirror``) is used as it is.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from buildyard.testing.stock import StockBuildbotMissing, buildbot_venv

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "fetch_corpus", ROOT / "scripts" / "fetch-corpus.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fetch_corpus"] = module
    spec.loader.exec_module(module)
    return module


HARNESS = _harness()
ENTRIES = HARNESS.load_corpus()


@pytest.fixture(scope="module")
def fetched() -> dict[str, str]:
    """Fetch what is missing; the entries that could not be fetched, with why."""
    try:
        buildbot_venv()
    except StockBuildbotMissing as exc:
        pytest.skip(str(exc))
    missing = [e for e in ENTRIES if not HARNESS.is_fetched(e)]
    if not missing:
        return {}
    try:
        failed: dict[str, str] = HARNESS.fetch_all(missing, git_mirror=None)
    except HARNESS.NetworkClosed as exc:
        pytest.skip(f"the corpus is not in {HARNESS.cache_dir()} and cannot be fetched: {exc}")
    return failed


def test_every_entry_records_its_expectations() -> None:
    assert len(ENTRIES) >= 15
    for entry in ENTRIES:
        expect = entry.expect
        assert expect.get("buildbot_checkconfig") == "pass", entry.id  # the corpus's criterion
        assert expect.get("buildyard_checkconfig") in ("pass", "fail"), entry.id
        if expect["buildyard_checkconfig"] == "fail":
            assert expect.get("buildyard_reason"), entry.id
        else:
            assert expect.get("worker") in ("connects", "fail"), entry.id
            if expect["worker"] == "fail":
                assert expect.get("worker_reason"), entry.id


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.id for e in ENTRIES])
def test_corpus_entry(entry: Any, fetched: dict[str, str], tmp_path: Path) -> None:
    if entry.id in fetched:
        pytest.fail(f"{entry.id} could not be fetched: {fetched[entry.id]}")
    expect = entry.expect

    stock_ok, stock_out = HARNESS.stock_checkconfig(entry)
    assert stock_ok, stock_out

    ours_ok, ours_out = HARNESS.buildyard_checkconfig(entry, ROOT / "src")
    if expect["buildyard_checkconfig"] == "fail":
        # still failing, and for the recorded reason (a fix shows here: record it)
        assert not ours_ok, f"{entry.id} now passes buildyard's checkconfig: record it\n{ours_out}"
        assert expect["buildyard_match"] in ours_out, ours_out
        return
    assert ours_ok, ours_out

    started = HARNESS.start_with_worker(entry, tmp_path)
    if expect["worker"] == "connects":
        assert started.connected, started.detail
    else:
        assert not started.connected, f"{entry.id}'s worker now connects: record it"
        assert expect["worker_match"] in started.detail, started.detail
