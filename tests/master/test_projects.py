"""c['projects'] (util.Project) and c['codebases'] (util.Codebase): checked when master.cfg is
loaded, written to the projects and codebases tables when the configuration is applied (only
what differs, so a reconfig that repeats them writes nothing), and served by the REST API."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog

from buildyard.common.errors import ConfigErrors
from buildyard.master.config.loader import load_master_config
from buildyard.master.data.updates import Updates
from buildyard.master.db import migrate
from buildyard.master.db.connector import Database
from buildyard.master.master import BuildMaster
from buildyard.master.model.projectconfig import Codebase, Project
from buildyard.master.mq.local import LocalMQ
from buildyard.testing.clock import FakeClock
from buildyard.testing.postgres import free_port

BASE = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w", "pw")]
c['builders'] = [util.BuilderConfig(name="b", workernames=["w"], factory=util.BuildFactory(),
                                    project="app")]
c['www'] = {{'port': 'tcp:{port}:interface=127.0.0.1'}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
"""


def _load(basedir: Path, text: str) -> Any:
    (basedir / "master.cfg").write_text(BASE.format(port=free_port()) + text, encoding="utf-8")
    return load_master_config(basedir)


def _errors(basedir: Path, text: str) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        _load(basedir, text)
    return [e.message for e in info.value.errors]


def test_project_and_codebase_defaults_and_equality() -> None:
    p = Project("app")
    assert (p.name, p.slug, p.description, p.description_format) == ("app", "app", None, None)
    assert Project("app") == p and Project("app", slug="other") != p
    cb = Codebase("lib", project="app")
    assert (cb.name, cb.project, cb.slug) == ("lib", "app", "lib")
    assert Codebase("lib", "app") == cb and Codebase("lib", "app", slug="x") != cb


def test_c_projects_and_c_codebases_are_loaded(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        "c['projects'] = [util.Project('app', slug='the-app', description='Our app')]\n"
        "c['codebases'] = [util.Codebase('lib', project='app')]\n",
    )
    assert config.projects == (Project("app", slug="the-app", description="Our app"),)
    assert config.codebases == (Codebase("lib", project="app"),)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("c['projects'] = [util.Project(3)]", "Project: name must be a string, not int 3"),
        (
            "c['projects'] = [util.Project('a', description_format='rst')]",
            "Project 'a': description_format must be None or \"markdown\", not 'rst'",
        ),
        (
            "c['projects'] = [util.Project('a', slug='s' * 51)]",
            "is longer than 50 characters",
        ),
        ("c['projects'] = ['app']", "c['projects'] must be a list of util.Project"),
        ("c['projects'] = [util.Project('')]", "Project: name must not be empty"),
        (
            "c['projects'] = [util.Project('a')]\n"
            "c['codebases'] = [util.Codebase('x', 'a', slug='')]",
            "Codebase 'x': slug must not be empty",
        ),
        (
            "c['projects'] = [util.Project('a'), util.Project('a', slug='b')]",
            "c['projects'] has two projects named 'a'",
        ),
        (
            "c['codebases'] = [util.Codebase('lib', project='nowhere')]",
            "codebase 'lib' names project 'nowhere', which is not in c['projects']",
        ),
        (
            "c['projects'] = [util.Project('a')]\n"
            "c['codebases'] = [util.Codebase('x', 'a'), util.Codebase('x', 'a', slug='y')]",
            "c['codebases'] has two codebases named 'x' in project 'a'",
        ),
        ("c['codebases'] = [util.Codebase('lib', project=None)]", "project must be a string"),
        ("c['codebases'] = 'lib'", "c['codebases']"),
        (
            "c['change_source'] = [changes.GitPoller('/tmp/r', codebase=util.Codebase('x', 'p'))]",
            "change source '/tmp/r': its codebase 'x' names project 'p', which is not in "
            "c['projects']",
        ),
    ],
)
def test_bad_projects_and_codebases_are_errors_naming_them(
    tmp_path: Path, text: str, expected: str
) -> None:
    messages = _errors(tmp_path, text + "\n")
    assert any(expected in m for m in messages), messages


async def _get(port: int, path: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/api/v2/{path}") as resp,
    ):
        assert resp.status == 200, await resp.text()
        result: dict[str, Any] = await resp.json(content_type=None)
        return result


CONFIG = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
c['workers'] = [worker.Worker("w", "pw")]
c['builders'] = [util.BuilderConfig(name="b", workernames=["w"], factory=util.BuildFactory(),
                                    project="app")]
c['www'] = {{'port': 'tcp:{port}:interface=127.0.0.1'}}
c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
c['projects'] = [util.Project('app', slug={slug!r}, description={description!r}),
                 util.Project('tools')]
c['codebases'] = [util.Codebase('lib', project='app', slug={cb_slug!r})]
"""


async def test_projects_and_codebases_follow_the_config(tmp_path: Path) -> None:
    """c['projects'] and c['codebases'] as the REST API serves them, on start and reconfig."""
    basedir = tmp_path / "master"
    basedir.mkdir()
    port = free_port()
    cfg = basedir / "master.cfg"
    cfg.write_text(CONFIG.format(port=port, slug="the-app", description="Our app", cb_slug="lib"))
    master = BuildMaster(basedir, config=load_master_config(basedir))
    await migrate.upgrade(master.db)
    await master.start()
    try:
        projects = {p["name"]: p for p in (await _get(port, "projects"))["projects"]}
        assert set(projects) == {"app", "tools"}
        app = projects["app"]
        assert (app["slug"], app["description"], app["description_format"]) == (
            "the-app",
            "Our app",
            None,
        )
        assert projects["tools"]["slug"] == "tools"
        # the builder's project is the configured one, not a second row
        (builder,) = (await _get(port, "builders"))["builders"]
        assert builder["projectid"] == app["projectid"]
        (codebase,) = (await _get(port, f"projects/{app['projectid']}/codebases/lib"))["codebases"]
        assert (codebase["name"], codebase["slug"]) == ("lib", "lib")

        cfg.write_text(CONFIG.format(port=port, slug="app2", description=None, cb_slug="lib-2"))
        async with master.mq.subscribe(
            ("projects", None, "update"), ("codebases", None, "update")
        ) as sub:
            assert await master.reconfig() is True
            # a second reconfig with the same configuration announces nothing
            assert await master.reconfig() is True
            updates = [await sub.get() for _ in range(sub.pending)]
        assert sorted(key[0] for key, _ in updates) == ["codebases", "projects"]
        assert updates[0][1]["slug"] in ("app2", "lib-2")
        app = (await _get(port, f"projects/{app['projectid']}"))["projects"][0]
        assert (app["slug"], app["description"]) == ("app2", None)
        codebase = (await _get(port, f"codebases/{codebase['codebaseid']}"))["codebases"][0]
        assert codebase["slug"] == "lib-2"
    finally:
        await master.stop()


async def test_a_markdown_description_is_rendered_or_warned(
    database: Database, clock: FakeClock
) -> None:
    updates = Updates(db=database, mq=LocalMQ(), clock=clock)
    project = Project("docs", description="*bold*", description_format="markdown")
    with structlog.testing.capture_logs() as logs:
        await updates.configure_projects([project], [])
    [stored] = await database.projects.get_projects()
    assert (stored.description, stored.description_format) == ("*bold*", "markdown")
    warned = [e for e in logs if e["event"] == "project_description_not_rendered"]
    if importlib.util.find_spec("markdown") is None:
        assert stored.description_html is None and warned[0]["project"] == "docs"
    else:
        assert stored.description_html == "<p><em>bold</em></p>" and not warned
