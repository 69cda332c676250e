"""A builder's description and tags, as master.cfg gives them, are what the ``builders``
resource serves (and what reporters' and the REST API's ``tags`` filters match), kept in step
on reconfig; a reconfig that changes none of them writes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import structlog

from buildyard.master.config.loader import load_master_config
from buildyard.master.db import migrate
from buildyard.master.master import BuildMaster
from buildyard.testing.postgres import free_port

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w", "pw")]
f = util.BuildFactory()
c['builders'] = [
    util.BuilderConfig(name="a", workernames=["w"], factory=f, tags={a_tags!r},
                       description={a_description!r}),
    util.BuilderConfig(name="b", workernames=["w"], factory=f, tags=["nightly"]),
]
c['www'] = {{'port': 'tcp:{port}:interface=127.0.0.1'}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
"""


async def _builders(port: int, query: str = "") -> dict[str, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/api/v2/builders{query}") as resp,
    ):
        assert resp.status == 200
        return {b["name"]: b for b in (await resp.json(content_type=None))["builders"]}


async def test_description_and_tags_follow_the_config(tmp_path: Path) -> None:
    basedir = tmp_path / "master"
    basedir.mkdir()
    port = free_port()
    cfg = basedir / "master.cfg"
    cfg.write_text(
        CONFIG.format(port=port, a_tags=["linux", "fast"], a_description="Runs the tests")
    )
    master = BuildMaster(basedir, config=load_master_config(basedir))
    await migrate.upgrade(master.db)
    await master.start()
    try:
        seen = await _builders(port)
        assert seen["a"]["tags"] == ["fast", "linux"]
        assert seen["a"]["description"] == "Runs the tests"
        assert seen["b"]["tags"] == ["nightly"] and seen["b"]["description"] is None
        assert list(await _builders(port, "?tags__contains=linux")) == ["a"]

        cfg.write_text(CONFIG.format(port=port, a_tags=["linux"], a_description=None))
        with structlog.testing.capture_logs() as logs:
            assert await master.reconfig() is True
        written = [e["builderids"] for e in logs if e["event"] == "builder_infos_written"]
        assert written == [[seen["a"]["builderid"]]]  # b did not change
        seen = await _builders(port)
        assert seen["a"]["tags"] == ["linux"] and seen["a"]["description"] is None
        assert seen["b"]["tags"] == ["nightly"]

        # the same configuration again: nothing to write
        with structlog.testing.capture_logs() as logs:
            assert await master.reconfig() is True
        assert not [e for e in logs if e["event"] == "builder_infos_written"]
    finally:
        await master.stop()
