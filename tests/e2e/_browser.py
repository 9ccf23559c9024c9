"""Headless Chromium for the console's browser tests: Debian's `chromium`, driven by Playwright
for Python through `executable_path` (never `playwright install`: nothing is downloaded), with
a fresh profile per module. Without chromium the tests fail, with one line saying so."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, sync_playwright

from tests.e2e._proc import ROOT

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    """Where chromium is (`GESTOR_CHROMIUM`, else `chromium` on the PATH); fails the test with
    one line when it is not installed."""
    found = os.environ.get("GESTOR_CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail("chromium is not installed: the console's browser tests need it "
                    "(apt-get install chromium, or GESTOR_CHROMIUM=/path/to/chromium)",
                    pytrace=False)
    return found


@contextmanager
def open_chromium(profile: Path) -> Iterator[BrowserContext]:
    """A headless Chromium on a fresh user-data dir `profile`, as one browser context."""
    executable = chromium_path()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=executable, headless=True, args=FLAGS,
            viewport={"width": 1400, "height": 1000})
        try:
            yield context
        finally:
            context.close()


def screenshot_dir(tmp: Path) -> Path:
    """Where screenshots go: `GESTOR_SCREENSHOTS` (relative to the repository; `docs` to
    refresh the README's), else the test's tmp dir."""
    wanted = os.environ.get("GESTOR_SCREENSHOTS")
    where = (ROOT / wanted) if wanted else tmp
    where.mkdir(parents=True, exist_ok=True)
    return where
