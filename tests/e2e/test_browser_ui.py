"""The built-in UI in headless Chromium against a real master and worker: forcing a build from
a builder's page, and a running build's live log and Stop."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from playwright.async_api import Page

from buildyard.master.model.results import Results
from buildyard.testing.browser import artifacts_dir, chromium, screenshot
from buildyard.testing.masters import running_master
from buildyard.testing.postgres import free_port

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
