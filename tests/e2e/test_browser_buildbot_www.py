"""Buildbot's own UI (buildbot-www 4.3.0, from the stock venv) in headless Chromium against a
buildyard master: the builders list, and a finished build's steps and log."""

from __future__ import annotations

from pathlib import Path

import pytest

from buildyard.master.model.results import Results
from buildyard.testing.browser import artifacts_dir, chromium, screenshot
from buildyard.testing.masters import running_master
from buildyard.testing.postgres import free_port
from buildyard.testing.stock import buildbot_site_packages

pytestmark = pytest.mark.e2e

BODY = """
c['builders'] = [
    util.BuilderConfig(name="hello", workernames=["w1"], factory=util.BuildFactory([
        steps.ShellCommand(name="greet", command="echo hello from the build"),
    ])),
]
c['buildbotURL'] = "http://127.0.0.1:{port}/"
c['www'] = {{'port': {port}, 'ui': {ui!r}}}
"""


async def test_buildbot_www_shows_builders_and_a_finished_build(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    port = free_port()
    ui = str(buildbot_site_packages() / "buildbot_www")
    shots = artifacts_dir(request.node.name)
    async with running_master(tmp_path, BODY.format(port=port, ui=ui)) as running:
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
            assert problems == []
