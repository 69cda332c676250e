"""Real-world master.cfg files (tests/corpus/corpus.toml) through stock Buildbot 4.3.0 and
buildyard: each entry's recorded expectations (checkconfig pass/fail with its reason, a stock
worker connecting) are checked, so a regression, or a fix that makes one pass, shows.

The files are others' code and are not in this repository: scripts/fetch-corpus.py fetches them
at their commits into ~/.cache/buildyard/corpus ($BUILDYARD_CORPUS_DIR). This test runs it
first; where GitHub or PyPI cannot be reached the test skips and says so. A cache filled
beforehand (for instance with ``fetch --git-mirror``) is used as it is.

The entries are checked a few at a time (a module fixture, so the tests are one xdist group):
most of an entry's time is spent waiting for processes to start and a worker to connect.
"""

from __future__ import annotations

import importlib.util
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from buildyard.testing.stock import StockBuildbotMissing, buildbot_venv

# the first entry's test sets up every entry (``checked``): its time limit is the whole corpus's
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("corpus"), pytest.mark.timeout(900)]

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


# how many entries are checked at once: each runs a stock Buildbot, a buildyard master and a
# stock worker, one after the other
AT_ONCE = 3


@dataclass
class Checked:
    """What the harness found for one entry (``error``: the check itself raised)."""

    stock: tuple[bool, str] = (False, "")
    ours: tuple[bool, str] = (False, "")
    started: Any = None
    error: BaseException | None = None


def _check(entry: Any, workdir: Path) -> Checked:
    checked = Checked()
    try:
        checked.stock = HARNESS.stock_checkconfig(entry)
        if not checked.stock[0]:
            return checked
        checked.ours = HARNESS.buildyard_checkconfig(entry, ROOT / "src")
        if checked.ours[0] and entry.expect["buildyard_checkconfig"] == "pass":
            checked.started = HARNESS.start_with_worker(entry, workdir)
    except Exception as exc:  # reported by that entry's test
        checked.error = exc
    return checked


@pytest.fixture(scope="module")
def checked(
    fetched: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Checked]:
    """Every fetched entry through the harness, :data:`AT_ONCE` at a time."""
    todo = [e for e in ENTRIES if e.id not in fetched]
    dirs = {e.id: tmp_path_factory.mktemp(f"corpus-{e.id}") for e in todo}
    with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
        done = pool.map(lambda e: _check(e, dirs[e.id]), todo)
        return dict(zip([e.id for e in todo], done, strict=True))


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
def test_corpus_entry(entry: Any, fetched: dict[str, str], checked: dict[str, Checked]) -> None:
    if entry.id in fetched:
        pytest.fail(f"{entry.id} could not be fetched: {fetched[entry.id]}")
    expect = entry.expect
    found = checked[entry.id]
    if found.error is not None:
        raise found.error

    stock_ok, stock_out = found.stock
    assert stock_ok, stock_out

    ours_ok, ours_out = found.ours
    if expect["buildyard_checkconfig"] == "fail":
        # still failing, and for the recorded reason (a fix shows here: record it)
        assert not ours_ok, f"{entry.id} now passes buildyard's checkconfig: record it\n{ours_out}"
        assert expect["buildyard_match"] in ours_out, ours_out
        return
    assert ours_ok, ours_out

    started = found.started
    if expect["worker"] == "connects":
        assert started.connected, started.detail
    else:
        assert not started.connected, f"{entry.id}'s worker now connects: record it"
        assert expect["worker_match"] in started.detail, started.detail
