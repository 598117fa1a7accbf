"""Headless Debian Chromium driven by Playwright, with every off-host request blocked.

Usage in a test::

    from tests.browser import open_browser, requires_chromium

    @requires_chromium
    def test_page_renders(server: Server) -> None:
        with open_browser() as browser:
            browser.page.goto(f"{server.url}/docs")
            browser.screenshot("docs")
            assert browser.blocked == [], browser.blocked
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import ConsoleMessage, Page, Route, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT_DIR = ROOT / "test-output"
SKIP_REASON = "chromium not installed: apt-get install chromium"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})
# Schemes that never reach the network, so they need no host check.
LOCAL_SCHEMES = frozenset({"data", "blob", "about"})
DEFAULT_TIMEOUT_MS = 15_000

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Playwright routes only requests made by pages, so this flag also makes
    # Chromium's own requests fail to resolve any other host.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
]


def chromium_path() -> str | None:
    """Return the path of Debian's Chromium, or None when it is not installed."""
    return shutil.which("chromium") or shutil.which("/usr/bin/chromium")


requires_chromium = pytest.mark.skipif(chromium_path() is None, reason=SKIP_REASON)


@dataclass
class BrowserSession:
    """An open page, plus the off-host URLs it tried to load and its console errors."""

    page: Page
    blocked: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def screenshot(self, name: str, full_page: bool = True) -> Path:
        """Save a PNG as test-output/<name>.png and return its path."""
        SCREENSHOT_DIR.mkdir(exist_ok=True)
        path = SCREENSHOT_DIR / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def _route(self, route: Route) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in LOCAL_SCHEMES or parts.hostname in LOCAL_HOSTS:
            route.continue_()
            return
        self.blocked.append(url)
        route.abort("blockedbyclient")

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)


@contextmanager
def open_browser(
    viewport: tuple[int, int] = (1280, 900),
) -> Iterator[BrowserSession]:
    """Launch headless Chromium with a fresh profile and yield one open page.

    Skips the calling test when Chromium is not installed.
    """
    executable = chromium_path()
    if executable is None:
        pytest.skip(SKIP_REASON)

    width, height = viewport
    with (
        tempfile.TemporaryDirectory(prefix="wavecls-chromium-") as profile,
        sync_playwright() as playwright,
    ):
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height},
            service_workers="block",
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(DEFAULT_TIMEOUT_MS)
            session = BrowserSession(page)
            context.route("**/*", session._route)
            page.on("console", session._console)
            yield session
        finally:
            context.close()
