"""The built-in UI in headless Chromium against a real master and worker: forcing a build from
a builder's page, a running build's live log and Stop, and the other actions (Rebuild, a
worker's Pause and Unpause, a pending request's Cancel), each checked in the database."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from playwright.async_api import Page

from buildyard.master.model.results import Results
from buildyard.testing.browser import artifacts_dir, chromium, screenshot
from buildyard.testing.masters import Running, running_master
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import eventually

pytestmark = pytest.mark.e2e

# prints a numbered line every 0.3 s, flushed, for 30 s: the test stops it long before the end
SLOW = "import time\nfor i in range(100):\n    print('tick', i, flush=True)\n    time.sleep(0.3)"

COLOUR = "print('\\x1b[1;31mred bold\\x1b[0m then plain')"

BODY = """
c['builders'] = [
    util.BuilderConfig(name="hello", workernames=["w1"], factory=util.BuildFactory([
        steps.ShellCommand(name="greet", command=util.Interpolate("echo hello %(prop:who)s")),
        steps.ShellCommand(name="colour", command=[{python!r}, "-c", {colour!r}]),
    ])),
    util.BuilderConfig(name="slow", workernames=["w1"], factory=util.BuildFactory([
        steps.ShellCommand(name="count", command=[{python!r}, "-c", {slow!r}]),
    ])),
]
c['schedulers'] = [schedulers.ForceScheduler(
    name="force", builderNames=["hello", "slow"],
    properties=[util.StringParameter(name="who", label="Who", default="nobody")],
)]
c['www'] = {{'port': 'tcp:{port}:interface=127.0.0.1'}}
"""


def _watch(page: Page, problems: list[str]) -> None:
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None
    )
    page.on(
        "response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )


async def test_force_a_build_from_the_builders_page(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    port = free_port()
    shots = artifacts_dir(request.node.name)
    body = BODY.format(port=port, python=sys.executable, slow=SLOW, colour=COLOUR)
    async with running_master(tmp_path, body) as running, chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        _watch(page, problems)

        await page.goto(f"http://127.0.0.1:{port}/")
        await page.get_by_role("link", name="hello", exact=True).wait_for(timeout=30_000)
        await screenshot(page, shots, "builders")
        await page.get_by_role("link", name="hello", exact=True).click()

        form = page.locator("form.force[data-scheduler='force']")
        await form.get_by_label("Who").fill("the browser")
        await screenshot(page, shots, "builder")
        await form.get_by_role("button", name="force").click()

        # the UI follows the request to its build's page, which updates as the build runs
        await page.wait_for_url(re.compile(r"#/builders/\d+/builds/1$"), timeout=30_000)
        await page.locator("#build-result [data-results='0']").wait_for(timeout=60_000)
        await page.get_by_role("button", name="Rebuild").wait_for(timeout=10_000)
        await page.locator(".step[data-results='0']", has_text="greet").wait_for()
        await page.get_by_text("the browser").first.wait_for()  # the property, from the form
        # a finished step's log opens on a click; ANSI colours and bold become styled spans
        await page.locator(".step-head", has_text="colour").click()
        red = page.locator(".log-lines .line span.ansi-bold.ansi-fg-1")
        assert await red.first.inner_text(timeout=10_000) == "red bold"
        await screenshot(page, shots, "build")

        result = await running.result(1)
        assert result.build.results == Results.SUCCESS
        assert result.properties["who"] == ("the browser", "Force Build Form")
        assert "hello the browser" in result.stdout("greet")
        assert problems == []


async def test_live_log_of_a_running_build_and_stop(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    port = free_port()
    shots = artifacts_dir(request.node.name)
    body = BODY.format(port=port, python=sys.executable, slow=SLOW, colour=COLOUR)
    async with running_master(tmp_path, body) as running, chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        _watch(page, problems)
        builderid = await running.master.data.updates.find_builder_id("slow")

        await page.goto(f"http://127.0.0.1:{port}/#/builders/{builderid}")
        await page.locator("form.force button[type=submit]").click()
        await page.wait_for_url(re.compile(r"#/builders/\d+/builds/1$"), timeout=30_000)
        await page.evaluate("window.notReloaded = true")

        # the running step's log is open and follows the command's output as it comes
        ticks = page.locator(".step", has_text="count").locator(
            ".log-lines .line", has_text=re.compile(r"^tick \d+$")
        )
        await ticks.first.wait_for(timeout=30_000)
        seen = [int(t.split()[1]) for t in await ticks.all_inner_texts()]
        assert max(seen) < 99
        await screenshot(page, shots, "running")
        later = page.locator(".log-lines .line", has_text=re.compile(rf"^tick {max(seen) + 1}$"))
        await later.wait_for(timeout=30_000)
        assert await page.evaluate("window.notReloaded") is True
        await screenshot(page, shots, "more_lines")

        await page.get_by_role("button", name="Stop").click()
        await page.locator("#build-result [data-results='6']").wait_for(timeout=30_000)
        await page.get_by_role("button", name="Rebuild").wait_for(timeout=10_000)
        await screenshot(page, shots, "stopped")

        result = await running.result(1)
        assert result.build.results == Results.CANCELLED
        assert problems == []


async def _request(running: Running, builder: str) -> int:
    """A build request for ``builder`` (as a scheduler would make it): its id."""
    updates = running.master.data.updates
    builderid = await updates.find_builder_id(builder)
    _bsid, brids = await updates.add_buildset(
        scheduler="test",
        sourcestamps=[
            {"branch": None, "revision": None, "repository": "", "project": "", "codebase": ""}
        ],
        reason="test",
        properties={},
        builderids=[builderid],
    )
    return brids[builderid]


async def test_rebuild_pause_cancel_and_unpause(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    port = free_port()
    shots = artifacts_dir(request.node.name)
    body = BODY.format(port=port, python=sys.executable, slow=SLOW, colour=COLOUR)
    async with running_master(tmp_path, body) as running, chromium() as browser:
        db = running.master.db
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        _watch(page, problems)
        first = await running.build("hello")
        assert first.build.results == Results.SUCCESS
        builderid = first.build.builderid

        # Rebuild on a finished build's page: a new request, whose build the page follows
        base = f"http://127.0.0.1:{port}/"
        await page.goto(f"{base}#/builders/{builderid}/builds/1")
        await page.get_by_role("button", name="Rebuild").click()
        await page.wait_for_url(re.compile(rf"#/builders/{builderid}/builds/2$"), timeout=30_000)
        await page.locator("#build-result [data-results='0']").wait_for(timeout=60_000)
        await screenshot(page, shots, "rebuilt")
        builds = await db.builds.get_builds(builderid=builderid)
        assert [b.number for b in builds] == [1, 2]
        assert builds[1].results == Results.SUCCESS
        assert builds[1].buildrequestid != builds[0].buildrequestid

        # Pause the worker from its page
        w1 = await db.workers.get_worker(name="w1")
        assert w1 is not None
        assert not w1.paused
        await page.goto(f"{base}#/workers/{w1.id}")
        await page.get_by_role("button", name="Pause").click()
        await page.get_by_role("button", name="Unpause").wait_for(timeout=30_000)
        await page.locator("h1 .state.paused").wait_for()
        paused = await db.workers.get_worker(name="w1")
        assert paused is not None
        assert paused.paused
        assert paused.pause_reason == "from the web UI"
        await screenshot(page, shots, "paused")

        # a request for the paused worker's builder waits: cancel it from the Pending page
        brid = await _request(running, "hello")
        await page.goto(f"{base}#/pending")
        row = page.locator(f"tr[data-buildrequestid='{brid}']")
        await row.wait_for(timeout=30_000)
        await screenshot(page, shots, "pending")
        await row.get_by_role("button", name="Cancel").click()
        await row.wait_for(state="detached", timeout=30_000)
        cancelled = await db.buildrequests.get_buildrequest(brid)
        assert cancelled is not None
        assert cancelled.complete
        assert cancelled.results == Results.CANCELLED
        assert await db.builds.get_builds(buildrequestid=brid) == []

        # another waits until the worker is unpaused from its page, then it is built
        waiting = await _request(running, "hello")
        await page.goto(f"{base}#/workers/{w1.id}")
        await page.get_by_role("button", name="Unpause").click()
        await page.get_by_role("button", name="Pause").wait_for(timeout=30_000)
        # the state in the heading follows the worker's event, which may come after the button
        await page.locator("h1 .state.paused").wait_for(state="detached", timeout=30_000)
        unpaused = await db.workers.get_worker(name="w1")
        assert unpaused is not None
        assert not unpaused.paused

        async def built() -> bool:
            found = await db.builds.get_builds(buildrequestid=waiting)
            return bool(found) and found[0].results == Results.SUCCESS

        await eventually(built, within=60)
        await screenshot(page, shots, "unpaused")
        assert problems == []
