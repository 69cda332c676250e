"""Buildbot's own UI (buildbot-www 4.3.0, from the stock venv) in headless Chromium against a
buildyard master: the builders list, a finished build's steps and log, Buildbot's UI plugins
(waterfall, console and grid views, installed beside buildbot-www), and a running build's log
lines appearing live (through /ws) until the build finishes."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from buildyard.master.model.results import Results
from buildyard.master.workers.connection import WORKER_SETTINGS
from buildyard.testing.browser import artifacts_dir, chromium, screenshot
from buildyard.testing.masters import running_master
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import eventually
from buildyard.testing.stock import buildbot_site_packages

pytestmark = pytest.mark.e2e

# a numbered line every 0.3 s, flushed: 40 lines, 12 s, so the worker sends them in several
# updates (it holds output for up to buffer_timeout) while the build runs
LINES = 40
SLOW = (
    "import time\n"
    f"for i in range({LINES}):\n"
    "    print(f'tick {i:03d}', flush=True)\n"
    "    time.sleep(0.3)"
)

BODY = """
c['builders'] = [
    util.BuilderConfig(name="hello", workernames=["w1"], factory=util.BuildFactory([
        steps.ShellCommand(name="greet", command="echo hello from the build"),
    ])),
    util.BuilderConfig(name="slow", workernames=["w1"], factory=util.BuildFactory([
        steps.ShellCommand(name="count", command=[{python!r}, "-c", {slow!r}]),
    ])),
]
c['buildbotURL'] = "http://127.0.0.1:{port}/"
c['www'] = {{'port': 'tcp:{port}:interface=127.0.0.1', 'ui': {ui!r},
            'plugins': {{'waterfall_view': {{}}, 'console_view': {{}}, 'grid_view': {{}}}}}}
"""


async def test_buildbot_www_shows_builders_and_a_finished_build(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    port = free_port()
    ui = str(buildbot_site_packages() / "buildbot_www")
    shots = artifacts_dir(request.node.name)
    body = BODY.format(port=port, ui=ui, python=sys.executable, slow=SLOW)
    async with running_master(tmp_path, body) as running:
        result = await running.build("hello")
        assert result.build.results == Results.SUCCESS
        base = f"http://127.0.0.1:{port}/"
        async with chromium() as browser:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on(
                "response",
                lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 500 else None,
            )

            await page.goto(f"{base}#/builders")
            await page.get_by_role("link", name="hello", exact=True).wait_for(timeout=30_000)
            await screenshot(page, shots, "builders")

            await page.goto(f"{base}#/builders/{result.build.builderid}/builds/1")
            await page.get_by_text("greet", exact=False).first.wait_for(timeout=30_000)
            await screenshot(page, shots, "build")
            # the step's log, expanded by a click on the step
            await page.get_by_text("greet", exact=False).first.click()
            await page.get_by_text("hello from the build").first.wait_for(timeout=30_000)
            await screenshot(page, shots, "log")

            # Buildbot's UI plugins, served from their packages beside buildbot-www: each adds
            # its page to the menu (their scripts loaded without a page error: `problems`), and
            # the waterfall draws the finished build under its builder
            for caption in ("Waterfall View", "Console View", "Grid View"):
                await page.get_by_text(caption, exact=True).first.wait_for(timeout=30_000)
            await page.goto(f"{base}#/waterfall")
            await page.get_by_text("hello", exact=True).first.wait_for(timeout=30_000)
            await screenshot(page, shots, "waterfall")
            assert problems == []


async def test_buildbot_www_shows_a_running_builds_log_live(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # the lines come in the worker's updates: several must fall within the command's run
    buffer_timeout = WORKER_SETTINGS["buffer_timeout"]
    assert isinstance(buffer_timeout, int | float)
    assert buffer_timeout * 2 < LINES * 0.3
    port = free_port()
    ui = str(buildbot_site_packages() / "buildbot_www")
    shots = artifacts_dir(request.node.name)
    body = BODY.format(port=port, ui=ui, python=sys.executable, slow=SLOW)
    async with running_master(tmp_path, body) as running, chromium() as browser:
        db = running.master.db
        updates = running.master.data.updates
        builderid = await updates.find_builder_id("slow")
        _bsid, brids = await updates.add_buildset(
            scheduler="test",
            sourcestamps=[
                {"branch": None, "revision": None, "repository": "", "project": "", "codebase": ""}
            ],
            reason="test",
            properties={},
            builderids=[builderid],
        )

        async def started() -> bool:
            return bool(await db.builds.get_builds(buildrequestid=brids[builderid]))

        await eventually(started, within=60)
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on(
            "response",
            lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 500 else None,
        )
        await page.goto(f"http://127.0.0.1:{port}/#/builders/{builderid}/builds/1")
        await page.get_by_text("count", exact=False).first.wait_for(timeout=30_000)
        await page.evaluate("window.notReloaded = true")
        await screenshot(page, shots, "running")

        # the running step is open, its log's tail shown; lines come as the worker sends them
        ticks = page.get_by_text(re.compile(r"^tick \d{3}$"))
        await ticks.first.wait_for(timeout=30_000)
        seen = max(int(t.split()[1]) for t in await ticks.all_inner_texts())
        [build] = await db.builds.get_builds(buildrequestid=brids[builderid])
        assert build.complete_at is None
        assert seen < LINES - 1
        await screenshot(page, shots, "first_lines")
        # later lines arrive on the open page (from the worker's next update) while it runs
        later = page.get_by_text(f"tick {seen + 1:03d}", exact=True)
        await later.wait_for(timeout=30_000)
        now = await db.builds.get_build(build.id)
        assert now is not None
        assert now.complete_at is None
        await screenshot(page, shots, "more_lines")

        # then the build's end, shown without a reload
        await page.get_by_text("build successful").first.wait_for(timeout=60_000)
        await page.get_by_text("SUCCESS", exact=True).first.wait_for(timeout=10_000)
        assert await page.evaluate("window.notReloaded") is True
        await screenshot(page, shots, "finished")
        result = await running.result(build.id)
        assert result.build.results == Results.SUCCESS
        assert result.stdout("count") == "".join(f"tick {i:03d}\n" for i in range(LINES))
        assert problems == []
