"""Headless Chromium (Debian's, driven by Playwright) for the browser tests, and their screenshots.

Playwright's own browser download is never used: the machine's ``chromium`` binary is launched,
with the flags that keep it off the network. Screenshots go to ``$BUILDYARD_ARTIFACTS`` (default
``artifacts/`` at the top of the checkout), one directory per test: they are the evidence that a
page really rendered.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError("the browser tests need Chromium: apt-get install chromium")
    return found


def artifacts_dir(test_name: str) -> Path:
    root = Path(os.environ.get("BUILDYARD_ARTIFACTS") or Path(__file__).parents[3] / "artifacts")
    where = root / "screenshots" / re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)
    where.mkdir(parents=True, exist_ok=True)
    return where


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium_path(), args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


async def screenshot(page: Page, where: Path, name: str) -> Path:
    path = where / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
