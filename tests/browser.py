"""Headless Chromium (Debian's ``chromium``) driven by Playwright, for the web studio.

Playwright's own browser builds cannot be downloaded here: the tests point it at the
system Chromium. Every page records its JavaScript errors and console errors; a test
fails on any, and on an error message the page shows, unless it expects them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

from tests.support import timeout

#: what Chromium needs to start as root on a machine without a network or a screen
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError("Chromium is not installed: apt-get install chromium (.ci/run does)")


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


#: console errors Chromium itself logs for what a test provokes on purpose: a socket to
#: a stopped server, an API answer of 4xx
EXPECTED_CONSOLE = ("WebSocket connection to", "Failed to load resource")


def wait_ms(seconds: float = 15) -> float:
    """A Playwright deadline in milliseconds, scaled like every other wait."""
    return timeout(seconds) * 1000


@dataclass
class StudioPage:
    """One browser tab (its own context: its own storage, so its own token)."""

    page: Page
    base: str
    errors: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith(EXPECTED_CONSOLE):
            self.errors.append(f"console: {message.text}")

    async def sign_in(self, token: str, path: str = "/") -> None:
        # the link `collab serve` prints: the token in the fragment, never sent to a server
        await self.page.goto(f"{self.base}/#token={token}")
        await self.page.wait_for_selector("header.top", timeout=wait_ms())
        if path != "/":
            await self.page.goto(f"{self.base}/#{path}")

    async def synced(self) -> None:
        await self.page.wait_for_selector('.connection[data-state="synced"]', timeout=wait_ms())

    async def assert_no_errors(self) -> None:
        assert not self.errors, self.errors
        shown = await self.page.locator(".message.error").all_inner_texts()
        assert not shown, shown


@contextlib.asynccontextmanager
async def studio_page(browser: Browser, address: str) -> AsyncIterator[StudioPage]:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(wait_ms())
    tab = StudioPage(page, f"http://{address}")
    page.on("pageerror", lambda error: tab.errors.append(str(error)))
    page.on("console", tab.console)
    try:
        yield tab
    finally:
        await context.close()


def artifacts_dir(default: Path) -> Path:
    """Where screenshots go: ``COLLAB_TEST_ARTIFACTS`` if set (CI keeps it), else the
    test's temporary folder."""
    folder = Path(os.environ.get("COLLAB_TEST_ARTIFACTS") or default)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
