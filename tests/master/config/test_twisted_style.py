"""``from twisted.internet import defer`` and ``from twisted.python import log`` in master.cfg,
without Twisted installed: answered by buildyard's asyncio stand-ins
(buildyard.compat.twisted_style), found in real-world configurations
(docs/real-world-configs.md). With the buildyard[twisted] extra they are Twisted's own
(tests/e2e/test_twisted_code.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from buildyard.compat import twisted_style

CFG = """\
from buildbot.plugins import util, worker
from twisted.internet import defer
from twisted.python import log

log.msg("loading", "the config")

@defer.inlineCallbacks
def answer(x):
    y = yield defer.succeed(x + 1)
    defer.returnValue(y * 2)

ANSWER = answer
c = BuildmasterConfig = {}
c['workers'] = [worker.Worker('w', 'pw')]
c['protocols'] = {'pb': {'port': 0}}
c['builders'] = [util.BuilderConfig(name='b', workernames=['w'], factory=util.BuildFactory())]
"""


# Run in a child process whose import system cannot find Twisted, as on a master installed
# without the buildyard[twisted] extra (with it, these imports are Twisted's own).
_WITHOUT_TWISTED = """\
import sys

class NoTwisted:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("twisted", "zope"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoTwisted())
from buildyard.master.config.loader import load_master_config
from buildyard.common.errors import ConfigErrors
try:
    config = load_master_config(sys.argv[1])
except ConfigErrors as exc:
    print("ERRORS", exc)
else:
    print("BUILDERS", [b.name for b in config.builders])
    print("LEFT", [m for m in sys.modules if m.startswith("twisted.internet")])
"""


def _load_without_twisted(basedir: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TWISTED, str(basedir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def test_a_master_cfg_importing_defer_and_log_loads(tmp_path: Path) -> None:
    (tmp_path / "master.cfg").write_text(CFG)
    out = _load_without_twisted(tmp_path)
    assert "BUILDERS ['b']" in out, out
    # nothing of the stand-ins stays in sys.modules after the load
    assert "LEFT []" in out, out


def test_other_twisted_names_fail_with_their_name(tmp_path: Path) -> None:
    (tmp_path / "master.cfg").write_text(
        "from twisted.internet import defer\nd = defer.Deferred()\nBuildmasterConfig = {}\n"
    )
    out = _load_without_twisted(tmp_path)
    assert "ERRORS" in out and "has no 'Deferred'" in out, out


async def _double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


def test_inline_callbacks_awaits_what_it_yields_and_returns_the_value() -> None:
    seen: list[Any] = []

    @twisted_style.inlineCallbacks
    def run(x: int) -> Any:
        a = yield _double(x)  # a coroutine, as buildyard's own methods return
        b = yield twisted_style.succeed(a + 1)
        c = yield 5  # a plain value comes back as it is
        try:
            yield twisted_style.fail(ValueError("boom"))
        except ValueError as exc:
            seen.append(str(exc))
        try:
            yield twisted_style.maybeDeferred(lambda: 1 / 0)
        except ZeroDivisionError:
            seen.append("zero")
        return a + b + c

    assert asyncio.run(run(3)) == 6 + 7 + 5
    assert seen == ["boom", "zero"]


def test_return_value_and_plain_functions() -> None:
    @twisted_style.inlineCallbacks
    def by_return_value() -> Any:
        yield twisted_style.succeed(None)
        twisted_style.returnValue("done")

    @twisted_style.inlineCallbacks
    def not_a_generator() -> str:
        return "plain"

    @twisted_style.inlineCallbacks
    def raises() -> Any:
        yield _double(1)
        raise KeyError("k")

    assert asyncio.run(by_return_value()) == "done"
    assert asyncio.run(not_a_generator()) == "plain"
    with pytest.raises(KeyError):
        asyncio.run(raises())


def test_log_msg_and_err_reach_the_master_log(capsys: pytest.CaptureFixture[str]) -> None:
    twisted_style.msg("hello", 3)
    twisted_style.err(ValueError("x"), "while polling")
    out = capsys.readouterr()
    text = out.out + out.err
    assert "hello 3" in text
    assert "while polling" in text
