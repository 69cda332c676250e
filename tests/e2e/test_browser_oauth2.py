"""The built-in UI with an OAuth2 login (GitHubAuth against the fake provider of
tests/master/www/fake_oauth.py), in headless Chromium against a real master and worker: the top
bar's "Log in with GitHub" goes to /auth/login with the page's route, through the provider and
back to the same page, logged in as the provider's user, whose team gives the role that may
force; then the logout; and with ``autologin=True`` an anonymous visitor is logged in at once.
The same login from Buildbot's own UI (buildbot-www 4.3.0) served by the master."""

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
from buildyard.testing.stock import buildbot_site_packages
from tests.master.www.fake_oauth import CLIENT_ID, CLIENT_SECRET, fake_provider

pytestmark = pytest.mark.e2e

BODY = """
c['builders'] = [
    util.BuilderConfig(name="hello", workernames=["w1"], factory=util.BuildFactory([
        steps.ShellCommand(name="greet", command="echo hello from a team"),
    ])),
]
c['schedulers'] = [schedulers.ForceScheduler(name="force", builderNames=["hello"])]
c['buildbotURL'] = "http://127.0.0.1:{port}/"
c['www'] = {{
    'port': 'tcp:{port}:interface=127.0.0.1',
    'auth': util.GitHubAuth({client!r}, {secret!r}, serverURL={url!r}, apiVersion=4,
                            getTeamsMembership=True, autologin={autologin}),
    'authz': util.Authz(
        allowRules=[util.ForceBuildEndpointMatcher(role="admins")],
        roleMatchers=[util.RolesFromGroups(groupPrefix="build-team/")],
    ),
}}
"""


def _watch(page: Page, problems: list[str]) -> None:
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "response",
        lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )


async def test_log_in_with_github_force_and_log_out(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    port = free_port()
    shots = artifacts_dir(request.node.name)
    base = f"http://127.0.0.1:{port}"
    with fake_provider() as fake:
        body = BODY.format(
            port=port, client=CLIENT_ID, secret=CLIENT_SECRET, url=fake.url, autologin=False
        )
        async with running_master(tmp_path, body) as running, chromium() as browser:
            builderid = await running.master.data.updates.find_builder_id("hello")
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            page = await context.new_page()
            problems: list[str] = []
            _watch(page, problems)

            # anonymous: the top bar offers the provider's login, coming back to this route
            await page.goto(f"{base}/#/builders/{builderid}")
            header = page.locator("header")
            login = header.get_by_role("link", name="Log in with GitHub")
            await login.wait_for(timeout=30_000)
            href = await login.get_attribute("href")
            assert href is not None
            assert urlsplit(href).path == "auth/login"
            assert parse_qs(urlsplit(href).query)["redirect"] == [f"/builders/{builderid}"]
            await screenshot(page, shots, "anonymous")

            # through the provider and back to the same page, logged in
            await login.click()
            await page.wait_for_url(f"{base}/#/builders/{builderid}", timeout=30_000)
            await header.locator(".user-name", has_text="Mona Octocat").wait_for(timeout=30_000)
            assert [r.path for r in fake.requests][:2] == [
                "/login/oauth/authorize",
                "/login/oauth/access_token",
            ]
            assert COOKIE in {c["name"] for c in await context.cookies()}
            await screenshot(page, shots, "logged_in")

            # the team build-team/admins is the role "admins": the force runs, owned by the user
            form = page.locator("form.force[data-scheduler='force']")
            await form.get_by_role("button", name="force").click()
            await page.wait_for_url(re.compile(r"#/builders/\d+/builds/1$"), timeout=30_000)
            await page.locator("#build-result [data-results='0']").wait_for(timeout=60_000)
            result = await running.result(1)
            assert result.build.results == Results.SUCCESS
            assert result.properties["owner"][0] == "public@example.org"

            # log out: anonymous again
            await header.get_by_role("link", name="Log out").click()
            await header.get_by_role("link", name="Log in with GitHub").wait_for(timeout=30_000)
            assert COOKIE not in {c["name"] for c in await context.cookies()}
            assert problems == []
            await context.close()

            # autologin: an anonymous visitor is sent through the provider at once
            cfg = running.basedir / "master.cfg"
            cfg.write_text(cfg.read_text().replace("autologin=False", "autologin=True"))
            assert await running.master.reconfig()
            fake.user = "visitor"
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            page = await context.new_page()
            await page.goto(f"{base}/#/builders/{builderid}")
            header = page.locator("header")
            await header.locator(".user-name", has_text="Vera Visitor").wait_for(timeout=30_000)
            assert page.url == f"{base}/#/builders/{builderid}"
            await screenshot(page, shots, "autologin")
            await context.close()


async def test_buildbot_www_login_with_github(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Buildbot's own UI (c['www']['ui']): its "Login with GitHub" menu item reaches our
    /auth/login with its route, and the login lands back on that route, logged in."""
    port = free_port()
    shots = artifacts_dir(request.node.name)
    base = f"http://127.0.0.1:{port}"
    ui = str(buildbot_site_packages() / "buildbot_www")
    with fake_provider() as fake:
        body = BODY.format(
            port=port, client=CLIENT_ID, secret=CLIENT_SECRET, url=fake.url, autologin=False
        ).replace("'port': ", f"'ui': {ui!r}, 'port': ", 1)
        async with running_master(tmp_path, body) as running, chromium() as browser:
            builderid = await running.master.data.updates.find_builder_id("hello")
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            page = await context.new_page()
            await page.goto(f"{base}/#/builders/{builderid}")
            await page.locator("#bb-loginbar-dropdown").click()
            item = page.get_by_role("button", name="Login with GitHub").or_(
                page.get_by_role("link", name="Login with GitHub")
            )
            await item.click(timeout=30_000)
            await page.wait_for_url(f"{base}/#/builders/{builderid}", timeout=30_000)
            nav = page.locator(".bb-loginbar-dropdown-nav")
            await nav.get_by_text("Mona Octocat").wait_for(timeout=30_000)
            await screenshot(page, shots, "logged_in")
            assert [r.path for r in fake.requests][:1] == ["/login/oauth/authorize"]
            await context.close()
