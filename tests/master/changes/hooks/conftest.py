"""A started master (in this process, SQLite) serving change hooks on a loopback port, and a
client that posts to its hooks and reads its REST API."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from buildyard.master.config.loader import load_master_config
from buildyard.master.db import migrate
from buildyard.master.master import BuildMaster
from buildyard.testing.postgres import free_port
from tests.master.changes.hooks.fake_github import FakeGitHub, fake_github

CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['www'] = {{'port': 'tcp:{port}:interface=127.0.0.1'}}
c['workers'] = [worker.Worker('w1', 'pw')]
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], factory=util.BuildFactory())]
"""


@dataclasses.dataclass
class Answer:
    status: int
    text: str


@dataclasses.dataclass
class HookClient:
    master: BuildMaster
    url: str
    http: aiohttp.ClientSession

    async def post(
        self,
        path: str,
        payload: Any = None,
        *,
        data: bytes | io.BytesIO | Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        method: str = "POST",
    ) -> Answer:
        """POST ``payload`` as JSON (or ``data`` as it is) to ``path``."""
        sent_headers = dict(headers or {})
        if payload is not None:
            data = json.dumps(payload).encode()
            sent_headers.setdefault("Content-Type", "application/json")
        async with self.http.request(
            method, self.url + path, data=data, headers=sent_headers
        ) as response:
            return Answer(response.status, await response.text())

    async def changes(self) -> list[dict[str, Any]]:
        async with self.http.get(self.url + "/api/v2/changes?order=changeid") as response:
            assert response.status == 200
            found: list[dict[str, Any]] = (await response.json(content_type=None))["changes"]
            return found


@contextlib.asynccontextmanager
async def hook_master(
    tmp_path: Path, body: str, *, exist_ok: bool = False
) -> AsyncIterator[HookClient]:
    """A started master whose master.cfg is :data:`CONFIG` plus ``body`` (which sets
    ``c['www']['change_hook_dialects']``, ...)."""
    basedir = tmp_path / "master"
    basedir.mkdir(exist_ok=exist_ok)
    port = free_port()
    (basedir / "master.cfg").write_text(CONFIG.format(port=port) + body)
    master = BuildMaster(basedir, config=load_master_config(basedir))
    await migrate.upgrade(master.db)
    await master.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield HookClient(master=master, url=f"http://127.0.0.1:{master.www.port}", http=http)
    finally:
        await master.stop()


@pytest.fixture
def github_api() -> Iterator[FakeGitHub]:
    with fake_github() as fake:
        yield fake
