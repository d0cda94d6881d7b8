"""Chromium driven by Playwright for the page tests (the explorer's and the chat page): the system's Chromium
(Debian's chromium-headless-shell or chromium, or $LLMS_CHROMIUM), run as root in a closed network. conftest's
``browser`` fixture launches it."""

import os
import shutil

import pytest

from conftest import STRICT

INSTALL = ("the browser tests need Playwright and a Chromium: pip install -r requirements-dev.txt, then "
           "apt-get install chromium-headless-shell (or set LLMS_CHROMIUM to a Chromium binary)")
BROWSERS = ("chromium-headless-shell", "chromium", "chrome-headless-shell", "chromium-browser", "google-chrome")
# as root in a closed network: no sandbox, and none of Chromium's own requests to Google's hosts
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-extensions"]


def missing(reason):
    if STRICT:
        pytest.fail(f"{reason} (LLMS_STRICT_TESTS=1: .ci/run installs them)")
    pytest.skip(reason)


def launch():
    """A headless Chromium driven by Playwright (yielded until the generator closes), or a skip saying what to
    install (a failure under LLMS_STRICT_TESTS)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing(INSTALL)
    executable = os.environ.get("LLMS_CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
    if executable is None:
        missing(INSTALL)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=FLAGS)
        yield chromium
        chromium.close()
