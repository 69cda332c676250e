"""The built-in UI with password authentication and an Authz, in headless Chromium against a
real master and worker: an anonymous force is refused with the server's message shown (and no
build request made), a login through the form as an admin, whose force then runs to SUCCESS,
and the logout."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import Page

from buildyard.master.model.results import Results
from buildyard.master.www.auth import COOKIE
from buildyard.testing.browser import artifacts_dir, chromium, screenshot
from buildyard.testing.masters import running_master
from buildyard.testing.postgres import free_port

pytestmark = pytest.mark.e2e

BODY = """
c['builders'] = [
    util.BuilderConfig(name="hello", workernames=["w1"], factory=util.BuildFactory([
        steps.ShellCommand(name="greet", command="echo hello from an admin"),
    ])),
]
c['schedulers'] = [schedulers.ForceScheduler(name="force", builderNames=["hello"])]
c['www'] = {{
    'port': 'tcp:{port}:interface=127.0.0.1',
    'auth': util.UserPasswordAuth({{"alice": "wonderland", "bob": "builder"}}),
    'authz': util.Authz(
        allowRules=[util.ForceBuildEndpointMatcher(role="admins")],
        roleMatchers=[util.RolesFromUsername(roles=["admins"], usernames=["alice"])],
    ),
}}
"""


def _watch(page: Page, problems: list[str]) -> None:
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    # failed loads are the "response" handler's (which knows the expected one)
    page.on(
        "console",
        lambda m: (
            problems.append(f"console: {m.text}")
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    # the refused force is the one 4xx expected
    page.on(
        "response",
        lambda r: (
            problems.append(f"{r.status} {r.url}")
            if r.status >= 400 and not (r.status == 403 and "/api/v2/forceschedulers/" in r.url)
            else None
        ),
    )


async def test_refused_anonymous_force_then_login_force_and_logout(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    port = free_port()
    shots = artifacts_dir(request.node.name)
    base = f"http://127.0.0.1:{port}"
    async with running_master(tmp_path, BODY.format(port=port)) as running, chromium() as browser:
        db = running.master.db
        builderid = await running.master.data.updates.find_builder_id("hello")
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        problems: list[str] = []
        _watch(page, problems)

        # anonymous: the top bar offers a login that comes back to this page
        await page.goto(f"{base}/#/builders/{builderid}")
        header = page.locator("header")
        login = header.get_by_role("link", name="Log in")
        await login.wait_for(timeout=30_000)
        href = await login.get_attribute("href")
        assert href is not None
        assert urlsplit(href).path == "auth/login"
        assert parse_qs(urlsplit(href).query)["redirect"] == [f"/#/builders/{builderid}"]
        assert await header.get_by_role("link", name="Log out").count() == 0

        # the force is refused: the server's message is shown, nothing is requested
        form = page.locator("form.force[data-scheduler='force']")
        await form.get_by_role("button", name="force").click()
        refusal = form.locator(".error.refused")
        await refusal.wait_for(timeout=30_000)
        text = await refusal.inner_text()
        assert "Not allowed" in text
        assert "you need to have role 'admins'" in text
        assert await refusal.get_by_role("link", name="Log in").count() == 1
        await screenshot(page, shots, "refused")
        assert await db.buildsets.get_buildsets() == []
        assert await db.buildrequests.get_buildrequests() == []
        assert page.url == f"{base}/#/builders/{builderid}"  # no build page to follow

        # log in through the server's form, which sends the browser back to the builder
        await login.click()
        await page.wait_for_url(re.compile(r"/auth/login\?redirect="), timeout=30_000)
        await page.get_by_label("Username").fill("alice")
        await page.get_by_label("Password").fill("wonderland")
        await screenshot(page, shots, "login_form")
        await page.get_by_role("button", name="Log in").click()
        await page.wait_for_url(f"{base}/#/builders/{builderid}", timeout=30_000)
        await header.locator(".user-name", has_text="alice").wait_for(timeout=30_000)
        assert await header.get_by_role("link", name="Log out").count() == 1
        assert await header.get_by_role("link", name="Log in").count() == 0
        assert COOKIE in {c["name"] for c in await context.cookies()}

        # the admin's force runs to SUCCESS; the build is owned by the user
        await form.get_by_role("button", name="force").click()
        await page.wait_for_url(re.compile(r"#/builders/\d+/builds/1$"), timeout=30_000)
        await page.locator("#build-result [data-results='0']").wait_for(timeout=60_000)
        await screenshot(page, shots, "forced_as_admin")
        result = await running.result(1)
        assert result.build.results == Results.SUCCESS
        assert "hello from an admin" in result.stdout("greet")
        assert result.properties["owner"][0] == "alice"
        assert len(await db.buildsets.get_buildsets()) == 1

        # log out: back on the same page, anonymous again, the cookie gone
        await header.get_by_role("link", name="Log out").click()
        await page.wait_for_url(re.compile(r"#/builders/\d+/builds/1$"), timeout=30_000)
        await header.get_by_role("link", name="Log in").wait_for(timeout=30_000)
        assert await header.locator(".user-name").count() == 0
        assert COOKIE not in {c["name"] for c in await context.cookies()}
        await screenshot(page, shots, "logged_out")
        assert problems == []
        await context.close()
