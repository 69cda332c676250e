"""``from twisted.internet import defer`` and ``from twisted.python import log`` in master.cfg:
answered by buildyard's asyncio stand-ins (buildyard.compat.twisted_style), found in real-world
configurations (docs/real-world-configs.md)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from buildyard.common.errors import ConfigErrors
from buildyard.compat import twisted_style
from buildyard.master.config.loader import load_master_config

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


def test_a_master_cfg_importing_defer_and_log_loads(tmp_path: Path) -> None:
    (tmp_path / "master.cfg").write_text(CFG)

    config = load_master_config(tmp_path)

    assert [b.name for b in config.builders] == ["b"]
    # nothing of the stand-ins stays in sys.modules after the load
    assert not [m for m in sys.modules if m.startswith("twisted.internet")]


def test_other_twisted_names_fail_with_their_name(tmp_path: Path) -> None:
    (tmp_path / "master.cfg").write_text(
        "from twisted.internet import defer\nd = defer.Deferred()\nBuildmasterConfig = {}\n"
    )
    with pytest.raises(ConfigErrors) as info:
        load_master_config(tmp_path)
    assert "has no 'Deferred'" in str(info.value)


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
